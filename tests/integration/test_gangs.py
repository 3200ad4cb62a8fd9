"""Gangs on the real control plane: all-or-nothing, and never two partial gangs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, pod, pods
from tests.integration.test_preemption import preempted_notes, slow_evictions


def gang_member(name: str, group: str, minimum: int, *, cpu: str, pool: str) -> dict[str, Any]:
    body = pod(name, cpu=cpu, memory="1Gi", nodeSelector={"pool": pool})
    body["metadata"]["labels"] = {
        "lasched.io/pod-group": group,
        "lasched.io/min-available": str(minimum),
        "lasched.io/timeout-seconds": "5",
    }
    return body


async def bound_names(kc: KubeClient, namespace: str, prefix: str) -> set[str]:
    return {
        n for n, p in (await pods(kc, namespace)).items()
        if n.startswith(prefix) and p["spec"].get("nodeName")
    }  # fmt: skip


async def test_gang_of_8_waits_for_capacity_then_binds_together(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """7 fit: nothing binds and every member says why; a new node lets all 8 bind."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=f"g8-{i}", cpu="4", labels={"pool": "g8"}) for i in range(7)]
    )
    await nodes.wait_ready(kc, [f"g8-{i}" for i in range(7)])
    await run_scheduler()
    for i in range(8):
        await kc.post(
            f"/api/v1/namespaces/{namespace}/pods",
            gang_member(f"w-{i}", "train", 8, cpu="3", pool="g8"),
        )

    async def explained() -> list[dict[str, Any]]:
        evs = await events_for(kc, namespace, "w-0")
        return [e for e in evs if "members were placed" in str(e.get("note"))]

    (event, *_) = await eventually(explained, timeout=30)
    assert (
        "of 8 members were placed (min-available 8 from label lasched.io/min-available); "
        "all reservations released" in event["note"]
    )
    await asyncio.sleep(1.0)
    assert await bound_names(kc, namespace, "w-") == set()  # never a partial gang

    await nodes.create_nodes(kc, [nodes.NodeSpec(name="g8-7", cpu="4", labels={"pool": "g8"})])

    async def all_bound() -> bool:
        return len(await bound_names(kc, namespace, "w-")) == 8

    await eventually(all_bound, timeout=30)


async def test_two_competing_gangs_end_one_bound_one_pending(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Each gang needs 4 of the 6 slots: one binds fully, the other binds nothing."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=f"duel-{i}", cpu="2", labels={"pool": "duel"}) for i in range(3)]
    )
    await nodes.wait_ready(kc, [f"duel-{i}" for i in range(3)])
    await run_scheduler()
    bodies = []
    for i in range(4):  # interleaved creation: a, b, a, b, ...
        bodies.append(gang_member(f"a-{i}", "a", 4, cpu="1", pool="duel"))
        bodies.append(gang_member(f"b-{i}", "b", 4, cpu="1", pool="duel"))
    for body in bodies:
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)

    async def one_complete() -> tuple[set[str], set[str]] | None:
        a = await bound_names(kc, namespace, "a-")
        b = await bound_names(kc, namespace, "b-")
        return (a, b) if len(a) == 4 or len(b) == 4 else None

    await eventually(one_complete, timeout=60)
    await asyncio.sleep(7)  # past the losers' timeout and retries
    a = await bound_names(kc, namespace, "a-")
    b = await bound_names(kc, namespace, "b-")
    assert sorted([len(a), len(b)]) == [0, 4], f"partial gangs: a={sorted(a)} b={sorted(b)}"


async def test_gang_from_a_scheduler_plugins_podgroup(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Pods labelled scheduling.x-k8s.io/pod-group wait for their PodGroup, then bind together."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=f"pg-{i}", cpu="4", labels={"pool": "pg"}) for i in range(2)]
    )
    await run_scheduler()
    for i in range(3):
        body = pod(f"pg-{i}", cpu="1", nodeSelector={"pool": "pg"})
        body["metadata"]["labels"] = {"scheduling.x-k8s.io/pod-group": "spark"}
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
    await asyncio.sleep(2)
    assert await bound_names(kc, namespace, "pg-") == set()  # no PodGroup yet: gated

    await kc.post(
        f"/apis/scheduling.x-k8s.io/v1alpha1/namespaces/{namespace}/podgroups",
        {
            "apiVersion": "scheduling.x-k8s.io/v1alpha1",
            "kind": "PodGroup",
            "metadata": {"name": "spark"},
            "spec": {"minMember": 3, "scheduleTimeoutSeconds": 10},
        },
    )

    async def all_bound() -> bool:
        return len(await bound_names(kc, namespace, "pg-")) == 3

    await eventually(all_bound, timeout=20)

    async def phase() -> str:
        group = await kc.get(
            f"/apis/scheduling.x-k8s.io/v1alpha1/namespaces/{namespace}/podgroups/spark"
        )
        return str((group.get("status") or {}).get("phase", ""))

    assert await eventually(phase) == "Scheduled"


