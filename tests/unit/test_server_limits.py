"""The HTTP port's caps and timeouts, against real loopback sockets.

Floods come from other loopback addresses (127.0.0.2 and up, all of 127/8 is
the local host on Linux), so each test also shows what one source's flood
leaves for the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import web
from prometheus_client import REGISTRY

from lasched import connguard, server
from lasched.settings import ServerSettings

WAIT = 5.0
HEADER_TIMEOUT = 0.5


def refused(reason: str) -> float:
    value = REGISTRY.get_sample_value("lasched_http_connections_refused_total", {"reason": reason})
    return value or 0.0


@contextlib.asynccontextmanager
async def serving(**limits: Any) -> AsyncIterator[int]:
    """A scheduler-like server (health plus a slow WebSocket) with ``limits``; its port."""

    async def ws_echo(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    def extra(app: web.Application) -> None:
        app.router.add_get("/ws", ws_echo)

    app = server.build_app(problems=lambda: [], extra_routes=[extra])
    settings = ServerSettings(
        bind_address="0.0.0.0", port=0, header_timeout_seconds=HEADER_TIMEOUT, **limits
    )
    runner = await server.start(app, host="0.0.0.0", port=0, limits=settings)
    try:
        yield server.bound_port(runner)
    finally:
        await runner.cleanup()


async def open_from(
    source: str, port: int, n: int, *, send: bytes = b""
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``n`` connections from ``source`` that send ``send`` (maybe nothing) and wait."""
    conns = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        if send:
            writer.write(send)
        conns.append((reader, writer))
    return conns


async def ended(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent before it closed the connection."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(4096):
            data += chunk
    return data


async def close_all(conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in conns:
        writer.close()
    for _, writer in conns:
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def healthz(port: int) -> float:
    """Seconds a fresh GET /healthz from 127.0.0.1 takes (it must answer ok)."""
    start = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(WAIT)) as r,
    ):
        assert (r.status, await r.text()) == (200, "ok")
    return time.monotonic() - start


async def test_half_open_connections_are_closed_after_the_header_timeout() -> None:
    """220 connections that send nothing, or half a request line, or trickle a byte at a
    time, are all closed soon after the header timeout, and counted."""
    async with serving(max_connections_per_source=300, max_connections=1000) as port:
        before = refused("header_timeout")
        silent = await open_from("127.0.0.2", port, 200)
        partial = await open_from("127.0.0.2", port, 20, send=b"GET /heal")
        trickle = (await open_from("127.0.0.2", port, 1, send=b"G"))[0]
        start = time.monotonic()

        async def keep_trickling() -> None:
            for byte in b"ET /healthz HTTP/1.1\r\nHost: x\r\n":
                await asyncio.sleep(0.05)
                trickle[1].write(bytes([byte]))

        trickler = asyncio.create_task(keep_trickling(), name="trickle")
        outputs = await asyncio.wait_for(
            asyncio.gather(*(ended(r) for r, _ in [*silent, *partial, trickle])), WAIT
        )
        elapsed = time.monotonic() - start
        trickler.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await trickler
        assert set(outputs) == {b""}
        assert HEADER_TIMEOUT * 0.8 <= elapsed < HEADER_TIMEOUT + 2
        assert refused("header_timeout") - before == 221
        await close_all([*silent, *partial, trickle])


async def test_connections_over_the_per_source_cap_are_refused_at_once() -> None:
    """The 6th connection from one address gets a 503 and is closed immediately, while
    another address still connects and GET /healthz answers quickly."""
    async with serving(max_connections_per_source=5, max_connections=100) as port:
        before = refused("per_source_cap")
        held = await open_from("127.0.0.2", port, 5)
        start = time.monotonic()
        over = await open_from("127.0.0.2", port, 3)
        answers = await asyncio.wait_for(asyncio.gather(*(ended(r) for r, _ in over)), WAIT)
        assert time.monotonic() - start < 1.0
        assert all(a.startswith(b"HTTP/1.1 503 ") for a in answers)
        assert refused("per_source_cap") - before == 3
        assert await healthz(port) < 0.5
        await close_all([*held, *over])


