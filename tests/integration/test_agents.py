"""The agents' WebSocket endpoint on the real control plane: TokenReview, node binding, samples."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

import lasched_protocol as proto
from lasched import settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.agents import agent_token
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod

NODES = ("edge-0", "edge-1", "edge-2")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def port(kc: KubeClient, run_scheduler: SchedulerFactory) -> int:
    await nodes.create_nodes(kc, [nodes.NodeSpec(name=n) for n in NODES])
    await nodes.wait_ready(kc, list(NODES))
    cfg = settings.parse(
        {
            "latency": {
                "reportIntervalSeconds": 1,
                "ttlSeconds": 60,
                "endpoints": [{"name": "users-eu", "address": "192.0.2.10", "port": 443}],
            }
        }
    )
    return await run_scheduler(cfg)


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/agents/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def connect(
    http: aiohttp.ClientSession, port: int, token: str, node: str
) -> tuple[aiohttp.ClientWebSocketResponse, proto.Targets]:
    """Upgrade, say Hello, and read the first Targets."""
    ws = await http.ws_connect(url(port), headers=bearer(token))
    hello = proto.Hello(seq=0, node=node, agent_version="test", methods=("icmp",))
    await ws.send_bytes(proto.encode(hello))
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    targets = proto.decode(msg.data)
    assert isinstance(targets, proto.Targets)
    return ws, targets


async def targets_until(
    ws: aiohttp.ClientWebSocketResponse, targets: proto.Targets, want: set[str]
) -> proto.Targets:
    """The first Targets pushed to ``ws`` (from ``targets`` on) that lists every id in ``want``."""
    deadline = time.monotonic() + 10
    while not want <= {t.id for t in targets.targets}:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.BINARY, msg
        frame = proto.decode(msg.data)
        if isinstance(frame, proto.Targets):
            targets = frame
    return targets


async def close_frame(ws: aiohttp.ClientWebSocketResponse) -> aiohttp.WSMessage:
    """The CLOSE that ends ``ws``, past any Targets the hub pushed before it (node changes
    can reach an agent between its last frame and lasched's answer to it)."""
    deadline = time.monotonic() + 10
    while True:
        msg = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if msg.type != aiohttp.WSMsgType.BINARY:
            return msg
        assert isinstance(proto.decode(msg.data), proto.Targets), msg


def samples(seq: int, rtts: dict[str, float]) -> bytes:
    return proto.encode(
        proto.Samples(
            seq=seq,
            time=time.time(),
            samples=tuple(
                proto.Sample(t, "icmp", 5, 0.0, ms * 0.9, ms, ms * 1.2, 0.1)
                for t, ms in rtts.items()
            ),
        )
    )


async def test_agent_without_valid_token_is_refused(
    kc: KubeClient, port: int, http: aiohttp.ClientSession
) -> None:
    """No token, a garbage token or a wrongly-audienced one get 401; another SA gets 403."""
    async with http.get(url(port)) as resp:
        assert resp.status == 401
    async with http.get(url(port), headers=bearer("not-a-token")) as resp:
        assert resp.status == 401
    wrong_audience = await agent_token(kc, node="edge-0", audience="someone-else")
    async with http.get(url(port), headers=bearer(wrong_audience)) as resp:
        assert resp.status == 401
        assert "audience" in await resp.text()
    stranger = await agent_token(kc, node="edge-0", service_account="not-an-agent")
    async with http.get(url(port), headers=bearer(stranger)) as resp:
        assert resp.status == 403
        assert "not-an-agent" in await resp.text()


async def test_agent_claiming_another_node_is_closed(
    kc: KubeClient, port: int, http: aiohttp.ClientSession
) -> None:
    """A token bound to edge-0's agent pod cannot report for edge-1 (close 1008)."""
    token = await agent_token(kc, node="edge-0")
    ws = await http.ws_connect(url(port), headers=bearer(token))
    hello = proto.Hello(seq=0, node="edge-1", agent_version="test", methods=("icmp",))
    await ws.send_bytes(proto.encode(hello))
    msg = await ws.receive(timeout=10)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1008
    assert "bound to node edge-0, not edge-1" in str(msg.extra)


async def test_valid_agent_gets_targets_and_a_garbage_frame_closes_only_its_connection(
    kc: KubeClient, port: int, http: aiohttp.ClientSession
) -> None:
    """Targets list the other nodes and endpoints; garbage closes 1007, oversized 1009; others
    keep working."""
    ws0, targets0 = await connect(http, port, await agent_token(kc, node="edge-0"), "edge-0")
    ws1, _ = await connect(http, port, await agent_token(kc, node="edge-1"), "edge-1")
    # lasched serves agents before its node informer has listed: the first list may lack
    # nodes, and the hub pushes a new Targets when they arrive.
    targets0 = await targets_until(ws0, targets0, {"edge-1", "edge-2"})
    ids = {t.id: t for t in targets0.targets}
    assert {"edge-1", "edge-2", "users-eu"} <= set(ids)
    assert "edge-0" not in ids
    assert ids["users-eu"].kind == "endpoint" and ids["users-eu"].port == 443
    assert ids["edge-1"].kind == "node" and ids["edge-1"].address
    assert targets0.interval_seconds == 1

    await ws1.send_bytes(b"\x00\x01 this is not a frame")
    msg = await close_frame(ws1)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws1.close_code == 1007
    assert "not JSON" in str(msg.extra)

    ws2, _ = await connect(http, port, await agent_token(kc, node="edge-2"), "edge-2")
    await ws2.send_bytes(b"x" * (proto.MAX_FRAME_BYTES + 1))
    msg = await close_frame(ws2)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws2.close_code == 1009  # message too big

    await ws0.send_bytes(samples(1, {"edge-1": 4.0}))
    await ws0.send_bytes(proto.encode(proto.Heartbeat(seq=2, time=time.time())))
    assert not ws0.closed
    await ws0.close()


async def test_pod_waits_for_latency_then_schedules_when_it_improves(
    kc: KubeClient, namespace: str, port: int, http: aiohttp.ClientSession
) -> None:
    """A delay label no node meets stays pending with the reason; a better RTT schedules it."""
    ws, targets = await connect(http, port, await agent_token(kc, node="edge-0"), "edge-0")
    await targets_until(ws, targets, {"edge-1", "edge-2"})  # samples for others are dropped
    await ws.send_bytes(samples(1, {"edge-1": 30.0, "edge-2": 40.0}))

    body = pod("near-edge-0")
    body["metadata"]["labels"] = {"delay_edge-0": "10"}
    body["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname",
                                           "operator": "NotIn", "values": ["edge-0"]}]}
                ]
            }
        }
    }  # fmt: skip
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)

    async def failure() -> str:
        # Any of its verdicts: an attempt made before the agent's first report was
        # read says "no measured RTT" instead, in an Event of its own.
        evs = await events_for(kc, namespace, "near-edge-0")
        notes = [str(e["note"]) for e in evs if e["reason"] == "FailedScheduling"]
        return next((n for n in notes if "more than 10 ms from edge-0" in n), "")

    assert "more than 10 ms from edge-0" in await eventually(failure)
    assert await node_of(kc, namespace, "near-edge-0") == ""

    # EWMA: a few reports of 3 ms bring edge-2's estimate under 10 ms.
    for seq in range(2, 8):
        await ws.send_bytes(samples(seq, {"edge-1": 30.0, "edge-2": 3.0}))
    assert await eventually(lambda: node_of(kc, namespace, "near-edge-0"), timeout=30) == "edge-2"

    async def scheduled() -> str:
        evs = await events_for(kc, namespace, "near-edge-0")
        notes = [str(e["note"]) for e in evs if e["reason"] == "Scheduled"]
        return notes[0] if notes else ""

    assert "rtt from edge-0 = " in await eventually(scheduled)
    await ws.close()
