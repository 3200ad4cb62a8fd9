"""Http1Pool against real sockets: keep-alive, limits, chunked answers, broken servers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes_asyncio.client import Configuration

from lasched import heap
from lasched.kube import http1
from lasched.kube.client import ApiError, KubeClient
from lasched.kube.http1 import Http1Pool, ProtocolError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """An aiohttp server on loopback; yields its URL and the peer port of each request."""
    ports: list[int] = []

    async def record(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ports.append(peer[1] if peer else -1)
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", ports
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(
    answer: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A TCP server that reads one request's head and then runs ``answer``."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            await answer(writer)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(
        body=request.method.encode() + b" " + request.path_qs.encode() + b" " + body
    )


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async with serve(echo) as (url, ports):
        pool = Http1Pool(url, ssl_context=None, limit=4)
        for i in range(10):
            status, body = await pool.request("POST", f"/x?i={i}", {}, b"hello", 5)
            assert (status, body) == (200, f"POST /x?i={i} hello".encode())
        assert len(set(ports)) == 1
        assert pool.connections == 1
        await pool.close()


async def test_no_more_connections_than_the_limit() -> None:
    in_flight = 0
    most = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.Response(text="ok")

    async with serve(slow) as (url, ports):
        pool = Http1Pool(url, ssl_context=None, limit=3)
        answers = await asyncio.gather(*(pool.request("GET", "/", {}, None, 5) for _ in range(12)))
        assert all(a == (200, b"ok") for a in answers)
        assert most == 3
        assert len(set(ports)) == 3
        await pool.close()


async def test_a_chunked_answer_is_read_whole() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b'{"a":', b" 1", b"}"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async with serve(chunked) as (url, _):
        pool = Http1Pool(url, ssl_context=None, limit=1)
        assert await pool.request("GET", "/", {}, None, 5) == (200, b'{"a": 1}')
        assert await pool.request("GET", "/", {}, None, 5) == (200, b'{"a": 1}')
        await pool.close()


async def test_error_statuses_are_answers_not_failures() -> None:
    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, body=b'{"reason":"NotFound"}')

    async with serve(missing) as (url, _):
        pool = Http1Pool(url, ssl_context=None, limit=1)
        assert await pool.request("GET", "/", {}, None, 5) == (404, b'{"reason":"NotFound"}')
        assert pool.connections == 1  # kept for the next request
        await pool.close()


async def test_connection_close_answer_drops_the_connection() -> None:
    async def closing(request: web.Request) -> web.Response:
        resp = web.Response(text="bye")
        resp.force_close()
        return resp

    async with serve(closing) as (url, ports):
        pool = Http1Pool(url, ssl_context=None, limit=2)
        for _ in range(3):
            assert await pool.request("GET", "/", {}, None, 5) == (200, b"bye")
        assert len(set(ports)) == 3
        await pool.close()


async def test_an_idle_connection_past_the_limit_is_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http1, "IDLE_SECONDS", 0.05)
    async with serve(echo) as (url, ports):
        pool = Http1Pool(url, ssl_context=None, limit=2)
        await pool.request("GET", "/", {}, None, 5)
        await asyncio.sleep(0.1)
        await pool.request("GET", "/", {}, None, 5)
        assert len(set(ports)) == 2
        assert pool.connections == 1
        await pool.close()


async def test_idle_connections_are_closed_by_a_timer_without_another_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http1, "IDLE_SECONDS", 0.1)
    trims: list[int] = []
    monkeypatch.setattr(heap, "trim_soon", lambda: trims.append(1))
    async with serve(echo) as (url, _):
        pool = Http1Pool(url, ssl_context=None, limit=4)
        await asyncio.gather(*(pool.request("GET", "/", {}, None, 5) for _ in range(4)))
        assert pool.connections == 4
        await asyncio.sleep(0.3)
        assert pool.connections == 0
        assert trims  # the freed buffers are given back
        await pool.close()


def test_a_closed_connection_is_freed_without_the_cyclic_collector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its transport (and the TLS buffers it holds) goes when the pool lets it go.

    On uvloop, lasched's loop: asyncio's own selector transports refer to
    themselves (a bound read callback), uvloop's do not.
    """
    monkeypatch.setattr(http1, "IDLE_SECONDS", 0.05)

    async def body() -> None:
        async with serve(echo) as (url, _):
            pool = Http1Pool(url, ssl_context=None, limit=1)
            await pool.request("GET", "/", {}, None, 5)
            (conn,) = pool._open
            transport = weakref.ref(conn.transport)
            del conn
            gc.disable()
            try:
                await asyncio.sleep(0.2)  # reaped, and the transport's close has run
                assert pool.connections == 0
                assert transport() is None
            finally:
                gc.enable()
            await pool.close()

    uvloop.run(body())


