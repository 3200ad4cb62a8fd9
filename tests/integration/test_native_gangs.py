"""Kubernetes' own gang API, in the shape the dev cluster's release serves, scheduled by
lasched: a gang binds all-or-nothing (and on v1.36 on its PodGroup's condition says how);
a basic group binds its members one by one. kube-controller-manager runs too (its
PodGroup protection controller only manages a finalizer), and no kube-scheduler does.

v1.37 serves ``scheduling.k8s.io/v1beta1`` PodGroups named by pods'
``spec.schedulingGroup``; v1.36 ``v1alpha2`` PodGroups, named the same way; v1.35
``v1alpha1`` Workloads, whose ``podGroups`` pods name with ``spec.workloadRef``
(``LASCHED_KUBERNETES_VERSION=v1.35.4`` runs these tests there: docs/testing.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from lasched.kube.client import KubeClient
from lasched_dev.devcluster import binaries, nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, pod, pods


@dataclass(frozen=True, slots=True)
class Spelling:
    """How one release writes a pod group and a member's reference to it."""

    version: str  # of scheduling.k8s.io
    condition: str | None  # the condition a PodGroup's status carries; None: no status

    @property
    def workloads(self) -> bool:
        """v1alpha1 has no PodGroup kind: a Workload holds the groups."""
        return self.version == "v1alpha1"

    def collection(self, namespace: str) -> str:
        kind = "workloads" if self.workloads else "podgroups"
        return f"/apis/scheduling.k8s.io/{self.version}/namespaces/{namespace}/{kind}"

    def group(self, name: str, policy: dict[str, Any]) -> dict[str, Any]:
        """The object that declares group ``name`` with ``policy`` (one per group)."""
        meta = {"apiVersion": f"scheduling.k8s.io/{self.version}", "metadata": {"name": name}}
        if self.workloads:
            return {**meta, "kind": "Workload",
                    "spec": {"podGroups": [{"name": "members", "policy": policy}]}}  # fmt: skip
        return {**meta, "kind": "PodGroup", "spec": {"schedulingPolicy": policy}}

    def reference(self, group: str) -> dict[str, Any]:
        """A member's spec fields naming group ``group``."""
        if self.workloads:
            return {"workloadRef": {"name": group, "podGroup": "members"}}
        return {"schedulingGroup": {"podGroupName": group}}


def spelling(minor: int) -> Spelling:
    """The dev cluster's release's spelling (v1.35 on)."""
    if minor >= 37:
        return Spelling("v1beta1", "PodGroupInitiallyScheduled")
    if minor == 36:
        return Spelling("v1alpha2", "PodGroupScheduled")
    return Spelling("v1alpha1", None)


API = spelling(binaries.kubernetes_minor())


def member(name: str, group: str, *, pool: str) -> dict[str, Any]:
    return pod(name, cpu="3", memory="1Gi", nodeSelector={"pool": pool}, **API.reference(group))


async def bound(kc: KubeClient, namespace: str, prefix: str) -> set[str]:
    return {
        n for n, p in (await pods(kc, namespace)).items()
        if n.startswith(prefix) and p["spec"].get("nodeName")
    }  # fmt: skip


async def condition(kc: KubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    obj = await kc.get(f"{API.collection(namespace)}/{name}")
    found = [c for c in obj.get("status", {}).get("conditions", []) if c["type"] == API.condition]
    return found[0] if found else None


def test_each_release_has_its_spelling() -> None:
    """v1.35 names a Workload's group with workloadRef; v1.36 and v1.37 a PodGroup."""
    old = spelling(35)
    assert old.reference("g") == {"workloadRef": {"name": "g", "podGroup": "members"}}
    assert old.group("g", {"basic": {}})["spec"] == {
        "podGroups": [{"name": "members", "policy": {"basic": {}}}]
    }
    assert spelling(36).collection("ns").endswith("v1alpha2/namespaces/ns/podgroups")
    assert spelling(37).reference("g") == {"schedulingGroup": {"podGroupName": "g"}}


async def test_native_gang_binds_all_or_nothing_and_records_its_condition(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """minCount 3 with room for 2: none bind, an Event and the condition (where the release
    has one) say why; a third node lets all 3 bind together and the condition turns True."""
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=f"ng-{i}", cpu="4", labels={"pool": "ng"}) for i in range(2)]
    )
    await nodes.wait_ready(kc, ["ng-0", "ng-1"])
    await run_scheduler()
    await kc.post(API.collection(namespace), API.group("train", {"gang": {"minCount": 3}}))
    for i in range(3):
        created = await kc.post(
            f"/api/v1/namespaces/{namespace}/pods", member(f"t-{i}", "train", pool="ng")
        )
        # The server keeps the reference: this release serves the field the test means.
        assert API.reference("train").items() <= created["spec"].items(), created["spec"]

    async def explained() -> list[dict[str, Any]]:
        evs = []
        for i in range(3):
            evs += await events_for(kc, namespace, f"t-{i}")
        return [e for e in evs if "members were placed" in str(e.get("note"))]

    (event, *_) = await eventually(explained, timeout=30)
    group = f"{namespace}/train/members" if API.workloads else f"{namespace}/train"
    source = (
        f"Workload {namespace}/train podGroup 'members'"
        if API.workloads
        else f"PodGroup {namespace}/train"
    )
    assert f"pod group {group}: " in event["note"]
    assert f"(min-available 3 from gang minCount of {source})" in event["note"]
    assert "all reservations released" in event["note"]

    async def unschedulable() -> dict[str, Any] | None:
        c = await condition(kc, namespace, "train")
        return c if c is not None and c["status"] == "False" else None

    if API.condition is not None:
        failed = await eventually(unschedulable, timeout=30)
        assert failed["reason"] == "Unschedulable"
        assert "members were placed" in failed["message"]
    await asyncio.sleep(1.0)
    assert await bound(kc, namespace, "t-") == set()  # never a partial gang

    await nodes.create_nodes(kc, [nodes.NodeSpec(name="ng-2", cpu="4", labels={"pool": "ng"})])

    async def all_bound() -> bool:
        return len(await bound(kc, namespace, "t-")) == 3

    await eventually(all_bound, timeout=40)
    if API.condition is None:
        return  # a v1alpha1 Workload has no status to write the outcome to

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
    await kc.post(API.collection(namespace), API.group("web", {"basic": {}}))
    for i in range(3):
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", member(f"b-{i}", "web", pool="nb"))

    async def two_bound() -> bool:
        return len(await bound(kc, namespace, "b-")) == 2

    await eventually(two_bound, timeout=30)
    await asyncio.sleep(1.0)
    assert len(await bound(kc, namespace, "b-")) == 2
    if API.condition is not None:
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
    await kc.post(API.collection(namespace), API.group("later", {"gang": {"minCount": 1}}))

    async def one_bound() -> bool:
        return await bound(kc, namespace, "m-") == {"m-0"}

    await eventually(one_bound, timeout=30)
