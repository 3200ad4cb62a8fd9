"""Starving pods: after agingStarvationSeconds a pod is tried before any pod that is not
starving, whatever the gap in priority, and backoff cannot make it miss freed room."""

from __future__ import annotations

import pytest

from lasched.plugins.queuesort import PrioritySort
from lasched.queue.queue import QueueOptions, QueueState, SchedulingQueue
from tests.unit.factories import make_pod

STARVATION = 600.0

# Priority gaps met in practice: beyond the aging cap, PriorityClass values of 1000
# and a million, and system-node-critical against priority 0.
GAPS = [150, 1000, 1_000_000, 2_000_001_000]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def starving_queue(clock: FakeClock, starvation: float | None = STARVATION) -> SchedulingQueue:
    """The scheduler's queue with its default PrioritySort (capped aging) and no jitter."""
    sort = PrioritySort(points_per_minute=10, max_boost=100)
    options = QueueOptions(backoff_jitter=0.0, starvation_seconds=starvation)
    return SchedulingQueue(options, clock=clock, sort_key=sort.sort_key)


async def pop_names(q: SchedulingQueue, n: int) -> list[str]:
    return [(await q.pop()).pod.name for _ in range(n)]


async def fail(q: SchedulingQueue) -> str:
    qp = await q.pop()
    q.requeue_unschedulable(qp, reason="0/2 nodes are available: 2 Insufficient cpu.")
    return qp.pod.name


@pytest.mark.parametrize("gap", GAPS, ids=[f"gap-{g}" for g in GAPS])
async def test_a_starving_pod_goes_first_whatever_the_gap(clock: FakeClock, gap: int) -> None:
    """Just before agingStarvationSeconds the gap wins; from then on the old pod goes first."""
    q = starving_queue(clock)
    q.add(make_pod("low", priority=0))
    clock.t += STARVATION - 1
    q.add(make_pod("high-a", priority=gap))
    q.add(make_pod("high-b", priority=gap))
    assert await pop_names(q, 1) == ["high-a"]
    clock.t += 1
    assert await pop_names(q, 2) == ["low", "high-b"]


async def test_starving_pods_go_oldest_first_whatever_their_priority(clock: FakeClock) -> None:
    """Among starving pods the oldest goes first; pods that are not starving follow."""
    q = starving_queue(clock)
    for name, prio in [("old-0", 0), ("old-1000", 1000), ("old-5", 5)]:
        q.add(make_pod(name, priority=prio))
        clock.t += 1
    clock.t += STARVATION
    q.add(make_pod("new-million", priority=1_000_000))
    assert await pop_names(q, 4) == ["old-0", "old-1000", "old-5", "new-million"]


async def test_a_pod_waiting_in_activeq_starts_starving_on_time(clock: FakeClock) -> None:
    """No re-keying is needed: the pod is first the moment it has waited long enough."""
    q = starving_queue(clock)
    q.add(make_pod("low", priority=0))
    for i in range(3):  # a busy queue: higher pods keep arriving while "low" waits
        clock.t += STARVATION / 3 - 1
        q.add(make_pod(f"high-{i}", priority=10_000))
    clock.t += 3
    assert await pop_names(q, 1) == ["low"]  # reheap() was never called


async def test_a_starving_pod_skips_backoff_when_an_event_frees_room(clock: FakeClock) -> None:
    """Failed a moment ago, it would back off; starving, it is tried before fresh higher pods."""
    q = starving_queue(clock)
    q.add(make_pod("low", priority=0))
    clock.t += STARVATION
    assert await fail(q) == "low"  # its backoff runs for 1 s
    for i in range(3):
        q.add(make_pod(f"high-{i}", priority=1_000_000))
    clock.t += 0.5
    q.move_all_to_active_or_backoff()  # a pod was deleted: room for one
    assert await pop_names(q, 1) == ["low"]


async def test_a_pod_not_starving_keeps_its_backoff(clock: FakeClock) -> None:
    """kube-scheduler's behaviour below the starvation age: the fresh higher pod goes first."""
    q = starving_queue(clock)
    q.add(make_pod("low", priority=0))
    clock.t += STARVATION / 2
    assert await fail(q) == "low"
    q.add(make_pod("high", priority=1000))
    clock.t += 0.5
    q.move_all_to_active_or_backoff()
    assert await pop_names(q, 1) == ["high"]
    low = q.get(make_pod("low").key)
    assert low is not None
    assert low.where is QueueState.BACKOFF


