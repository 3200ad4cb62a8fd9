"""The scheduling queue: activeQ, backoffQ and the unschedulable pool.

Follows kube-scheduler's PriorityQueue:

* **activeQ** is a heap in the QueueSort plugin's order: higher priority
  first, then the pod that entered the queue first (FIFO within a priority,
  across retries: a pod keeps its place however often it was tried).
* A pod that failed goes to **backoffQ** for ``initial * 2**(attempts-1)``
  seconds (capped, with jitter) when a cluster event arrived, or the pod
  changed, while it was being tried, otherwise to the **unschedulable** pool.
* Cluster events (a node added or changed, a bound pod deleted)
  :meth:`move_all_to_active_or_backoff`; so does a wait that ends with time
  (:meth:`move_at`); a periodic flush returns pods parked longer than
  ``max_unschedulable`` so nothing waits forever.
* Deletion removes a pod from every part. An update replaces the pod's info
  in place; it moves an unschedulable pod only when it changed something the
  scheduler reads (:func:`scheduling_changed`, kube-scheduler's
  ``isPodUpdated``), so the status lasched itself writes after a failed
  attempt never sends the pod back to be tried again.
* Because the QueueSort key may change with time (starvation aging), the heap
  is re-keyed every ``reheap_interval`` seconds.
* **gated** pods failed a PreEnqueue check (a gang that is not complete yet);
  they wait outside activeQ until an update or :meth:`recheck_gated`.

**Starving pods** (lasched's own, kube-scheduler has none): a pod that has
been in the queue for ``starvation_seconds`` is ordered before every pod
that is not starving, whatever the priorities; starving pods go oldest first. So
once starving, only pods that entered the queue before it can be tried
ahead of it. And backoff cannot make it miss the room a cluster event
frees: after each event, one starving pod that is backing off, taken in
turn, is moved to activeQ at once. A starving pod is therefore tried before
any pod that is not starving right after at least one of every ``k + 1`` events, ``k``
being the number of starving pods backing off with it (after every event
when it is alone), at the cost of at most one extra attempt per event.

Time comes from an injectable clock so tests run in virtual time.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from lasched.model.pod import UID, PodInfo, PodKey

Clock = Callable[[], float]


class QueueState(enum.StrEnum):
    """Where a pod is; the values are what metrics and ``lasched explain`` show."""

    ACTIVE = "active"
    BACKOFF = "backoff"
    UNSCHEDULABLE = "unschedulable"
    GATED = "gated"
    IN_FLIGHT = "in-flight"
    GONE = "gone"  # deleted; a holder of the QueuedPod sees it is no longer queued


@dataclass(frozen=True, slots=True)
class QueueOptions:
    initial_backoff: float = 1.0
    max_backoff: float = 10.0
    backoff_jitter: float = 0.1
    max_unschedulable: float = 300.0
    flush_interval: float = 1.0
    reheap_interval: float = 5.0
    starvation_seconds: float | None = 600.0
    """A pod in the queue this long is starving (see the module docstring); None: never."""


@dataclass(slots=True, eq=False)
class QueuedPod:
    """A pod in the queue, with its scheduling history."""

    pod: PodInfo
    first_seen: float  # when it first entered the queue: its place in its priority, its age
    arrival: int = 0  # the order of first entry, for pods that entered at the same instant
    initial_attempt: float | None = None
    attempts: int = 0
    backoff_until: float = 0.0
    unschedulable_since: float | None = None  # its first unschedulable verdict
    parked_at: float = 0.0  # when it last entered the unschedulable pool
    reason: str = ""
    where: QueueState = QueueState.ACTIVE
    seq: int = 0
    cycle: int = 0  # scheduling cycle in which it was last popped
    errored: bool = False  # the last attempt ended in an error, not a verdict
    changed_in_flight: bool = False  # updated (scheduling_changed) during its attempt
    starving_at: float = math.inf  # first_seen + starvation_seconds
    turn: float = math.inf  # when it last skipped backoff as a starving pod (round robin)

    @property
    def key(self) -> PodKey:
        return self.pod.key

    def starving(self, now: float) -> bool:
        return now >= self.starving_at


SortKey = Callable[[QueuedPod, float], tuple[float, ...]]
PreEnqueue = Callable[[PodInfo], str | None]
"""Returns None to admit the pod to activeQ, or the reason it stays gated."""


def priority_fifo(qp: QueuedPod, now: float) -> tuple[float, ...]:
    """Higher priority first, then first come (kube-scheduler's PrioritySort)."""
    return (-qp.pod.priority, qp.first_seen, qp.arrival)


# What the scheduler reads of a pod, and what it does not: scheduling_changed
# compares the first. Every PodInfo attribute is in exactly one of the two
# (a unit test holds the sets to PodInfo.__slots__), so a new attribute must
# be placed consciously.
SCHEDULING_FIELDS = (
    "uid",
    "labels",
    "annotations",
    "deleting",
    "scheduler_name",
    "node_name",
    "scheduling_gates",
    "node_selector",
    "affinity",
    "tolerations",
    "priority",
    "preemption_policy",
    "requests",
    "host_ports",
    "spread_constraints",  # the parsed spec.topologySpreadConstraints
    "controller",  # default topology spreading groups pods by it
)
NOT_SCHEDULING_FIELDS = (
    # Status, written by schedulers (lasched's own PodScheduled condition and
    # nominated node) and kubelets; kube-scheduler's isPodUpdated drops it too.
    "resource_version",
    "nominated_node_name",
    "phase",
    # Immutable, or derived from the fields above.
    "key",
    "name",
    "namespace",
    "created",
    "non_zero",
    "priority_error",
    "latency",
    "latency_error",
    "group",
    "group_error",
    "pod_affinity",
    "affinity_error",
    "spread_error",
)


def scheduling_changed(old: PodInfo, new: PodInfo) -> bool:
    """Did an update change something the scheduler reads, so that it may now fit?

    kube-scheduler's ``isPodUpdated``: resourceVersion, status (where the
    scheduler writes PodScheduled and nominatedNodeName), managedFields and
    finalizers do not count; a change of spec, labels or annotations does.
    """
    return any(getattr(old, f) != getattr(new, f) for f in SCHEDULING_FIELDS)


@dataclass(frozen=True, slots=True)
class _Age:
    """The age of a pod that left the queue to bind, kept until the bind is seen."""

    uid: UID
    first_seen: float
    arrival: int


_Entry = tuple[tuple[float, ...], int, QueuedPod]


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
        # activeQ is two heaps: starving pods (oldest first) and the others (QueueSort's
        # order); a third heap says when each of the others starts starving.
        self._active: list[_Entry] = []
        self._starving: list[_Entry] = []
        self._aging: list[tuple[float, int, QueuedPod]] = []
        self._backoff: list[tuple[float, int, QueuedPod]] = []
        self._departed: dict[PodKey, _Age] = {}
        # Moves due at a time (move_at), by key; the heap holds superseded ones too.
        self._timers: list[tuple[float, int, str, Callable[[PodInfo], bool]]] = []
        self._timer_due: dict[str, float] = {}
        self._seq = itertools.count()
        self._arrivals = itertools.count()
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
        """Pods per part: ``active``, ``backoff``, ``unschedulable``, ``gated``, ``in-flight``."""
        out = {s.value: 0 for s in QueueState if s is not QueueState.GONE}
        for qp in self._pods.values():
            out[qp.where] += 1  # a StrEnum member finds its value's key (and costs less)
        return out

    def __len__(self) -> int:
        return len(self._pods)

    @property
    def scheduling_cycle(self) -> int:
        return self._cycle

    # ---- changes from informers -------------------------------------------

    def add(self, pod: PodInfo) -> None:
        """A new pending pod; an existing one is updated instead.

        A pod that left the queue to bind and comes back (its bind or Permit
        failed) keeps the age it had: its place among its priority, and the
        time towards starving.
        """
        if pod.key in self._pods:
            self.update(pod)
            return
        now = self._clock()
        age = self._departed.pop(pod.key, None)
        if age is not None and age.uid == pod.uid:
            qp = QueuedPod(pod=pod, first_seen=age.first_seen, arrival=age.arrival)
        else:
            qp = QueuedPod(pod=pod, first_seen=now, arrival=next(self._arrivals))
        if self.options.starvation_seconds is not None:
            qp.starving_at = qp.turn = qp.first_seen + self.options.starvation_seconds
        self._pods[pod.key] = qp
        self._enqueue(qp)

    def update(self, pod: PodInfo) -> None:
        """Replace a queued pod's info; a change the scheduler reads gives it another try.

        An update that changes nothing the scheduler reads (its status, a new
        resourceVersion) leaves the pod where it is, as kube-scheduler does.
        """
        qp = self._pods.get(pod.key)
        if qp is None:
            self.add(pod)
            return
        old, qp.pod = qp.pod, pod
        changed = scheduling_changed(old, pod)
        if qp.where in (QueueState.UNSCHEDULABLE, QueueState.GATED):
            if changed:
                self._enqueue(qp)
        elif qp.where is QueueState.ACTIVE:
            if changed:
                self._push_active(qp)  # re-keyed (priority); the old entry is skipped lazily
        elif qp.where is QueueState.IN_FLIGHT:
            # The attempt saw the old pod: its failure must not park the new one.
            qp.changed_in_flight = qp.changed_in_flight or changed
        elif qp.where is QueueState.BACKOFF and pod.nominated_node_name:
            # The nominated node (written after preemption) makes it eligible
            # for _pop_from_backoff: wake an idle scheduler to look.
            self._ready.set()

    def delete(self, key: PodKey) -> None:
        """The pod was deleted or bound: forget it everywhere."""
        self._departed.pop(key, None)
        qp = self._pods.pop(key, None)
        if qp is not None:
            qp.where = QueueState.GONE

    # ---- the scheduling loop's side ---------------------------------------

    async def pop(self) -> QueuedPod:
        """The next pod to try; waits while activeQ is empty.

        Cancelling while waiting is safe: nothing is removed.
        """
        while True:
            self.flush_backoff()
            self._promote_starving(self._clock())
            qp = self._pop_live(self._starving) or self._pop_live(self._active)
            if qp is not None:
                qp.where = QueueState.IN_FLIGHT
                qp.changed_in_flight = False
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
        if self._pods.get(qp.key) is not qp or qp.where is not QueueState.IN_FLIGHT:
            return
        qp.attempts -= 1
        self._push_active(qp)

    def done(self, key: PodKey) -> None:
        """The attempt succeeded (the pod is assumed): it leaves the queue."""
        qp = self._pods.get(key)
        if qp is not None and qp.where is QueueState.IN_FLIGHT:
            del self._pods[key]
            # Forgotten when the bind is seen (delete); remembered if it comes back.
            self._departed[key] = _Age(qp.pod.uid, qp.first_seen, qp.arrival)

    def requeue_unschedulable(self, qp: QueuedPod, *, reason: str) -> None:
        """The attempt failed. Back off if the cluster or the pod changed meanwhile, else park."""
        if self._pods.get(qp.key) is not qp:
            return  # deleted while in flight
        qp.reason = reason
        qp.errored = False
        now = self._clock()
        if qp.unschedulable_since is None:
            qp.unschedulable_since = now
        qp.backoff_until = now + self.backoff_duration(qp)
        if self._move_request_cycle >= qp.cycle or qp.changed_in_flight:
            qp.changed_in_flight = False
            self._push_backoff(qp)
        else:
            qp.where = QueueState.UNSCHEDULABLE
            qp.parked_at = now

    def requeue_error(self, qp: QueuedPod, *, reason: str) -> None:
        """The attempt hit an error (not a verdict): retry after backoff."""
        if self._pods.get(qp.key) is not qp:
            return
        qp.reason = reason
        qp.errored = True
        qp.changed_in_flight = False
        qp.backoff_until = self._clock() + self.backoff_duration(qp)
        self._push_backoff(qp)

    def move_all_to_active_or_backoff(self, which: Callable[[PodInfo], bool] | None = None) -> int:
        """A cluster event may make unschedulable pods fit: give them another try.

        ``which``, if given, limits the move to the pods the event can help
        (a latency change cannot help a pod without latency requirements).
        Then one starving pod that is backing off (not after an error), the
        one whose turn is oldest, skips the rest of its backoff: it is tried
        before the room the event freed can go to a pod that is not starving.
        """
        self._move_request_cycle = self._cycle
        now = self._clock()
        moved = 0
        skip: QueuedPod | None = None
        for qp in list(self._pods.values()):
            if which is not None and not which(qp.pod):
                continue
            if qp.where in (QueueState.UNSCHEDULABLE, QueueState.GATED):
                self._enqueue(qp)
                moved += 1
            if (
                qp.where is QueueState.BACKOFF
                and not qp.errored
                and qp.starving(now)
                and (skip is None or (qp.turn, qp.arrival) < (skip.turn, skip.arrival))
            ):
                skip = qp
        if skip is not None:
            skip.turn = now
            self._push_active(skip)  # a new seq: its backoff heap entry is now stale
        return moved

    def move_at(self, when: float, which: Callable[[PodInfo], bool], *, key: str) -> None:
        """At ``when`` (the queue's clock), :meth:`move_all_to_active_or_backoff` the pods
        ``which`` selects: for a wait that ends with time, which no cluster event marks
        (a pod group's backoff). A later call with the same ``key`` replaces this one.
        """
        self._timer_due[key] = when
        heapq.heappush(self._timers, (when, next(self._seq), key, which))

    def fire_timers(self) -> None:
        """Make the moves of :meth:`move_at` that are due."""
        now = self._clock()
        while self._timers and self._timers[0][0] <= now:
            when, _, key, which = heapq.heappop(self._timers)
            if self._timer_due.get(key) == when:
                del self._timer_due[key]
                self.move_all_to_active_or_backoff(which)

    def recheck_gated(self, keys: list[PodKey] | None = None) -> None:
        """Run PreEnqueue again for gated pods (all, or the given ones)."""
        for key in keys if keys is not None else list(self._pods):
            qp = self._pods.get(key)
            if qp is not None and qp.where is QueueState.GATED:
                self._enqueue(qp)

    def flush_backoff(self) -> None:
        """Move pods whose backoff has expired to activeQ."""
        now = self._clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, seq, qp = heapq.heappop(self._backoff)
            if qp.where is QueueState.BACKOFF and qp.seq == seq:
                self._push_active(qp)

    def flush_unschedulable(self) -> None:
        """Pods parked longer than ``max_unschedulable`` get another try."""
        now = self._clock()
        for qp in list(self._pods.values()):
            if (
                qp.where is QueueState.UNSCHEDULABLE
                and now - qp.parked_at >= self.options.max_unschedulable
            ):
                self._enqueue(qp)

    async def run_flushes(self) -> None:
        """Periodic flushes and aging; run as a long-lived task until cancelled."""
        last_reheap = self._clock()
        while True:
            await asyncio.sleep(self.options.flush_interval)
            self.fire_timers()
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
        self._promote_starving(now)
        self._active = [
            (self._sort_key(qp, now), seq, qp) for _, seq, qp in self._active if _live(qp, seq)
        ]
        heapq.heapify(self._active)
        self._starving = [e for e in self._starving if _live(e[2], e[1])]
        heapq.heapify(self._starving)
        self._aging = [e for e in self._aging if _live(e[2], e[1])]
        heapq.heapify(self._aging)

    def backoff_duration(self, qp: QueuedPod) -> float:
        o = self.options
        base: float = min(o.max_backoff, o.initial_backoff * 2.0 ** max(0, qp.attempts - 1))
        return base * (1 + random.uniform(0, o.backoff_jitter))

    def _enqueue(self, qp: QueuedPod) -> None:
        """PreEnqueue decides between gated and active (or backoff if still due)."""
        if self._pre_enqueue is not None:
            reason = self._pre_enqueue(qp.pod)
            if reason is not None:
                qp.where = QueueState.GATED
                qp.reason = reason
                return
        self._to_active_or_backoff(qp)

    def _to_active_or_backoff(self, qp: QueuedPod) -> None:
        if qp.backoff_until > self._clock():
            self._push_backoff(qp)
        else:
            self._push_active(qp)

    def _push_active(self, qp: QueuedPod) -> None:
        qp.where = QueueState.ACTIVE
        qp.seq = next(self._seq)
        now = self._clock()
        if qp.starving(now):
            heapq.heappush(self._starving, ((qp.first_seen, qp.arrival), qp.seq, qp))
        else:
            heapq.heappush(self._active, (self._sort_key(qp, now), qp.seq, qp))
            if qp.starving_at < math.inf:
                heapq.heappush(self._aging, (qp.starving_at, qp.seq, qp))
        self._ready.set()

    def _promote_starving(self, now: float) -> None:
        """Active pods that started starving since they were pushed go to the starving heap."""
        while self._aging and self._aging[0][0] <= now:
            _, seq, qp = heapq.heappop(self._aging)
            if _live(qp, seq):
                self._push_active(qp)  # a new seq: its entry in the other heap is now stale

    @staticmethod
    def _pop_live(heap: list[_Entry]) -> QueuedPod | None:
        while heap:
            _, seq, qp = heapq.heappop(heap)
            if _live(qp, seq):
                return qp
        return None

    def _push_backoff(self, qp: QueuedPod) -> None:
        qp.where = QueueState.BACKOFF
        qp.seq = next(self._seq)
        heapq.heappush(self._backoff, (qp.backoff_until, qp.seq, qp))
        self._ready.set()  # an idle scheduler takes it at once (see _pop_from_backoff)

    def _pop_from_backoff(self) -> bool:
        """activeQ is empty: move a preemptor whose backoff ends first to it.

        A narrow form of kube-scheduler's SchedulerPopFromBackoffQ: a pod
        that preempted (it has a nominated node) and whose victims are gone
        is tried at once by an idle scheduler instead of a backoff later.
        Other pods keep their backoff, as kube-scheduler's do without that
        feature: gang members that keep failing in turn would otherwise try
        without pause. Pods backing off after an error always wait it out.
        """
        waiting = [
            (until, seq, qp)
            for until, seq, qp in self._backoff
            if qp.where is QueueState.BACKOFF
            and qp.seq == seq
            and not qp.errored
            and qp.pod.nominated_node_name
        ]
        if not waiting:
            return False
        _, _, qp = min(waiting, key=lambda e: (e[0], e[1]))
        self._push_active(qp)  # a new seq: its backoff heap entry is now stale
        return True


def _live(qp: QueuedPod, seq: int) -> bool:
    """A heap entry is current only while the pod is active under the same push."""
    return qp.where is QueueState.ACTIVE and qp.seq == seq


class QueueClosed(Exception):
    """The queue was closed; the scheduling loop ends."""
