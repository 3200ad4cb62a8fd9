"""The one timer heap: deadlines fire in order, at their time, in virtual time."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import AsyncIterator

import pytest

from lasched.timers import TimerHeap, VirtualClock


async def turns(n: int = 5) -> None:
    """Let the runner task proceed (it never sleeps real time here)."""
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(100.0)


@pytest.fixture
def timers(clock: VirtualClock) -> TimerHeap:
    return TimerHeap(clock, alarm=clock.alarm)


@pytest.fixture
async def running(timers: TimerHeap) -> AsyncIterator[TimerHeap]:
    """The heap with its runner task."""
    task = asyncio.create_task(timers.run())
    await turns()
    try:
        yield timers
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_deadlines_fire_in_order_and_ties_in_the_order_set(
    clock: VirtualClock, timers: TimerHeap
) -> None:
    """Earliest first; timers with the same deadline in the order they were set."""
    fired: list[str] = []
    for name, when in [("c", 103.0), ("a", 101.0), ("b1", 102.0), ("b2", 102.0)]:
        timers.call_at(when, functools.partial(fired.append, name))
    assert timers.next_deadline() == 101.0
    clock.t = 102.0
    assert timers.fire_due() == 3
    assert fired == ["a", "b1", "b2"]
    clock.t = 200.0
    timers.fire_due()
    assert fired == ["a", "b1", "b2", "c"]
    assert timers.next_deadline() is None


def test_a_cancelled_timer_never_fires(clock: VirtualClock, timers: TimerHeap) -> None:
    """Cancel is idempotent, counts go down at once, and a cancelled head is skipped."""
    fired: list[str] = []
    early = timers.call_at(101.0, lambda: fired.append("early"))
    timers.call_at(102.0, lambda: fired.append("late"))
    early.cancel()
    early.cancel()
    assert not early.pending
    assert len(timers) == 1
    assert timers.next_deadline() == 102.0
    clock.t = 110.0
    assert timers.fire_due() == 1
    assert fired == ["late"]


def test_a_callback_may_cancel_a_later_timer_of_the_same_round(
    clock: VirtualClock, timers: TimerHeap
) -> None:
    """Both due, the first cancels the second: the second does not fire."""
    fired: list[str] = []
    second = timers.call_at(102.0, lambda: fired.append("second"))
    timers.call_at(101.0, second.cancel)
    clock.t = 105.0
    assert timers.fire_due() == 1
    assert fired == []
    assert len(timers) == 0


def test_timers_set_by_callbacks_fire_on_the_next_round(
    clock: VirtualClock, timers: TimerHeap
) -> None:
    """A callback that sets itself again, already due, cannot hold one round forever."""
    count = 0

    def again() -> None:
        nonlocal count
        count += 1
        timers.call_at(clock.t, again)

    timers.call_at(100.0, again)
    assert timers.fire_due() == 1
    assert timers.fire_due() == 1
    assert count == 2


def test_a_failing_callback_is_logged_and_the_others_fire(
    clock: VirtualClock, timers: TimerHeap, caplog: pytest.LogCaptureFixture
) -> None:
    """One deadline's bug never stops the others."""
    fired: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    timers.call_at(101.0, broken)
    timers.call_at(102.0, lambda: fired.append("after"))
    clock.t = 103.0
    with caplog.at_level(logging.ERROR, logger="lasched.timers"):
        assert timers.fire_due() == 2
    assert fired == ["after"]
    assert "timer callback" in caplog.text
    assert "RuntimeError: boom" in caplog.text


@pytest.mark.parametrize("when", [math.inf, math.nan], ids=["inf", "nan"])
def test_a_deadline_must_be_finite(timers: TimerHeap, when: float) -> None:
    """The error names the argument."""
    with pytest.raises(ValueError, match="`when` must be a finite time"):
        timers.call_at(when, lambda: None)


def test_many_cancelled_timers_are_compacted(clock: VirtualClock, timers: TimerHeap) -> None:
    """Cancelled timers do not pile up in the heap."""
    handles = [timers.call_at(200.0 + i, lambda: None) for i in range(1000)]
    for h in handles[:-1]:
        h.cancel()
    timers.fire_due()  # compacts
    assert len(timers) == 1
    assert len(timers._heap) < 100


async def test_the_runner_fires_at_the_deadline_not_sooner(
    clock: VirtualClock, running: TimerHeap
) -> None:
    """It sleeps until the deadline itself: a hair before, nothing; at it, the callback."""
    fired: list[float] = []
    running.call_at(105.0, lambda: fired.append(clock.t))
    await turns()
    clock.advance(4.5)
    await turns()
    assert fired == []
    clock.advance(0.5)
    await turns()
    assert fired == [105.0]


async def test_an_earlier_deadline_wakes_the_sleeping_runner(
    clock: VirtualClock, running: TimerHeap
) -> None:
    """Set while the runner sleeps towards a later one, it still fires on time."""
    fired: list[str] = []
    running.call_at(200.0, lambda: fired.append("late"))
    await turns()  # the runner sleeps towards 200
    running.call_at(110.0, lambda: fired.append("early"))
    await turns()
    clock.advance(10.0)
    await turns()
    assert fired == ["early"]
    clock.advance(90.0)
    await turns()
    assert fired == ["early", "late"]


async def test_an_idle_runner_waits_for_a_timer(clock: VirtualClock, running: TimerHeap) -> None:
    """With nothing set it sleeps without an alarm, and the first timer set wakes it."""
    fired: list[str] = []
    await turns()
    running.call_later(1.0, lambda: fired.append("one"))
    await turns()
    clock.advance(1.0)
    await turns()
    assert fired == ["one"]


async def test_a_cancelled_deadline_lets_the_runner_sleep_on(
    clock: VirtualClock, running: TimerHeap
) -> None:
    """The runner wakes at the cancelled deadline, finds nothing, and waits for the next."""
    fired: list[str] = []
    first = running.call_at(101.0, lambda: fired.append("first"))
    running.call_at(102.0, lambda: fired.append("second"))
    await turns()
    first.cancel()
    clock.advance(1.0)
    await turns()
    assert fired == []
    clock.advance(1.0)
    await turns()
    assert fired == ["second"]


async def test_the_runner_on_the_real_clock() -> None:
    """With the event loop's own alarm, a deadline a few ms away fires on time."""
    timers = TimerHeap()
    done = asyncio.Event()
    task = asyncio.create_task(timers.run())
    try:
        timers.call_later(0.01, done.set)
        await asyncio.wait_for(done.wait(), 1)
    finally:
        task.cancel()


def test_virtual_time_only_moves_forward(clock: VirtualClock) -> None:
    """The error names the argument and the value."""
    with pytest.raises(ValueError, match="`seconds` must be non-negative, not -1"):
        clock.advance(-1)
