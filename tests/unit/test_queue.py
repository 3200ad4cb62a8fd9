"""The scheduling queue orders, backs off and requeues like kube-scheduler's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from lasched.model.pod import PodInfo
from lasched.plugins.queuesort import PrioritySort
from lasched.queue.queue import (
    NOT_SCHEDULING_FIELDS,
    SCHEDULING_FIELDS,
    Gated,
    QueueOptions,
    SchedulingQueue,
)
from lasched.timers import TimerHeap, VirtualClock
from tests.unit.factories import make_pod, pod_json


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> SchedulingQueue:
    return SchedulingQueue(QueueOptions(backoff_jitter=0.0), clock=clock)


async def pop_names(q: SchedulingQueue, n: int) -> list[str]:
    return [(await q.pop()).pod.name for _ in range(n)]


async def test_priority_then_fifo(queue: SchedulingQueue, clock: FakeClock) -> None:
    """Higher priority first; equal priorities in arrival order."""
    for name, prio in [("low-a", 1), ("high", 10), ("low-b", 1), ("mid", 5)]:
        queue.add(make_pod(name, priority=prio))
        clock.t += 1
    assert await pop_names(queue, 4) == ["high", "mid", "low-a", "low-b"]


async def test_pop_waits_for_a_pod(queue: SchedulingQueue) -> None:
    """pop() suspends on an empty queue and returns when a pod arrives."""
    waiter = asyncio.create_task(queue.pop())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.add(make_pod("late"))
    assert (await asyncio.wait_for(waiter, 1)).pod.name == "late"


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)],
    ids=["first", "second", "third", "fourth", "capped", "stays-capped"],
)
def test_backoff_doubles_to_the_cap(queue: SchedulingQueue, attempts: int, expected: float) -> None:
    """Backoff is 1 s, 2 s, 4 s ... up to 10 s by default."""
    queue.add(make_pod("p"))
    qp = queue.get(make_pod("p").key)
    assert qp is not None
    qp.attempts = attempts
    assert queue.backoff_duration(qp) == expected


async def test_unschedulable_waits_for_an_event(queue: SchedulingQueue, clock: FakeClock) -> None:
    """A failed pod is parked until a cluster event moves it, after its backoff."""
    queue.add(make_pod("p"))
    qp = await queue.pop()
    queue.requeue_unschedulable(qp, reason="no fit")
    assert queue.counts()["unschedulable"] == 1

    queue.move_all_to_active_or_backoff()
    assert queue.counts()["backoff"] == 1  # still inside its 1 s backoff
    clock.t += 1.01
    queue.flush_backoff()
    assert queue.counts()["active"] == 1
    assert (await queue.pop()).pod.name == "p"


async def test_activate_skips_backoff_for_the_pods_named(
    queue: SchedulingQueue, clock: FakeClock
) -> None:
    """activate(): named pods, parked or backing off, go to activeQ at once; the others
    (and a pod in flight) stay where they are."""
    for name in ("backing-off", "parked", "other", "in-flight"):
        queue.add(make_pod(name))
    tried = {qp.pod.name: qp for qp in [await queue.pop() for _ in range(4)]}
    for _ in range(3):  # a long backoff earned
        tried["backing-off"].attempts += 1
    queue.requeue_error(tried["backing-off"], reason="waited")
    queue.requeue_unschedulable(tried["parked"], reason="no fit")
    queue.requeue_unschedulable(tried["other"], reason="no fit")
    assert queue.counts()["backoff"] == 1 and queue.counts()["unschedulable"] == 2
    keys = [tried[n].key for n in ("backing-off", "parked", "in-flight")]
    assert queue.activate(keys) == 2
    assert queue.counts()["active"] == 2
    assert tried["other"].where.value == "unschedulable"
    assert tried["in-flight"].where.value == "in-flight"
    assert sorted(await pop_names(queue, 2)) == ["backing-off", "parked"]


async def test_event_moves_only_the_pods_it_can_help(queue: SchedulingQueue) -> None:
    """A move with a filter (e.g. a latency change) leaves the other parked pods alone."""
    for name in ("near-users", "plain"):
        queue.add(make_pod(name))
        queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    assert queue.move_all_to_active_or_backoff(lambda p: p.name == "near-users") == 1
    assert queue.counts()["unschedulable"] == 1
    assert queue.counts()["backoff"] == 1


async def test_event_during_attempt_means_backoff(queue: SchedulingQueue) -> None:
    """If the cluster changed while the pod was being tried, it is not parked."""
    queue.add(make_pod("p"))
    qp = await queue.pop()
    queue.move_all_to_active_or_backoff()  # e.g. a node was added meanwhile
    queue.requeue_unschedulable(qp, reason="no fit")
    assert queue.counts()["backoff"] == 1


async def test_periodic_flush_returns_long_parked_pods(
    queue: SchedulingQueue, clock: FakeClock
) -> None:
    """Nothing waits forever: after max_unschedulable the pod is tried again."""
    queue.add(make_pod("p"))
    queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    clock.t += 299
    queue.flush_unschedulable()
    assert queue.counts()["unschedulable"] == 1
    clock.t += 2
    queue.flush_unschedulable()
    assert queue.counts()["active"] == 1


async def test_delete_removes_everywhere(queue: SchedulingQueue) -> None:
    """A deleted pod leaves the queue, wherever it was."""
    queue.add(make_pod("a"))
    queue.add(make_pod("b"))
    queue.requeue_unschedulable(await queue.pop(), reason="x")
    queue.delete(make_pod("a").key)
    queue.delete(make_pod("b").key)
    assert len(queue) == 0
    queue.add(make_pod("c"))
    assert (await queue.pop()).pod.name == "c"


async def test_update_reorders_by_new_priority(queue: SchedulingQueue, clock: FakeClock) -> None:
    """Raising a queued pod's priority moves it ahead."""
    queue.add(make_pod("a", priority=5))
    clock.t += 1
    queue.add(make_pod("b", priority=1))
    queue.update(make_pod("b", priority=9))
    assert await pop_names(queue, 2) == ["b", "a"]
    assert len(queue) == 2  # both in flight until done()


