"""The scheduling queue: activeQ, backoffQ and the unschedulable pool.

Follows kube-scheduler's PriorityQueue, with its queueing hints:

* **activeQ** is a heap in the QueueSort plugin's order: higher priority
  first, then the pod that entered the queue first (FIFO within a priority,
  across retries: a pod keeps its place however often it was tried).
* A failed attempt records the plugins that rejected the pod
  (``QueuedPod.unschedulable_plugins``). The pod goes to **backoffQ** for
  ``initial * 2**(attempts-1)`` seconds (capped, with jitter) when the pod
  changed, or a cluster event that may help it arrived, while it was being
  tried; otherwise to the **unschedulable** pool. An attempt lasts from the
  pop to the requeue, or, for a pod that went on to Permit and its binding,
  until it comes back: the events of that span are kept and judged when it
  does (kube-scheduler's in-flight events).
* Cluster events arrive typed (:meth:`on_event`, lasched.framework.events:
  a node added or changed, a bound pod deleted, RTTs changed, ...). An
  unschedulable pod moves only when one of the plugins that rejected it
  registered the event and its queueing hint says QUEUE; a pod that no
  plugin on record rejected moves on any event. The pool is indexed by
  rejecting plugin, so an event visits only the pods it may help.
* Moves that no event marks are timers on the scheduler's one timer heap
  (lasched.timers): a pod's backoff ends at its time, a wait that ends with
  time (:meth:`move_at`: a pod group's backoff, a group settling) moves the
  pods it selects, and a pod parked for ``max_unschedulable`` gets another
  try as a safety net. Nothing polls.
* Deletion removes a pod from every part. An update replaces the pod's info
  in place; it moves an unschedulable pod only when it changed something the
  scheduler reads (:func:`scheduling_changed`, kube-scheduler's
  ``isPodUpdated``), so the status lasched itself writes after a failed
  attempt never sends the pod back to be tried again.
* Because the QueueSort key may change with time (starvation aging), activeQ
  is re-keyed when a pop finds the last re-keying ``reheap_interval`` old.
* **gated** pods failed a PreEnqueue check (a gang that is not complete yet);
  they wait outside activeQ, in the pool under the gating plugin, until an
  update, an event that plugin registered, or :meth:`recheck_gated`.

**Starving pods** (lasched's own, kube-scheduler has none): a pod that has
been in the queue for ``starvation_seconds`` is ordered before every pod
that is not starving, whatever the priorities; starving pods go oldest first. So
once starving, only pods that entered the queue before it can be tried
ahead of it. And backoff cannot make it miss the room a cluster event
frees: after each event, one starving pod that is backing off and that the
event may help, taken in turn, is moved to activeQ at once. A starving pod
is therefore tried before any pod that is not starving right after at least
one of every ``k + 1`` such events, ``k`` being the number of starving pods
backing off with it (after every such event when it is alone), at the cost
of at most one extra attempt per event.

Time comes from an injectable clock, and timers from an injectable heap, so
tests run in virtual time.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lasched.framework.events import WILDCARD_EVENT, ClusterEvent, EventResource, QueueingHints
from lasched.model.pod import UID, PodInfo, PodKey
from lasched.timers import Timer, TimerHeap

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
    parked_at: float = 0.0  # when it last entered the unschedulable pool (or was gated)
    reason: str = ""
    # The plugins that rejected its last attempt, or gate it (kube-scheduler's
    # UnschedulablePlugins): only events they registered move it. Empty: any event.
    unschedulable_plugins: frozenset[str] = frozenset()
    where: QueueState = QueueState.ACTIVE
    seq: int = 0
    cycle: int = 0  # scheduling cycle in which it was last popped
    errored: bool = False  # the last attempt ended in an error, not a verdict
    changed_in_flight: bool = False  # updated (scheduling_changed) during its attempt
    starving_at: float = math.inf  # first_seen + starvation_seconds
    turn: float = math.inf  # when it last skipped backoff as a starving pod (round robin)
    indexed: frozenset[str] | None = None  # the pool's index keys while parked or gated

    @property
    def key(self) -> PodKey:
        return self.pod.key

    def starving(self, now: float) -> bool:
        return now >= self.starving_at


SortKey = Callable[[QueuedPod, float], tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class Gated:
    """Why PreEnqueue keeps a pod out of activeQ, and the plugin that does ("" if unknown)."""

    reason: str
    plugin: str = ""


PreEnqueue = Callable[[PodInfo], Gated | None]
"""Returns None to admit the pod to activeQ, or why it stays gated."""

Which = Callable[[PodInfo], bool]
"""Selects the pods a move is for."""


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
    "images",  # the containers' images, which ImageLocality scores by
    "owner",  # a pod group without a declared size is sized by it
)
NOT_SCHEDULING_FIELDS = (
    # Status, written by schedulers (lasched's own PodScheduled condition and
    # nominated node) and kubelets; kube-scheduler's isPodUpdated drops it too.
    "resource_version",
    "nominated_node_name",
    "unschedulable_message",
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
    "claims",  # spec.volumes cannot change
    "local_storage",  # nor can this, read from them
    "numa",  # annotations, requests and QoS (limits resize with requests)
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
    cycle: int  # of the attempt that took it to Permit and binding


@dataclass(frozen=True, slots=True)
class _Logged:
    """An event that arrived while attempts were open, with the cycle it arrived in."""

    cycle: int
    event: ClusterEvent
    old: Any
    new: Any
    which: Which | None


_Entry = tuple[tuple[float, ...], int, QueuedPod]

_ANY = ""  # the pool's key for pods that any event moves
_ANY_KEYS = frozenset((_ANY,))
_LOG_PRUNE = 64  # events kept before the log is first pruned
_LOG_LIMIT = 4096  # beyond this, the oldest open attempts count as helped (see _helped_meanwhile)


class SchedulingQueue:
    """Holds pods that wait for a scheduling attempt."""

    def __init__(
        self,
        options: QueueOptions | None = None,
        clock: Clock = time.monotonic,
        *,
        sort_key: SortKey = priority_fifo,
        pre_enqueue: PreEnqueue | None = None,
        hints: Mapping[str, QueueingHints] | None = None,
        timers: TimerHeap | None = None,
    ) -> None:
        """``hints``: each profile's queueing hints, by scheduler name (a pod of a
        profile not there moves on any event); ``timers``: the heap its timed moves go
        on, on the same clock (default: its own, which its owner fires or runs)."""
        self.options = options or QueueOptions()
        self._clock = clock
        self._sort_key = sort_key
        self._pre_enqueue = pre_enqueue
        self._hints: Mapping[str, QueueingHints] = hints or {}
        self.timers = timers if timers is not None else TimerHeap(clock)
        self._pods: dict[PodKey, QueuedPod] = {}
        # activeQ is two heaps: starving pods (oldest first) and the others (QueueSort's
        # order); a third heap says when each of the others starts starving.
        self._active: list[_Entry] = []
        self._starving: list[_Entry] = []
        self._aging: list[tuple[float, int, QueuedPod]] = []
        self._backoff: list[tuple[float, int, QueuedPod]] = []
        # The backoffQ by when each pod starts starving (stale entries dropped from the
        # top as found): a cluster event asks whether any pod there starves, in O(1).
        self._backoff_by_age: list[tuple[float, int, QueuedPod]] = []
        self._departed: dict[PodKey, _Age] = {}
        # The unschedulable pool and the gated pods: by rejecting plugin (_ANY: moved by
        # any event), and all of them in the order they were parked (the safety flush's).
        self._pool: dict[str, dict[PodKey, QueuedPod]] = {}
        self._parked: dict[PodKey, QueuedPod] = {}
        # Open attempts (popped, or gone on to Permit and binding) -> the cycle of their
        # pop, and the events that arrived since the oldest of them.
        self._open: dict[PodKey, int] = {}
        self._log: deque[_Logged] = deque()
        self._log_lost = -1  # events of this cycle and before may be missing from the log
        self._prune_at = _LOG_PRUNE
        self._backoff_timer: Timer | None = None
        self._flush_timer: Timer | None = None
        self._timed: dict[str, Timer] = {}
        self._seq = itertools.count()
        self._arrivals = itertools.count()
        self._cycle = 0
        self._last_reheap = clock()
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
        time towards starving; and its attempt is still open, so the events
        since its pop are judged when it is requeued.
        """
        if pod.key in self._pods:
            self.update(pod)
            return
        now = self._clock()
        age = self._departed.pop(pod.key, None)
        if age is not None and age.uid == pod.uid:
            qp = QueuedPod(pod=pod, first_seen=age.first_seen, arrival=age.arrival, cycle=age.cycle)
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
        self._close(key)
        qp = self._pods.pop(key, None)
        if qp is not None:
            self._unpark(qp)
            qp.where = QueueState.GONE

    # ---- the scheduling loop's side ---------------------------------------

    async def pop(self) -> QueuedPod:
        """The next pod to try; waits while activeQ is empty.

        Cancelling while waiting is safe: nothing is removed.
        """
        while True:
            self.flush_backoff()
            now = self._clock()
            if now - self._last_reheap >= self.options.reheap_interval:
                self.reheap()
            self._promote_starving(now)
            qp = self._pop_live(self._starving) or self._pop_live(self._active)
            if qp is not None:
                qp.where = QueueState.IN_FLIGHT
                qp.changed_in_flight = False
                qp.attempts += 1
                if qp.initial_attempt is None:
                    qp.initial_attempt = self._clock()
                self._cycle += 1
                qp.cycle = self._cycle
                self._open.pop(qp.key, None)  # re-inserted last: the dict stays in pop order
                self._open[qp.key] = qp.cycle
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
        self._close(qp.key)
        self._push_active(qp)

    def done(self, key: PodKey) -> None:
        """The attempt succeeded (the pod is assumed): it leaves the queue.

        Its attempt stays open until the bind is seen (:meth:`delete`) or the
        pod comes back (:meth:`add`).
        """
        qp = self._pods.get(key)
        if qp is not None and qp.where is QueueState.IN_FLIGHT:
            del self._pods[key]
            self._departed[key] = _Age(qp.pod.uid, qp.first_seen, qp.arrival, qp.cycle)

    def requeue_unschedulable(
        self, qp: QueuedPod, *, reason: str, plugins: Iterable[str] = ()
    ) -> None:
        """The attempt failed, rejected by ``plugins``. Back off if the pod changed, or an
        event that may help it arrived, during the attempt; else park it."""
        if self._pods.get(qp.key) is not qp:
            return  # deleted while in flight (which ended its attempt)
        qp.reason = reason
        qp.errored = False
        qp.unschedulable_plugins = frozenset(p for p in plugins if p)
        now = self._clock()
        if qp.unschedulable_since is None:
            qp.unschedulable_since = now
        qp.backoff_until = now + self.backoff_duration(qp)
        helped = qp.changed_in_flight or self._helped_meanwhile(qp)
        self._close(qp.key)
        qp.changed_in_flight = False
        if helped:
            self._push_backoff(qp)
        else:
            self._park(qp, QueueState.UNSCHEDULABLE)

    def requeue_error(self, qp: QueuedPod, *, reason: str) -> None:
        """The attempt hit an error (not a verdict): retry after backoff."""
        if self._pods.get(qp.key) is not qp:
            return
        self._close(qp.key)
        qp.reason = reason
        qp.errored = True
        qp.unschedulable_plugins = frozenset()
        qp.changed_in_flight = False
        qp.backoff_until = self._clock() + self.backoff_duration(qp)
        self._push_backoff(qp)

    # ---- cluster events -----------------------------------------------------

    def on_event(self, event: ClusterEvent, old: Any = None, new: Any = None) -> int:
        """A cluster event: move the pods it may help to activeQ or backoffQ.

        ``old`` and ``new`` are the object before and after (None for an add,
        a delete). A parked or gated pod moves when a plugin that rejected it
        registered ``event`` and its hint says QUEUE, or when no plugin on
        record rejected it (lasched.framework.events). The event is kept for
        the attempts open now, and judged for each when it is requeued. Then
        one starving pod that is backing off and that the event may help
        skips the rest of its backoff (see the module docstring). Returns how
        many parked pods moved.
        """
        return self._move(event, old, new, None)

    def move_all_to_active_or_backoff(self, which: Which | None = None) -> int:
        """Every pod ``which`` selects (all by default) is worth another try, whoever
        rejected it: kube-scheduler's move for a wildcard event. For changes no typed
        event describes: a timed move, an eviction refused for a preemptor."""
        return self._move(WILDCARD_EVENT, None, None, which)

    def activate(self, keys: Iterable[PodKey]) -> int:
        """The given pods, if parked or backing off, go to activeQ now, their
        backoff skipped (kube-scheduler's ``Activate``, which scheduler-plugins'
        Coscheduling uses for a group's siblings: once one member holds a reservation,
        the others must not sit out a backoff earned while the group waited its turn).
        PreEnqueue still decides (a gated pod stays gated); pods in flight are left
        alone. Returns how many moved."""
        waiting = (QueueState.UNSCHEDULABLE, QueueState.BACKOFF)
        moving = [qp for k in keys if (qp := self._pods.get(k)) is not None and qp.where in waiting]
        for qp in moving:
            qp.backoff_until = 0.0
            self._enqueue(qp)
        return sum(1 for qp in moving if qp.where is QueueState.ACTIVE)

    def move_at(self, when: float, which: Which, *, key: str) -> None:
        """At ``when`` (the queue's clock), :meth:`move_all_to_active_or_backoff` the pods
        ``which`` selects: for a wait that ends with time, which no cluster event marks
        (a pod group's backoff). A later call with the same ``key`` replaces this one.
        """
        previous = self._timed.pop(key, None)
        if previous is not None:
            previous.cancel()

        def due() -> None:
            del self._timed[key]
            self.move_all_to_active_or_backoff(which)

        self._timed[key] = self.timers.call_at(when, due)

    def recheck_gated(self, keys: Iterable[PodKey] | None = None) -> None:
        """Run PreEnqueue again for gated pods (all, or the given ones)."""
        for key in keys if keys is not None else list(self._pods):
            qp = self._pods.get(key)
            if qp is not None and qp.where is QueueState.GATED:
                self._enqueue(qp)

    def flush_backoff(self) -> None:
        """Move pods whose backoff has expired to activeQ (and set the timer for the next)."""
        now = self._clock()
        while self._backoff and self._backoff[0][0] <= now:
            _, seq, qp = heapq.heappop(self._backoff)
            if qp.where is QueueState.BACKOFF and qp.seq == seq:
                self._push_active(qp)
        self._arm_backoff()

    def flush_unschedulable(self) -> None:
        """Pods parked or gated for ``max_unschedulable`` get another try.

        The safety net for a change no event reported (kube-scheduler's
        flush of unschedulable pods left over); its timer is set for the pod
        parked first, so it runs only when one is due.
        """
        now = self._clock()
        limit = self.options.max_unschedulable
        due = []
        for qp in self._parked.values():  # in the order parked
            if now - qp.parked_at < limit:
                break
            due.append(qp)
        for qp in due:
            self._enqueue(qp)
        self._arm_flush()

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
        self._last_reheap = now
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

    def _move(self, event: ClusterEvent, old: Any, new: Any, which: Which | None) -> int:
        if self._open:
            self._record(_Logged(self._cycle, event, old, new, which))
        moved = 0
        for qp in self._candidates(event):
            if self._worth(qp, event, old, new, which):
                self._enqueue(qp)
                moved += 1
        self._skip_a_starving_backoff(event, old, new, which)
        return moved

    def _candidates(self, event: ClusterEvent) -> list[QueuedPod]:
        """The parked and gated pods ``event`` may move: those no plugin on record
        rejected, and those of the plugins that registered it."""
        if event.resource is EventResource.WILDCARD:
            return list(self._parked.values())
        names: set[str] = set()
        for hints in self._hints.values():
            names.update(hints.for_event(event))
        found = dict(self._pool.get(_ANY, {}))
        for name in names:
            pods = self._pool.get(name)
            if pods:
                found.update(pods)
        return list(found.values())

    def _worth(
        self, qp: QueuedPod, event: ClusterEvent, old: Any, new: Any, which: Which | None
    ) -> bool:
        """kube-scheduler's ``isPodWorthRequeuing``."""
        if which is not None and not which(qp.pod):
            return False
        if event.resource is EventResource.WILDCARD or not qp.unschedulable_plugins:
            return True
        hints = self._hints.get(qp.pod.scheduler_name)
        if hints is None:
            return True
        return hints.says_queue(qp.pod, qp.unschedulable_plugins, event, old, new)

    def _skip_a_starving_backoff(
        self, event: ClusterEvent, old: Any, new: Any, which: Which | None
    ) -> None:
        """The starving pod backing off (not after an error) whose turn is oldest, among
        those ``event`` may help, skips the rest of its backoff."""
        if self.options.starvation_seconds is None or not self._backoff:
            return
        now = self._clock()
        by_age = self._backoff_by_age
        while by_age and (
            by_age[0][2].seq != by_age[0][1] or by_age[0][2].where is not QueueState.BACKOFF
        ):
            heapq.heappop(by_age)
        if not by_age or by_age[0][0] > now:
            return  # no pod in backoffQ starves: the scan below would find none
        skip: QueuedPod | None = None
        for _, seq, qp in self._backoff:
            if qp.seq != seq or qp.where is not QueueState.BACKOFF:
                continue
            if qp.errored or not qp.starving(now):
                continue
            if skip is not None and (qp.turn, qp.arrival) >= (skip.turn, skip.arrival):
                continue
            if self._worth(qp, event, old, new, which):
                skip = qp
        if skip is not None:
            skip.turn = now
            self._push_active(skip)  # a new seq: its backoff heap entry is now stale

    # ---- the attempts open, and the events that arrived meanwhile -----------------

    def _record(self, entry: _Logged) -> None:
        log = self._log
        log.append(entry)
        if len(log) < self._prune_at:
            return
        oldest = next(iter(self._open.values()))  # in pop order (see pop)
        while log and log[0].cycle < oldest:
            log.popleft()
        while len(log) > _LOG_LIMIT:
            self._log_lost = max(self._log_lost, log.popleft().cycle)
        self._prune_at = max(_LOG_PRUNE, 2 * len(log))

    def _helped_meanwhile(self, qp: QueuedPod) -> bool:
        """Did an event that may help ``qp`` arrive since its pop? (kube-scheduler's
        in-flight events; the log is in arrival order.)"""
        if qp.cycle <= self._log_lost:
            return True  # some of its events were let go: assume one helps
        for e in reversed(self._log):
            if e.cycle < qp.cycle:
                break
            if self._worth(qp, e.event, e.old, e.new, e.which):
                return True
        return False

    def _close(self, key: PodKey) -> None:
        """An attempt is over; with none open, no event needs keeping."""
        if self._open.pop(key, None) is not None and not self._open:
            self._log.clear()
            self._log_lost = -1
            self._prune_at = _LOG_PRUNE

    # ---- the pool ----------------------------------------------------------------

    def _park(self, qp: QueuedPod, where: QueueState) -> None:
        """Into the unschedulable pool, or gated, indexed by the plugins that keep it there."""
        self._unpark(qp)
        qp.where = where
        qp.parked_at = self._clock()
        keys = self._index_keys(qp)
        for k in keys:
            self._pool.setdefault(k, {})[qp.key] = qp
        qp.indexed = keys
        self._parked[qp.key] = qp
        self._arm_flush()

    def _index_keys(self, qp: QueuedPod) -> frozenset[str]:
        plugins = qp.unschedulable_plugins
        if not plugins:
            return _ANY_KEYS
        hints = self._hints.get(qp.pod.scheduler_name)
        if hints is None or not plugins <= hints.plugins:
            return _ANY_KEYS  # a plugin nobody registered for: any event may help
        return plugins

    def _unpark(self, qp: QueuedPod) -> None:
        keys = qp.indexed
        if keys is None:
            return
        qp.indexed = None
        for k in keys:
            pods = self._pool.get(k)
            if pods is not None:
                pods.pop(qp.key, None)
                if not pods:
                    del self._pool[k]
        self._parked.pop(qp.key, None)

    def _arm_flush(self) -> None:
        """The safety flush's timer, for the pod parked first."""
        if not self._parked:
            return
        first = next(iter(self._parked.values()))
        when = first.parked_at + self.options.max_unschedulable
        t = self._flush_timer
        if t is not None and t.pending and t.when <= when:
            return
        if t is not None:
            t.cancel()
        self._flush_timer = self.timers.call_at(when, self.flush_unschedulable)

    def _arm_backoff(self) -> None:
        """The timer that ends the earliest backoff."""
        backoff = self._backoff
        while backoff and not (
            backoff[0][2].where is QueueState.BACKOFF and backoff[0][2].seq == backoff[0][1]
        ):
            heapq.heappop(backoff)  # stale: the pod left backoffQ another way
        if not backoff:
            return
        when = backoff[0][0]
        t = self._backoff_timer
        if t is not None and t.pending and t.when <= when:
            return
        if t is not None:
            t.cancel()
        self._backoff_timer = self.timers.call_at(when, self.flush_backoff)

    # ---- activeQ and backoffQ ----------------------------------------------------

    def _enqueue(self, qp: QueuedPod) -> None:
        """PreEnqueue decides between gated and active (or backoff if still due)."""
        if self._pre_enqueue is not None:
            gated = self._pre_enqueue(qp.pod)
            if gated is not None:
                qp.reason = gated.reason
                qp.unschedulable_plugins = (
                    frozenset((gated.plugin,)) if gated.plugin else frozenset()
                )
                self._park(qp, QueueState.GATED)
                return
        self._to_active_or_backoff(qp)

    def _to_active_or_backoff(self, qp: QueuedPod) -> None:
        if qp.backoff_until > self._clock():
            self._push_backoff(qp)
        else:
            self._push_active(qp)

    def _push_active(self, qp: QueuedPod) -> None:
        self._unpark(qp)
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
        self._unpark(qp)
        qp.where = QueueState.BACKOFF
        qp.seq = next(self._seq)
        heapq.heappush(self._backoff, (qp.backoff_until, qp.seq, qp))
        if self.options.starvation_seconds is not None:
            by_age = self._backoff_by_age
            if len(by_age) > 2 * len(self._backoff) + 64:  # mostly stale: keep it small
                by_age[:] = [
                    (q.starving_at, q.seq, q) for _, seq, q in self._backoff if q.seq == seq
                ]
                heapq.heapify(by_age)
            else:
                heapq.heappush(by_age, (qp.starving_at, qp.seq, qp))
        self._arm_backoff()
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
