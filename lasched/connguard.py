"""Connection caps and timeouts for the scheduler's HTTP port.

Every open connection costs the process a file descriptor, and those are the
same descriptors the scheduler's own apiserver connections need. A client that
connects and sends nothing, or half a request line, holds one for as long as it
likes unless something closes it; a few hundred of them ended in EMFILE on the
scheduler's binds and watches. So the listening socket hands each accepted
connection to a :class:`_Guarded` protocol in front of aiohttp's, which

- refuses it at once (a short 503, then close) when the port already holds
  ``max_connections`` connections, or ``max_connections_per_source`` from the
  same source address;
- closes it when its request head is not complete ``header_timeout`` seconds
  after it was accepted, or after the first byte of a later request on the same
  keep-alive connection;
- closes a keep-alive connection idle ``idle_timeout`` seconds between requests.

While a request is being handled (a WebSocket for its whole life) no timer
runs: the handler owns its deadlines (the agents' hub closes a silent agent).

Invariant: an admitted connection is counted once and released exactly once,
in ``connection_lost``, which asyncio calls for every transport it made; a
refused one is never counted.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import resource
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from lasched import metrics
from lasched.logs import Throttled
from lasched.settings import ServerSettings

log = logging.getLogger(__name__)

RESERVED_FDS = 256
"""File descriptors always left to the process itself (apiserver connections, files)."""

_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Retry-After: 5\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 21\r\n"
    b"\r\n"
    b"too many connections\n"
)


class Reason(enum.Enum):
    """Why the guard refused or closed a connection (the metric's ``reason`` label)."""

    TOTAL_CAP = "total_cap"
    PER_SOURCE_CAP = "per_source_cap"
    HEADER_TIMEOUT = "header_timeout"
    IDLE_TIMEOUT = "idle_timeout"


_WHY = {
    Reason.TOTAL_CAP: "refused: the port holds its maximum of connections",
    Reason.PER_SOURCE_CAP: "refused: this source holds its maximum of connections",
    Reason.HEADER_TIMEOUT: "closed: no complete request head within the header timeout",
    Reason.IDLE_TIMEOUT: "closed: idle between requests for the idle timeout",
}


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int = 2048
    max_connections_per_source: int = 32
    header_timeout: float = 10.0
    idle_timeout: float = 90.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_connections_per_source"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("header_timeout", "idle_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")


def raise_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit cannot be the soft one on Linux (it is bounded by nr_open).
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, e)
    return soft


