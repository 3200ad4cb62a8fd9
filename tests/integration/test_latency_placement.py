"""Pods placed by RTTs that simulated agents measure and stream over the real protocol.

kwok nodes have no network, so each node's agent is the real
``AgentClient`` with a probe that answers from a configured RTT matrix; it
authenticates with a token bound to an agent pod on its node, like a
DaemonSet pod's, and the scheduler checks it with a TokenReview.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lasched import settings
from lasched.kube.client import KubeClient
from lasched_agent.prober import ProbeMethod, Prober
from lasched_agent.stream import AgentClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.agents import agent_token
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod

NODES = ("edge-0", "edge-1", "edge-2")

# node -> target -> RTT in ms, as each node's agent measures it. Mutable: tests change it.
MATRIX: dict[str, dict[str, float | None]] = {
    "edge-0": {"edge-1": 5.0, "edge-2": 40.0, "users-eu": 50.0},
    "edge-1": {"edge-0": 5.0, "edge-2": 30.0, "users-eu": 8.0},
    "edge-2": {"edge-0": 40.0, "edge-1": 30.0, "users-eu": 20.0},
}


@asynccontextmanager
async def simulated_agents(
    kc: KubeClient,
    run_scheduler: SchedulerFactory,
    tmp_path: Path,
    specs: list[nodes.NodeSpec],
    matrix: dict[str, dict[str, float | None]],
    *,
    extra: dict[str, Any] | None = None,
    latency: dict[str, Any] | None = None,
    measured: bool = False,
) -> AsyncIterator[dict[str, dict[str, float | None]]]:
    """lasched (with ``extra`` settings beside its latency ones, and ``latency`` among
    them) and one simulated agent per node, each reading its row of the yielded copy of
    ``matrix``, which tests may change; ``measured``: yield once lasched holds every
    pair of the matrix."""
    names = [s.name for s in specs]
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, names)
    cfg = settings.parse(
        {
            "latency": {
                "reportIntervalSeconds": 0.5,
                "ttlSeconds": 30,
                "endpoints": [{"name": "users-eu", "address": "192.0.2.10"}],
                **(latency or {}),
            },
            **(extra or {}),
        }
    )
    port = await run_scheduler(cfg)
    rows = {node: dict(row) for node, row in matrix.items()}
    tasks = []
    for node in names:
        token = tmp_path / f"token-{node}"
        token.write_text(await agent_token(kc, node=node))
        client = AgentClient(
            url=f"ws://127.0.0.1:{port}/agents/v1",
            node=node,
            prober=Prober(ProbeMethod.fixed(rows[node]), probes_per_target=3),
            token_file=token,
            heartbeat_seconds=2,
        )
        tasks.append(asyncio.create_task(client.run(), name=f"agent-{node}"))
    want = {(src, dst) for src, row in matrix.items() for dst, ms in row.items() if ms is not None}

    async def holds_every_pair() -> bool:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/debug/latency") as resp,
        ):
            if resp.status != 200:
                return False
            body = await resp.json()
        return want <= {(p["src"], p["dst"]) for p in body["pairs"] if not p["stale"]}

    try:
        if measured:
            await eventually(holds_every_pair, timeout=30)
        yield rows
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t


@pytest.fixture
async def agents(
    kc: KubeClient, run_scheduler: SchedulerFactory, tmp_path: Path
) -> AsyncIterator[dict[str, dict[str, float | None]]]:
    """lasched with one simulated agent per node; yields the matrix the agents read."""
    specs = [nodes.NodeSpec(name=n) for n in NODES]
    async with simulated_agents(kc, run_scheduler, tmp_path, specs, MATRIX) as matrix:
        yield matrix


# Two sites: "near" (two 8-cpu nodes, 3 ms from the users) and "far" (three 16-cpu
# nodes, 40 ms); 0.5 ms within a site, 40 ms between them.
NEAR, FAR = ("near-0", "near-1"), ("far-0", "far-1", "far-2")


def two_sites() -> dict[str, dict[str, float | None]]:
    matrix: dict[str, dict[str, float | None]] = {}
    for site, users in ((NEAR, 3.0), (FAR, 40.0)):
        for node in site:
            row: dict[str, float | None] = {"users-eu": users}
            row |= {o: (0.5 if o in site else 40.0) for o in (*NEAR, *FAR) if o != node}
            matrix[node] = row
    return matrix


@pytest.fixture
async def sites(
    kc: KubeClient, run_scheduler: SchedulerFactory, tmp_path: Path
) -> AsyncIterator[dict[str, dict[str, float | None]]]:
    """lasched and agents on the two sites of :func:`two_sites`."""
    specs = [nodes.NodeSpec(name=n) for n in NEAR] + [
        nodes.NodeSpec(name=n, cpu="16", memory="64Gi") for n in FAR
    ]
    async with simulated_agents(kc, run_scheduler, tmp_path, specs, two_sites()) as matrix:
        yield matrix


def not_on(*names: str) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/hostname",
                                "operator": "NotIn",
                                "values": list(names),
                            }
                        ]
                    }
                ]
            }
        }
    }


def latency_pod(
    name: str,
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    avoid: tuple[str, ...] = (),
    **spec: Any,
) -> dict[str, Any]:
    body = pod(name, **spec)
    body["metadata"]["labels"] = labels or {}
    body["metadata"]["annotations"] = annotations or {}
    if avoid:
        body["spec"]["affinity"] = not_on(*avoid)
    return body


async def note(kc: KubeClient, namespace: str, name: str, reason: str, has: str = "") -> str:
    """A note of the pod's events with ``reason`` (containing ``has``), or ""."""
    for e in await events_for(kc, namespace, name):
        if e["reason"] == reason and has in str(e["note"]):
            return str(e["note"])
    return ""