async def test_a_connection_in_steady_use_outlives_the_idle_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http1, "IDLE_SECONDS", 0.15)
    async with serve(echo) as (url, ports):
        pool = Http1Pool(url, ssl_context=None, limit=4)
        # A burst opens four; then one request at a time, more often than the limit:
        # the most recently used connection is reused and the three others age out.
        await asyncio.gather(*(pool.request("GET", "/", {}, None, 5) for _ in range(4)))
        for _ in range(8):
            await asyncio.sleep(0.05)
            await pool.request("GET", "/", {}, None, 5)
        assert pool.connections == 1
        assert len(set(ports[4:])) == 1
        await pool.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async def once(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()  # then the server closes the connection

    async with raw_server(once) as url:
        pool = Http1Pool(url, ssl_context=None, limit=1)
        assert await pool.request("GET", "/", {}, None, 5) == (200, b"ok")
        await asyncio.sleep(0.05)  # the close arrives while the connection is idle
        assert await pool.request("GET", "/", {}, None, 5) == (200, b"ok")
        await pool.close()


async def test_a_deadline_raises_timeout_and_frees_the_slot() -> None:
    async def sometimes_slow(request: web.Request) -> web.Response:
        if request.query.get("slow"):
            await asyncio.sleep(5)
        return web.Response(text="ok")

    async with serve(sometimes_slow) as (url, _):
        pool = Http1Pool(url, ssl_context=None, limit=1)
        with pytest.raises(TimeoutError):
            await pool.request("GET", "/?slow=1", {}, None, 0.05)
        assert pool.connections == 0  # mid-answer: never reused
        assert await pool.request("GET", "/", {}, None, 5) == (200, b"ok")
        await pool.close()


async def test_cancelling_a_request_drops_its_connection() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    async with serve(slow) as (url, _):
        pool = Http1Pool(url, ssl_context=None, limit=1)
        task = asyncio.create_task(pool.request("GET", "/", {}, None, None))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.connections == 0
        await pool.close()


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HELLO THERE\r\n\r\n", id="not-http"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n", id="bad-length"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nXYZ\r\n", id="bad-chunk"
        ),
    ],
)
async def test_a_garbage_answer_is_a_protocol_error(answer: bytes) -> None:
    async def garbage(writer: asyncio.StreamWriter) -> None:
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(0.5)

    async with raw_server(garbage) as url:
        pool = Http1Pool(url, ssl_context=None, limit=1)
        with pytest.raises(ProtocolError):
            await pool.request("GET", "/", {}, None, 5)
        assert pool.connections == 0
        await pool.close()


async def test_a_server_that_hangs_up_without_answering_is_a_connection_error() -> None:
    async def hang_up(writer: asyncio.StreamWriter) -> None:
        return None

    async with raw_server(hang_up) as url:
        pool = Http1Pool(url, ssl_context=None, limit=1)
        with pytest.raises(ConnectionError):
            await pool.request("POST", "/", {}, b"x", 5)
        await pool.close()


