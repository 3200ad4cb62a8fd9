"""Latency upkeep: RTT changes become queue events, node-list changes new agent targets.

Agents report every few seconds each, and a busy measurement network changes
some pair significantly many times a second. Acting on each change would
move the unschedulable pool, or recompute every agent's target list, over
and over for nothing. So each kind of change is *coalesced*
(:class:`Coalesced`): the first change after a quiet spell acts at once, and
the changes that follow within ``interval`` act once more when it ends. This
bounds the cost (at most one action per interval and kind); it is not a
poll: nothing runs while nothing changes, and the timer that ends an
interval is one on the scheduler's timer heap.

* ``latency_changed`` (the agent hub's and Goldpinger's ``on_change``): one
  ``Latency/Update`` event for the queue, whose hints move the pods with
  latency limits (``LatencyFilter``);
  the site task (``on_latency``) is told too;
* ``peers_changed`` (a node added, removed or readdressed): the agents'
  target lists are recomputed.

A pod being placed is not coalesced here: it is an ``AssignedPod/Add`` event
the pod informer's handler sends at once, carrying the pod, so the hint of a
pending pod can check whether its peer selector matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lasched import metrics
from lasched.framework.events import LATENCY_UPDATE, ClusterEvent
from lasched.timers import Timer, TimerHeap

OnEvent = Callable[[ClusterEvent, Any, Any], int]
"""The queue's ``on_event``: returns how many pods it moved."""


class Coalesced:
    """Calls ``fn`` at the first request at once, then at most once per ``interval``.

    Requests made within ``interval`` of the last call are served by one
    more call when the interval ends; none is ever dropped.
    """

    def __init__(self, fn: Callable[[], object], *, timers: TimerHeap, interval: float) -> None:
        if not interval >= 0:
            raise ValueError(f"`interval` must be non-negative, not {interval}")
        self._fn = fn
        self._timers = timers
        self._interval = interval
        self._last = -math.inf
        self._due: Timer | None = None

    def __call__(self) -> None:
        if self._due is not None:
            return  # a call is already set for the end of the interval
        due = self._last + self._interval
        if self._timers.now() >= due:
            self._run()
        else:
            self._due = self._timers.call_at(due, self._fire)

    def _fire(self) -> None:
        self._due = None
        self._run()

    def _run(self) -> None:
        self._last = self._timers.now()
        self._fn()


class LatencyUpkeep:
    """What the scheduler does when RTTs or the node list change (see the module)."""

    def __init__(
        self,
        *,
        timers: TimerHeap,
        on_event: OnEvent,
        refresh_targets: Callable[[], None],
        interval: float = 1.0,
        on_latency: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_latency``: told once per coalesced RTT change too (the site task)."""
        self._on_event = on_event
        self._on_latency = on_latency
        self.latency_changed = Coalesced(self._requeue, timers=timers, interval=interval)
        """An RTT pair changed significantly (the hub's and Goldpinger's ``on_change``)."""
        self.peers_changed = Coalesced(refresh_targets, timers=timers, interval=interval)
        """The node list or a node's address changed: agents need new targets."""

    def _requeue(self) -> None:
        self._on_latency()
        if self._on_event(LATENCY_UPDATE, None, None):
            metrics.latency_requeues.inc()
