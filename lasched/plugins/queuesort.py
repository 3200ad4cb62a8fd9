"""PrioritySort with a bounded aging boost.

Order: higher effective priority first, then the pod that entered the queue
first (it keeps that place across retries). The effective priority is the
pod's priority plus ``points_per_minute`` for every minute since it first
entered the queue, capped at ``max_boost``: a mild preference for pods that
have waited, which can only reorder pods whose priorities differ by less
than the cap. It cannot lift a pod over a stream of pods whose priority is
higher by more than that; what ends such starvation, whatever the gap, is
the queue's starving tier (lasched.queue.queue, ``agingStarvationSeconds``),
which orders a pod that has waited long enough before this plugin's order
applies. Aging changes the order only: what a pod may preempt is decided by
its real priority.
"""

from __future__ import annotations

from lasched.queue.queue import QueuedPod


class PrioritySort:
    name = "PrioritySort"

    def __init__(self, *, points_per_minute: float = 10.0, max_boost: int = 100) -> None:
        if points_per_minute < 0:
            raise ValueError(f"points_per_minute must be non-negative, not {points_per_minute}")
        if max_boost < 0:
            raise ValueError(f"max_boost must be non-negative, not {max_boost}")
        self.points_per_minute = points_per_minute
        self.max_boost = max_boost

    def effective_priority(self, qp: QueuedPod, now: float) -> int:
        boost = int((now - qp.first_seen) / 60.0 * self.points_per_minute)
        return qp.pod.priority + max(0, min(self.max_boost, boost))

    def sort_key(self, qp: QueuedPod, now: float) -> tuple[float, ...]:
        return (-self.effective_priority(qp, now), qp.first_seen, qp.arrival)
