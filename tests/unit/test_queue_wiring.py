"""The queue as the scheduler builds and feeds it: settings, informer updates, and the
moves no informer event marks (a pod group's backoff ending, a preemptor's room freed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio.client import Configuration

from lasched.framework.interface import Code, CycleState, Status
from lasched.kube import statuswriter
from lasched.kube.client import KubeClient
from lasched.model.pod import PodInfo
from lasched.queue.queue import QueueOptions, QueueState, SchedulingQueue
from lasched.scheduler import Scheduler
from lasched.settings import ConfigError, Settings, parse
from tests.unit.factories import make_node, make_pod, pod_json
from tests.unit.test_queue import own_status_write


def member(name: str, *, group: str, minimum: int) -> PodInfo:
    body = pod_json(name)
    body["metadata"]["labels"] = {
        "lasched.io/pod-group": group,
        "lasched.io/min-available": str(minimum),
    }
    return PodInfo(body)


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    ("yaml_value", "expected"),
    [(None, 600.0), (30, 30.0), (0, None)],
    ids=["default", "set", "zero-is-off"],
)
async def test_starvation_setting_reaches_the_queue(
    yaml_value: float | None, expected: float | None
) -> None:
    """queue.agingStarvationSeconds becomes the queue's starvation age; 0 turns it off."""
    queue = {} if yaml_value is None else {"agingStarvationSeconds": yaml_value}
    settings = parse({"queue": queue})
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        sched = Scheduler(client, settings)
        assert sched.queue.options.starvation_seconds == expected
    finally:
        await client.close()


def test_a_negative_starvation_age_is_refused_by_name() -> None:
    """The error names the field and the value."""
    with pytest.raises(ConfigError, match=r"queue.agingStarvationSeconds must be >= 0.0, not -1"):
        parse({"queue": {"agingStarvationSeconds": -1}})


@pytest.fixture
async def sched() -> AsyncIterator[Scheduler]:
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        yield Scheduler(client, Settings())
    finally:
        await client.close()


async def test_the_informer_bringing_back_our_status_write_does_not_retry_the_pod(
    sched: Scheduler,
) -> None:
    """PodEvents.on_update with lasched's own PodScheduled=False leaves the pod parked."""
    handler = sched.pod_events
    pending = make_pod("q1")
    handler.on_add(pending)
    qp = await sched.queue.pop()
    sched.queue.requeue_unschedulable(qp, reason="0/3 nodes are available: 3 Insufficient cpu.")
    written = own_status_write("q1", rv="2")
    handler.on_update(pending, written)
    handler.on_update(written, own_status_write("q1", rv="3", nominated="n1"))
    assert qp.where is QueueState.UNSCHEDULABLE
    handler.on_update(written, make_pod("q1", rv="4", cpu="10m"))  # its requests lowered
    assert qp.where in (QueueState.ACTIVE, QueueState.BACKOFF)


async def test_members_parked_during_their_groups_backoff_are_moved_when_it_ends() -> None:
    """Members parked while their failed group backs off are tried again when it ends."""
    clock = FakeClock(time.monotonic())
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        sched = Scheduler(client, Settings(), clock=clock)
        members = [member(f"m{i}", group="train", minimum=2) for i in range(2)]
        for m in members:
            sched.pod_events.on_add(m)
        group = sched.gang.group_of(members[0])
        assert group is not None
        group.backoff_until = clock.t + 5.0  # a round of the group has just failed
        sched.cycle.gang_released(group)
        for _ in members:
            qp = await sched.queue.pop()
            sched.queue.requeue_unschedulable(qp, reason=f"pod group {group.key} backs off")
        assert sched.queue.counts()["unschedulable"] == 2
        clock.t += 4.9
        sched.timers.fire_due()
        assert sched.queue.counts()["unschedulable"] == 2
        clock.t += 0.2
        sched.timers.fire_due()
        assert sched.queue.counts()["active"] == 2
    finally:
        await client.close()