def total_cap(configured: int, file_limit: int) -> int:
    """``configured``, lowered so a quarter of ``file_limit`` (at least 256) stays free."""
    if file_limit == resource.RLIM_INFINITY:
        return configured
    spare = file_limit - max(RESERVED_FDS, file_limit // 4)
    return max(1, min(configured, spare))


def plan(settings: ServerSettings) -> ConnectionLimits:
    """The limits to enforce: the configured ones, within the process's open-file limit.

    Raises the soft open-file limit as far as allowed and logs what is in force.
    """
    file_limit = raise_file_limit()
    cap = total_cap(settings.max_connections, file_limit)
    limits = ConnectionLimits(
        max_connections=cap,
        max_connections_per_source=min(settings.max_connections_per_source, cap),
        header_timeout=settings.header_timeout_seconds,
        idle_timeout=settings.idle_timeout_seconds,
    )
    if cap < settings.max_connections:
        log.warning(
            "server.maxConnections lowered from %d to %d to leave file descriptors "
            "for the scheduler's own connections (open-file limit %d)",
            settings.max_connections, cap, file_limit,
        )  # fmt: skip
    log.info(
        "HTTP connection limits: %d in total, %d per source, header timeout %gs, "
        "idle timeout %gs; open-file limit %d",
        limits.max_connections, limits.max_connections_per_source, limits.header_timeout,
        limits.idle_timeout, file_limit,
    )  # fmt: skip
    return limits


class ConnectionGuard:
    """Counts the port's connections, refuses those over a cap, and times the rest.

    Use :meth:`protocol_factory` around aiohttp's server when listening and add
    :attr:`middleware` to the application, which tells the guard when a request
    starts and ends.
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self._per_source: dict[str, int] = {}
        self._by_handler: dict[asyncio.BaseProtocol, _Guarded] = {}
        self._log = Throttled(log)

        @web.middleware
        async def middleware(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            conn = self._by_handler.get(request.protocol)
            if conn is None:
                return await handler(request)
            conn.request_started()
            try:
                return await handler(request)
            finally:
                conn.request_ended()

        self.middleware = middleware

    def from_source(self, source: str) -> int:
        """Connections open from ``source`` now."""
        return self._per_source.get(source, 0)

    def protocol_factory(
        self, handler_factory: Callable[[], asyncio.Protocol]
    ) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for ``loop.create_server`` that guards ``handler_factory``'s."""
        return lambda: _Guarded(self, handler_factory)

    def _admit(self, source: str) -> Reason | None:
        if self.open >= self.limits.max_connections:
            return Reason.TOTAL_CAP
        if self._per_source.get(source, 0) >= self.limits.max_connections_per_source:
            return Reason.PER_SOURCE_CAP
        self.open += 1
        self._per_source[source] = self._per_source.get(source, 0) + 1
        metrics.http_connections.inc()
        return None

    def _release(self, source: str) -> None:
        self.open -= 1
        left = self._per_source[source] - 1
        if left:
            self._per_source[source] = left
        else:
            del self._per_source[source]
        metrics.http_connections.dec()

    def _note(self, reason: Reason, source: str) -> None:
        metrics.http_connections_refused.labels(reason.value).inc()
        self._log.warning(reason.value, "HTTP connection from %s %s", source, _WHY[reason])


def _source_of(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer) if peer else "unknown"


class _Guarded(asyncio.Protocol):
    """One accepted connection: admitted and timed here, served by aiohttp's handler."""

    __slots__ = ("_busy", "_guard", "_idle", "_inner", "_make", "_source", "_timer", "_transport")

    def __init__(self, guard: ConnectionGuard, make: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._source = ""
        self._timer: asyncio.TimerHandle | None = None
        self._busy = 0  # requests being handled (more than one only when pipelined)
        self._idle = False

    # ---- asyncio.Protocol, forwarded to aiohttp's handler once admitted -----------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's; they do implement Transport.
        transport = cast(asyncio.Transport, base)
        self._source = _source_of(transport)
        refused = self._guard._admit(self._source)
        if refused is not None:
            self._guard._note(refused, self._source)
            transport.write(_REFUSAL)
            transport.close()
            return
        self._transport = transport
        self._inner = self._make()
        self._guard._by_handler[self._inner] = self
        self._arm(self._guard.limits.header_timeout, Reason.HEADER_TIMEOUT)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._idle:
            # The next request has begun: its head gets the header timeout.
            self._idle = False
            self._arm(self._guard.limits.header_timeout, Reason.HEADER_TIMEOUT)
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        inner, self._inner, self._transport = self._inner, None, None
        if inner is None:
            return  # refused: never counted
        try:
            del self._guard._by_handler[inner]
            self._guard._release(self._source)
        finally:
            inner.connection_lost(exc)

    # ---- told by the guard's middleware ----------------------------------------------

    def request_started(self) -> None:
        self._busy += 1
        self._idle = False
        self._disarm()

    def request_ended(self) -> None:
        self._busy -= 1
        if self._busy == 0 and self._transport is not None:
            self._idle = True
            self._arm(self._guard.limits.idle_timeout, Reason.IDLE_TIMEOUT)

    # ---- the one timer -----------------------------------------------------------------

    def _arm(self, seconds: float, reason: Reason) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._expire, reason)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self, reason: Reason) -> None:
        self._timer = None
        if self._transport is None or self._busy:
            return
        self._guard._note(reason, self._source)
        # abort, not close: nothing is owed to this client, and its descriptor is
        # freed now even if it stopped reading.
        self._transport.abort()


class GuardedSite(web.BaseSite):
    """aiohttp's TCPSite, with every connection passing through a :class:`ConnectionGuard`."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        guard: ConnectionGuard,
        backlog: int = 1024,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._guard = guard
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() comes first"
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard.protocol_factory(server), self._host, self._port, backlog=self._backlog
        )
