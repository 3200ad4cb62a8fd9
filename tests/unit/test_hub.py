"""The agents' hub over real loopback sockets: one agent's failure never reaches another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

import lasched_protocol as proto
from lasched.latency.cache import LatencyCache
from lasched.latency.hub import AgentHub, AuthError, Identity
from lasched.model.numa import NodeTopology

WAIT = 5.0


class Poisoned(LatencyCache):
    """A cache that fails on what one node reports, or on one node's refresh period."""

    def __init__(self) -> None:
        super().__init__(ttl_seconds=60)
        self.bad_sources: set[str] = set()
        self.bad_refresh: set[str] = set()

    def observe(self, src: str, dst: str, **kwargs: object) -> float:
        if src in self.bad_sources:
            raise OverflowError("math range error")
        return super().observe(src, dst, **kwargs)  # type: ignore[arg-type]

    def set_refresh(self, src: str, seconds: float | None) -> None:
        if src in self.bad_refresh:
            raise ValueError("refresh period out of range")
        super().set_refresh(src, seconds)


@dataclass
class TokenIsNode:
    """The token is the node's name; ``error`` makes every lookup raise it instead."""

    error: Exception | None = None
    sources: list[str] = field(default_factory=list)

    async def authenticate(self, token: str, *, source: str) -> Identity:
        self.sources.append(source)
        if self.error is not None:
            raise self.error
        return Identity(username="system:serviceaccount:x:agent", node=token)


@dataclass
class Hub:
    hub: AgentHub
    cache: Poisoned
    auth: TokenIsNode
    peers: dict[str, str]
    url: str
    changes: list[int]
    http: aiohttp.ClientSession
    topologies: list[tuple[str, NodeTopology | None]] = field(default_factory=list)
    failing_topology: bool = False

    async def connect(self, node: str) -> aiohttp.ClientWebSocketResponse:
        """Upgrade as ``node``'s agent, say Hello and read the first Targets."""
        ws = await self.http.ws_connect(self.url, headers={"Authorization": f"Bearer {node}"})
        await ws.send_bytes(proto.encode(proto.Hello(0, node, "test", ("icmp",))))
        targets = await next_message(ws)
        assert isinstance(targets, proto.Targets)
        assert targets.accepts == (proto.ACCEPTS_TOPOLOGY,)
        return ws

    def told(self, topology: NodeTopology | None, node: str) -> None:
        if self.failing_topology:
            raise KeyError(node)
        self.topologies.append((node, topology))


async def next_message(ws: aiohttp.ClientWebSocketResponse) -> proto.Message:
    msg = await ws.receive(timeout=WAIT)
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    return proto.decode(msg.data)


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    msg = await ws.receive(timeout=WAIT)
    assert msg.type == aiohttp.WSMsgType.CLOSE, msg
    return ws.close_code


def samples(seq: int, rtts: dict[str, float]) -> bytes:
    return proto.encode(
        proto.Samples(
            seq=seq,
            time=time.time(),
            samples=tuple(
                proto.Sample(t, "icmp", 3, 0.0, ms, ms, ms, 0.1) for t, ms in rtts.items()
            ),
        )
    )


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    cache = Poisoned()
    auth = TokenIsNode()
    peers = {"edge-good": "10.0.0.1", "edge-bad": "10.0.0.2", "edge-3": "10.0.0.3"}
    changes: list[int] = []
    told: list[Hub] = []
    agent_hub = AgentHub(
        cache, authenticator=auth, peers=lambda: peers, on_change=lambda: changes.append(1),
        on_topology=lambda node, topology: told[0].told(topology, node),
    )  # fmt: skip
    app = web.Application()
    agent_hub.add_routes(app)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as http:
        told.append(Hub(agent_hub, cache, auth, peers, f"http://127.0.0.1:{port}/agents/v1",
                        changes, http))  # fmt: skip
        yield told[0]
        await agent_hub.close()
    await runner.cleanup()


async def test_an_exception_on_one_agents_frame_closes_only_that_connection(hub: Hub) -> None:
    """A frame whose handling raises closes its connection with 1011; the other agent's
    samples keep arriving on its open connection."""
    good = await hub.connect("edge-good")
    bad = await hub.connect("edge-bad")
    hub.cache.bad_sources.add("edge-bad")
    await bad.send_bytes(samples(1, {"edge-good": 5.0}))
    assert await closed_with(bad) == 1011
    for seq in (1, 2, 3):
        await good.send_bytes(samples(seq, {"edge-3": 2.0}))
    await good.send_bytes(proto.encode(proto.Heartbeat(4, time.time())))
    hub.peers["edge-4"] = "10.0.0.4"
    hub.hub.peers_changed()
    assert isinstance(await next_message(good), proto.Targets)
    assert hub.cache.get("edge-good", "edge-3") is not None
    assert hub.hub.nodes == ["edge-good"]
    assert not good.closed