async def test_delay_labels_and_endpoint_limits_follow_measured_rtts(
    kc: KubeClient, namespace: str, agents: dict[str, dict[str, float | None]]
) -> None:
    """delay_ labels, max-rtt to an endpoint and prefer-low-rtt pick the nodes the matrix says."""
    post = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(post, latency_pod("near-0", labels={"delay_edge-0": "10"}, avoid=("edge-0",)))
    await kc.post(post, latency_pod("users", annotations={"lasched.io/max-rtt": "users-eu=10ms"}))
    assert await eventually(lambda: node_of(kc, namespace, "near-0"), timeout=30) == "edge-1"
    assert await eventually(lambda: node_of(kc, namespace, "users"), timeout=30) == "edge-1"
    # A preference uses whatever is measured when the pod is tried: ask once data is in.
    await kc.post(
        post, latency_pod("prefers", annotations={"lasched.io/prefer-low-rtt": "users-eu"})
    )
    assert await eventually(lambda: node_of(kc, namespace, "prefers"), timeout=30) == "edge-1"
    scheduled = await eventually(lambda: note(kc, namespace, "near-0", "Scheduled"))
    assert "rtt from edge-0 = 5.0 ms (p90 5.0, " in scheduled


async def test_unsatisfiable_pod_waits_then_schedules_when_latency_improves(
    kc: KubeClient, namespace: str, agents: dict[str, dict[str, float | None]]
) -> None:
    """No node within 2 ms of edge-0 but itself: pending with the reason, until edge-2 gets near."""
    post = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(post, latency_pod("tight", labels={"delay_edge-0": "2"}, avoid=("edge-0",)))

    async def too_far() -> str:
        # Tried before the first reports, the reason is "no measured RTT"; then this.
        return await note(
            kc, namespace, "tight", "FailedScheduling", "more than 2 ms from edge-0 (delay_edge-0)"
        )

    assert "Preemption is not helpful" in await eventually(too_far, timeout=30)
    assert await node_of(kc, namespace, "tight") == ""

    agents["edge-0"]["edge-2"] = 1.0  # the route improves
    assert await eventually(lambda: node_of(kc, namespace, "tight"), timeout=30) == "edge-2"


