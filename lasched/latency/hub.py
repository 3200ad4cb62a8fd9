"""The agents' endpoint: one WebSocket per node agent, feeding the latency cache.

Flow of one connection (``GET /agents/v1``, protocol in ``lasched_protocol``):

1. The upgrade request carries ``Authorization: Bearer <token>``. The token is
   checked *before* the upgrade; a missing or invalid one gets HTTP 401, a
   valid token of an identity that is not an agent 403.
2. The agent's first frame is ``Hello(node=...)``. The node must be the one
   its token is bound to, else the connection is closed with 1008: an agent
   only ever reports RTTs measured from its own node.
3. The scheduler sends ``Targets`` (every other node's InternalIP and the
   configured user endpoints), and again whenever that list changes.
4. The agent sends ``Samples`` and ``Heartbeat``. Each sample is folded into
   the cache as ``node -> target``.

A malformed frame closes that one connection with 1007 and the reason, an
oversized one with 1009; the reason is logged and nothing else is harmed.
A newer connection for the same node replaces the older one.

A *significant* change of a pair's estimate (or a new pair) calls
``on_change``, which the scheduler uses to move unschedulable pods back to
the queue, the way any other cluster event does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web

import lasched_protocol as proto
from lasched import metrics
from lasched.latency.cache import LatencyCache

log = logging.getLogger(__name__)

PATH = "/agents/v1"


class AuthError(Exception):
    """The token was refused. ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Identity:
    username: str  # system:serviceaccount:<namespace>:<name>
    node: str | None  # the node the token's pod is bound to, if any


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> Identity:
        """The token's identity; raises :class:`AuthError` if refused."""
        ...


@dataclass(frozen=True, slots=True)
class HubOptions:
    interval_seconds: float = 5.0
    """How often agents measure and report (sent to them in ``Targets``)."""
    significant_ms: float = 1.0
    significant_ratio: float = 0.1
    """A change is significant when it exceeds both the absolute and the relative bound."""
    hello_timeout: float = 10.0
    silence_timeout: float = 60.0
    """An agent that sends nothing (not even a heartbeat) this long is disconnected."""


class _Conn:
    __slots__ = ("hello", "identity", "last_seq", "node", "outbox", "targets", "ws")

    def __init__(self, ws: web.WebSocketResponse, hello: proto.Hello, identity: Identity) -> None:
        self.ws = ws
        self.hello = hello
        self.node = hello.node
        self.identity = identity
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.targets: tuple[proto.Target, ...] = ()
        self.last_seq = -1


