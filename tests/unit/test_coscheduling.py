"""Gangs reserve all-or-nothing, one group at a time, with timeouts in virtual time."""

from __future__ import annotations

import asyncio

import pytest

from lasched.cache.cache import SchedulerCache
from lasched.framework import events
from lasched.framework.interface import Code, CycleState, unschedulable
from lasched.framework.waiting import WaitingRoom
from lasched.model.pod import PodInfo
from lasched.model.podgroup import declared_group
from lasched.plugins.coscheduling import Coscheduling, Group
from lasched.scheduler import group_nodes
from lasched.timers import TimerHeap
from tests.unit.factories import make_node, make_pod, pod_json


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def member(group: str, i: int, minimum: int = 3, timeout: str | None = None) -> PodInfo:
    labels = {"lasched.io/pod-group": group, "lasched.io/min-available": str(minimum)}
    if timeout:
        labels["lasched.io/timeout-seconds"] = timeout
    p = make_pod(f"{group}-{i}", labels=labels)
    p.group = declared_group(p.namespace, p.labels, p.annotations)
    return p


class Harness:
    """The plugin with a real cache and waiting room, driven like the scheduler drives it:
    deadlines on one timer heap, fired in virtual time."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.timers = TimerHeap(self.clock)
        self.cache = SchedulerCache()
        for i in range(10):
            self.cache.add_node(make_node(f"n{i}"))
        self.room = WaitingRoom(timers=self.timers)
        self.released: list[str] = []
        self.gang = Coscheduling(
            clock=self.clock,
            room=self.room,
            node_of=self.cache.node_of,
            on_release=self._released,
            default_timeout=30,
            timers=self.timers,
        )

    def _released(self, group: Group) -> None:
        self.released.append(group.key)

    def add(self, *pods: PodInfo) -> None:
        for p in pods:
            self.gang.pod_added(p)

    def reserve_and_permit(self, pod: PodInfo, node: str = "n0") -> Code:
        """PreFilter, assume, Reserve and Permit; a WAIT puts it in the room."""
        st = CycleState()
        pre = self.gang.pre_filter(st, pod)
        if pre.code is Code.UNSCHEDULABLE:
            return pre.code
        assumed = self.cache.assume(pod, node)
        assert self.gang.reserve(st, assumed, node).ok
        verdict = self.gang.permit(st, assumed, node)
        if verdict.code is Code.WAIT:
            self.room.add(assumed, node, {self.gang.name: verdict.timeout})
        return verdict.code


def test_gated_until_min_available_members_exist() -> None:
    """PreEnqueue holds a group back until min-available members exist."""
    h = Harness()
    a, b, c = (member("g", i) for i in range(3))
    h.add(a, b)
    st = h.gang.pre_enqueue(a)
    assert st.code is Code.UNSCHEDULABLE
    assert "2 of 3 members exist" in st.message
    h.add(c)
    assert h.gang.pre_enqueue(a).ok


async def test_all_bind_once_min_available_are_placed() -> None:
    """Members wait at Permit until the last of min-available arrives, then all go."""
    h = Harness()
    pods = [member("g", i) for i in range(3)]
    h.add(*pods)
    assert h.reserve_and_permit(pods[0]) is Code.WAIT
    assert h.reserve_and_permit(pods[1]) is Code.WAIT
    assert h.reserve_and_permit(pods[2]) is Code.SUCCESS
    for p in pods[:2]:
        wp = h.room.get(p.key)
        assert wp is not None
        assert (await wp.result()).ok
    assert h.gang.holder is None


async def test_one_group_reserves_at_a_time() -> None:
    """While group A holds reservations, group B cannot start reserving: no deadlock."""
    h = Harness()
    a = [member("a", i) for i in range(3)]
    b = [member("b", i) for i in range(3)]
    h.add(*a, *b)
    assert h.reserve_and_permit(a[0]) is Code.WAIT
    st = h.gang.pre_filter(CycleState(), b[0])
    assert st.code is Code.UNSCHEDULABLE
    assert "waits for pod group default/a" in st.message


async def test_the_group_next_in_line_is_handed_back_when_the_holder_is_done() -> None:
    """take_turn returns the members of one group turned away while another held: the
    next in line (highest priority, then oldest member); the others at later calls. A
    group backing off after its own failure is not in line."""
    h = Harness()
    a, b, c, d, e = ([member(x, i) for i in range(3)] for x in "abcde")
    for i, p in enumerate(b):
        p.created = 20.0 + i
    for i, p in enumerate(d):
        p.created = 10.0 + i  # d's members are older than b's
    for p in e:
        p.created = 30.0
        p.priority = 100  # e is younger, but has the higher priority
    h.add(*a, *b, *c, *d, *e)
    h.gang.groups["default/c"].backoff_until = h.clock.t + 5  # c failed a round before
    assert h.reserve_and_permit(a[0]) is Code.WAIT
    for p in (b[0], b[1], c[0], d[0], e[0]):
        assert h.gang.pre_filter(CycleState(), p).code is Code.UNSCHEDULABLE
    assert h.reserve_and_permit(a[1]) is Code.WAIT
    assert h.reserve_and_permit(a[2]) is Code.SUCCESS  # a is permitted: the hold ends
    assert h.released == ["default/a"]
    assert sorted(h.gang.take_turn()) == ["default/e-0", "default/e-1", "default/e-2"]
    assert sorted(h.gang.take_turn()) == ["default/d-0", "default/d-1", "default/d-2"]
    assert sorted(h.gang.take_turn()) == ["default/b-0", "default/b-1", "default/b-2"]
    assert h.gang.take_turn() == []  # c backs off; each group handed back once


async def test_a_group_whose_backoff_room_freed_ended_is_in_line() -> None:
    """Room freed after a group's failed round ends its backoff (PreFilter lets it try):
    turned away by a holder after that, it is handed back like any other group."""
    h = Harness()
    a, c = ([member(x, i) for i in range(3)] for x in "ac")
    h.add(*a, *c)
    g = h.gang.groups["default/c"]
    g.failed_at, g.backoff_until = h.clock.t, h.clock.t + 5
    assert "backs off" in h.gang.pre_filter(CycleState(), c[0]).message
    h.clock.t += 1
    h.gang.room_freed()
    assert h.reserve_and_permit(a[0]) is Code.WAIT
    assert "waits for pod group default/a" in h.gang.pre_filter(CycleState(), c[0]).message
    for p in a[1:]:
        h.reserve_and_permit(p)
    assert h.released == ["default/a"]
    assert sorted(h.gang.take_turn()) == ["default/c-0", "default/c-1", "default/c-2"]


async def test_timeout_releases_every_member_at_once() -> None:
    """At the group's deadline all waiting members are rejected with one explanation."""
    h = Harness()
    pods = [member("g", i, minimum=3, timeout="10") for i in range(3)]
    h.add(*pods)
    h.reserve_and_permit(pods[0])
    h.clock.t += 1.0
    h.reserve_and_permit(pods[1])  # its own Permit deadline is the group's, too
    h.clock.t = 109.9
    assert h.timers.fire_due() == 0
    assert not h.room.get(pods[0].key).resolved  # type: ignore[union-attr]
    h.clock.t = 110.0  # exactly the group's deadline: 10 s after the first reservation
    h.timers.fire_due()
    verdicts = [await h.room.get(p.key).result() for p in pods[:2]]  # type: ignore[union-attr]
    for v in verdicts:
        assert v.code is Code.UNSCHEDULABLE
        assert "2 of 3 members were placed" in v.message
        assert "timed out after 10 s" in v.message  # the group's message, not a pod's own
    assert h.gang.holder is None
    assert h.released == ["default/g"]
    assert len(h.timers) == 0  # the members' own deadlines went with them