async def test_connections_over_the_total_cap_are_refused_at_once() -> None:
    """Once the port holds max_connections, a connection from a new address is refused too,
    and a slot freed by a closed connection is taken again."""
    async with serving(max_connections_per_source=4, max_connections=8) as port:
        before = refused("total_cap")
        held = await open_from("127.0.0.2", port, 4) + await open_from("127.0.0.3", port, 4)
        (reader, writer), = await open_from("127.0.0.4", port, 1)  # fmt: skip
        assert (await asyncio.wait_for(ended(reader), WAIT)).startswith(b"HTTP/1.1 503 ")
        assert refused("total_cap") - before == 1
        await close_all([held.pop()])
        await asyncio.sleep(0.05)
        assert await healthz(port) < 0.5
        await close_all([*held, (reader, writer)])


async def test_a_flood_leaves_other_sources_served_and_then_clears() -> None:
    """During a 300-connection flood from one address, GET /healthz from another answers
    quickly; after the header timeout the flood's connections are gone."""
    async with serving(max_connections_per_source=32, max_connections=200) as port:
        flood = await open_from("127.0.0.2", port, 300)
        assert await healthz(port) < 0.5
        await asyncio.wait_for(asyncio.gather(*(ended(r) for r, _ in flood)), WAIT)
        assert await healthz(port) < 0.5
        await close_all(flood)


async def test_idle_keepalive_connections_are_closed_but_websockets_are_not() -> None:
    """A keep-alive connection idle past idleTimeoutSeconds is closed; a WebSocket, busy
    for its whole life, outlives both timeouts."""
    async with serving(idle_timeout_seconds=0.4) as port:
        before = refused("idle_timeout")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"ok"), WAIT)
        assert head.startswith(b"HTTP/1.1 200 ")
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws")
            assert await asyncio.wait_for(ended(reader), WAIT) == b""
            assert refused("idle_timeout") - before == 1
            await asyncio.sleep(HEADER_TIMEOUT + 0.2)
            await ws.send_str("still here")
            assert (await ws.receive(timeout=WAIT)).data == "still here"
            await ws.close()
        writer.close()


def test_the_guard_works_on_uvloop() -> None:
    """lasched runs on uvloop, whose transports are not asyncio's classes: same behaviour."""

    async def scenario() -> None:
        async with serving(max_connections_per_source=5, max_connections=100) as port:
            conns = await open_from("127.0.0.2", port, 7)
            outs = await asyncio.wait_for(asyncio.gather(*(ended(r) for r, _ in conns)), WAIT)
            assert sorted(o[:12] for o in outs) == [b""] * 5 + [b"HTTP/1.1 503"] * 2
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"http://127.0.0.1:{port}/ws")
                await asyncio.sleep(HEADER_TIMEOUT + 0.2)
                await ws.send_str("still here")
                assert (await ws.receive(timeout=WAIT)).data == "still here"
                await ws.close()
            assert await healthz(port) < 0.5
            await close_all(conns)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


def test_the_total_cap_leaves_a_quarter_of_the_file_limit() -> None:
    """With 1,024 descriptors at most 768 connections; with plenty, the configured cap."""
    assert connguard.total_cap(2048, 1024) == 768
    assert connguard.total_cap(2048, 20000) == 2048
    assert connguard.total_cap(2048, 300) == 44


def test_plan_raises_the_soft_file_limit_and_logs_the_limits(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """At start the soft open-file limit goes up to the hard one; the caps fit within it."""
    limits: dict[str, tuple[int, int]] = {"nofile": (1024, 4096)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["nofile"])

    def setrlimit(_: int, value: tuple[int, int]) -> None:
        limits["nofile"] = value

    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    caplog.set_level("INFO", logger="lasched.connguard")
    planned = connguard.plan(ServerSettings(max_connections=5000))
    assert limits["nofile"] == (4096, 4096)
    assert planned.max_connections == 3072
    assert "server.maxConnections lowered from 5000 to 3072" in caplog.text
    assert "3072 in total, 32 per source" in caplog.text


@pytest.mark.parametrize(
    "make",
    [
        lambda: connguard.ConnectionLimits(max_connections=0),
        lambda: connguard.ConnectionLimits(header_timeout=0),
    ],
    ids=["no-connections", "zero-timeout"],
)
def test_limits_name_the_wrong_argument(make: Callable[[], object]) -> None:
    """Invalid limits fail at construction with the argument's name."""
    with pytest.raises(ValueError, match=r"max_connections|header_timeout"):
        make()