async def test_room_freed_brings_a_failed_groups_members_back_at_once() -> None:
    """A bound pod deleted after a group's round failed: its members, parked with the
    queue backoff their failed attempts earned, go to activeQ at once."""
    clock = FakeClock(time.monotonic())
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        sched = Scheduler(client, Settings(), clock=clock)
        sched.cache.add_node(make_node("n0"))
        old = make_pod("old", node="n0")
        sched.pod_events.on_add(old)
        members = [member(f"m{i}", group="train", minimum=2) for i in range(2)]
        for m in members:
            sched.pod_events.on_add(m)
        group = sched.gang.group_of(members[0])
        assert group is not None
        sched.gang.holder = group.key
        sched.gang._release(group, failed=True)  # its round failed: it backs off
        for _ in members:
            qp = await sched.queue.pop()
            qp.attempts = 6  # a queue backoff of 10 s of its own
            sched.queue.requeue_unschedulable(
                qp, reason=f"pod group {group.key} backs off", plugins=("Coscheduling",)
            )
        assert sched.queue.counts()["unschedulable"] == 2
        clock.t += 0.5
        sched.pod_events.on_delete(old)
        assert sched.queue.counts()["active"] == 2
    finally:
        await client.close()


async def test_a_group_that_starts_holding_activates_its_backing_off_members() -> None:
    """When a member reserves (its group now holds), its siblings leave backoff at once:
    a backoff earned while other groups held must not keep this one holding, idle."""
    clock = FakeClock(time.monotonic())
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        sched = Scheduler(client, Settings(), clock=clock)
        sched.cache.add_node(make_node("n0"))
        members = [member(f"m{i}", group="train", minimum=3) for i in range(3)]
        for m in members:
            sched.pod_events.on_add(m)
        tried = [await sched.queue.pop() for _ in members]
        for qp in tried[1:]:  # lost the turn to other groups, many times
            qp.attempts += 5
            sched.queue.requeue_error(qp, reason="waits for another pod group")
        assert sched.queue.counts()["backoff"] == 2
        first = sched.cache.assume(tried[0].pod, "n0")
        assert sched.gang.reserve(CycleState(), first, "n0").ok
        assert sched.gang.holder == "default/train"
        assert sched.queue.counts()["active"] == 2
        assert sorted([(await sched.queue.pop()).pod.name for _ in range(2)]) == ["m1", "m2"]
    finally:
        await client.close()


async def test_a_group_turned_away_by_a_holder_goes_to_active_when_the_hold_ends() -> None:
    """Members turned away only because another group held skip the backoff that cost
    them: in a burst their users' nodes would fill meanwhile."""
    clock = FakeClock(time.monotonic())
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        sched = Scheduler(client, Settings(), clock=clock)
        sched.cache.add_node(make_node("n0"))
        first = [member(f"a{i}", group="first", minimum=2) for i in range(2)]
        second = [member(f"b{i}", group="second", minimum=2) for i in range(2)]
        for m in (*first, *second):
            sched.pod_events.on_add(m)
        popped = {qp.pod.name: qp for qp in [await sched.queue.pop() for _ in range(4)]}
        holder = sched.cache.assume(popped["a0"].pod, "n0")
        assert sched.gang.reserve(CycleState(), holder, "n0").ok
        for name in ("b0", "b1"):
            qp = popped[name]
            st = sched.gang.pre_filter(CycleState(), qp.pod)
            assert "waits for pod group default/first" in st.message
            qp.attempts += 3
            sched.queue.requeue_unschedulable(qp, reason=st.message, plugins={"Coscheduling"})
        assert sched.queue.counts()["unschedulable"] == 2
        group = sched.gang.group_of(first[0])
        assert group is not None
        sched.gang.holder = None  # the hold ends (permitted or failed)
        sched.cycle.gang_released(group)
        for m in second:
            back = sched.queue.get(m.key)
            assert back is not None
            assert back.where is QueueState.ACTIVE
    finally:
        await client.close()


async def test_a_timed_move_selects_pods_and_a_later_one_replaces_it() -> None:
    """move_at moves the selected parked pods when due; the same key moves the deadline."""
    clock = FakeClock(1000.0)
    q = SchedulingQueue(QueueOptions(backoff_jitter=0.0), clock=clock)
    for name in ("a", "b"):
        q.add(make_pod(name))
        q.requeue_unschedulable(await q.pop(), reason="no fit")
    q.move_at(1010.0, lambda p: p.name == "a", key="k")
    q.move_at(1020.0, lambda p: p.name == "a", key="k")
    clock.t = 1015.0
    q.timers.fire_due()
    assert q.counts()["unschedulable"] == 2
    clock.t = 1020.0
    q.timers.fire_due()
    counts = q.counts()
    assert (counts["active"], counts["unschedulable"]) == (1, 1)


