"""The agent's connection to the scheduler: one WebSocket, kept up for good.

One connection goes like this:

1. Read the token file, again on every attempt (projected ServiceAccount
   tokens rotate), and open ``GET <scheduler URL>`` as a WebSocket with
   ``Authorization: Bearer <token>``.
2. Send :class:`~lasched_protocol.Hello` (``seq`` 0; every frame of the
   connection takes the next ``seq``).
3. Until the connection ends, concurrently: apply each
   :class:`~lasched_protocol.Targets` from the scheduler to the prober (the
   round under way finishes first); send each round's batch as one
   :class:`~lasched_protocol.Samples`, preceded by whatever waited in the
   buffer while disconnected; send a :class:`~lasched_protocol.Heartbeat`
   every ``heartbeat_seconds``. WebSocket pings at the same period detect a
   peer that vanished without closing. With a topology watch
   (``--report-topology``), once a ``Targets`` says the scheduler accepts
   them, send the node's :class:`~lasched_protocol.Topology` and again on
   every change; a scheduler that does not say so gets none.
4. Wait a backoff delay (:mod:`lasched_agent.backoff`) and start again.

Probing never stops: it runs beside the connection and fills the buffer
(:mod:`lasched_agent.buffer`) while there is none, starting from the last
targets received.

What ends a connection, and how it is logged (none of it stops the agent):

* the token file is missing, unreadable or empty (error);
* HTTP 401 or 403 on the upgrade: the scheduler refused the token (error);
* close code 1008 from the scheduler: it refused this agent, for instance
  its identity does not match the node it claims (error, with the reason);
* close code 1007 or 1009 from the scheduler: it found a frame of ours
  malformed or too large (error: a bug or a version skew);
* a frame from the scheduler that does not decode, or a message type the
  scheduler must not send: the agent closes with 1007 or 1002 (warning);
* anything else (refused connection, timeout, reset, other close codes,
  a failed send, a missing pong): warning, or info for a normal close.

Only bugs escape :meth:`AgentClient.run`, besides its cancellation.

:meth:`AgentClient.run` is the prober and one connection together. The
connection alone is :meth:`AgentClient.stream`, fed through
:meth:`AgentClient.offer`: :mod:`lasched_agent.fanout` runs one of those per
scheduler replica beside a single prober.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from lasched_agent import __version__
from lasched_agent.backoff import Backoff
from lasched_agent.buffer import SampleBuffer
from lasched_agent.clock import Clock, SystemClock
from lasched_agent.numa import Report, TopologyWatch
from lasched_agent.prober import Prober
from lasched_protocol import (
    ACCEPTS_TOPOLOGY,
    MAX_FRAME_BYTES,
    Heartbeat,
    Hello,
    Message,
    ProtocolError,
    Sample,
    Samples,
    Targets,
    Topology,
    decode,
    encode,
)

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT = 5.0  # how long our close waits for the scheduler's close frame


@dataclass(frozen=True, slots=True)
class _Ending:
    """Why a connection ended, how loudly to say so, and the close code we send, if any."""

    reason: str
    level: int = logging.WARNING
    close_code: int | None = None


class AgentClient:
    """Keeps this node's agent connected to the scheduler and streams its samples.

    The probing is whatever ``prober`` does, so a test or a simulated agent
    can stand in a table of RTTs for the network and still speak the real
    protocol over a real WebSocket::

        from lasched_agent.prober import ProbeMethod, Prober
        from lasched_agent.stream import AgentClient

        client = AgentClient(
            url="ws://127.0.0.1:10259/agents/v1",
            node="edge-1",
            prober=Prober(ProbeMethod.fixed({"edge-2": 1.5, "edge-3": 40.0})),
        )
        task = asyncio.create_task(client.run(), name="agent:edge-1")

    ``token_file`` is read before every connection attempt and sent as a
    bearer token; ``None`` sends no ``Authorization`` header. ``session``
    lets many simulated agents share one :class:`aiohttp.ClientSession`;
    without one, :meth:`run` opens its own. ``clock`` paces heartbeats and
    backoff (and should be the prober's).

    ``host``, when ``url`` names one replica's address rather than the
    scheduler's host name, is sent as the ``Host`` header and checked as the
    TLS server name (``wss://``), so the scheduler sees the name it serves.
    ``on_targets`` receives each :class:`~lasched_protocol.Targets`; by
    default it is applied to ``prober``. ``topology``, when given, is this node's NUMA
    topology (opt-in), reported to a scheduler that accepts it; :meth:`run` keeps it
    read, :meth:`stream` alone only reports it.
    """

    def __init__(
        self,
        *,
        url: str,
        node: str,
        prober: Prober,
        token_file: Path | None = None,
        heartbeat_seconds: float = 10.0,
        buffer_limit: int = 4096,
        backoff: Backoff | None = None,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float = 10.0,
        agent_version: str = __version__,
        host: str | None = None,
        on_targets: Callable[[Targets], None] | None = None,
        topology: TopologyWatch | None = None,
    ) -> None:
        if heartbeat_seconds <= 0:
            raise ValueError(f"heartbeat_seconds must be positive, not {heartbeat_seconds}")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, not {connect_timeout}")
        self.url = url
        self.node = node
        self.prober = prober
        self.token_file = token_file
        self.heartbeat_seconds = heartbeat_seconds
        self.buffer = SampleBuffer(buffer_limit)
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.agent_version = agent_version
        self.host = host
        self.connections = 0
        """Connections established so far (the WebSocket upgrade succeeded)."""
        self._clock: Clock = clock or SystemClock()
        self._session = session
        self._on_targets = on_targets or self._apply_targets
        self.topology = topology
        self._ready = asyncio.Event()  # the buffer has something to send

    async def run(self) -> None:
        """Probe and stream until cancelled; cancelling is safe.

        On cancellation the connection is closed with 1001 (going away) and
        outstanding probes are cancelled. Two named tasks run inside:
        ``agent-prober`` and ``agent-connection`` (and ``agent-topology``, which
        reads the NUMA topology, with a ``topology``); if one fails (a bug),
        the others are cancelled and the failure propagates in an
        :class:`ExceptionGroup`.
        """
        async with contextlib.AsyncExitStack() as stack:
            session = self._session
            if session is None:
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout)
                # The system's resolver: aiohttp would pick aiodns (aioping brings it), whose
                # c-ares channel shutdown can abort the process.
                connector = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver())
                session = await stack.enter_async_context(
                    aiohttp.ClientSession(timeout=timeout, connector=connector)
                )
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.prober.run(self.offer), name="agent-prober")
                tg.create_task(self.stream(session), name="agent-connection")
                if self.topology is not None:
                    tg.create_task(self.topology.run(), name="agent-topology")

    def offer(self, time: float, samples: tuple[Sample, ...]) -> None:
        """Queue one round's batch for the scheduler (into :attr:`buffer`); never blocks."""
        self.buffer.put(time, samples)
        self._ready.set()

    async def stream(self, session: aiohttp.ClientSession) -> None:
        """Connect, serve, back off and connect again, until cancelled; cancelling is safe.

        This is the connection without the prober: it sends what :meth:`offer`
        queued. On cancellation the connection is closed with 1001.
        """
        while True:
            connected_for = await self._connect_once(session)
            delay = self.backoff.next_delay(connected_for=connected_for)
            log.info("reconnecting in %.2fs url=%s", delay, self.url)
            await self._clock.sleep(delay)

    async def _connect_once(self, session: aiohttp.ClientSession) -> float | None:
        """One connection attempt, served until it ends: how long it was up, if it was."""
        headers = {}
        if self.host is not None:
            headers["Host"] = self.host
        if self.token_file is not None:
            try:
                token = await asyncio.to_thread(_read_token, self.token_file)
            except (OSError, ValueError) as e:
                log.error("cannot read the agent's token file=%s error=%s", self.token_file, e)
                return None
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with asyncio.timeout(self.connect_timeout):
                ws = await session.ws_connect(
                    self.url,
                    headers=headers,
                    max_msg_size=MAX_FRAME_BYTES,
                    heartbeat=self.heartbeat_seconds,
                    timeout=aiohttp.ClientWSTimeout(ws_close=_CLOSE_TIMEOUT),
                    server_hostname=self._tls_name(),
                )
        except aiohttp.WSServerHandshakeError as e:
            if e.status in (401, 403):
                log.error(
                    "scheduler refused the agent's token status=%d url=%s token_file=%s: "
                    "check the projected ServiceAccount token and the scheduler's agent "
                    "authentication",
                    e.status, self.url, self.token_file,
                )  # fmt: skip
            else:
                log.warning(
                    "websocket upgrade failed status=%d url=%s message=%s",
                    e.status, self.url, e.message,
                )  # fmt: skip
            return None
        except (aiohttp.ClientError, OSError) as e:  # TimeoutError is an OSError
            log.warning("cannot connect to the scheduler url=%s error=%r", self.url, e)
            return None
        self.connections += 1
        connected_at = self._clock.monotonic()
        log.info("connected to the scheduler url=%s node=%s", self.url, self.node)
        try:
            ending = await self._serve(ws)
            if ending.close_code is not None and not ws.closed:
                await ws.close(code=ending.close_code, message=ending.reason.encode()[:120])
        except asyncio.CancelledError:
            if not ws.closed:
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"agent stopping")
            raise
        finally:
            await ws.close()  # no-op if already closed
        log.log(ending.level, "connection ended url=%s: %s", self.url, ending.reason)
        return self._clock.monotonic() - connected_at

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> _Ending:
        """Hello, then receive, send and heartbeat until one of them ends the connection."""
        conn = _Connection(ws)
        methods = (self.prober.method.name,)
        per_round = self.prober.max_targets_per_round
        hello = await conn.send(
            lambda seq: Hello(seq, self.node, self.agent_version, methods, per_round)
        )
        if hello is not None:
            return hello
        accepted = asyncio.Event()  # a Targets said the scheduler takes Topology
        tasks = [
            asyncio.create_task(self._receive(ws, accepted), name="agent-receive"),
            asyncio.create_task(self._send_samples(conn), name="agent-send"),
            asyncio.create_task(self._heartbeat(conn), name="agent-heartbeat"),
        ]
        if self.topology is not None:
            tasks.append(
                asyncio.create_task(
                    self._send_topology(conn, self.topology, accepted), name="agent-topology-send"
                )
            )
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task, result in zip(
                tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True
            ):
                if isinstance(result, Exception):
                    log.error("task=%s failed", task.get_name(), exc_info=result)
        first = min(done, key=tasks.index)
        return first.result()  # re-raises a bug

    async def _receive(
        self, ws: aiohttp.ClientWebSocketResponse, accepted: asyncio.Event
    ) -> _Ending:
        told_old = False
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                try:
                    message = decode(msg.data)
                except ProtocolError as e:
                    return _Ending(
                        f"malformed frame from the scheduler: {e}",
                        close_code=WSCloseCode.INVALID_TEXT,
                    )
                if isinstance(message, Targets):
                    self._on_targets(message)
                    if ACCEPTS_TOPOLOGY in message.accepts:
                        accepted.set()
                    elif self.topology is not None and not told_old:
                        told_old = True
                        log.warning(
                            "the scheduler does not accept topology reports (it is older "
                            "than this agent); not sending them url=%s", self.url,
                        )  # fmt: skip
                elif not isinstance(message, Heartbeat):
                    return _Ending(
                        f"the scheduler sent a {type(message).__name__} message, "
                        "which only agents send",
                        close_code=WSCloseCode.PROTOCOL_ERROR,
                    )
            elif msg.type == WSMsgType.CLOSE:
                return _closed_by_scheduler(msg.data, msg.extra)
            elif msg.type == WSMsgType.ERROR:
                return _Ending(f"connection failed: {ws.exception()!r}")
            elif msg.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                return _Ending(f"connection lost (close code {ws.close_code})")

    def _apply_targets(self, message: Targets) -> None:
        self.prober.set_targets(message.targets, interval=message.interval_seconds)
        log.info(
            "targets updated count=%d interval_s=%g seq=%d",
            len(message.targets), message.interval_seconds, message.seq,
        )  # fmt: skip

    def _tls_name(self) -> str | None:
        """The name to check the scheduler's certificate against, when the URL has an address."""
        if self.host is None or not self.url.startswith("wss:"):
            return None
        return urlsplit(f"//{self.host}").hostname

    async def _send_samples(self, conn: _Connection) -> _Ending:
        while True:
            if not self.buffer:
                self._ready.clear()
                await self._ready.wait()
            batches = self.buffer.drain()
            for i, (time, samples) in enumerate(batches):
                ending = await conn.send(functools.partial(_samples, time=time, samples=samples))
                if ending is not None:
                    self.buffer.restore(batches[i:])
                    return ending

    async def _send_topology(
        self, conn: _Connection, watch: TopologyWatch, accepted: asyncio.Event
    ) -> _Ending:
        """The latest topology once the scheduler accepts it, then every change."""
        await accepted.wait()
        seen = 0
        while True:
            seen, report = await watch.next(seen)
            ending = await conn.send(
                functools.partial(_topology, time=self._clock.time(), report=report)
            )
            if ending is not None:
                return ending
            log.info("topology reported zones=%d version=%d", len(report.zones), seen)

    async def _heartbeat(self, conn: _Connection) -> _Ending:
        while True:
            await self._clock.sleep(self.heartbeat_seconds)
            ending = await conn.send(lambda seq: Heartbeat(seq, self._clock.time()))
            if ending is not None:
                return ending


class _Connection:
    """Frames out, in ``seq`` order: numbering and sending happen under one lock."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._seq = 0
        self._lock = asyncio.Lock()

    async def send(self, build: Callable[[int], Message]) -> _Ending | None:
        """Send ``build(seq)``; ``None`` if it went out, else why the connection is over."""
        async with self._lock:
            message = build(self._seq)
            try:
                await self._ws.send_bytes(encode(message))
            except (aiohttp.ClientError, ConnectionError) as e:
                return _Ending(f"sending {type(message).__name__} failed: {e!r}")
            self._seq += 1
            return None


def _samples(seq: int, *, time: float, samples: tuple[Sample, ...]) -> Samples:
    return Samples(seq=seq, time=time, samples=samples)


def _topology(seq: int, *, time: float, report: Report) -> Topology:
    return Topology(seq, time, report.zones, report.policy, report.scope)


def _read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise ValueError(f"{path} is empty")
    return token


def _closed_by_scheduler(code: int | None, reason: str | None) -> _Ending:
    said = f"close code {code}" + (f", reason {reason!r}" if reason else "")
    if code == WSCloseCode.POLICY_VIOLATION:
        return _Ending(
            f"the scheduler refused this agent ({said}): check the agent's token and "
            "that the node it runs on matches --node",
            level=logging.ERROR,
        )
    if code == WSCloseCode.INVALID_TEXT:
        return _Ending(f"the scheduler found a frame malformed ({said})", level=logging.ERROR)
    if code == WSCloseCode.MESSAGE_TOO_BIG:
        return _Ending(f"the scheduler found a frame too large ({said})", level=logging.ERROR)
    if code in (WSCloseCode.OK, WSCloseCode.GOING_AWAY):
        return _Ending(f"the scheduler closed the connection ({said})", level=logging.INFO)
    return _Ending(f"the scheduler closed the connection ({said})")
