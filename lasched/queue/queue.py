"""The scheduling queue: activeQ, backoffQ and the unschedulable pool.

Follows kube-scheduler's PriorityQueue:

* **activeQ** is a heap ordered by priority (higher first), then by the time
  the pod entered the queue (FIFO within a priority).
* A pod that failed goes to **backoffQ** for ``initial * 2**(attempts-1)``
  seconds (capped, with jitter) when a cluster event arrived while it was being
  tried, otherwise to the **unschedulable** pool.
* Cluster events (a node added or changed, a bound pod deleted)
  :meth:`move_all_to_active_or_backoff`; a periodic flush returns pods that
  have waited longer than ``max_unschedulable`` so nothing waits forever.
* Deletion removes a pod from every part; an update replaces it in place.
* The order of activeQ comes from the QueueSort plugin's ``sort_key``
  (lasched's PrioritySort adds starvation aging); because a key may change
  with time, the heap is re-keyed every ``reheap_interval`` seconds.
* **gated** pods failed a PreEnqueue check (a gang that is not complete yet);
  they wait outside activeQ until an update or :meth:`recheck_gated`.

Time comes from an injectable clock so tests run in virtual time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from lasched.model.pod import PodInfo, PodKey

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class QueueOptions:
    initial_backoff: float = 1.0
    max_backoff: float = 10.0
    backoff_jitter: float = 0.1
    max_unschedulable: float = 300.0
    flush_interval: float = 1.0
    reheap_interval: float = 5.0


@dataclass(slots=True, eq=False)
class QueuedPod:
    """A pod in the queue, with its scheduling history."""

    pod: PodInfo
    timestamp: float  # when it last entered activeQ (FIFO order)
    first_seen: float = 0.0  # when it first entered the queue (aging)
    initial_attempt: float | None = None
    attempts: int = 0
    backoff_until: float = 0.0
    unschedulable_since: float | None = None
    reason: str = ""
    where: str = "active"  # active | backoff | unschedulable | gated | in-flight
    seq: int = 0
    cycle: int = 0  # scheduling cycle in which it was last popped
    errored: bool = False  # the last attempt ended in an error, not a verdict

    @property
    def key(self) -> PodKey:
        return self.pod.key


SortKey = Callable[[QueuedPod, float], tuple[float, ...]]
PreEnqueue = Callable[[PodInfo], str | None]
"""Returns None to admit the pod to activeQ, or the reason it stays gated."""


def priority_fifo(qp: QueuedPod, now: float) -> tuple[float, ...]:
    """Higher priority first, then first come (kube-scheduler's PrioritySort)."""
    return (-qp.pod.priority, qp.timestamp)


class SchedulingQueue:
    """Holds pods that wait for a scheduling attempt."""

    def __init__(
        self,
        options: QueueOptions | None = None,
        clock: Clock = time.monotonic,
        *,
        sort_key: SortKey = priority_fifo,
        pre_enqueue: PreEnqueue | None = None,
    ) -> None:
        self.options = options or QueueOptions()
        self._clock = clock
        self._sort_key = sort_key
        self._pre_enqueue = pre_enqueue
        self._pods: dict[PodKey, QueuedPod] = {}
        self._active: list[tuple[tuple[float, ...], int, QueuedPod]] = []
        self._backoff: list[tuple[float, int, QueuedPod]] = []
        self._seq = itertools.count()
        self._cycle = 0
        self._move_request_cycle = -1
        self._ready = asyncio.Event()
        self._closed = False

    # ---- reads -------------------------------------------------------------

    def __contains__(self, key: PodKey) -> bool:
        return key in self._pods

    def get(self, key: PodKey) -> QueuedPod | None:
        return self._pods.get(key)

    def counts(self) -> dict[str, int]:
        """Pods per part: ``active``, ``backoff``, ``unschedulable``, ``in-flight``."""
        out = {"active": 0, "backoff": 0, "unschedulable": 0, "gated": 0, "in-flight": 0}
        for qp in self._pods.values():
            out[qp.where] += 1
        return out

    def __len__(self) -> int:
        return len(self._pods)

    @property
    def scheduling_cycle(self) -> int:
        return self._cycle

    # ---- changes from informers -------------------------------------------

    def add(self, pod: PodInfo) -> None:
        """A new pending pod; an existing one is updated instead."""
        if pod.key in self._pods:
            self.update(pod)
            return
        now = self._clock()
        qp = QueuedPod(pod=pod, timestamp=now, first_seen=now)
        self._pods[pod.key] = qp
        self._enqueue(qp)

    def update(self, pod: PodInfo) -> None:
        """Replace a queued pod's info; an unschedulable pod gets another try."""
        qp = self._pods.get(pod.key)
        if qp is None:
            self.add(pod)
            return
        old_priority = qp.pod.priority
        qp.pod = pod
        if qp.where in ("unschedulable", "gated"):
            self._enqueue(qp)
        elif qp.where == "active" and pod.priority != old_priority:
            self._push_active(qp)  # the old heap entry is skipped lazily
        elif qp.where == "backoff" and pod.nominated_node_name:
            # The nominated node (written after preemption) makes it eligible
            # for _pop_from_backoff: wake an idle scheduler to look.
            self._ready.set()

    def delete(self, key: PodKey) -> None:
        """The pod was deleted or bound elsewhere: forget it everywhere."""
        qp = self._pods.pop(key, None)
        if qp is not None:
            qp.where = "gone"

    # ---- the scheduling loop's side ---------------------------------------

    async def pop(self) -> QueuedPod:
        """The next pod to try; waits while activeQ is empty.

        Cancelling while waiting is safe: nothing is removed.
        """
        while True:
            self.flush_backoff()
            while self._active:
                _, seq, qp = heapq.heappop(self._active)
                if qp.where != "active" or qp.seq != seq:
                    continue  # stale entry: deleted, moved or re-prioritised
                qp.where = "in-flight"
                qp.attempts += 1
                if qp.initial_attempt is None:
                    qp.initial_attempt = self._clock()
                self._cycle += 1
                qp.cycle = self._cycle
                return qp
            if self._closed:
                raise QueueClosed()
            if self._pop_from_backoff():
                continue
            self._ready.clear()
            await self._ready.wait()

    def unpop(self, qp: QueuedPod) -> None:
        """An attempt not made (the scheduler stopped leading): back to activeQ as it was."""
        if self._pods.get(qp.key) is not qp or qp.where != "in-flight":
            return
        qp.attempts -= 1
        self._push_active(qp)

    def done(self, key: PodKey) -> None:
        """The attempt succeeded (the pod is assumed): it leaves the queue."""
        qp = self._pods.get(key)
        if qp is not None and qp.where == "in-flight":
            del self._pods[key]

    def requeue_unschedulable(self, qp: QueuedPod, *, reason: str) -> None:
        """The attempt failed. Back off if the cluster changed meanwhile, else park."""
        if self._pods.get(qp.key) is not qp:
            return  # deleted while in flight
        qp.reason = reason
        qp.errored = False
        now = self._clock()
        if qp.unschedulable_since is None:
            qp.unschedulable_since = now
        qp.backoff_until = now + self.backoff_duration(qp)
        if self._move_request_cycle >= qp.cycle:
            self._push_backoff(qp)
        else:
            qp.where = "unschedulable"

    def requeue_error(self, qp: QueuedPod, *, reason: str) -> None:
        """The attempt hit an error (not a verdict): retry after backoff."""
        if self._pods.get(qp.key) is not qp:
            return
        qp.reason = reason
        qp.errored = True
        qp.backoff_until = self._clock() + self.backoff_duration(qp)
        self._push_backoff(qp)

    def move_all_to_active_or_backoff(self, which: Callable[[PodInfo], bool] | None = None) -> int:
        """A cluster event may make unschedulable pods fit: give them another try.

        ``which``, if given, limits the move to the pods the event can help
        (a latency change cannot help a pod without latency requirements).
        """
        self._move_request_cycle = self._cycle
        moved = 0
        for qp in list(self._pods.values()):
            if qp.where in ("unschedulable", "gated") and (which is None or which(qp.pod)):
                self._enqueue(qp)
                moved += 1
        return moved

    def recheck_gated(self, keys: list[PodKey] | None = None) -> None:
        """Run PreEnqueue again for gated pods (all, or the given ones)."""
        for key in keys if keys is not None else list(self._pods):
            qp = self._pods.get(key)
            if qp is not None and qp.where == "gated":
                self._enqueue(qp)

    def flush_backoff(self) -> None:
        """Move pods whose backoff has expired to activeQ."""
        now = self._clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, seq, qp = heapq.heappop(self._backoff)
            if qp.where == "backoff" and qp.seq == seq:
                self._push_active(qp)

    def flush_unschedulable(self) -> None:
        """Pods parked longer than ``max_unschedulable`` get another try."""
        now = self._clock()
        for qp in list(self._pods.values()):
            if (
                qp.where == "unschedulable"
                and qp.unschedulable_since is not None
                and now - qp.unschedulable_since >= self.options.max_unschedulable
            ):
                self._enqueue(qp)

    async def run_flushes(self) -> None:
        """Periodic flushes and aging; run as a long-lived task until cancelled."""
        last_reheap = self._clock()
        while True:
            await asyncio.sleep(self.options.flush_interval)
            self.flush_backoff()
            self.flush_unschedulable()
            self.recheck_gated()  # gates may open with time (a group settling)
            if self._clock() - last_reheap >= self.options.reheap_interval:
                self.reheap()
                last_reheap = self._clock()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Wake and end every :meth:`pop` (graceful shutdown)."""
        self._closed = True
        self._ready.set()

    # ---- internals -----------------------------------------------------------

    def reheap(self) -> None:
        """Re-key activeQ with keys as of now (drops stale entries too)."""
        now = self._clock()
        self._active = [
            (self._sort_key(qp, now), seq, qp)
            for _, seq, qp in self._active
            if qp.where == "active" and qp.seq == seq
        ]
        heapq.heapify(self._active)

    def backoff_duration(self, qp: QueuedPod) -> float:
        o = self.options
        base: float = min(o.max_backoff, o.initial_backoff * 2.0 ** max(0, qp.attempts - 1))
        return base * (1 + random.uniform(0, o.backoff_jitter))

    def _enqueue(self, qp: QueuedPod) -> None:
        """PreEnqueue decides between gated and active (or backoff if still due)."""
        if self._pre_enqueue is not None:
            reason = self._pre_enqueue(qp.pod)
            if reason is not None:
                qp.where = "gated"
                qp.reason = reason
                return
        self._to_active_or_backoff(qp)

    def _to_active_or_backoff(self, qp: QueuedPod) -> None:
        if qp.backoff_until > self._clock():
            self._push_backoff(qp)
        else:
            self._push_active(qp)

    def _push_active(self, qp: QueuedPod) -> None:
        qp.where = "active"
        qp.seq = next(self._seq)
        if qp.attempts:  # a retry queues behind pods of its priority that never ran
            qp.timestamp = self._clock()
        heapq.heappush(self._active, (self._sort_key(qp, self._clock()), qp.seq, qp))
        self._ready.set()

    def _push_backoff(self, qp: QueuedPod) -> None:
        qp.where = "backoff"
        qp.seq = next(self._seq)
        heapq.heappush(self._backoff, (qp.backoff_until, qp.seq, qp))
        self._ready.set()  # an idle scheduler takes it at once (see _pop_from_backoff)

    def _pop_from_backoff(self) -> bool:
        """activeQ is empty: move a preemptor whose backoff ends first to it.

        A narrow form of kube-scheduler's SchedulerPopFromBackoffQ: a pod
        that preempted (it has a nominated node) and whose victims are gone
        is tried at once by an idle scheduler instead of a backoff later.
        Other pods keep their backoff: without kube-scheduler's queueing
        hints, every update of a pod (its own status included) moves it, and
        skipping backoff for all of them turns waiting gangs into busy loops.
        Pods backing off after an error always wait it out.
        """
        waiting = [
            (until, seq, qp)
            for until, seq, qp in self._backoff
            if qp.where == "backoff"
            and qp.seq == seq
            and not qp.errored
            and qp.pod.nominated_node_name
        ]
        if not waiting:
            return False
        _, _, qp = min(waiting, key=lambda e: (e[0], e[1]))
        self._push_active(qp)  # a new seq: its backoff heap entry is now stale
        return True


class QueueClosed(Exception):
    """The queue was closed; the scheduling loop ends."""