async def test_failed_bind_after_admission_retries_that_member_and_the_rest_bind(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """An admitted gang whose member's bind is refused: the others bind, it retries, then binds.

    A ValidatingAdmissionPolicy on pods/binding refuses the one member's
    binding, as an admission webhook or a quota could in a real cluster.
    """
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=f"bf-{i}", cpu="4", labels={"pool": "bf"}) for i in range(2)]
    )
    await nodes.wait_ready(kc, ["bf-0", "bf-1"])
    policy = f"refuse-bf-3-{namespace}"
    await kc.post(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        {
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods/binding"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.metadata.name != 'bf-3'",
                        "message": "bindings of bf-3 are refused for this test",
                    }
                ],
            },
        },
    )
    binding_path = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
    await kc.post(
        binding_path,
        {
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    )
    await asyncio.sleep(1.5)  # the policy reaches the admission chain asynchronously
    await run_scheduler()
    for i in range(4):
        await kc.post(
            f"/api/v1/namespaces/{namespace}/pods",
            gang_member(f"bf-{i}", "bf", 4, cpu="1", pool="bf"),
        )

    async def refused() -> list[dict[str, Any]]:
        evs = await events_for(kc, namespace, "bf-3")
        return [e for e in evs if e["reason"] == "GroupMemberBindFailed"]

    (event, *_) = await eventually(refused, timeout=30)
    assert "was admitted but this member's bind failed" in event["note"]
    assert "bindings of bf-3 are refused" in event["note"]

    async def others_bound() -> bool:
        return await bound_names(kc, namespace, "bf-") == {"bf-0", "bf-1", "bf-2"}

    await eventually(others_bound, timeout=20)  # the rest still bind
    await kc.delete(f"{binding_path}/{policy}")

    async def all_bound() -> bool:
        return len(await bound_names(kc, namespace, "bf-")) == 4

    # Retried at once, then with backoff (at most 10 s) while the policy still refused.
    await eventually(all_bound, timeout=20)


async def test_gang_preempts_for_the_whole_group_or_not_at_all(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A high-priority gang evicts low pods to fit entirely; a gang too big evicts nothing."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=f"gp-{i}", cpu="2", labels={"pool": "gp"}) for i in range(3)]
    )
    await nodes.wait_ready(kc, [f"gp-{i}" for i in range(3)])
    for i in range(3):
        filler = pod(f"filler-{i}", cpu="2", nodeName=f"gp-{i}", scheduler="elsewhere")
        filler["metadata"]["annotations"] = {"priority": "1"}
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", filler)
    await run_scheduler()

    def member(name: str, group: str, minimum: int) -> dict[str, Any]:
        body = gang_member(name, group, minimum, cpu="2", pool="gp")
        body["metadata"]["annotations"] = {"priority": "100"}
        body["metadata"]["labels"]["lasched.io/timeout-seconds"] = "20"
        return body

    # Four members cannot fit on three nodes, whatever is evicted: nothing goes.
    for i in range(4):
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", member(f"big-{i}", "big", 4))
    await asyncio.sleep(4)
    assert {f"filler-{i}" for i in range(3)} <= set(await pods(kc, namespace))
    for i in range(4):
        await kc.delete(f"/api/v1/namespaces/{namespace}/pods/big-{i}")

    # Two members fit after evicting two fillers: both bind, one filler stays.
    for i in range(2):
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", member(f"ok-{i}", "ok", 2))

    async def both_bound() -> bool:
        return len(await bound_names(kc, namespace, "ok-")) == 2

    await eventually(both_bound, timeout=30)
    fillers = {n for n in await pods(kc, namespace) if n.startswith("filler-")}
    assert len(fillers) == 1


async def test_gang_preemption_tells_each_victim_once_with_its_own_node(
    kc: KubeClient,
    namespace: str,
    run_scheduler: SchedulerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two members free two nodes: each victim is evicted once and gets one Preempted
    event naming the member that preempted it and the node it ran on."""
    names = [f"gpe-{i}" for i in range(3)]
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=n, cpu="2", labels={"pool": "gpe"}) for n in names]
    )
    await nodes.wait_ready(kc, names)
    for i, node in enumerate(names):
        filler = pod(f"filler-{i}", cpu="2", nodeName=node, scheduler="elsewhere")
        filler["metadata"]["annotations"] = {"priority": "1"}
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", filler)
    sent = slow_evictions(monkeypatch, 1.0)
    await run_scheduler()
    for i in range(2):
        body = gang_member(f"m-{i}", "pair", 2, cpu="2", pool="gpe")
        body["metadata"]["annotations"] = {"priority": "100"}
        body["metadata"]["labels"]["lasched.io/timeout-seconds"] = "20"
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)

    async def both_bound() -> bool:
        return len(await bound_names(kc, namespace, "m-")) == 2

    await eventually(both_bound, timeout=30)
    await asyncio.sleep(1.0)  # any late duplicate event reaches the apiserver
    victims = sorted({f"filler-{i}" for i in range(3)} - set(await pods(kc, namespace)))
    assert len(victims) == 2
    assert sorted(sent) == victims
    for victim in victims:
        (note,) = await preempted_notes(kc, namespace, victim)
        node = names[int(victim.removeprefix("filler-"))]
        assert note.startswith(f"Preempted by pod {namespace}/m-"), note
        assert note.endswith(f" on node {node}"), note
