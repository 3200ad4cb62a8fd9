"""One timer heap for every deadline of the scheduler.

Permit deadlines (the waiting room), a pod group's reservation timeout, the
end of a pod's backoff, the queue's timed moves and its safety flush, and the
coalescing of latency events are all timers on one :class:`TimerHeap`. Its
runner (:meth:`TimerHeap.run`) sleeps until the earliest deadline, or until an
earlier one is set, then fires what is due: no deadline waits for a
fixed-interval poll, so none fires late by a poll's period.

Invariants:

* timers fire in the order of their deadlines, those with the same deadline
  in the order they were set;
* a cancelled timer never fires, and a timer fires at most once;
* a timer never fires before its deadline on the heap's clock;
* a callback that raises is logged and the other timers still fire: a bug in
  one deadline's handling never stops the heap.

Time is read from an injectable clock and the runner waits through an
injectable *alarm*, so tests drive the heap, and the runner itself, in
virtual time (:class:`VirtualClock`).
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Cancellable(Protocol):
    def cancel(self) -> object: ...


Alarm = Callable[[float, Callable[[], None]], Cancellable]
"""``(delay, fn)``: call ``fn`` once, ``delay`` seconds from now; the handle cancels it."""


def loop_alarm(delay: float, fn: Callable[[], None]) -> Cancellable:
    """The running event loop's ``call_later``: the alarm of real time."""
    return asyncio.get_running_loop().call_later(delay, fn)


class Timer:
    """A callback due at ``when``; :meth:`cancel` before it fires and it never does."""

    __slots__ = ("_fn", "_heap", "when")

    def __init__(self, when: float, fn: Callable[[], object], heap: TimerHeap) -> None:
        self.when = when
        self._fn: Callable[[], object] | None = fn
        self._heap = heap

    @property
    def pending(self) -> bool:
        """Neither fired nor cancelled."""
        return self._fn is not None

    def cancel(self) -> None:
        """Idempotent; a timer that has fired is left as it is."""
        if self._fn is not None:
            self._fn = None
            self._heap._cancelled += 1

    def __repr__(self) -> str:
        state = "pending" if self._fn is not None else "done"
        return f"Timer(when={self.when:.3f}, {state})"


_Entry = tuple[float, int, Timer]


class TimerHeap:
    """Timers in deadline order, fired by :meth:`fire_due` or by the :meth:`run` task."""

    def __init__(self, clock: Clock = time.monotonic, *, alarm: Alarm = loop_alarm) -> None:
        self._clock = clock
        self._alarm = alarm
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._cancelled = 0  # cancelled timers still in the heap
        self._waker: asyncio.Future[None] | None = None  # the runner's sleep, while it sleeps

    def now(self) -> float:
        return self._clock()

    def __len__(self) -> int:
        """Timers that will fire (cancelled ones not counted)."""
        return len(self._heap) - self._cancelled

    def call_at(self, when: float, fn: Callable[[], object]) -> Timer:
        """Call ``fn()`` at ``when`` (the heap's clock); the Timer cancels it."""
        if not math.isfinite(when):
            raise ValueError(f"`when` must be a finite time, not {when}")
        timer = Timer(when, fn, self)
        earliest = self.next_deadline()
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if earliest is None or when < earliest:
            self._wake()  # the runner sleeps towards a later deadline: it must look again
        return timer

    def call_later(self, delay: float, fn: Callable[[], object]) -> Timer:
        """Call ``fn()`` ``delay`` seconds from now."""
        return self.call_at(self._clock() + delay, fn)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a timer that will fire; None when there is none."""
        heap = self._heap
        while heap and not heap[0][2].pending:
            heapq.heappop(heap)
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def fire_due(self) -> int:
        """Fire every timer due by now, in order; returns how many fired.

        Timers set by the callbacks fire on a later call, even if already
        due, so a callback that sets itself again cannot hold the loop.
        """
        now = self._clock()
        heap = self._heap
        due: list[Timer] = []
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if timer.pending:
                due.append(timer)
            else:
                self._cancelled -= 1
        fired = 0
        for timer in due:
            fn = timer._fn
            if fn is None:  # cancelled by an earlier callback of this round
                self._cancelled -= 1  # counted as if still in the heap
                continue
            timer._fn = None
            fired += 1
            try:
                fn()
            except Exception:
                log.exception("timer callback %r failed", fn)
        self._compact()
        return fired

    async def run(self) -> None:
        """Fire timers at their deadlines until cancelled; cancelling is safe at any time.

        Sleeps until the earliest deadline, or until :meth:`call_at` sets an
        earlier one; with no timer set, until one is.
        """
        while True:
            self.fire_due()
            deadline = self.next_deadline()
            if deadline is None:
                await self._sleep(None)
                continue
            delay = deadline - self._clock()
            if delay > 0:
                await self._sleep(delay)
            else:
                await asyncio.sleep(0)  # set due by a callback: let other tasks run first

    async def _sleep(self, delay: float | None) -> None:
        waker = self._waker = asyncio.get_running_loop().create_future()
        alarm = None if delay is None else self._alarm(delay, functools.partial(_wake, waker))
        try:
            await waker
        finally:
            self._waker = None
            if alarm is not None:
                alarm.cancel()

    def _wake(self) -> None:
        if self._waker is not None:
            _wake(self._waker)

    def _compact(self) -> None:
        """Drop cancelled timers once they are most of the heap (a cancel is O(1))."""
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e[2].pending]
            heapq.heapify(self._heap)
            self._cancelled = 0


def _wake(waker: asyncio.Future[None]) -> None:
    if not waker.done():
        waker.set_result(None)


class _VirtualAlarm:
    __slots__ = ("cancelled", "fn")

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock that moves only when told, for tests and simulations.

    ``TimerHeap(clock, alarm=clock.alarm)`` runs in virtual time:
    :meth:`advance` moves the clock and rings the alarms it passes, in order;
    the runner then proceeds at the event loop's next turns.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.t = start
        self._alarms: list[tuple[float, int, _VirtualAlarm]] = []
        self._seq = itertools.count()

    def __call__(self) -> float:
        return self.t

    def alarm(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        a = _VirtualAlarm(fn)
        heapq.heappush(self._alarms, (self.t + max(delay, 0.0), next(self._seq), a))
        return a

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, ringing every alarm due by then."""
        if not seconds >= 0:
            raise ValueError(f"`seconds` must be non-negative, not {seconds}")
        self.t += seconds
        while self._alarms and self._alarms[0][0] <= self.t:
            _, _, a = heapq.heappop(self._alarms)
            if not a.cancelled:
                a.fn()