def aging_queue(
    clock: FakeClock, *, per_minute: float, cap: int, starvation: float | None = None
) -> SchedulingQueue:
    sort = PrioritySort(points_per_minute=per_minute, max_boost=cap)
    options = QueueOptions(backoff_jitter=0.0, starvation_seconds=starvation)
    return SchedulingQueue(options, clock=clock, sort_key=sort.sort_key)


async def test_aging_lifts_a_starving_pod_over_newer_higher_ones(clock: FakeClock) -> None:
    """A low-priority pod that waited long enough is ordered before fresh higher ones."""
    q = aging_queue(clock, per_minute=10, cap=100)
    q.add(make_pod("old-low", priority=0))
    clock.t += 120  # two minutes: +20
    q.add(make_pod("new-mid", priority=15))
    q.reheap()
    assert await pop_names(q, 2) == ["old-low", "new-mid"]


async def test_aging_is_capped(clock: FakeClock) -> None:
    """The boost never exceeds aging_max_boost, however long the wait (no starving tier)."""
    q = aging_queue(clock, per_minute=10, cap=50)
    q.add(make_pod("ancient", priority=0))
    clock.t += 3600
    q.add(make_pod("high", priority=51))
    q.reheap()
    qp = q.get(make_pod("ancient").key)
    assert qp is not None
    assert PrioritySort(points_per_minute=10, max_boost=50).effective_priority(qp, clock.t) == 50
    assert await pop_names(q, 2) == ["high", "ancient"]


async def test_pre_enqueue_gates_until_rechecked(clock: FakeClock) -> None:
    """A pod that fails PreEnqueue waits outside activeQ until it passes."""
    ready: set[str] = set()
    q = SchedulingQueue(
        QueueOptions(),
        clock=clock,
        pre_enqueue=lambda pod: None if pod.name in ready else Gated("group incomplete"),
    )
    q.add(make_pod("member"))
    assert q.counts()["gated"] == 1
    ready.add("member")
    q.recheck_gated()
    assert (await q.pop()).pod.name == "member"