async def test_a_group_that_is_permitted_cancels_its_deadline() -> None:
    """No timeout fires for a group that was permitted in time."""
    h = Harness()
    pods = [member("g", i, minimum=2, timeout="10") for i in range(2)]
    h.add(*pods)
    h.reserve_and_permit(pods[0])
    assert h.reserve_and_permit(pods[1]) is Code.SUCCESS
    assert (await h.room.get(pods[0].key).result()).ok  # type: ignore[union-attr]
    assert len(h.timers) == 0


async def test_a_member_that_fits_nowhere_releases_the_group() -> None:
    """PostFilter for a member rejects the waiting ones and says why."""
    h = Harness()
    pods = [member("g", i) for i in range(3)]
    h.add(*pods)
    h.reserve_and_permit(pods[0])
    _, st = h.gang.post_filter(CycleState(), pods[1], {"n1": unschedulable("Insufficient cpu")})
    assert "fits no node (1 Insufficient cpu)" in st.message
    verdict = await asyncio.wait_for(h.room.get(pods[0].key).result(), 1)  # type: ignore[union-attr]
    assert verdict.code is Code.UNSCHEDULABLE


def test_members_disagreeing_on_min_available_stay_gated() -> None:
    """Members that disagree are held back with a reason naming both values."""
    h = Harness()
    h.add(member("g", 0, minimum=2), member("g", 1, minimum=3))
    st = h.gang.pre_enqueue(member("g", 0, minimum=2))
    assert "disagree on min-available (2, 3)" in st.message


