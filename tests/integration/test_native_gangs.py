"""Kubernetes' own PodGroups (scheduling.k8s.io/v1beta1 on v1.37) scheduled by lasched:
a gang binds all-or-nothing and its PodGroup's condition says how; a basic group binds
its members one by one. kube-controller-manager runs too (its PodGroup protection
controller only manages a finalizer), and no kube-scheduler does."""

from __future__ import annotations

import asyncio
from typing import Any

from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, pod, pods

API = "/apis/scheduling.k8s.io/v1beta1"
CONDITION = "PodGroupInitiallyScheduled"


def podgroup(name: str, policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "scheduling.k8s.io/v1beta1",
        "kind": "PodGroup",
        "metadata": {"name": name},
        "spec": {"schedulingPolicy": policy},
    }


def member(name: str, group: str, *, pool: str) -> dict[str, Any]:
    return pod(
        name, cpu="3", memory="1Gi", nodeSelector={"pool": pool},
        schedulingGroup={"podGroupName": group},
    )  # fmt: skip


async def bound(kc: KubeClient, namespace: str, prefix: str) -> set[str]:
    return {
        n for n, p in (await pods(kc, namespace)).items()
        if n.startswith(prefix) and p["spec"].get("nodeName")
    }  # fmt: skip


async def condition(kc: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    obj = await kc.get(f"{API}/namespaces/{namespace}/podgroups/{name}")
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == CONDITION]
    return found[0] if found else None


async def test_native_gang_binds_all_or_nothing_and_records_its_condition(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """minCount 3 with room for 2: none bind, an Event and the condition say why; a third
    node lets all 3 bind together and the condition turns True."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=f"ng-{i}", cpu="4", labels={"pool": "ng"}) for i in range(2)]
    )
    await nodes.wait_ready(kc, ["ng-0", "ng-1"])
    await run_scheduler()
    await kc.post(
        f"{API}/namespaces/{namespace}/podgroups", podgroup("train", {"gang": {"minCount": 3}})
    )
    for i in range(3):
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", member(f"t-{i}", "train", pool="ng"))

    async def explained() -> list[dict[str, Any]]:
        evs = []
        for i in range(3):
            evs += await events_for(kc, namespace, f"t-{i}")
        return [e for e in evs if "members were placed" in str(e.get("note"))]

    (event, *_) = await eventually(explained, timeout=30)
    assert f"pod group {namespace}/train: " in event["note"]
    assert f"(min-available 3 from gang minCount of PodGroup {namespace}/train)" in event["note"]
    assert "all reservations released" in event["note"]

    async def unschedulable() -> dict[str, Any] | None:
        c = await condition(kc, namespace, "train")
        return c if c is not None and c["status"] == "False" else None

    failed = await eventually(unschedulable, timeout=30)
    assert failed["reason"] == "Unschedulable"
    assert "members were placed" in failed["message"]
    await asyncio.sleep(1.0)
    assert await bound(kc, namespace, "t-") == set()  # never a partial gang

    await nodes.create_nodes(kc, [nodes.NodeSpec(name="ng-2", cpu="4", labels={"pool": "ng"})])

    async def all_bound() -> bool:
        return len(await bound(kc, namespace, "t-")) == 3

    await eventually(all_bound, timeout=40)

    async def scheduled() -> dict[str, Any] | None:
        c = await condition(kc, namespace, "train")
        return c if c is not None and c["status"] == "True" else None

    done = await eventually(scheduled, timeout=20)
    assert done["reason"] == "Scheduled"
    assert done["message"].startswith("3 of 3 members placed")


async def test_native_basic_group_binds_members_one_by_one(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A basic-policy PodGroup with room for 2 of 3: those 2 bind, the third waits alone."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=f"nb-{i}", cpu="4", labels={"pool": "nb"}) for i in range(2)]
    )
    await nodes.wait_ready(kc, ["nb-0", "nb-1"])
    await run_scheduler()
    await kc.post(f"{API}/namespaces/{namespace}/podgroups", podgroup("web", {"basic": {}}))
    for i in range(3):
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", member(f"b-{i}", "web", pool="nb"))

    async def two_bound() -> bool:
        return len(await bound(kc, namespace, "b-")) == 2

    await eventually(two_bound, timeout=30)
    await asyncio.sleep(1.0)
    assert len(await bound(kc, namespace, "b-")) == 2
    assert await condition(kc, namespace, "web") is None  # a basic group has no gang outcome


async def test_member_of_a_missing_podgroup_waits_for_it(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A pod naming a PodGroup that does not exist yet waits; creating it lets the pod bind."""
    await nodes.create_nodes(kc, [nodes.NodeSpec(name="nm-0", cpu="4", labels={"pool": "nm"})])
    await nodes.wait_ready(kc, ["nm-0"])
    await run_scheduler()
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", member("m-0", "later", pool="nm"))
    await asyncio.sleep(2.0)
    assert await bound(kc, namespace, "m-") == set()
    await kc.post(
        f"{API}/namespaces/{namespace}/podgroups", podgroup("later", {"gang": {"minCount": 1}})
    )

    async def one_bound() -> bool:
        return await bound(kc, namespace, "m-") == {"m-0"}

    await eventually(one_bound, timeout=30)
