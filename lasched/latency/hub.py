"""The agents' endpoint: one WebSocket per node agent, feeding the latency cache.

Flow of one connection (``GET /agents/v1``, protocol in ``lasched_protocol``):

1. The upgrade request carries ``Authorization: Bearer <token>``. The token is
   checked *before* the upgrade; a missing or invalid one gets HTTP 401, a
   valid token of an identity that is not an agent 403.
2. The agent's first frame is ``Hello(node=...)``. The node must be the one
   its token is bound to, else the connection is closed with 1008: an agent
   only ever reports RTTs measured from its own node.
3. The scheduler sends ``Targets`` (every other node's InternalIP and the
   configured user endpoints, and ``accepts: ["topology"]``), and again
   whenever that list changes.
4. The agent sends ``Samples`` and ``Heartbeat``. Each sample is folded into
   the cache as ``node -> target``. An agent run with ``--report-topology``
   also sends ``Topology``: its node's NUMA zones, handed to ``on_topology``
   as a :class:`~lasched.model.numa.NodeTopology` of that node (the token's
   node: an agent can only report its own), and again when they change.
   When the connection ends, ``on_topology(node, None)`` says so.

A malformed frame closes that one connection with 1007 and the reason, an
oversized one with 1009; the reason is logged and nothing else is harmed.
A newer connection for the same node replaces the older one.

Error boundaries: an unexpected exception while serving one connection (a
frame, its targets, its writer) is logged with the node and the traceback and
closes that connection alone with 1011. An exception in ``on_change`` is logged
and changes nothing else; one agent's failing target list never stops the
others' from being pushed. Other connections never see any of it.

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
from lasched.logs import Throttled
from lasched.model.numa import NodeTopology, Policy, Scope
from lasched.model.resources import CPU

log = logging.getLogger(__name__)

PATH = "/agents/v1"


class AuthError(Exception):
    """The token was refused. ``status`` is the HTTP status to answer with.

    ``retry_after``: seconds the client should wait (sent as ``Retry-After``), if any.
    """

    def __init__(self, status: int, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Identity:
    username: str  # system:serviceaccount:<namespace>:<name>
    node: str | None  # the node the token's pod is bound to, if any


class Authenticator(Protocol):
    async def authenticate(self, token: str, *, source: str) -> Identity:
        """The token's identity; raises :class:`AuthError` if refused.

        ``source`` is the client's address, for per-client rate limits.
        """
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
    __slots__ = (
        "hello", "identity", "last_seq", "node", "outbox", "reported", "sent", "targets", "ws",
    )  # fmt: skip

    def __init__(self, ws: web.WebSocketResponse, hello: proto.Hello, identity: Identity) -> None:
        self.ws = ws
        self.hello = hello
        self.node = hello.node
        self.identity = identity
        # Frames for the writer; None asks it to close the connection (1011).
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.targets: tuple[proto.Target, ...] = ()
        self.sent = False  # a first Targets went out (it tells what the scheduler accepts)
        self.reported: proto.Topology | None = None
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
        on_topology: Callable[[str, NodeTopology | None], None] = lambda node, topology: None,
        options: HubOptions | None = None,
    ) -> None:
        """``peers()`` returns node name -> InternalIP for every node agents should probe;
        ``on_topology(node, topology)`` receives an agent's NUMA report (None: gone)."""
        self._cache = cache
        self._on_topology = on_topology
        self._auth = authenticator
        self._peers = peers
        self._endpoints = tuple(endpoints)
        self._on_change = on_change
        self.options = options or HubOptions()
        self._conns: dict[str, _Conn] = {}
        self._seq = 0
        self._log = Throttled(log)

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
        """Push the new target list to every agent whose list changed; never raises."""
        for conn in list(self._conns.values()):
            try:
                self._push_targets(conn)
            except Exception:
                # This agent's list failed; the others still get theirs.
                metrics.agent_refusals.labels("internal_error").inc()
                log.exception("agent node=%s: cannot send its targets; closing", conn.node)
                conn.outbox.put_nowait(None)

    def _push_targets(self, conn: _Conn) -> None:
        targets = self.targets_for(conn.node)
        if targets == conn.targets and conn.sent:
            return
        conn.targets, conn.sent = targets, True
        per_round = conn.hello.targets_per_round
        rounds = -(-len(targets) // per_round) if per_round else 1
        self._cache.set_refresh(conn.node, rounds * self.options.interval_seconds)
        self._seq += 1
        msg = proto.Targets(
            seq=self._seq,
            targets=targets,
            interval_seconds=self.options.interval_seconds,
            accepts=(proto.ACCEPTS_TOPOLOGY,),
        )
        conn.outbox.put_nowait(proto.encode(msg))

    # ---- one connection ---------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One agent's connection, from the upgrade request until it closes."""
        peer = request.remote or "?"
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or not header[7:].strip():
            metrics.agent_refusals.labels("no_token").inc()
            self._log.warning("no_token", "agent from %s refused: no bearer token", peer)
            return web.Response(status=401, text="a bearer token is required\n")
        try:
            identity = await self._auth.authenticate(header[7:].strip(), source=peer)
        except AuthError as e:
            return self._refused(peer, e)
        except Exception:
            metrics.agent_refusals.labels("internal_error").inc()
            log.exception("agent from %s: checking its token failed", peer)
            return web.Response(status=500, text="internal error while checking the token\n")

        ws = web.WebSocketResponse(max_msg_size=proto.MAX_FRAME_BYTES, heartbeat=None)
        await ws.prepare(request)
        try:
            await self._serve(ws, identity, peer)
        except Exception:
            # The per-connection boundary: whatever failed was this connection's alone.
            metrics.agent_refusals.labels("internal_error").inc()
            log.exception("agent from %s: closing after an unexpected error", peer)
            await _close(ws, WSCloseCode.INTERNAL_ERROR, "internal error")
        return ws

    def _refused(self, peer: str, e: AuthError) -> web.Response:
        kind = {429: "rate_limited", 503: "review_failed"}.get(e.status, "unauthorized")
        metrics.agent_refusals.labels(kind).inc()
        self._log.warning(kind, "agent from %s refused: %s", peer, e.reason)
        headers = {"Retry-After": str(e.retry_after)} if e.retry_after is not None else None
        return web.Response(status=e.status, text=e.reason + "\n", headers=headers)

    async def _serve(self, ws: web.WebSocketResponse, identity: Identity, peer: str) -> None:
        hello = await self._hello(ws, identity, peer)
        if hello is None:
            return
        node = hello.node
        conn = _Conn(ws, hello, identity)
        old = self._conns.get(node)
        if old is not None:
            await _close(old.ws, WSCloseCode.OK, "replaced by a newer connection")
        self._conns[node] = conn
        metrics.agent_connections.set(len(self._conns))
        log.info("agent connected node=%s from=%s", node, peer)
        writer = asyncio.create_task(self._write(conn), name=f"agent-writer-{node}")
        try:
            self._push_targets(conn)
            await self._read(conn)
        except Exception:
            metrics.agent_refusals.labels("internal_error").inc()
            log.exception("agent node=%s: closing after an unexpected error", node)
            await _close(ws, WSCloseCode.INTERNAL_ERROR, "internal error")
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if self._conns.get(node) is conn:
                del self._conns[node]
                if conn.reported is not None:
                    self._tell_topology(node, None)
            metrics.agent_connections.set(len(self._conns))
            if not ws.closed:
                await _close(ws, WSCloseCode.OK, "")
            log.info("agent disconnected node=%s code=%s", node, ws.close_code)

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
        self._log.warning(kind, "agent from %s closed: %s", peer, reason)
        code = WSCloseCode.INVALID_TEXT if kind == "protocol" else WSCloseCode.POLICY_VIOLATION
        await _close(ws, code, reason)

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
            self._log.warning("frame_error", "agent from %s closed: %s", peer, ws.exception())
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
            elif isinstance(m, proto.Topology):
                self.ingest_topology(conn, m)
            elif not isinstance(m, proto.Heartbeat):
                await self._refuse(conn.ws, peer, "protocol", f"unexpected {type(m).__name__}")
                return

    async def _write(self, conn: _Conn) -> None:
        """Send the outbox's frames until the connection ends; never raises."""
        while True:
            frame = await conn.outbox.get()
            if frame is None:
                await _close(conn.ws, WSCloseCode.INTERNAL_ERROR, "internal error")
                return
            try:
                await conn.ws.send_bytes(frame)
            except (ConnectionError, RuntimeError) as e:
                # The reader sees the closed socket and ends the connection.
                log.info("agent node=%s: cannot send targets: %s", conn.node, e)
                return
            except Exception:
                metrics.agent_refusals.labels("internal_error").inc()
                log.exception("agent node=%s: sending targets failed; closing", conn.node)
                await _close(conn.ws, WSCloseCode.INTERNAL_ERROR, "internal error")
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
            try:
                self._on_change()
            except Exception:
                # The scheduler's reaction failed, not the agent: its connection stays.
                log.exception("on_change failed after samples from node=%s", node)
        return significant

    # ---- NUMA topology ------------------------------------------------------------

    def ingest_topology(self, conn: _Conn, msg: proto.Topology) -> None:
        """An agent's NUMA report, for its own node; one equal to the last is not passed on."""
        same = conn.reported
        if same is not None and (same.zones, same.policy, same.scope) == (
            msg.zones, msg.policy, msg.scope,
        ):  # fmt: skip
            return
        conn.reported = msg
        log.info("agent node=%s reported NUMA zones=%d", conn.node, len(msg.zones))
        self._tell_topology(conn.node, reported_topology(conn.node, msg))

    def _tell_topology(self, node: str, topology: NodeTopology | None) -> None:
        try:
            self._on_topology(node, topology)
        except Exception:
            # The scheduler's handling failed, not the agent: its connection stays.
            log.exception("on_topology failed for node=%s", node)

    async def close(self) -> None:
        """Close every agent connection (agents reconnect to the next leader or restart)."""
        for conn in list(self._conns.values()):
            await _close(conn.ws, WSCloseCode.GOING_AWAY, "scheduler stopping")


def reported_topology(node: str, msg: proto.Topology) -> NodeTopology:
    """The model of an agent's report: CPUs counted in millicores, as lasched counts them."""
    zones = {z.id: {r: n * 1000 if r == CPU else n for r, n in z.resources} for z in msg.zones}
    return NodeTopology.reported(
        node,
        policy=Policy(msg.policy),
        scope=Scope(msg.scope),
        zones=zones,
        version=f"agent-{msg.seq}",
    )


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    """Close ``ws``; a connection that is already gone is not an error."""
    try:
        # A close reason must fit in one control frame (125 bytes).
        await ws.close(code=code, message=reason.encode()[:120])
    except (ConnectionError, RuntimeError) as e:
        log.debug("closing an agent connection: %s", e)