def test_annotation_group_settles_before_counting() -> None:
    """'All members seen' waits for arrivals to pause, then requires them all."""
    h = Harness()
    pods = []
    for i in range(2):
        body = pod_json(f"w-{i}")
        body["metadata"]["annotations"] = {"pod-group": "old"}
        p = PodInfo(body)
        p.group = declared_group(p.namespace, p.labels, p.annotations)
        pods.append(p)
    h.add(*pods)
    assert h.gang.pre_enqueue(pods[0]).code is Code.UNSCHEDULABLE
    g = h.gang.group_of(pods[0])
    assert g is not None
    assert h.gang.settles_at(g) == h.clock.t + h.gang.settle_seconds  # a timed recheck then
    h.clock.t += 2.5
    assert h.gang.pre_enqueue(pods[0]).ok
    assert h.gang.settles_at(g) is None
    g = h.gang.group_of(pods[0])
    assert g is not None
    assert h.gang.required(g) == 2


@pytest.mark.parametrize("extra", [1, 2])
async def test_members_beyond_min_available_bind_directly(extra: int) -> None:
    """Once the group was permitted, later members need not wait."""
    h = Harness()
    pods = [member("g", i, minimum=2) for i in range(2 + extra)]
    h.add(*pods)
    h.reserve_and_permit(pods[0])
    assert h.reserve_and_permit(pods[1]) is Code.SUCCESS
    for p in pods[2:]:
        assert h.reserve_and_permit(p) is Code.SUCCESS


async def test_a_failed_group_backs_off_as_a_unit() -> None:
    """After a failed round the whole group waits 1 s, then 2 s, ... so others get a turn."""
    h = Harness()
    pods = [member("g", i) for i in range(3)]
    h.add(*pods)
    for round_, pause in ((1, 1.0), (2, 2.0)):
        h.reserve_and_permit(pods[0])
        h.gang.post_filter(CycleState(), pods[1], {"n1": unschedulable("Insufficient cpu")})
        h.cache.forget(pods[0])
        st = h.gang.pre_filter(CycleState(), pods[2])
        assert st.code is Code.UNSCHEDULABLE, round_
        assert "backs off" in st.message
        h.clock.t += pause + 0.01
        assert h.gang.pre_filter(CycleState(), pods[2]).code is Code.SKIP
        h.room.remove(pods[0].key)