async def test_idle_scheduler_pops_a_preemptor_from_backoff(
    queue: SchedulingQueue, clock: FakeClock
) -> None:
    """With activeQ empty a backing-off preemptor is tried at once; an active pod goes first."""
    queue.add(make_pod("plain"))
    queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    queue.move_all_to_active_or_backoff()
    body = pod_json("failed")
    body["status"]["nominatedNodeName"] = "n1"  # it preempted pods there
    queue.add(PodInfo(body))
    qp = await queue.pop()
    queue.move_all_to_active_or_backoff()  # the cluster changed during the attempt
    queue.requeue_unschedulable(qp, reason="no fit")
    assert queue.counts()["backoff"] == 2  # "plain" and the preemptor
    queue.add(make_pod("fresh"))
    assert (await queue.pop()).pod.name == "fresh"
    assert queue.counts()["backoff"] == 2  # not while another pod was waiting
    popped = await asyncio.wait_for(queue.pop(), 1)  # idle now: no need to wait 1 s
    assert popped.pod.name == "failed"
    with pytest.raises(TimeoutError):  # a pod that did not preempt waits out its backoff
        await asyncio.wait_for(queue.pop(), 0.1)


async def test_nominated_node_arriving_in_backoff_wakes_an_idle_scheduler(
    queue: SchedulingQueue,
) -> None:
    """The status with the nominated node lands after the pod went to backoff: pop it then."""
    queue.add(make_pod("preemptor"))
    qp = await queue.pop()
    queue.move_all_to_active_or_backoff()  # its victims were deleted during the attempt
    queue.requeue_unschedulable(qp, reason="preempting")
    assert queue.counts()["backoff"] == 1
    waiting = asyncio.create_task(queue.pop())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # no nominated node known yet: it waits out its backoff
    body = pod_json("preemptor")
    body["status"]["nominatedNodeName"] = "n1"
    queue.update(PodInfo(body))
    popped = await asyncio.wait_for(waiting, 0.5)
    assert popped.pod.name == "preemptor"


async def test_idle_scheduler_does_not_rush_errors(queue: SchedulingQueue) -> None:
    """A pod backing off after an error is not popped early, even when idle."""
    queue.add(make_pod("broken"))
    queue.requeue_error(await queue.pop(), reason="plugin bug")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.pop(), 0.1)
    assert queue.counts()["backoff"] == 1


# ---- updates: only what the scheduler reads gives a parked pod another try ----------


def own_status_write(name: str, *, rv: str, nominated: str = "") -> PodInfo:
    """The pod as the informer shows it after lasched wrote PodScheduled=False."""
    body = pod_json(name, rv=rv)
    body["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu.",
        }
    ]
    if nominated:
        body["status"]["nominatedNodeName"] = nominated
    return PodInfo(body)


@pytest.mark.parametrize("nominated", ["", "n1"], ids=["condition", "nominated-node"])
async def test_own_status_write_leaves_an_unschedulable_pod_parked(
    queue: SchedulingQueue, clock: FakeClock, nominated: str
) -> None:
    """The status lasched writes after a failure comes back as updates: the pod stays parked."""
    queue.add(make_pod("p"))
    queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    clock.t += 60  # long past its backoff
    for rv in ("2", "3", "4"):
        queue.update(own_status_write("p", rv=rv, nominated=nominated))
    assert queue.counts()["unschedulable"] == 1
    qp = queue.get(make_pod("p").key)
    assert qp is not None
    assert qp.pod.resource_version == "4"  # the info is replaced all the same


SPEC_CHANGES: dict[str, Callable[[dict[str, Any]], None]] = {
    "label": lambda b: b["metadata"].update(labels={"tier": "web"}),
    "annotation": lambda b: b["metadata"].update(annotations={"lasched.io/max-rtt": "x=5"}),
    "toleration": lambda b: b["spec"].update(tolerations=[{"operator": "Exists"}]),
    "node-selector": lambda b: b["spec"].update(nodeSelector={"pool": "b"}),
    "requests": lambda b: b["spec"]["containers"][0]["resources"].update(requests={"cpu": "50m"}),
    "priority": lambda b: b["spec"].update(priority=7),
}


@pytest.mark.parametrize("change", list(SPEC_CHANGES), ids=list(SPEC_CHANGES))
async def test_a_real_change_gives_a_parked_pod_another_try(
    queue: SchedulingQueue, clock: FakeClock, change: str
) -> None:
    """A change of spec, labels or annotations moves an unschedulable pod back to activeQ."""
    queue.add(make_pod("p"))
    queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    clock.t += 60
    body = pod_json("p", rv="2")
    SPEC_CHANGES[change](body)
    queue.update(PodInfo(body))
    assert queue.counts()["active"] == 1


