"""Kubernetes' own PodGroups as lasched groups: gang all-or-nothing, basic one by one."""

from __future__ import annotations

import asyncio

from lasched.framework import events
from lasched.framework.interface import Code, CycleState, unschedulable
from lasched.model.nativegroup import NativeGroup, Policy
from lasched.model.pod import PodInfo
from lasched.model.podgroup import GroupDecl
from lasched.plugins.coscheduling import Coscheduling, Group, _group_hint
from tests.unit.factories import make_pod
from tests.unit.test_coscheduling import Harness


def native_member(group: str, i: int) -> PodInfo:
    return make_pod(f"{group}-{i}", schedulingGroup={"podGroupName": group})


def podgroup(name: str, policy: dict[str, object]) -> NativeGroup:
    return NativeGroup(
        {
            "kind": "PodGroup",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
            "spec": {"schedulingPolicy": policy},
        }
    )


class NativeHarness(Harness):
    """The gang plugin reading native PodGroups from a dict, recording each outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, NativeGroup] = {}
        self.outcomes: list[tuple[str, bool, str]] = []
        self.gang = Coscheduling(
            clock=self.clock,
            room=self.room,
            node_of=self.cache.node_of,
            native=self._lookup,
            on_outcome=self._outcome,
            default_timeout=30,
            timers=self.timers,
        )

    def _lookup(self, decl: GroupDecl) -> Policy | None:
        obj = self.objects.get(decl.ref or "")
        return obj.policy(decl.template) if obj is not None else None

    def _outcome(self, g: Group, scheduled: bool, message: str) -> None:
        self.outcomes.append((g.key, scheduled, message))


def test_members_wait_for_their_podgroup_to_exist() -> None:
    """A member naming a PodGroup not yet seen is gated with the PodGroup named."""
    h = NativeHarness()
    pods = [native_member("train", i) for i in range(3)]
    h.add(*pods)
    st = h.gang.pre_enqueue(pods[0])
    assert st.code is Code.UNSCHEDULABLE
    assert "waiting for PodGroup default/train to exist" in st.message
    h.objects["default/train"] = podgroup("train", {"gang": {"minCount": 3}})
    assert h.gang.pre_enqueue(pods[0]).ok


def test_a_gang_podgroup_gates_until_min_count_members_exist() -> None:
    """minCount is min-available: fewer members wait, naming where the size came from."""
    h = NativeHarness()
    h.objects["default/train"] = podgroup("train", {"gang": {"minCount": 3}})
    a, b = native_member("train", 0), native_member("train", 1)
    h.add(a, b)
    st = h.gang.pre_enqueue(a)
    assert st.code is Code.UNSCHEDULABLE
    assert "2 of 3 members exist (min-available 3 from gang minCount of PodGroup" in st.message


async def test_a_gang_podgroup_binds_all_or_nothing_and_records_the_outcome() -> None:
    """Members wait at Permit until minCount are placed; the outcome is recorded True."""
    h = NativeHarness()
    h.objects["default/train"] = podgroup("train", {"gang": {"minCount": 3}})
    pods = [native_member("train", i) for i in range(3)]
    h.add(*pods)
    assert h.reserve_and_permit(pods[0]) is Code.WAIT
    assert h.reserve_and_permit(pods[1]) is Code.WAIT
    assert h.reserve_and_permit(pods[2]) is Code.SUCCESS
    for p in pods[:2]:
        wp = h.room.get(p.key)
        assert wp is not None and (await wp.result()).ok
    assert h.outcomes == [
        ("default/train", True, "3 of 3 members placed (min-available 3 from gang minCount "
         "of PodGroup default/train)"),
    ]  # fmt: skip


async def test_a_gang_member_that_fits_nowhere_records_the_failure() -> None:
    """A failed round releases every member and records False with the reason."""
    h = NativeHarness()
    h.objects["default/train"] = podgroup("train", {"gang": {"minCount": 3}})
    pods = [native_member("train", i) for i in range(3)]
    h.add(*pods)
    h.reserve_and_permit(pods[0])
    _, st = h.gang.post_filter(CycleState(), pods[1], {"n1": unschedulable("Insufficient cpu")})
    assert "1 of 3 members were placed" in st.message
    verdict = await asyncio.wait_for(h.room.get(pods[0].key).result(), 1)  # type: ignore[union-attr]
    assert verdict.code is Code.UNSCHEDULABLE
    assert [(k, ok) for k, ok, _ in h.outcomes] == [("default/train", False)]
    assert "fits no node (1 Insufficient cpu)" in h.outcomes[0][2]


def test_a_basic_podgroup_schedules_members_one_by_one() -> None:
    """A basic policy is no gang: no gate, no holder, no waiting at Permit."""
    h = NativeHarness()
    h.objects["default/web"] = podgroup("web", {"basic": {}})
    pods = [native_member("web", i) for i in range(3)]
    h.add(pods[0])
    assert h.gang.pre_enqueue(pods[0]).ok
    assert h.reserve_and_permit(pods[0]) is Code.SUCCESS
    assert h.gang.holder is None
    g = h.gang.group_of(pods[0])
    assert g is not None and h.gang.gang_of(pods[0]) is None
    assert not h.gang.all_or_nothing(g)
    assert h.gang.size_source(g) == "basic policy of PodGroup default/web"
    assert h.outcomes == []


def test_an_unreadable_policy_keeps_members_waiting_with_the_field() -> None:
    """A PodGroup whose policy cannot be read gates its members, naming the field."""
    h = NativeHarness()
    h.objects["default/train"] = podgroup("train", {"gang": {"minCount": 0}})
    pod = native_member("train", 0)
    h.add(pod)
    st = h.gang.pre_enqueue(pod)
    assert st.code is Code.UNSCHEDULABLE
    assert "spec.schedulingPolicy.gang.minCount=0" in st.message


def test_a_workload_ref_member_reads_its_workloads_podgroup() -> None:
    """v1.35: a pod's workloadRef finds the policy of the Workload's podGroup."""
    h = NativeHarness()
    h.objects["default/job"] = NativeGroup(
        {
            "kind": "Workload",
            "metadata": {"name": "job", "namespace": "default"},
            "spec": {"podGroups": [{"name": "w", "policy": {"gang": {"minCount": 2}}}]},
        }
    )
    pods = [make_pod(f"w-{i}", workloadRef={"name": "job", "podGroup": "w"}) for i in range(2)]
    h.add(pods[0])
    st = h.gang.pre_enqueue(pods[0])
    assert "default/job/w: 1 of 2 members exist" in st.message
    h.add(pods[1])
    assert h.gang.pre_enqueue(pods[0]).ok


def test_mixing_native_and_label_spellings_is_a_disagreement() -> None:
    """A group named both by spec.schedulingGroup and by labels is held back."""
    h = NativeHarness()
    h.objects["default/train"] = podgroup("train", {"gang": {"minCount": 2}})
    native = native_member("train", 0)
    labelled = make_pod(
        "train-l", labels={"lasched.io/pod-group": "train", "lasched.io/min-available": "2"}
    )
    h.add(native, labelled)
    st = h.gang.pre_enqueue(native)
    assert st.code is Code.UNSCHEDULABLE
    assert "spec.schedulingGroup" in st.message


def test_a_native_object_change_moves_its_members_only() -> None:
    """The queueing hint matches a PodGroup object to the members that name it."""
    pod = native_member("train", 0)
    mine, other = podgroup("train", {"basic": {}}), podgroup("other", {"basic": {}})
    assert _group_hint(pod, None, mine) is events.QUEUE
    assert _group_hint(pod, None, other) is events.SKIP