async def test_deleting_a_pending_preemptor_frees_the_room_held_for_it(sched: Scheduler) -> None:
    """The room held on its nominated node frees when it is deleted: parked pods try again."""
    handler = sched.pod_events
    handler.on_add(make_pod("waiting"))
    sched.queue.requeue_unschedulable(await sched.queue.pop(), reason="held for a preemptor")
    body = pod_json("preemptor", priority=100)
    body["status"]["nominatedNodeName"] = "n1"
    preemptor = PodInfo(body)
    handler.on_add(preemptor)
    assert sched.cache.nominated_node(preemptor.key) == "n1"
    handler.on_delete(preemptor)
    waiting = sched.queue.get(make_pod("waiting").key)
    assert waiting is not None
    assert waiting.where in (QueueState.ACTIVE, QueueState.BACKOFF)


class RefusingBinder:
    """The apiserver refuses the binding, once ``go`` is set."""

    name = "RefusingBinder"

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        await self.go.wait()
        return Status(Code.ERROR, ("etcdserver: request timed out",))


async def test_a_failed_bind_frees_its_room_for_the_pods_parked_meanwhile(
    sched: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assumed pod is forgotten: a pod that found no room because of it tries again."""

    async def written(kc: KubeClient, **fields: object) -> None:
        return None

    monkeypatch.setattr(statuswriter, "set_unschedulable", written)
    binder = RefusingBinder()
    sched.profiles["lasched"].framework.binders = (binder,)
    sched.cache.add_node(make_node("n1", cpu="1"))
    sched.cycle.invalidate_nodes()
    handler = sched.pod_events
    for name in ("first", "second"):
        handler.on_add(make_pod(name, cpu="1"))
        sched.cycle.schedule_one(await sched.queue.pop())  # "first" assumed; "second" finds no room
    second = sched.queue.get(make_pod("second").key)
    assert second is not None
    assert second.where is QueueState.UNSCHEDULABLE
    binder.go.set()
    assert await sched.binds.drain(1)
    assert second.where in (QueueState.ACTIVE, QueueState.BACKOFF)


async def test_node_changes_reach_the_queue_as_typed_events(sched: Scheduler) -> None:
    """A label change does not retry a pod that lacked room; the node growing does."""
    handler = sched.pod_events
    pod = make_pod("big", cpu="4")
    handler.on_add(pod)
    sched.queue.requeue_unschedulable(
        await sched.queue.pop(), reason="Insufficient cpu", plugins=("NodeResourcesFit",)
    )
    nodes = sched.node_events
    small = make_node("n1", cpu="2")
    nodes.on_add(small)
    relabelled = make_node("n1", cpu="2", labels={"zone": "a"}, rv="2")
    nodes.on_update(small, relabelled)
    qp = sched.queue.get(pod.key)
    assert qp is not None
    assert qp.where is QueueState.UNSCHEDULABLE
    nodes.on_update(relabelled, make_node("n1", cpu="8", labels={"zone": "a"}, rv="3"))
    assert qp.where in (QueueState.ACTIVE, QueueState.BACKOFF)


async def test_a_placed_peer_moves_the_pods_that_wait_for_it(sched: Scheduler) -> None:
    """A bound pod is an AssignedPod/Add at once, and its labels decide whom it moves."""
    handler = sched.pod_events
    body = pod_json("client")
    body["metadata"]["annotations"] = {
        "lasched.io/peer-selector": "app=db",
        "lasched.io/peer-max-rtt": "5",
    }
    waiting = PodInfo(body)
    handler.on_add(waiting)
    sched.queue.requeue_unschedulable(
        await sched.queue.pop(), reason="no peer placed yet", plugins=("LatencyFilter",)
    )
    handler.on_add(make_pod("web-0", node="n1", labels={"app": "web"}))
    qp = sched.queue.get(waiting.key)
    assert qp is not None
    assert qp.where is QueueState.UNSCHEDULABLE
    handler.on_add(make_pod("db-0", node="n1", labels={"app": "db"}))
    assert qp.where in (QueueState.ACTIVE, QueueState.BACKOFF)


async def test_a_group_without_min_available_is_rechecked_when_it_settles() -> None:
    """No event says the members stopped arriving: a timer reruns PreEnqueue then."""
    clock = FakeClock(time.monotonic())
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        sched = Scheduler(client, Settings(), clock=clock)
        for i in range(2):
            body = pod_json(f"w-{i}")
            body["metadata"]["annotations"] = {"pod-group": "old"}
            sched.pod_events.on_add(PodInfo(body))
        assert sched.queue.counts()["gated"] == 2
        clock.t += 2.0  # the settling time after the last arrival
        sched.timers.fire_due()
        assert sched.queue.counts()["active"] == 2
    finally:
        await client.close()