async def test_a_real_change_during_backoff_waits_for_it(
    queue: SchedulingQueue, clock: FakeClock
) -> None:
    """As in kube-scheduler, an updated pod still backing off goes to backoffQ."""
    queue.add(make_pod("p"))
    queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    clock.t += 0.5
    queue.update(make_pod("p", rv="2", cpu="50m"))
    assert queue.counts()["backoff"] == 1


def test_every_pod_field_is_declared_read_or_not() -> None:
    """Each PodInfo attribute is either compared by scheduling_changed or declared ignored."""
    read, ignored = set(SCHEDULING_FIELDS), set(NOT_SCHEDULING_FIELDS)
    assert not read & ignored
    assert read | ignored == set(PodInfo.__slots__)


@pytest.mark.parametrize(
    ("update", "part"),
    [
        (lambda: make_pod("p", rv="2", cpu="50m"), "backoff"),
        (lambda: own_status_write("p", rv="2"), "unschedulable"),
    ],
    ids=["real-change-is-kept", "status-is-ignored"],
)
async def test_an_update_during_the_attempt(
    queue: SchedulingQueue, update: Callable[[], PodInfo], part: str
) -> None:
    """A change made while the pod was tried is not lost: it fails into backoff, not parked."""
    queue.add(make_pod("p"))
    qp = await queue.pop()
    queue.update(update())
    queue.requeue_unschedulable(qp, reason="no fit")
    assert queue.counts()[part] == 1


async def test_status_write_does_not_rerun_pre_enqueue(clock: FakeClock) -> None:
    """A gated pod's status update is not a reason to ask PreEnqueue again; a label is."""
    asked: list[str] = []

    def gate(pod: PodInfo) -> Gated | None:
        asked.append(pod.resource_version)
        return Gated("group incomplete")

    q = SchedulingQueue(QueueOptions(), clock=clock, pre_enqueue=gate)
    q.add(make_pod("member"))
    q.update(own_status_write("member", rv="2"))
    body = pod_json("member", rv="3")
    body["metadata"]["labels"] = {"pod-group.scheduling.sigs.k8s.io": "g"}
    q.update(PodInfo(body))
    assert asked == ["1", "3"]


# ---- FIFO within a priority, across retries --------------------------------------


async def fail_all(q: SchedulingQueue) -> list[str]:
    """Try every pod in activeQ once; each fails for lack of room. Returns the order."""
    names = []
    while q.counts()["active"]:
        qp = await q.pop()
        names.append(qp.pod.name)
        q.requeue_unschedulable(qp, reason="0/3 nodes are available: 3 Insufficient cpu.")
    return names


async def test_same_priority_pods_bind_in_arrival_order_across_retries(
    queue: SchedulingQueue, clock: FakeClock
) -> None:
    """q1, q2, q3 failed several times, some alone and later: room goes to q1, then q2, q3."""
    for name in ("q1", "q2", "q3"):
        queue.add(make_pod(name))
        clock.t += 1
    assert await fail_all(queue) == ["q1", "q2", "q3"]
    for rv in ("2", "3"):  # lasched's own status writes come back
        for name in ("q1", "q2", "q3"):
            queue.update(own_status_write(name, rv=rv))
    assert await fail_all(queue) == []
    clock.t += 30
    queue.move_all_to_active_or_backoff()  # a node changed; still no room
    assert await fail_all(queue) == ["q1", "q2", "q3"]
    clock.t += 30
    queue.update(make_pod("q1", rv="9", cpu="10m"))  # q1 alone tried again, last
    assert await fail_all(queue) == ["q1"]
    clock.t += 30
    queue.move_all_to_active_or_backoff(lambda p: p.name != "q2")  # q2 left out
    assert await fail_all(queue) == ["q1", "q3"]

    bound = []
    for _ in range(3):  # room for one pod frees, and again
        clock.t += 30
        queue.move_all_to_active_or_backoff()
        first = await queue.pop()
        queue.done(first.key)
        queue.delete(first.key)  # the bind is seen
        bound.append(first.pod.name)
        await fail_all(queue)
    assert bound == ["q1", "q2", "q3"]