async def test_peer_selector_keeps_a_service_near_its_database(
    kc: KubeClient, namespace: str, agents: dict[str, dict[str, float | None]]
) -> None:
    """peer-max-rtt waits for the database pod, then admits only nodes near its node."""
    post = f"/api/v1/namespaces/{namespace}/pods"
    web = latency_pod(
        "web",
        annotations={"lasched.io/peer-selector": "app=db", "lasched.io/peer-max-rtt": "35ms"},
        avoid=("edge-2",),
    )
    await kc.post(post, web)
    await eventually(
        lambda: note(
            kc, namespace, "web", "FailedScheduling", "no pod matching app=db is placed yet"
        ),
        timeout=30,
    )

    db = latency_pod("db", labels={"app": "db"}, nodeSelector={"kubernetes.io/hostname": "edge-2"})
    await kc.post(post, db)
    assert await eventually(lambda: node_of(kc, namespace, "db"), timeout=30) == "edge-2"
    # edge-1 is 30 ms from edge-2, edge-0 40 ms.
    assert await eventually(lambda: node_of(kc, namespace, "web"), timeout=30) == "edge-1"


async def test_gang_with_pairwise_budget_lands_on_nodes_within_it(
    kc: KubeClient, namespace: str, agents: dict[str, dict[str, float | None]]
) -> None:
    """Two members that each need a whole node and at most 10 ms apart: edge-0 and edge-1."""
    post = f"/api/v1/namespaces/{namespace}/pods"
    # Wait for measurements, so the gang is placed on data rather than on nothing.
    await kc.post(post, latency_pod("probe", labels={"delay_edge-2": "35"}, avoid=("edge-2",)))
    assert await eventually(lambda: node_of(kc, namespace, "probe"), timeout=30) == "edge-1"
    for i in range(2):
        member = latency_pod(
            f"m-{i}",
            labels={"lasched.io/pod-group": "pair", "lasched.io/min-available": "2"},
            annotations={"lasched.io/group-max-rtt": "10ms"},
            cpu="5",
        )
        await kc.post(post, member)
    placed = {await eventually(lambda: node_of(kc, namespace, "m-0"), timeout=30)}
    placed.add(await eventually(lambda: node_of(kc, namespace, "m-1"), timeout=30))
    assert placed == {"edge-0", "edge-1"}


async def wait_measured(kc: KubeClient, namespace: str) -> None:
    """A probe pod limited to the near site binds: lasched holds the agents' RTTs."""
    post = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(post, latency_pod("probe", annotations={"lasched.io/max-rtt": "users-eu=5ms"}))
    assert await eventually(lambda: node_of(kc, namespace, "probe"), timeout=30) in NEAR


async def test_budgeted_gang_goes_near_its_users_on_an_empty_cluster(
    kc: KubeClient, namespace: str, sites: dict[str, dict[str, float | None]]
) -> None:
    """A gang of two whole-node members within 5 ms of each other, preferring users 3 ms
    from the small site and 40 ms from the roomier one, lands on the small site."""
    await wait_measured(kc, namespace)
    post = f"/api/v1/namespaces/{namespace}/pods"
    for i in range(2):
        member = latency_pod(
            f"m-{i}",
            labels={"lasched.io/pod-group": "pair", "lasched.io/min-available": "2"},
            annotations={
                "lasched.io/group-max-rtt": "5ms",
                "lasched.io/prefer-low-rtt": "users-eu",
            },
            cpu="7",
        )
        await kc.post(post, member)
    placed = {await eventually(lambda: node_of(kc, namespace, "m-0"), timeout=30)}
    placed.add(await eventually(lambda: node_of(kc, namespace, "m-1"), timeout=30))
    assert placed == set(NEAR)


async def test_a_hard_limit_alone_still_prefers_the_nearer_node(
    kc: KubeClient, namespace: str, sites: dict[str, dict[str, float | None]]
) -> None:
    """A pod allowed 45 ms from its users takes a 3 ms node, not an emptier 40 ms one."""
    await wait_measured(kc, namespace)
    post = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(post, latency_pod("wide", annotations={"lasched.io/max-rtt": "users-eu=45ms"}))
    assert await eventually(lambda: node_of(kc, namespace, "wide"), timeout=30) in NEAR
