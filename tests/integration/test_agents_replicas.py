"""Two lasched replicas, fan-out agents: both caches hold every node's RTTs, so the follower
that takes over schedules latency-bound pods at once, on pairs it already had.

kwok nodes have no network: each node's agent is the real
:class:`~lasched_agent.fanout.FanOut` with a probe that answers from an RTT
matrix and a resolver that answers with both replicas' addresses, as a
headless Service's DNS does in a cluster. Each agent authenticates with a
token bound to an agent pod on its node; both replicas check it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lasched import settings
from lasched.kube.client import ApiError, KubeClient
from lasched_agent.fanout import Address, FanOut
from lasched_agent.prober import ProbeMethod, Prober
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.agents import agent_token
from tests.integration.conftest import RunningScheduler, SchedulerFactory
from tests.integration.helpers import eventually, node_of
from tests.integration.test_latency_placement import latency_pod, note

log = logging.getLogger(__name__)

NODES = ("edge-0", "edge-1", "edge-2")
MATRIX: dict[str, dict[str, float | None]] = {
    "edge-0": {"edge-1": 5.0, "edge-2": 40.0},
    "edge-1": {"edge-0": 5.0, "edge-2": 30.0},
    "edge-2": {"edge-0": 40.0, "edge-1": 30.0},
}
PAIRS = {(src, dst): ms for src, row in MATRIX.items() for dst, ms in row.items()}
LEASE = "agents-replicas"
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{LEASE}"
# Agents never resolve this name: the resolver answers with the replicas' loopback ports.
URL = "ws://lasched-replicas.lasched-system.svc:10271/agents/v1"


async def holder(kc: KubeClient) -> str:
    try:
        lease = await kc.get(LEASE_PATH)
    except ApiError as e:
        if e.status == 404:
            return ""
        raise
    return str(lease["spec"].get("holderIdentity") or "")


@pytest.fixture
async def replicas(
    kc: KubeClient, run_scheduler: SchedulerFactory
) -> tuple[RunningScheduler, RunningScheduler]:
    """The leader (started first, it takes the Lease alone) and the follower."""
    await nodes.create_nodes(kc, [nodes.NodeSpec(name=n) for n in NODES])
    await nodes.wait_ready(kc, list(NODES))
    cfg = settings.parse(
        {
            "latency": {"reportIntervalSeconds": 0.5, "ttlSeconds": 60},
            "leaderElection": {
                "resourceName": LEASE,
                "leaseDurationSeconds": 4,
                "renewDeadlineSeconds": 3,
                "retryPeriodSeconds": 0.5,
            },
        }
    )
    leader = await run_scheduler(cfg)
    await eventually(lambda: holder(kc), timeout=30)
    follower = await run_scheduler(cfg)
    return leader, follower


@pytest.fixture
async def agents(
    kc: KubeClient, replicas: tuple[RunningScheduler, RunningScheduler], tmp_path: Path
) -> AsyncIterator[dict[str, asyncio.Task[None]]]:
    """One fan-out agent per node, streaming to both replicas; yields their tasks by node."""
    addresses = {("127.0.0.1", r.port) for r in replicas}

    async def resolver(host: str, port: int) -> set[Address]:
        assert (host, port) == ("lasched-replicas.lasched-system.svc", 10271)
        return addresses

    tasks: dict[str, asyncio.Task[None]] = {}
    for node in NODES:
        token = tmp_path / f"token-{node}"
        token.write_text(await agent_token(kc, node=node))
        fan_out = FanOut(
            url=URL,
            node=node,
            prober=Prober(ProbeMethod.fixed(MATRIX[node]), probes_per_target=3),
            token_file=token,
            heartbeat_seconds=2,
            resolve_seconds=1,
            resolver=resolver,
        )
        tasks[node] = asyncio.create_task(fan_out.run(), name=f"agent-{node}")
    yield tasks
    for task in tasks.values():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def measured(http: aiohttp.ClientSession, port: int) -> dict[tuple[str, str], float]:
    """The agent-measured pairs in one replica's cache (``/debug/latency``), in ms."""
    async with http.get(f"http://127.0.0.1:{port}/debug/latency") as resp:
        if resp.status != 200:
            return {}
        body: dict[str, Any] = await resp.json()
    return {
        (p["src"], p["dst"]): p["ms"]
        for p in body["pairs"]
        if p["source"] == "agent" and not p["stale"]
    }


async def test_both_replicas_hold_every_pair_and_the_follower_takes_over_with_them(
    kc: KubeClient,
    namespace: str,
    replicas: tuple[RunningScheduler, RunningScheduler],
    agents: dict[str, asyncio.Task[None]],
) -> None:
    """Every node's RTTs reach both replicas; with the agents stopped and the leader gone,
    the follower leads and places a delay-bound pod on the pairs it had."""
    leader, follower = replicas
    leading = await holder(kc)
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        for replica in (leader, follower):
            complete = functools.partial(_complete, http, replica.port)
            got = await eventually(complete, timeout=30, interval=0.2)
            assert got == PAIRS, f"replica on port {replica.port}"
    log.info("both replicas hold all %d pairs after %.1f s", len(PAIRS), time.monotonic() - started)

    for task in agents.values():  # nothing new from here on
        task.cancel()
    await asyncio.gather(*agents.values(), return_exceptions=True)

    await leader.stop()  # graceful: releases the Lease
    stopped = time.monotonic()
    await kc.post(
        f"/api/v1/namespaces/{namespace}/pods",
        latency_pod("near-0", labels={"delay_edge-0": "10"}, avoid=("edge-0",)),
    )
    assert await eventually(lambda: node_of(kc, namespace, "near-0"), timeout=15) == "edge-1"
    took = time.monotonic() - stopped
    log.info("the follower placed the pod %.1f s after the leader stopped", took)
    assert await holder(kc) not in ("", leading)
    scheduled = await eventually(lambda: note(kc, namespace, "near-0", "Scheduled"))
    assert "rtt from edge-0 = 5.0 ms" in scheduled
    # The Lease is handed over at the follower's next retry (0.5 s); binding adds little.
    assert took < 5.0, f"placed {took:.1f} s after the leader stopped"


async def _complete(http: aiohttp.ClientSession, port: int) -> dict[tuple[str, str], float]:
    pairs = await measured(http, port)
    return pairs if pairs.keys() == PAIRS.keys() else {}