async def test_a_pod_back_from_a_failed_bind_keeps_its_place(
    queue: SchedulingQueue, clock: FakeClock
) -> None:
    """Its bind failed: it comes back ahead of pods of its priority that came after it."""
    queue.add(make_pod("a"))
    clock.t += 1
    queue.add(make_pod("b"))
    first = await queue.pop()
    queue.done(first.key)  # assumed; binding
    clock.t += 5
    queue.add(make_pod("a", rv="2"))  # the bind failed
    assert await pop_names(queue, 2) == ["a", "b"]


async def test_a_recreated_pod_starts_anew(queue: SchedulingQueue, clock: FakeClock) -> None:
    """A pod of the same name but another uid is a new pod: it queues behind."""
    queue.add(make_pod("a"))
    clock.t += 1
    queue.add(make_pod("b"))
    queue.done((await queue.pop()).key)
    clock.t += 5
    queue.add(make_pod("a", uid="another"))
    assert await pop_names(queue, 2) == ["b", "a"]


async def test_periodic_flush_counts_from_the_last_failure(
    queue: SchedulingQueue, clock: FakeClock
) -> None:
    """A pod tried again and parked anew waits a full max_unschedulable before the flush."""
    queue.add(make_pod("p"))
    queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    clock.t += 200
    queue.move_all_to_active_or_backoff()
    queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    clock.t += 299
    queue.flush_unschedulable()
    assert queue.counts()["unschedulable"] == 1
    clock.t += 2
    queue.flush_unschedulable()
    assert queue.counts()["active"] == 1


# ---- timers: nothing polls ------------------------------------------------------------


async def test_a_waiting_pop_gets_the_pod_when_its_backoff_ends() -> None:
    """The backoff's end is a timer: the runner wakes the scheduler at that very time."""
    clock = VirtualClock(1000.0)
    timers = TimerHeap(clock, alarm=clock.alarm)
    q = SchedulingQueue(QueueOptions(backoff_jitter=0.0), clock=clock, timers=timers)
    runner = asyncio.create_task(timers.run())
    try:
        q.add(make_pod("p"))
        q.requeue_error(await q.pop(), reason="plugin bug")  # backs off for 1 s
        waiting = asyncio.create_task(q.pop())
        for _ in range(5):
            await asyncio.sleep(0)
        clock.advance(0.999)
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiting.done()
        clock.advance(0.001)
        assert (await asyncio.wait_for(waiting, 1)).pod.name == "p"
    finally:
        runner.cancel()


async def test_the_safety_flush_runs_when_the_first_parked_pod_is_due(
    queue: SchedulingQueue, clock: FakeClock
) -> None:
    """One timer, for the pod parked first; each flush sets it for the next."""
    queue.add(make_pod("a"))
    queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    clock.t += 100
    queue.add(make_pod("b"))
    queue.requeue_unschedulable(await queue.pop(), reason="no fit")
    assert queue.timers.next_deadline() == 1000.0 + 300
    clock.t = 1300.0
    queue.timers.fire_due()
    assert (queue.counts()["active"], queue.counts()["unschedulable"]) == (1, 1)
    assert queue.timers.next_deadline() == 1100.0 + 300


async def test_the_safety_flush_rechecks_gated_pods(clock: FakeClock) -> None:
    """A gate no event reopens is asked again after max_unschedulable."""
    asked: list[float] = []

    def gate(pod: PodInfo) -> Gated | None:
        asked.append(clock.t)
        return Gated("waiting for something no event tells", "Mystery")

    q = SchedulingQueue(QueueOptions(), clock=clock, pre_enqueue=gate)
    q.add(make_pod("p"))
    clock.t += 300
    q.timers.fire_due()
    assert asked == [1000.0, 1300.0]
    assert q.counts()["gated"] == 1


async def test_activeq_is_rekeyed_when_a_pop_finds_it_due(clock: FakeClock) -> None:
    """Aging re-keys activeQ at pop time, every reheap_interval, with no task of its own."""
    q = aging_queue(clock, per_minute=10, cap=100)
    q.add(make_pod("old-low", priority=0))
    clock.t += 120  # +20
    q.add(make_pod("new-mid", priority=15))
    clock.t += 5  # reheap_interval passed
    assert await pop_names(q, 2) == ["old-low", "new-mid"]
