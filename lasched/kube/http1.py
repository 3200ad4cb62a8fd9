"""Unary HTTP/1.1 requests to the apiserver on a pool of kept-alive connections.

The scheduler's hot writes (bindings, Events, status patches) are small
requests with small answers, a few hundred per second. Through aiohttp's
client each costs about 270 µs of CPU (its session, request and response
objects, tracing hooks, cookie jar, timeout handles and stream readers),
CPU that the apiserver, sharing the machine, then lacks. Here a request is one
bytes object written to a connection, and its answer is parsed by httptools
(llhttp, the parser uvicorn uses), about a third of that cost.

Watches stay on aiohttp (:class:`~lasched.kube.client.KubeClient`
streams them). What is kept of HTTP: keep-alive with a client-side idle limit
shorter than any server's, ``Content-Length`` and chunked answers, a bound on
connections, and a deadline per request. A request is never sent twice: a
failure is raised (a :class:`ConnectionError`, or :class:`TimeoutError`) and
the caller decides whether the outcome must be read back, as with any client.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from lasched import heap

# A connection idle this long is closed, by a timer rather than on the next request.
# Connections are reused last-in first-out, so in steady traffic the few in use
# stay warm and those a burst opened beyond them age out here; each holds about
# 55 kB of TLS state and buffers (uvloop's and OpenSSL's), which a burst's 64
# connections per pool make several MB. Shorter than any server's idle limit
# (Go's servers keep idle ones 90 s or more), as a client's must be.
IDLE_SECONDS = 5.0
MAX_BODY = 64 * 2**20  # an answer larger than this is a broken server, not an apiserver reply


class ProtocolError(ConnectionError):
    """The server's answer was not HTTP/1.1 this client can read."""


class _Closed:
    """Where a closed connection's parser was: it keeps no reference to the connection."""

    def feed_data(self, data: bytes) -> None:
        raise httptools.HttpParserError("data after the connection closed")

    def get_status_code(self) -> int:
        return 0

    def should_keep_alive(self) -> bool:
        return False


_CLOSED_PARSER = _Closed()


class _Connection(asyncio.Protocol):
    """One connection; at most one request on it at a time."""

    __slots__ = (
        "_chunks",
        "_parser",
        "_size",
        "_status",
        "_waiter",
        "closed",
        "idle_since",
        "transport",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | _Closed = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self.closed = False
        self.idle_since = 0.0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("the server asked for a protocol upgrade"))
        except httptools.HttpParserError as e:
            self._fail(ProtocolError(f"unreadable HTTP answer: {e}"))

    def eof_received(self) -> bool:
        self._fail(ConnectionResetError("the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))
        # The transport refers to this protocol and this protocol to the transport
        # (and the parser to this protocol): unbroken, a closed connection's TLS
        # buffers (about 300 kB of uvloop's and OpenSSL's) wait for the cyclic
        # collector's next full pass, which may be minutes away.
        self.transport = None
        self._parser = _CLOSED_PARSER

    # httptools callbacks

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            raise ProtocolError(f"an answer over {MAX_BODY} bytes")
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        waiter, self._waiter = self._waiter, None
        body = b"".join(self._chunks)
        self._chunks = []
        self._size = 0
        if not self._parser.should_keep_alive():
            self.close()
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, body))

    # requests

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Write one request; the answer's status and body."""
        assert self.transport is not None and self._waiter is None
        waiter: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self.transport.write(request)
        return await waiter

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http1Pool:
    """At most ``limit`` connections to one ``https://`` or ``http://`` origin."""

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None, limit: int) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl_context if parts.scheme == "https" else None
        self._host_header = parts.netloc.encode("idna")
        self._slots = asyncio.Semaphore(limit)
        self._idle: deque[_Connection] = deque()
        self._open: set[_Connection] = set()
        self._reaper: asyncio.TimerHandle | None = None

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        timeout: float | None,
    ) -> tuple[int, bytes]:
        """Send one request (``target``: path and query); the answer's status and body."""
        head = [f"{method} {target} HTTP/1.1\r\nHost: ".encode(), self._host_header, b"\r\n"]
        head.extend(f"{k}: {v}\r\n".encode() for k, v in headers.items())
        head.append(b"Content-Length: %d\r\n\r\n" % len(body) if body else b"\r\n")
        if body:
            head.append(body)
        request = b"".join(head)
        async with asyncio.timeout(timeout), self._slots:
            conn = await self._connection()
            ok = False
            try:
                status, answer = await conn.exchange(request)
                ok = not conn.closed
            finally:
                # A cancelled or failed exchange leaves the stream mid-answer: drop it.
                if ok:
                    conn.idle_since = time.monotonic()
                    self._idle.append(conn)
                    if self._reaper is None:
                        self._arm_reaper(conn.idle_since)
                else:
                    self._discard(conn)
        return status, answer

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        self._close_expired(now)
        while self._idle:
            conn = self._idle.pop()  # the most recently used: the least likely to be stale
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            self._discard(conn)
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            _Connection, self._host, self._port, ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )  # fmt: skip
        self._open.add(conn)
        return conn

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    def _arm_reaper(self, oldest_idle_since: float) -> None:
        delay = max(0.0, oldest_idle_since + IDLE_SECONDS - time.monotonic())
        self._reaper = asyncio.get_running_loop().call_later(delay, self._reap)

    def _close_expired(self, now: float) -> int:
        """Close the connections idle past the limit (the oldest idle are on the left)."""
        closed = 0
        while self._idle and now - self._idle[0].idle_since >= IDLE_SECONDS:
            self._discard(self._idle.popleft())
            closed += 1
        return closed

    def _reap(self) -> None:
        self._reaper = None
        closed = self._close_expired(time.monotonic())
        if self._idle:
            self._arm_reaper(self._idle[0].idle_since)
        if closed:
            # Their buffers are freed as the transports finish closing.
            heap.trim_soon()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for conn in list(self._open):
            self._discard(conn)
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports' close callbacks run

    @property
    def connections(self) -> int:
        """Connections open now (for tests and metrics)."""
        return len(self._open)
