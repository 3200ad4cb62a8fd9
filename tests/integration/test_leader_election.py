"""Leader election on the real apiserver: one leader, hand-over, loss, failover of processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lasched.kube.client import ApiError, KubeClient
from lasched.kube.election import LeaderElector, LeadershipLost, LeaseConfig, micro_time
from lasched.model.quantity import milli
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster
from lasched_dev.devcluster.processes import Child, spawn, terminate
from tests.integration.helpers import eventually, pod

RENEW_DEADLINE = 2.0


def elector(kc: KubeClient, identity: str, lease: str) -> LeaderElector:
    config = LeaseConfig(
        identity=identity,
        name=lease,
        lease_duration=3.0,
        renew_deadline=RENEW_DEADLINE,
        retry_period=0.25,
    )
    return LeaderElector(kc, config)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
        await task


async def test_one_leader_and_release_hands_over(kc: KubeClient) -> None:
    """Of two candidates one leads; when it stops, it releases and the other leads at once."""
    a, b = elector(kc, "a", "handover"), elector(kc, "b", "handover")
    ta = asyncio.create_task(a.run())
    await asyncio.wait_for(a.leading.wait(), 5)
    tb = asyncio.create_task(b.run())
    await asyncio.sleep(1.0)
    assert not b.leading.is_set()
    assert b.holder == "a"

    started = time.monotonic()
    await stop(ta)
    await asyncio.wait_for(b.leading.wait(), 5)
    took = time.monotonic() - started
    assert took < 1.0, f"hand-over took {took:.2f} s; release should avoid waiting for expiry"
    lease = await kc.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/handover")
    assert lease["spec"]["holderIdentity"] == "b"
    assert lease["spec"]["leaseTransitions"] >= 1
    await stop(tb)


async def test_leader_whose_lease_is_taken_steps_down_at_once(kc: KubeClient) -> None:
    """A leader that sees another holder of a valid Lease stops leading at its next renewal,
    says why, and campaigns again instead of ending."""
    a = elector(kc, "a", "stolen")
    ta = asyncio.create_task(a.run())
    await asyncio.wait_for(a.leading.wait(), 5)
    path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/stolen"

    async def steal() -> bool:
        lease = await kc.get(path)
        lease["spec"]["holderIdentity"] = "usurper"
        lease["spec"]["renewTime"] = micro_time(time.time())
        lease["spec"]["leaseDurationSeconds"] = 60
        try:
            await kc.request("PUT", path, body=lease)
        except ApiError as e:
            if e.conflict:  # the leader renewed in between
                return False
            raise
        return True

    try:
        await eventually(steal, interval=0.01)
        stolen_at = time.monotonic()
        await eventually(lambda: _not_leading(a), timeout=RENEW_DEADLINE + 2, interval=0.01)
        # At the next renewal (retry_period), well before renew_deadline.
        assert time.monotonic() - stolen_at < RENEW_DEADLINE
        assert not a.is_leading()
        assert isinstance(a.lost_because, LeadershipLost)
        assert "usurper" in str(a.lost_because)
        assert not ta.done(), "the elector campaigns again"
        assert a.holder == "usurper"
    finally:
        await stop(ta)


async def _not_leading(e: LeaderElector) -> bool:
    return not e.leading.is_set()


# ---- failover of real scheduler processes --------------------------------------

NODE_CPU = "6"  # 10 nodes hold 600 pods of 100m: 500 fill them to 83 %
PODS = 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def leading(http: aiohttp.ClientSession, port: int) -> bool:
    try:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    except aiohttp.ClientError:
        return False
    return any(
        line.startswith("lasched_leader_election_master_status") and line.endswith(" 1.0")
        for line in text.splitlines()
    )


@pytest.fixture
async def replicas(
    cluster: DevCluster, kc: KubeClient, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[list[tuple[Child, int]]]:
    """Two ``lasched run`` processes with a short lease, and ten nodes of this test's own."""
    pool = request.node.callspec.id
    specs = nodes.uniform(10, prefix=f"ha-{pool}", cpu=NODE_CPU, labels={"pool": pool})
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, [s.name for s in specs])
    config = tmp_path / "lasched.yaml"
    config.write_text(
        "leaderElection:\n  resourceName: failover\n"
        "  leaseDurationSeconds: 4\n  renewDeadlineSeconds: 3\n  retryPeriodSeconds: 0.5\n"
    )
    children = []
    for i in range(2):
        port = free_port()
        argv = [
            sys.executable, "-m", "lasched", "run", "--config", str(config),
            "--kubeconfig", str(cluster.kubeconfig), "--port", str(port),
        ]  # fmt: skip
        children.append((spawn(f"lasched-{i}", argv, log_dir=tmp_path, detached=False), port))
    yield children
    for child, _ in children:
        await asyncio.to_thread(terminate, child.pid, grace=10)


async def bound_pods(kc: KubeClient, namespace: str) -> list[dict[str, Any]]:
    items = (await kc.get(f"/api/v1/namespaces/{namespace}/pods"))["items"]
    return [p for p in items if p["spec"].get("nodeName")]


@pytest.mark.parametrize("how", ["kill", "sigterm"])
async def test_failover_under_load(
    kc: KubeClient, namespace: str, replicas: list[tuple[Child, int]], how: str
) -> None:
    """Kill -9 (or SIGTERM) the leader mid-run: the follower takes over; every pod bound once."""
    async with aiohttp.ClientSession() as http:

        async def who_leads() -> tuple[Child, int] | None:
            states = [await leading(http, port) for _, port in replicas]
            return replicas[states.index(True)] if sum(states) == 1 else None

        leader = await eventually(who_leads, timeout=30)
        follower = next(r for r in replicas if r is not leader)
        assert await leading(http, follower[1]) is False

        creating = asyncio.gather(
            *(
                kc.post(
                    f"/api/v1/namespaces/{namespace}/pods",
                    pod(f"p{i}", cpu="100m", nodeSelector={"pool": how}),
                )
                for i in range(PODS)
            )
        )
        await eventually(lambda: _at_least(kc, namespace, PODS // 5), timeout=60)
        os.kill(leader[0].pid, signal.SIGKILL if how == "kill" else signal.SIGTERM)
        killed_at = time.monotonic()
        await eventually(lambda: leading(http, follower[1]), timeout=15, interval=0.05)
        takeover = time.monotonic() - killed_at
        await creating

        limit = 4.0 + 2.0 if how == "kill" else 2.5  # lease duration + margin; release
        assert takeover < limit, f"follower took over after {takeover:.1f} s"

        await eventually(lambda: _at_least(kc, namespace, PODS), timeout=90)
        bound = await bound_pods(kc, namespace)
        assert len(bound) == PODS
        per_node: dict[str, int] = {}
        for p in bound:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        capacity = milli(NODE_CPU) // milli("100m")
        assert max(per_node.values()) <= capacity, per_node
        # Bound once: every pod has exactly one Scheduled event (the binding API refuses a
        # second bind, and a replica that lost the race must not record one).
        events = (
            await kc.get(
                f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
                fieldSelector="reason=Scheduled",
            )
        )["items"]
        per_pod: dict[str, int] = {}
        for e in events:
            name = e["regarding"]["name"]
            per_pod[name] = per_pod.get(name, 0) + 1
        twice = {k: v for k, v in per_pod.items() if v > 1}
        assert not twice, f"pods with more than one Scheduled event: {twice}"


async def _at_least(kc: KubeClient, namespace: str, n: int) -> bool:
    return len(await bound_pods(kc, namespace)) >= n