async def test_room_freed_after_a_failed_round_ends_the_groups_backoff() -> None:
    """A bound pod deleted (or a node added) after a group's round failed lets the group
    try again at once; room freed before the failure does not, and the backoff still
    grows with each failed round."""
    h = Harness()
    pods = [member("g", i) for i in range(3)]
    h.add(*pods)

    def fail_a_round() -> None:
        h.reserve_and_permit(pods[0])
        h.gang.post_filter(CycleState(), pods[1], {"n1": unschedulable("Insufficient cpu")})
        h.cache.forget(pods[0])
        h.room.remove(pods[0].key)

    h.gang.room_freed()  # before the failure: no help
    h.clock.t += 0.1
    fail_a_round()
    assert h.gang.pre_filter(CycleState(), pods[2]).code is Code.UNSCHEDULABLE
    h.clock.t += 0.1
    h.gang.room_freed()
    assert h.gang.pre_filter(CycleState(), pods[2]).code is Code.SKIP
    fail_a_round()  # the second failure in a row: 2 s
    st = h.gang.pre_filter(CycleState(), pods[2])
    assert st.code is Code.UNSCHEDULABLE and "backs off for 2.0 s" in st.message


async def test_room_freed_brings_back_the_members_of_groups_backing_off_only() -> None:
    """Room freed (a bound pod's deletion, a node's addition) returns, for the queue to
    activate, the members of the groups whose failed round's backoff it ends: not other
    groups' members, and each group once however many deletions follow."""
    h = Harness()
    failing = [member("g", i) for i in range(2)]
    waiting = member("w", 0)
    h.add(*failing, waiting)
    h.reserve_and_permit(failing[0])
    h.gang.post_filter(CycleState(), failing[1], {"n1": unschedulable("Insufficient cpu")})
    h.cache.forget(failing[0])
    h.room.remove(failing[0].key)
    h.clock.t += 0.1
    assert sorted(h.gang.room_freed()) == ["default/g-0", "default/g-1"]
    assert h.gang.room_freed() == []  # the rest of a burst of deletions
    assert h.gang.pre_filter(CycleState(), failing[1]).code is Code.SKIP
    registered = {r.event for r in h.gang.events_to_register()}
    assert events.ASSIGNED_POD_DELETE not in registered  # no hint per parked pod and deletion


async def test_deleting_a_waiting_member_releases_the_group() -> None:
    """A member deleted while waiting ends the round: the others are released too."""
    h = Harness()
    pods = [member("g", i) for i in range(3)]
    h.add(*pods)
    h.reserve_and_permit(pods[0])
    h.reserve_and_permit(pods[1])
    gone = h.room.get(pods[1].key)
    assert gone is not None
    gone.reject("", "the pod was deleted")  # what the pod informer's delete does
    h.gang.pod_deleted(pods[1])
    h.gang.unreserve(CycleState(), pods[1], "n0")  # the binding cycle's cleanup
    other = h.room.get(pods[0].key)
    assert other is not None
    verdict = await asyncio.wait_for(other.result(), 1)
    assert "member g-1 was not bound" in verdict.message
    assert h.gang.holder is None


def _leaving(pod: PodInfo) -> PodInfo:
    """The same member with a deletionTimestamp: terminating."""
    body = pod_json(pod.name, labels=dict(pod.labels))
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    p = PodInfo(body)
    p.group = pod.group
    return p


async def _placed_group(h: Harness, pods: list[PodInfo]) -> None:
    h.add(*pods)
    for i, p in enumerate(pods):
        code = h.reserve_and_permit(p, node=f"n{i}")
        assert code is (Code.SUCCESS if i == len(pods) - 1 else Code.WAIT)
    g = h.gang.group_of(pods[0])
    assert g is not None and g.permitted


async def test_replacements_of_deleted_members_are_all_or_nothing_again() -> None:
    """A permitted group whose members are deleted below min-available (its controller
    replaces them) places the replacements together, not one by one."""
    h = Harness()
    first = [member("g", i) for i in range(3)]
    await _placed_group(h, first)
    for p in first[1:]:
        h.cache.forget(p)
        h.gang.pod_deleted(p)
    g = h.gang.group_of(first[0])
    assert g is not None and not g.permitted
    new = [member("g", i) for i in (3, 4)]
    h.add(*new)
    assert h.reserve_and_permit(new[0], node="n5") is Code.WAIT
    assert h.reserve_and_permit(new[1], node="n6") is Code.SUCCESS
    assert g.permitted


