"""Remediation on the real control plane: a route degrades, or a node fails, under running pods.

Simulated agents (the real ``AgentClient`` with a probe answering from a
mutable matrix, as in test_latency_placement) stream RTTs. Four pods, each
limited to 10 ms from edge-0, start on edge-1; then edge-0's route to
edge-1 degrades to 50 ms and edge-2 comes within reach. With a 2 s grace
period, the Deployment's pod is evicted and its replacement is bound to
edge-2 within grace + 5 s; a bare pod, a pod whose PodDisruptionBudget
allows no disruption, and a pod with no other node it may run on all stay,
each with an Event that says why.

A node failure needs no agents: kwok stops reporting for the node and it says NotReady
(dev/lasched_dev/devcluster/nodes.py, ``fail``), as a kubelet would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lasched.kube.client import KubeClient
from lasched.settings import RemediationSettings, Settings
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import eventually, pod, pods
from tests.integration.test_latency_placement import note, simulated_agents

NODES = ("edge-0", "edge-1", "edge-2")
GRACE = 2.0
LIMIT = {"delay_edge-0": "10"}


@pytest.fixture
async def matrix(
    kc: KubeClient, run_scheduler: SchedulerFactory, tmp_path: Path
) -> AsyncIterator[dict[str, dict[str, float | None]]]:
    """lasched with remediation on and one simulated agent per node; yields their matrix."""
    remediation = {
        "enabled": True,
        "intervalSeconds": 0.5,
        "gracePeriodSeconds": GRACE,
        "cooldownSeconds": 1,
        "maxPerNode": 5,
    }
    # edge-2 starts just out of reach, so everything lands on edge-1.
    rtts: dict[str, dict[str, float | None]] = {
        "edge-0": {"edge-1": 5.0, "edge-2": 12.0},
        "edge-1": {"edge-0": 5.0, "edge-2": 30.0},
        "edge-2": {"edge-0": 12.0, "edge-1": 30.0},
    }
    specs = [nodes.NodeSpec(name=n) for n in NODES]
    extra = {"remediation": remediation}
    async with simulated_agents(kc, run_scheduler, tmp_path, specs, rtts, extra=extra) as rows:
        yield rows


def on(*names: str, operator: str = "In") -> dict[str, Any]:
    term = {"key": "kubernetes.io/hostname", "operator": operator, "values": list(names)}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [term]}]
            }
        }
    }


def limited(name: str, *, affinity: dict[str, Any]) -> dict[str, Any]:
    body = pod(name, affinity=affinity)
    body["metadata"]["labels"] = {"app": name, **LIMIT}
    return body


def deployment(name: str, *, affinity: dict[str, Any]) -> dict[str, Any]:
    template = limited(name, affinity=affinity)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": template["metadata"], "spec": template["spec"]},
        },
    }


async def running(kc: KubeClient, namespace: str, app: str) -> dict[str, tuple[str, str]]:
    """Pods of ``app`` not being deleted -> (uid, node)."""
    return {
        name: (p["metadata"]["uid"], p["spec"].get("nodeName", ""))
        for name, p in (await pods(kc, namespace)).items()
        if p["metadata"].get("labels", {}).get("app") == app
        and not p["metadata"].get("deletionTimestamp")
    }


async def test_a_degraded_route_moves_only_the_pods_that_can_move_safely(
    kc: KubeClient, namespace: str, matrix: dict[str, dict[str, float | None]]
) -> None:
    """Replaced on edge-2 within grace + 5 s; bare, PDB-guarded and unplaceable pods stay."""
    ns = f"/namespaces/{namespace}"
    not_edge_0 = on("edge-0", operator="NotIn")
    await kc.post(f"/apis/apps/v1{ns}/deployments", deployment("web", affinity=not_edge_0))
    await kc.post(f"/apis/apps/v1{ns}/deployments", deployment("guarded", affinity=not_edge_0))
    await kc.post(f"/apis/apps/v1{ns}/deployments", deployment("stuck", affinity=on("edge-1")))
    await kc.post(f"/api/v1{ns}/pods", limited("bare", affinity=not_edge_0))
    await kc.post(
        f"/apis/policy/v1{ns}/poddisruptionbudgets",
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "guarded"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
        },
    )

    async def all_on_edge_1() -> dict[str, tuple[str, str]] | None:
        found = {}
        for app in ("web", "guarded", "stuck", "bare"):
            live = await running(kc, namespace, app)
            if len(live) != 1 or next(iter(live.values()))[1] != "edge-1":
                return None
            found.update(live)
        return found

    before = await eventually(all_on_edge_1, timeout=60)

    changed = time.monotonic()
    matrix["edge-0"]["edge-1"] = 50.0  # the route to edge-1 degrades
    matrix["edge-0"]["edge-2"] = 5.0  # and edge-2 comes within reach

    async def web_replaced() -> bool:
        live = await running(kc, namespace, "web")
        return any(uid not in {u for u, _ in before.values()} and node == "edge-2"
                   for uid, node in live.values())  # fmt: skip

    await eventually(web_replaced, timeout=30, interval=0.1)
    took = time.monotonic() - changed
    assert took <= GRACE + 5, f"replacement bound {took:.1f} s after the change"

    evicted = await eventually(
        lambda: note(kc, namespace, _name(before, "web"), "LatencyRemediated")
    )
    assert "rtt from edge-0 = " in evicted and "> 10 ms (delay_edge-0" in evicted
    assert "a replacement fits on 1 node(s): edge-2" in evicted

    skipped = "LatencyRemediationSkipped"
    bare = await eventually(lambda: note(kc, namespace, "bare", skipped))
    assert "no controller would recreate it: rtt from edge-0 = " in bare
    guarded = await eventually(lambda: note(kc, namespace, _name(before, "guarded"), skipped))
    assert "the Eviction API refused (PodDisruptionBudget)" in guarded
    stuck = await eventually(lambda: note(kc, namespace, _name(before, "stuck"), skipped))
    assert "no replacement could be placed within its limits now" in stuck
    assert "node affinity" in stuck

    await asyncio.sleep(2 * GRACE)  # more passes: still nothing for them
    for app in ("guarded", "stuck", "bare"):
        assert await running(kc, namespace, app) == {
            n: v for n, v in before.items() if n == _name(before, app)
        }, f"{app} was evicted"


def _name(found: dict[str, tuple[str, str]], app: str) -> str:
    """The name of ``app``'s pod among ``found`` (a Deployment's pods have generated names)."""
    return next(n for n in found if n == app or n.startswith(f"{app}-"))


# ---- a node fails under running pods ------------------------------------------------

NOT_READY = 3.0


async def test_a_failed_node_moves_a_deployments_pod_and_leaves_a_bare_one(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """down-0's kubelet says NotReady: the Deployment's pod is replaced on down-1 within
    nodeNotReadySeconds + 5 s (kube-controller-manager's own eviction waits 300 s); the bare
    pod stays, with an Event saying why."""
    names = ("down-0", "down-1")
    labels = {"pool": "down"}
    await nodes.create_nodes(kc, [nodes.NodeSpec(name=n, labels=labels) for n in names])
    await nodes.wait_ready(kc, names)
    remediation = RemediationSettings(
        enabled=True, interval_seconds=0.5, node_not_ready_seconds=NOT_READY, cooldown_seconds=1
    )
    await run_scheduler(replace(Settings(), remediation=remediation))
    ns = f"/namespaces/{namespace}"
    await kc.patch("/api/v1/nodes/down-1", {"spec": {"unschedulable": True}})
    try:
        on_down_0 = on("down-0")  # first everything on down-0 ...
        web = deployment("web", affinity=on("down-0", "down-1"))
        web["spec"]["template"]["metadata"]["labels"] = {"app": "web"}
        await kc.post(f"/apis/apps/v1{ns}/deployments", web)
        bare = pod("bare", affinity=on_down_0)
        bare["metadata"]["labels"] = {"app": "bare"}
        await kc.post(f"/api/v1{ns}/pods", bare)

        async def both_on_down_0() -> dict[str, tuple[str, str]] | None:
            found = {**await running(kc, namespace, "web"), **await running(kc, namespace, "bare")}
            on_0 = len(found) == 2 and all(n == "down-0" for _, n in found.values())
            return found if on_0 else None

        before = await eventually(both_on_down_0, timeout=60)
        # ... then down-1 opens and down-0 fails.
        await kc.patch("/api/v1/nodes/down-1", {"spec": {"unschedulable": False}})
        failed = time.monotonic()
        await nodes.fail(kc, "down-0")

        async def web_replaced() -> bool:
            live = await running(kc, namespace, "web")
            old = {u for u, _ in before.values()}
            return any(uid not in old and node == "down-1" for uid, node in live.values())

        await eventually(web_replaced, timeout=30, interval=0.1)
        took = time.monotonic() - failed
        assert took <= NOT_READY + 5, f"replacement bound {took:.1f} s after the node failed"

        evicted = await eventually(
            lambda: note(kc, namespace, _name(before, "web"), "LatencyRemediated")
        )
        assert "node down-0 NotReady for " in evicted, evicted
        assert "a replacement fits on 1 node(s): down-1" in evicted, evicted
        skipped = await eventually(lambda: note(kc, namespace, "bare", "LatencyRemediationSkipped"))
        assert "no controller would recreate it: node down-0 NotReady" in skipped, skipped
        await asyncio.sleep(2 * NOT_READY)  # more passes: the bare pod is still not touched
        assert await running(kc, namespace, "bare") == {"bare": before["bare"]}
    finally:
        await nodes.recover(kc, "down-0")
    await nodes.wait_ready(kc, ["down-0"])  # kwok reports for it again; the taints go