async def test_an_oversized_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_BODY", 1000)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async with serve(big) as (url, _):
        pool = Http1Pool(url, ssl_context=None, limit=1)
        with pytest.raises(ProtocolError):
            await pool.request("GET", "/", {}, None, 5)
        await pool.close()


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Http1Pool("unix:///var/run/x", ssl_context=None, limit=1)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.binary(max_size=3000),
    chunk_sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=8),
    chunked=st.booleans(),
)
def test_any_body_split_anywhere_arrives_whole(
    body: bytes, chunk_sizes: list[int], cuts: list[int], chunked: bool
) -> None:
    """Whatever the body, its chunking and how TCP splits the bytes, the answer is the body."""
    if chunked:
        parts, rest, i = [], body, 0
        while rest:
            size = chunk_sizes[i % len(chunk_sizes)]
            parts.append(b"%x\r\n%s\r\n" % (len(rest[:size]), rest[:size]))
            rest, i = rest[size:], i + 1
        wire = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(parts)
            + b"0\r\n\r\n"
        )
    else:
        wire = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    async def split(writer: asyncio.StreamWriter) -> None:
        data, i = wire, 0
        while data:
            n = cuts[i % len(cuts)] if cuts else len(data)
            writer.write(data[:n])
            await writer.drain()
            await asyncio.sleep(0)
            data, i = data[n:], i + 1

    async def run() -> tuple[int, bytes]:
        async with raw_server(split) as url:
            pool = Http1Pool(url, ssl_context=None, limit=1)
            try:
                return await pool.request("GET", "/", {}, None, 5)
            finally:
                await pool.close()

    assert asyncio.run(run()) == (200, body)


async def test_kube_client_sends_unary_requests_through_the_pool() -> None:
    """A kubeconfig server with a path keeps it; headers, query and errors as before."""
    seen: list[tuple[str, str, str | None, str | None]] = []

    async def api(request: web.Request) -> web.Response:
        seen.append(
            (request.method, request.path_qs, request.headers.get("Content-Type"),
             request.headers.get("User-Agent"))
        )  # fmt: skip
        if request.path.endswith("/missing"):
            return web.json_response(
                {"kind": "Status", "reason": "NotFound", "message": 'pods "x" not found'},
                status=404,
            )
        return web.json_response({"ok": True, "echo": (await request.read()).decode()})

    async with serve(api) as (url, _):
        client = KubeClient(Configuration(host=url + "/proxy/c1"))
        try:
            got = await client.patch("/api/v1/namespaces/a/pods/p", {"x": 1})
            assert got == {"ok": True, "echo": '{"x":1}'}
            listing = await client.get("/api/v1/pods", limit=5, watch=False)
            assert listing["ok"] is True
            with pytest.raises(ApiError) as err:
                await client.get("/api/v1/namespaces/a/pods/missing")
            assert (err.value.status, err.value.reason) == (404, "NotFound")
        finally:
            await client.close()
    assert seen[0] == (
        "PATCH", "/proxy/c1/api/v1/namespaces/a/pods/p", "application/merge-patch+json", "lasched"
    )  # fmt: skip
    assert seen[1][1] == "/proxy/c1/api/v1/pods?limit=5&watch=false"


async def test_kube_client_asks_every_answer_uncompressed() -> None:
    """Watches and streaming lists included: the apiserver would gzip them per client."""
    encodings: list[str | None] = []

    async def api(request: web.Request) -> web.StreamResponse:
        encodings.append(request.headers.get("Accept-Encoding"))
        if request.query.get("watch") == "true":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await resp.write(b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n')
            return resp
        return web.json_response({"ok": True})

    async with serve(api) as (url, _):
        client = KubeClient(Configuration(host=url))
        try:
            await client.get("/api/v1/pods")
            events = [e async for e in client.stream("/api/v1/pods", params={"watch": True})]
            assert events == [{"type": "ADDED", "object": {"metadata": {"name": "a"}}}]
        finally:
            await client.close()
    # The lean pool sends no Accept-Encoding at all (identity by default); the stream says so.
    assert encodings == [None, "identity"]
