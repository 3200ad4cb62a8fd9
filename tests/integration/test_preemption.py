"""A high-priority pod preempts the right victims and binds to its nominated node."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from lasched.kube import statuswriter
from lasched.kube.binding import evict
from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod, pods


def prioritised(name: str, priority: int, *, cpu: str, **spec: Any) -> dict[str, Any]:
    body = pod(name, cpu=cpu, memory="256Mi", nodeSelector={"pool": "preempt"}, **spec)
    body["metadata"]["annotations"] = {"priority": str(priority)}
    return body


def slow_evictions(monkeypatch: pytest.MonkeyPatch, delay: float) -> list[str]:
    """Evictions that reach the apiserver ``delay`` s late (a busy apiserver), counted.

    The late deletion keeps the window between a preemption and the informer's
    view of its victims open long enough for the preemptor to be tried again.
    """
    sent: list[str] = []

    async def late(kc: KubeClient, *, namespace: str, name: str, uid: str) -> None:
        sent.append(name)
        await asyncio.sleep(delay)
        await evict(kc, namespace=namespace, name=name, uid=uid)

    monkeypatch.setattr(statuswriter, "evict", late)
    return sent


async def preempted_notes(kc: KubeClient, namespace: str, name: str) -> list[str]:
    """Every Preempted event of pod ``name``, a note once per occurrence (series included)."""
    return [
        str(e["note"])
        for e in await events_for(kc, namespace, name)
        if e["reason"] == "Preempted"
        for _ in range(int((e.get("series") or {}).get("count", 1)))
    ]


async def test_high_priority_pod_preempts_the_cheapest_victims(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """The node whose victims matter least is freed, with Preempted events; the rest stay."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=f"pre-{i}", cpu="2", labels={"pool": "preempt"}) for i in range(2)]
    )
    await nodes.wait_ready(kc, ["pre-0", "pre-1"])
    # Placed by hand (as another scheduler would): mids on pre-0, lows on pre-1.
    placed = [("mid-0", 50, "pre-0"), ("mid-1", 50, "pre-0")]
    placed += [("low-0", 10, "pre-1"), ("low-1", 10, "pre-1")]
    for name, prio, node in placed:
        await kc.post(
            f"/api/v1/namespaces/{namespace}/pods",
            prioritised(name, prio, cpu="1", nodeName=node, scheduler="elsewhere"),
        )
    await run_scheduler()
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", prioritised("vip", 1000, cpu="2"))

    assert await eventually(lambda: node_of(kc, namespace, "vip"), timeout=30) == "pre-1"
    current = await pods(kc, namespace)
    assert {"mid-0", "mid-1"} <= set(current), "higher-priority pods must survive"
    assert not {"low-0", "low-1"} & set(current)
    for victim in ("low-0", "low-1"):
        notes = [e["note"] for e in await events_for(kc, namespace, victim)]
        assert f"Preempted by pod {namespace}/vip on node pre-1" in notes


async def test_preemption_policy_never_waits(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """preemptionPolicy: Never leaves the victims alone and the pod pending."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name="never-0", cpu="1", labels={"pool": "never"})]
    )
    await run_scheduler()
    low = pod("low", cpu="1", nodeSelector={"pool": "never"})
    low["metadata"]["annotations"] = {"priority": "1"}
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", low)
    assert await eventually(lambda: node_of(kc, namespace, "low")) == "never-0"
    # The policy comes from a PriorityClass, as admission requires.
    await kc.post(
        "/apis/scheduling.k8s.io/v1/priorityclasses",
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": "high-but-polite"},
            "value": 100,
            "preemptionPolicy": "Never",
        },
    )
    polite = pod(
        "polite", cpu="1", nodeSelector={"pool": "never"}, priorityClassName="high-but-polite"
    )

    async def admitted() -> bool:
        # The Priority admission plugin reads PriorityClasses from its own informer:
        # a class just created may not be there yet (403 "no PriorityClass").
        try:
            await kc.post(f"/api/v1/namespaces/{namespace}/pods", polite)
        except ApiError as e:
            if e.status == 403 and "no PriorityClass" in e.message:
                return False
            raise
        return True

    await eventually(admitted)

    async def failed() -> list[str]:
        evs = await events_for(kc, namespace, "polite")
        return [str(e["note"]) for e in evs if e["reason"] == "FailedScheduling"]

    (note, *_) = await eventually(failed)
    assert "preemptionPolicy=Never" in note
    assert "low" in await pods(kc, namespace)


async def test_one_preemptor_evicts_the_victims_of_one_decision_once(
    kc: KubeClient,
    namespace: str,
    run_scheduler: SchedulerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Retried before its victims' deletions arrive, the preemptor waits: one eviction and
    one Preempted event per victim, and the preemption metric counts one."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name="once-0", cpu="2", labels={"pool": "preempt-once"})]
    )
    await nodes.wait_ready(kc, ["once-0"])
    for name in ("low-0", "low-1"):
        body = prioritised(name, 10, cpu="1", nodeName="once-0", scheduler="elsewhere")
        body["spec"]["nodeSelector"] = {"pool": "preempt-once"}
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
    sent = slow_evictions(monkeypatch, 1.0)
    await run_scheduler()
    before = REGISTRY.get_sample_value("lasched_preemption_attempts_total") or 0.0
    vip = prioritised("vip", 1000, cpu="2")
    vip["spec"]["nodeSelector"] = {"pool": "preempt-once"}
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", vip)

    assert await eventually(lambda: node_of(kc, namespace, "vip"), timeout=30) == "once-0"
    await asyncio.sleep(1.0)  # any late duplicate event reaches the apiserver
    assert sorted(sent) == ["low-0", "low-1"]
    for victim in ("low-0", "low-1"):
        notes = await preempted_notes(kc, namespace, victim)
        assert notes == [f"Preempted by pod {namespace}/vip on node once-0"], victim
    after = REGISTRY.get_sample_value("lasched_preemption_attempts_total") or 0.0
    assert after - before == 1