async def test_terminating_members_do_not_count_toward_min_available() -> None:
    """Members on their way out (a deletionTimestamp) no longer keep the group admitted:
    replacements created while they terminate wait for each other."""
    h = Harness()
    first = [member("g", i) for i in range(3)]
    await _placed_group(h, first)
    for p in first:
        h.add(_leaving(p))
    g = h.gang.group_of(first[0])
    assert g is not None and not g.permitted and h.gang.placed(g) == 0
    new = [member("g", i) for i in (3, 4, 5)]
    h.add(*new)
    assert h.reserve_and_permit(new[0], node="n5") is Code.WAIT
    assert h.reserve_and_permit(new[1], node="n6") is Code.WAIT
    assert h.reserve_and_permit(new[2], node="n7") is Code.SUCCESS


async def test_a_member_replaced_while_min_available_stay_placed_binds_at_once() -> None:
    """Beyond min-available, a member deleted and replaced leaves the group admitted."""
    h = Harness()
    pods = [member("g", i, minimum=2) for i in range(3)]
    await _placed_group(h, pods[:2])
    h.add(pods[2])
    assert h.reserve_and_permit(pods[2], node="n2") is Code.SUCCESS
    h.cache.forget(pods[0])
    h.gang.pod_deleted(pods[0])
    g = h.gang.group_of(pods[1])
    assert g is not None and g.permitted
    again = member("g", 9, minimum=2)
    h.add(again)
    assert h.reserve_and_permit(again, node="n3") is Code.SUCCESS


async def test_a_terminating_member_no_longer_bounds_where_the_others_go() -> None:
    """The nodes a gang's RTT budget is measured from are those of its members staying."""
    h = Harness()
    pods = [member("g", i) for i in range(3)]
    await _placed_group(h, pods)
    newcomer = member("g", 7)
    h.add(newcomer)
    assert group_nodes(h.cache, h.gang, newcomer) == {"n0", "n1", "n2"}
    h.add(_leaving(pods[0]))
    assert group_nodes(h.cache, h.gang, newcomer) == {"n1", "n2"}


async def test_a_gangs_disruption_budget_is_its_members_beyond_min_available() -> None:
    """What preemption weighs: a gang at min-available may lose none without breaking."""
    h = Harness()
    pods = [member("g", i, minimum=2) for i in range(3)]
    await _placed_group(h, pods[:2])
    assert h.gang.disruption_budget(pods[0]) == ("default/g", 0)
    h.add(pods[2])
    assert h.reserve_and_permit(pods[2], node="n2") is Code.SUCCESS
    assert h.gang.disruption_budget(pods[0]) == ("default/g", 1)
    assert h.gang.disruption_budget(make_pod("loner")) is None


async def test_members_rejected_but_not_yet_forgotten_do_not_count_as_placed() -> None:
    """After a failed round, its rejected members stay assumed until their binding cycles
    run. A new round that starts before that (room freed brings the group back at once)
    must not count them: permitted on them, it would bind part of the group only."""
    h = Harness()
    pods = [member("g", i) for i in range(3)]
    h.add(*pods)
    assert h.reserve_and_permit(pods[0], "n0") is Code.WAIT
    assert h.reserve_and_permit(pods[1], "n1") is Code.WAIT
    h.gang.post_filter(CycleState(), pods[2], {"n2": unschedulable("Insufficient cpu")})
    # pods 0 and 1 are rejected in the waiting room, still assumed in the cache.
    h.clock.t += 0.1
    assert sorted(h.gang.room_freed()) == ["default/g-0", "default/g-1", "default/g-2"]
    assert h.reserve_and_permit(pods[2], "n2") is Code.WAIT  # 1 of 3 placed, not 3
    group = h.gang.group_of(pods[2])
    assert group is not None and not group.permitted