class AgentHub:
    """Serves node agents; see the module docstring for the protocol's flow."""

    def __init__(
        self,
        cache: LatencyCache,
        *,
        authenticator: Authenticator,
        peers: Callable[[], Mapping[str, str]],
        endpoints: Sequence[proto.Target] = (),
        on_change: Callable[[], None] = lambda: None,
        options: HubOptions | None = None,
    ) -> None:
        """``peers()`` returns node name -> InternalIP for every node agents should probe."""
        self._cache = cache
        self._auth = authenticator
        self._peers = peers
        self._endpoints = tuple(endpoints)
        self._on_change = on_change
        self.options = options or HubOptions()
        self._conns: dict[str, _Conn] = {}
        self._seq = 0

    @property
    def nodes(self) -> list[str]:
        """Nodes with a connected agent."""
        return sorted(self._conns)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.handle)

    # ---- targets --------------------------------------------------------------

    def targets_for(self, node: str) -> tuple[proto.Target, ...]:
        nodes = tuple(
            proto.Target(id=name, address=ip, kind="node")
            for name, ip in sorted(self._peers().items())
            if name != node and ip
        )
        return nodes + self._endpoints

    def peers_changed(self) -> None:
        """Push the new target list to every agent whose list changed."""
        for conn in self._conns.values():
            self._push_targets(conn)

    def _push_targets(self, conn: _Conn) -> None:
        targets = self.targets_for(conn.node)
        if targets == conn.targets:
            return
        conn.targets = targets
        per_round = conn.hello.targets_per_round
        rounds = -(-len(targets) // per_round) if per_round else 1
        self._cache.set_refresh(conn.node, rounds * self.options.interval_seconds)
        self._seq += 1
        msg = proto.Targets(
            seq=self._seq, targets=targets, interval_seconds=self.options.interval_seconds
        )
        conn.outbox.put_nowait(proto.encode(msg))

    # ---- one connection ---------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One agent's connection, from the upgrade request until it closes."""
        peer = request.remote or "?"
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            metrics.agent_refusals.labels("no_token").inc()
            log.warning("agent from %s refused: no bearer token", peer)
            return web.Response(status=401, text="a bearer token is required\n")
        try:
            identity = await self._auth.authenticate(header[7:].strip())
        except AuthError as e:
            metrics.agent_refusals.labels("unauthorized").inc()
            log.warning("agent from %s refused: %s", peer, e.reason)
            return web.Response(status=e.status, text=e.reason + "\n")

        ws = web.WebSocketResponse(max_msg_size=proto.MAX_FRAME_BYTES, heartbeat=None)
        await ws.prepare(request)
        hello = await self._hello(ws, identity, peer)
        if hello is None:
            return ws
        node = hello.node
        conn = _Conn(ws, hello, identity)
        old = self._conns.get(node)
        if old is not None:
            await old.ws.close(code=WSCloseCode.OK, message=b"replaced by a newer connection")
        self._conns[node] = conn
        metrics.agent_connections.set(len(self._conns))
        log.info("agent connected node=%s from=%s", node, peer)
        writer = asyncio.create_task(self._write(conn), name=f"agent-writer-{node}")
        try:
            self._push_targets(conn)
            await self._read(conn)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if self._conns.get(node) is conn:
                del self._conns[node]
            metrics.agent_connections.set(len(self._conns))
            if not ws.closed:
                await ws.close()
            log.info("agent disconnected node=%s code=%s", node, ws.close_code)
        return ws

    async def _hello(
        self, ws: web.WebSocketResponse, identity: Identity, peer: str
    ) -> proto.Hello | None:
        """The agent's Hello, or None after closing the connection."""
        try:
            msg = await ws.receive(timeout=self.options.hello_timeout)
        except TimeoutError:
            await self._refuse(ws, peer, "hello_timeout", "no Hello within the timeout")
            return None
        hello = await self._decode(ws, msg, peer)
        if hello is None:
            return None
        if not isinstance(hello, proto.Hello):
            got = type(hello).__name__
            await self._refuse(ws, peer, "protocol", f"expected Hello first, got {got}")
            return None
        if identity.node is None:
            await self._refuse(
                ws, peer, "unbound_token",
                f"{identity.username}'s token is not bound to a pod on a node",
            )  # fmt: skip
            return None
        if hello.node != identity.node:
            await self._refuse(
                ws, peer, "foreign_node",
                f"token is bound to node {identity.node}, not {hello.node}",
            )  # fmt: skip
            return None
        return hello

    async def _refuse(self, ws: web.WebSocketResponse, peer: str, kind: str, reason: str) -> None:
        metrics.agent_refusals.labels(kind).inc()
        log.warning("agent from %s closed: %s", peer, reason)
        code = WSCloseCode.INVALID_TEXT if kind == "protocol" else WSCloseCode.POLICY_VIOLATION
        # A close reason must fit in one control frame (125 bytes).
        await ws.close(code=code, message=reason.encode()[:120])

    async def _decode(
        self, ws: web.WebSocketResponse, msg: WSMessage, peer: str
    ) -> proto.Message | None:
        if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
            try:
                return proto.decode(msg.data)
            except proto.ProtocolError as e:
                await self._refuse(ws, peer, "protocol", str(e))
                return None
        if msg.type == WSMsgType.ERROR:
            # aiohttp has already closed with 1009 for an oversized frame.
            metrics.agent_refusals.labels("frame_error").inc()
            log.warning("agent from %s closed: %s", peer, ws.exception())
        return None

    async def _read(self, conn: _Conn) -> None:
        peer = conn.node
        while not conn.ws.closed:
            try:
                msg = await conn.ws.receive(timeout=self.options.silence_timeout)
            except TimeoutError:
                await self._refuse(conn.ws, peer, "silent", "no message within the silence timeout")
                return
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            m = await self._decode(conn.ws, msg, peer)
            if m is None:
                return
            if conn.last_seq >= 0 and m.seq != conn.last_seq + 1:
                log.debug("agent node=%s skipped from seq %d to %d", peer, conn.last_seq, m.seq)
            conn.last_seq = m.seq
            if isinstance(m, proto.Samples):
                self.ingest(conn.node, m, known={t.id for t in conn.targets})
            elif not isinstance(m, proto.Heartbeat):
                await self._refuse(conn.ws, peer, "protocol", f"unexpected {type(m).__name__}")
                return

    async def _write(self, conn: _Conn) -> None:
        while True:
            frame = await conn.outbox.get()
            try:
                await conn.ws.send_bytes(frame)
            except (ConnectionError, RuntimeError) as e:
                # The reader sees the closed socket and ends the connection.
                log.info("agent node=%s: cannot send targets: %s", conn.node, e)
                return

    # ---- samples ----------------------------------------------------------------

    def ingest(self, node: str, batch: proto.Samples, *, known: set[str]) -> bool:
        """Fold one batch measured from ``node`` into the cache; True if any change mattered.

        A sample with no reply at all carries no RTT: the pair keeps its last
        estimate and goes stale after the TTL, so hard constraints fail closed.
        """
        significant = False
        opts = self.options
        for s in batch.samples:
            if s.target not in known:
                metrics.agent_samples.labels("unknown_target").inc()
                continue
            if s.median_ms is None or s.count == 0:
                metrics.agent_samples.labels("lost").inc()
                continue
            before = self._cache.get(node, s.target)
            delta = self._cache.observe(
                node, s.target, median_ms=s.median_ms, p90_ms=s.p90_ms, loss=s.loss,
                samples=s.count,
            )  # fmt: skip
            metrics.agent_samples.labels("stored").inc()
            if (
                before is None
                or before.stale
                or (delta > opts.significant_ms and delta > opts.significant_ratio * before.ms)
            ):
                significant = True
        if significant:
            self._on_change()
        return significant

    async def close(self) -> None:
        """Close every agent connection (agents reconnect to the next leader or restart)."""
        for conn in list(self._conns.values()):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"scheduler stopping")