async def test_one_starving_pod_skips_backoff_per_event_in_turn(clock: FakeClock) -> None:
    """Several starving pods backing off: each event lets one through, round robin."""
    q = starving_queue(clock)
    for name in ("a", "b", "c"):
        q.add(make_pod(name))
    clock.t += STARVATION + 100
    for _ in range(3):
        await fail(q)
    order = []
    for _ in range(4):
        clock.t += 0.1
        q.move_all_to_active_or_backoff()
        assert q.counts()["active"] == 1
        order.append(await fail(q))
    assert order == ["a", "b", "c", "a"]
    assert q.counts()["backoff"] == 2


async def test_a_starving_pod_backing_off_after_an_error_waits(clock: FakeClock) -> None:
    """An error is not a verdict about room: its backoff is never skipped."""
    q = starving_queue(clock)
    q.add(make_pod("broken"))
    clock.t += STARVATION
    q.requeue_error(await q.pop(), reason="plugin bug")
    q.move_all_to_active_or_backoff()
    assert q.counts()["backoff"] == 1


async def test_an_event_for_other_pods_lets_no_starving_pod_through(clock: FakeClock) -> None:
    """A move limited to some pods (a latency change) skips backoff only among them."""
    q = starving_queue(clock)
    q.add(make_pod("plain"))
    clock.t += STARVATION
    await fail(q)
    q.move_all_to_active_or_backoff()
    assert q.counts()["active"] == 1  # the unfiltered event let it through
    await fail(q)
    q.move_all_to_active_or_backoff(lambda p: p.latency is not None)
    assert q.counts()["unschedulable"] == 1


# ---- a virtual cluster: a stream of higher-priority pods ----------------------------

SLOTS = 2  # pods the cluster holds at once; every pod takes one slot
RUN = 2.0  # seconds a bound pod runs before it completes and frees its slot
EVERY = 0.25  # a higher-priority pod arrives this often: four times what the cluster serves
STEP = 0.05


async def stream(q: SchedulingQueue, clock: FakeClock, *, gap: int, horizon: float) -> float:
    """Seconds until "low" binds behind an endless stream of pods ``gap`` above it (inf if
    not within ``horizon``). A completion is the only cluster event; the scheduler tries
    every pod in activeQ at each step, as the scheduling loop does."""
    start = clock.t
    ends = [start + 0.3, start + 1.3]  # the cluster is full when "low" arrives
    q.add(make_pod("low", priority=0))
    arrivals = 0
    while clock.t - start < horizon:
        while start + arrivals * EVERY <= clock.t:
            q.add(make_pod(f"high-{arrivals}", priority=gap))
            arrivals += 1
        for end in [e for e in ends if e <= clock.t]:
            ends.remove(end)
            q.move_all_to_active_or_backoff()
        q.flush_backoff()
        q.flush_unschedulable()
        while q.counts()["active"]:
            qp = await q.pop()
            if len(ends) == SLOTS:
                q.requeue_unschedulable(qp, reason="0/2 nodes are available: 2 Insufficient cpu.")
                continue
            q.done(qp.key)
            q.delete(qp.key)
            ends.append(clock.t + RUN)
            if qp.pod.name == "low":
                return clock.t - start
        clock.t += STEP
    return float("inf")


@pytest.mark.parametrize("gap", GAPS, ids=[f"gap-{g}" for g in GAPS])
async def test_a_pod_behind_an_endless_stream_binds_within_the_bound(
    clock: FakeClock, gap: int
) -> None:
    """It binds no later than the first completion after it started starving."""
    waited = await stream(starving_queue(clock, 60.0), clock, gap=gap, horizon=120.0)
    assert 60.0 <= waited <= 60.0 + RUN


async def test_without_the_starving_tier_the_capped_boost_never_gets_it_through(
    clock: FakeClock,
) -> None:
    """agingStarvationSeconds 0: aging adds at most 100, and a stream 150 above wins always."""
    waited = await stream(starving_queue(clock, None), clock, gap=150, horizon=300.0)
    assert waited == float("inf")
