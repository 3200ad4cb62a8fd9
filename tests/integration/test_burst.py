"""A burst of 1,000 pods on 100 mixed nodes: all bound, none where it must not be."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from lasched.kube.client import KubeClient
from lasched.model.quantity import milli, value
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, pod, pods

TAINT = nodes.Taint("dedicated", "batch")


def node_specs() -> list[nodes.NodeSpec]:
    specs = []
    for i in range(100):
        big = i % 4 == 0
        specs.append(
            nodes.NodeSpec(
                name=f"burst-{i}",
                cpu="8" if big else "4",
                memory="16Gi" if big else "8Gi",
                labels={"zone": "a" if i % 2 else "b"},
                taints=[TAINT] if i % 10 == 9 else [],
            )
        )
    return specs


def pod_specs() -> list[dict[str, Any]]:
    out = []
    for i in range(1000):
        kind = i % 10
        spec: dict[str, Any] = {}
        if kind == 0:
            spec["tolerations"] = [{"key": "dedicated", "operator": "Equal", "value": "batch"}]
        elif kind == 1:
            spec["nodeSelector"] = {"zone": "a"}
        out.append(pod(f"burst-{i}", cpu="300m", memory="512Mi", **spec))
    return out


async def test_burst_of_1000_pods_on_100_nodes(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Every pod binds; selectors and taints hold; no node exceeds its allocatable."""
    specs = node_specs()
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, [s.name for s in specs])
    await run_scheduler()

    sem = asyncio.Semaphore(32)

    async def create(body: dict[str, Any]) -> None:
        async with sem:
            await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)

    await asyncio.gather(*(create(b) for b in pod_specs()))

    async def all_bound() -> dict[str, dict[str, Any]] | None:
        current = await pods(kc, namespace)
        unbound = [n for n, p in current.items() if not p["spec"].get("nodeName")]
        return current if len(current) == 1000 and not unbound else None

    placed = await eventually(all_bound, timeout=120, interval=0.5)

    by_node = {s.name: s for s in specs}
    cpu: dict[str, int] = defaultdict(int)
    mem: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for name, p in placed.items():
        node = p["spec"]["nodeName"]
        req = p["spec"]["containers"][0]["resources"]["requests"]
        cpu[node] += milli(req["cpu"])
        mem[node] += value(req["memory"])
        count[node] += 1
        spec = by_node[node]
        if p["spec"].get("nodeSelector"):
            assert spec.labels["zone"] == "a", f"{name} on {node} ignores its nodeSelector"
        if spec.taints:
            assert p["spec"].get("tolerations"), f"{name} on tainted {node} without toleration"
    for node, used in cpu.items():
        assert used <= milli(by_node[node].cpu), f"{node} over CPU: {used}m"
        assert mem[node] <= value(by_node[node].memory), f"{node} over memory"
        assert count[node] <= int(by_node[node].pods)
    assert len(count) > 50, "pods should spread over most nodes under LeastAllocated"


async def test_malformed_priority_annotation_warns_and_still_schedules(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """priority: "high" gives a Warning naming the value; the pod is scheduled at priority 0."""
    await run_scheduler()
    body = pod("odd-priority")
    body["metadata"]["annotations"] = {"priority": "high"}
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)

    async def warned() -> list[dict[str, Any]]:
        evs = await events_for(kc, namespace, "odd-priority")
        return [e for e in evs if e["reason"] == "InvalidPriority"]

    (event,) = await eventually(warned)
    assert event["type"] == "Warning"
    assert 'priority="high" is not an integer' in event["note"]

    async def bound() -> str:
        return str((await pods(kc, namespace))["odd-priority"]["spec"].get("nodeName", ""))

    assert await eventually(bound)