async def test_an_exception_in_on_change_keeps_every_connection(hub: Hub) -> None:
    """on_change is the scheduler's; its failure is logged and the agent stays connected."""

    def broken() -> None:
        raise RuntimeError("requeue failed")

    hub.hub._on_change = broken
    ws = await hub.connect("edge-good")
    await ws.send_bytes(samples(1, {"edge-3": 2.0}))
    await ws.send_bytes(samples(2, {"edge-bad": 5.0}))
    await ws.send_bytes(proto.encode(proto.Heartbeat(3, time.time())))
    hub.peers["edge-4"] = "10.0.0.4"
    hub.hub.peers_changed()
    assert isinstance(await next_message(ws), proto.Targets)
    assert hub.cache.get("edge-good", "edge-bad") is not None
    assert not ws.closed


async def test_one_agents_failing_target_list_never_stops_the_others(hub: Hub) -> None:
    """When pushing targets to one agent raises, that agent is closed with 1011 and every
    other agent still gets its new list; peers_changed itself never raises."""
    good = await hub.connect("edge-good")
    bad = await hub.connect("edge-bad")
    third = await hub.connect("edge-3")
    hub.cache.bad_refresh.add("edge-bad")
    hub.peers["edge-4"] = "10.0.0.4"
    hub.hub.peers_changed()
    assert await closed_with(bad) == 1011
    for ws in (good, third):
        targets = await next_message(ws)
        assert isinstance(targets, proto.Targets)
        assert "edge-4" in {t.id for t in targets.targets}


async def test_malformed_frames_close_with_1007_and_1009_leaving_others_alone(hub: Hub) -> None:
    """Garbage, non-finite numbers and oversized frames each close their own connection."""
    good = await hub.connect("edge-good")
    frames = [
        (b"\x00 not a frame", 1007),
        (b'{"v":1,"type":"samples","seq":1,"time":1,"samples":[{"median":NaN}]}', 1007),
        (b'{"v":1,"type":"heartbeat","seq":1,"time":1e999}', 1007),
        (b"x" * (proto.MAX_FRAME_BYTES + 1), 1009),
    ]
    for frame, code in frames:
        bad = await hub.connect("edge-bad")
        await bad.send_bytes(frame)
        assert await closed_with(bad) == code
        await good.send_bytes(proto.encode(proto.Heartbeat(1, time.time())))
    await good.send_bytes(samples(2, {"edge-3": 2.0}))
    hub.peers["edge-4"] = "10.0.0.4"
    hub.hub.peers_changed()
    assert isinstance(await next_message(good), proto.Targets)


async def test_rate_limited_tokens_get_429_with_retry_after(hub: Hub) -> None:
    """A 429 from the authenticator reaches the client with its Retry-After header."""
    hub.auth.error = AuthError(429, "too many token reviews", retry_after=3)
    async with hub.http.get(hub.url, headers={"Authorization": "Bearer x"}) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "3"
    assert hub.auth.sources == ["127.0.0.1"]


async def test_an_unexpected_authenticator_error_is_a_500_and_the_hub_goes_on(hub: Hub) -> None:
    """A bug while checking a token answers that request 500; the next agent connects."""
    hub.auth.error = KeyError("bug")
    async with hub.http.get(hub.url, headers={"Authorization": "Bearer edge-good"}) as resp:
        assert resp.status == 500
    hub.auth.error = None
    ws = await hub.connect("edge-good")
    assert not ws.closed


def topology(seq: int, gpus: int) -> bytes:
    zones = (proto.NumaZone(0, (("cpu", 8), ("nvidia.com/gpu", gpus))),)
    return proto.encode(proto.Topology(seq, time.time(), zones, "single-numa-node", "pod"))


async def until(condition: Callable[[], object]) -> None:
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still false after {WAIT}s")


async def test_an_agents_topology_is_its_own_nodes_and_its_end_is_told(hub: Hub) -> None:
    """A Topology becomes the model of the connection's node, a repeat is not told again, a
    change is, and the disconnect is told as None."""
    ws = await hub.connect("edge-good")
    await ws.send_bytes(topology(1, 2))
    await ws.send_bytes(topology(2, 2))
    await ws.send_bytes(topology(3, 1))
    await until(lambda: len(hub.topologies) == 2)
    (node, first), (_, second) = hub.topologies
    assert node == "edge-good" and first is not None and second is not None
    assert first.zones[0].available == {"cpu": 8000, "nvidia.com/gpu": 2}
    assert second.zones[0].available["nvidia.com/gpu"] == 1
    await ws.close()
    await until(lambda: len(hub.topologies) == 3)
    assert hub.topologies[-1] == ("edge-good", None)


async def test_a_failing_topology_handler_keeps_the_agent_connected(hub: Hub) -> None:
    """The scheduler's failure on a report is logged; the agent's samples still arrive."""
    hub.failing_topology = True
    ws = await hub.connect("edge-good")
    await ws.send_bytes(topology(1, 2))
    await ws.send_bytes(samples(2, {"edge-3": 2.0}))
    await until(lambda: hub.cache.get("edge-good", "edge-3") is not None)
    assert not ws.closed
