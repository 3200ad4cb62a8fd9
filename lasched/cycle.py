"""The scheduling cycle and the binding cycle of one pod, start to end.

One pod at a time goes through the **scheduling cycle**
(:meth:`SchedulingCycle.schedule_one`), a plain synchronous call: PreFilter,
Filter, (PostFilter when nothing fits), PreScore, Score, then assume, Reserve
and Permit. Nothing in it awaits, so no informer event can change the cache
under it (docs/architecture.md). The **binding cycle**
(:meth:`SchedulingCycle._binding_cycle`) then runs beside the loop as a
bounded background task: it waits at Permit if a plugin asked to, waits for
the pod's earlier status writes, runs PreBind (a pod's volumes are bound
there), binds, and records the Event.

Invariants, kube-scheduler's:

- *assume/forget*: a pod assumed in the cache is either bound (and later
  confirmed by the informer) or forgotten, on every path;
- *reserve/unreserve*: a pod that passed Reserve is unreserved on every
  path that does not end in a binding (the binding cycle's ``finally``);
- a pod that left the queue (``done``) comes back to it when its binding
  cycle fails, so that it is tried again;
- a pod that does not fit goes back with the plugins that rejected it, so
  that only the events they registered move it (lasched.framework.events);
  an assumed pod forgotten is an ``AssignedPod`` delete for the queue, as
  the informer's would be for a bound pod.

Everything the cycle needs is handed in: the queue, the cache, the profiles,
the waiting room, the gang state, a status writer, the bind task set, and a
few functions of the wiring (``leading``, ``fresh``, ``resync``), so a test
runs it with fakes and no API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from lasched import metrics
from lasched.cache.cache import CacheError, NodeInfo, SchedulerCache
from lasched.framework.events import ASSIGNED_POD_DELETE, POD_GROUP_UPDATE
from lasched.framework.interface import Code, CycleState, PostFilterResult, Status
from lasched.framework.runtime import FitError, PluginError
from lasched.framework.waiting import WaitingPod, WaitingRoom
from lasched.kube.events import ObjectRef
from lasched.kube.statuswriter import EvictionOutcome
from lasched.model.pod import PodInfo, PodKey
from lasched.plugins.coscheduling import Coscheduling, Group
from lasched.plugins.preemption import Evictions
from lasched.profiles import Profile
from lasched.queue.queue import Gated, QueueClosed, QueuedPod, SchedulingQueue
from lasched.tasks import TaskSet

log = logging.getLogger(__name__)


class StatusWrites(Protocol):
    """The API writes the cycle asks for (:class:`lasched.kube.statuswriter.StatusWriter`)."""

    def unschedulable(
        self, pod: PodInfo, message: str, *, nominated_node: str | None = None
    ) -> None: ...
    def nominated(self, pod: PodInfo, node: str) -> None: ...
    async def written(self, key: PodKey) -> None: ...
    def evict(
        self, victim: PodInfo, *, preemptor: PodKey, then: Callable[[EvictionOutcome], None]
    ) -> None: ...
    def podgroup_phase(self, key: str, phase: str) -> None: ...


class CycleMetrics:
    """What the cycles measure, as kube-scheduler's metrics (``lasched/metrics.py``)."""

    def attempt(self, profile: str, result: str, seconds: float) -> None:
        """One scheduling attempt: ``scheduled``, ``unschedulable`` or ``error``."""
        metrics.schedule_attempts.labels(result, profile).inc()
        metrics.scheduling_attempt_duration.labels(result, profile).observe(seconds)

    def bound(self, attempts: int, seconds: float) -> None:
        """A pod bound ``seconds`` after it first entered the queue (the SLI)."""
        metrics.pod_scheduling_sli_duration.labels(str(min(attempts, 15))).observe(seconds)

    def binding(self, seconds: float) -> None:
        metrics.binding_duration.observe(seconds)

    def preemption(self, victims: int) -> None:
        metrics.preemption_attempts.inc()
        metrics.preemption_victims.observe(victims)


@dataclass(slots=True)
class Attempt:
    """One pod between its scheduling cycle and the end of its binding cycle."""

    profile: Profile
    state: CycleState
    assumed: PodInfo
    first_seen: float
    attempts: int
    waiting: WaitingPod | None = None


def pre_enqueue(profiles: Mapping[str, Profile], pod: PodInfo) -> Gated | None:
    """The queue's PreEnqueue check: None admits ``pod`` to activeQ, else why it is gated
    and by which plugin."""
    profile = profiles.get(pod.scheduler_name)
    if profile is None:
        return None
    try:
        st = profile.framework.run_pre_enqueue(pod)
    except PluginError as e:  # logged and counted where it was raised
        # kube-scheduler keeps a pod whose PreEnqueue failed gated; a later event retries it
        # (no plugin on record: any event).
        return Gated(f"PreEnqueue failed: {e}")
    return None if st.ok else Gated(st.message, st.plugin)


def _no_note(pod: PodInfo, node: str) -> str:
    return ""


class SchedulingCycle:
    """Schedules one pod after another, binds beside the loop, requeues on failure."""

    def __init__(
        self,
        *,
        queue: SchedulingQueue,
        cache: SchedulerCache,
        profiles: Mapping[str, Profile],
        waiting: WaitingRoom,
        gang: Coscheduling,
        evictions: Evictions,
        status: StatusWrites,
        binds: TaskSet,
        fresh: Callable[[PodKey], PodInfo | None],
        resync: Callable[[], None],
        leading: Callable[[], bool] = lambda: True,
        placement_note: Callable[[PodInfo, str], str] = _no_note,
        on_placed: Callable[[PodInfo, str], None] = lambda pod, node: None,
        metrics: CycleMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``fresh``: the informer's current version of a pod (None once gone);
        ``resync``: rebuild the cache from the informers; ``leading``: may this
        replica bind now; ``placement_note``: why the pod's node suits it, for the
        Scheduled event (empty: nothing to add); ``on_placed``: a pod was reserved
        on a node and permitted (or waits); ``clock``: the queue's clock."""
        self.queue = queue
        self.cache = cache
        self.profiles = profiles
        self.waiting = waiting
        self.gang = gang
        self.evictions = evictions
        self.status = status
        self.binds = binds
        self._fresh = fresh
        self._resync = resync
        self._leading = leading
        self._placement_note = placement_note
        self._on_placed = on_placed
        self._metrics = metrics or CycleMetrics()
        self._clock = clock
        # Members of admitted groups whose bind failed once and were retried at once.
        self.retried_now: set[PodKey] = set()
        self._node_list: list[NodeInfo] | None = None

    # ---- the loop ---------------------------------------------------------------

    async def scheduling_loop(self) -> None:
        """Schedule one pod after another while leading; returns when not (or closed).

        Cancelling is safe: it can only happen while waiting for a pod or
        between two cycles, and each pod popped was by then either handed to
        its binding cycle or put back in the queue.
        """
        while True:
            if not self._leading():
                return
            try:
                qp = await self.queue.pop()
            except QueueClosed:
                return
            if not self._leading():  # lost while waiting for a pod: leave it for the next leader
                self.queue.unpop(qp)
                return
            try:
                self.schedule_one(qp)
            except Exception as e:
                # A bug, in a plugin or here: this pod's attempt is an error, the loop goes on.
                log.exception("pod=%s scheduling cycle failed", qp.pod.key)
                if self.queue.get(qp.key) is qp and qp.where == "in-flight":
                    # Not handed to a binding cycle: nothing may stay assumed.
                    self.cache.forget(qp.pod)
                    self.queue.requeue_error(qp, reason=f"internal error: {type(e).__name__}: {e}")
            # pop() does not suspend while activeQ has pods: let informers,
            # binds and events run between cycles.
            await asyncio.sleep(0)

    def nodes(self) -> list[NodeInfo]:
        """The cache's nodes as a list, kept until a node is added or removed."""
        if self._node_list is None:
            self._node_list = list(self.cache.node_infos())
        return self._node_list

    def invalidate_nodes(self) -> None:
        self._node_list = None

    # ---- the scheduling cycle -------------------------------------------------

    def schedule_one(self, qp: QueuedPod) -> None:
        """One pod's scheduling cycle, from its profile's PreFilter to Permit; never awaits.

        A pod that fits is assumed, reserved and handed to its binding cycle; any
        other outcome is recorded (Event, status) and the pod goes back to the queue.
        """
        pod = qp.pod
        profile = self.profiles.get(pod.scheduler_name)
        if profile is None or pod.deleting or self.cache.node_of(pod.key) is not None:
            self.queue.done(pod.key)
            return
        started = time.perf_counter()
        fw = profile.framework
        state = CycleState()
        try:
            result = fw.schedule(state, pod, self.nodes(), cycle=qp.cycle)
            if isinstance(result, FitError):
                nominated = fw.run_post_filters(state, pod, result) if fw.post_filters else None
                self._unschedulable(
                    profile, qp, result.summary(),
                    plugins=result.unschedulable_plugins, nominated=nominated,
                )  # fmt: skip
                self._observe(profile, "unschedulable", started)
                return
            assumed = self.cache.assume(pod, result.node)
        except PluginError as e:
            log.error("pod=%s scheduling error: %s", pod.key, e)
            self._record_failure(profile, pod, str(e))
            self.queue.requeue_error(qp, reason=str(e))
            self._observe(profile, "error", started)
            return
        except CacheError as e:
            fw.forget_batch()
            log.error("pod=%s %s; rebuilding the cache from the informers", pod.key, e)
            self._resync()
            self.invalidate_nodes()
            self.queue.requeue_error(qp, reason=str(e))
            self._observe(profile, "error", started)
            return

        attempt = Attempt(profile, state, assumed, qp.first_seen, qp.attempts)
        st = fw.run_reserve(state, assumed, result.node)
        permit, waits = st, dict[str, float]()
        if st.ok:
            try:
                permit, waits = fw.run_permit(state, assumed, result.node)
            except PluginError as e:
                permit = e.as_status()
        if not (permit.ok or permit.code is Code.WAIT):
            if st.ok:
                fw.run_unreserve(state, assumed, result.node)
            self.cache.forget(assumed)
            fw.forget_batch()
            self._not_permitted(profile, qp, permit, started)
            return
        if permit.code is Code.WAIT:
            attempt.waiting = self.waiting.add(assumed, result.node, waits)
        self._on_placed(pod, result.node)
        self.queue.done(pod.key)
        self._observe(profile, "scheduled", started)
        log.debug(
            "pod=%s node=%s evaluated=%d feasible=%d took_ms=%.2f",
            pod.key, result.node, result.evaluated, result.feasible,
            (time.perf_counter() - started) * 1000,
        )  # fmt: skip
        self.binds.spawn(self._binding_cycle(attempt), name=str(pod.key))

    def _not_permitted(
        self, profile: Profile, qp: QueuedPod, status: Status, started: float
    ) -> None:
        """Reserve or Permit refused the pod, or a plugin there failed."""
        if status.code is Code.ERROR:
            # A plugin's bug, not a verdict on the pod: retry with backoff.
            self._record_failure(profile, qp.pod, status.message)
            self.queue.requeue_error(qp, reason=status.message)
            self._observe(profile, "error", started)
        else:
            self._unschedulable(profile, qp, status.message, plugins=(status.plugin,))
            self._observe(profile, "unschedulable", started)

    def _unschedulable(
        self,
        profile: Profile,
        qp: QueuedPod,
        message: str,
        *,
        plugins: Iterable[str],
        nominated: PostFilterResult | None = None,
    ) -> None:
        """No fit: record why, preempt if a PostFilter chose to, requeue with ``plugins``,
        the plugins that rejected the pod."""
        log.info("pod=%s unschedulable: %s", qp.pod.key, message)
        node = None
        if nominated is not None:
            node = nominated.nominated_node
            self._preempt(profile, qp.pod, nominated)
        self._record_failure(profile, qp.pod, message, nominated_node=node)
        self.queue.requeue_unschedulable(qp, reason=message, plugins=plugins)

    def _preempt(self, profile: Profile, pod: PodInfo, result: PostFilterResult) -> None:
        """Nominate the node (holding its room) and evict the victims beside the loop.

        The victims are terminating from here on (:class:`Evictions`), so
        attempts before the informer shows them gone wait instead of
        preempting again: each victim is evicted, and told, once.
        """
        node = result.nominated_node
        self.cache.nominate(pod, node)
        for other, other_node in result.nominations:
            self.cache.nominate(other, other_node)
            self.status.nominated(other, other_node)
        victims = self.evictions.begin(result.victims)
        self._metrics.preemption(len(victims))
        log.info(
            "pod=%s preempting node=%s victims=%s",
            pod.key, node, ",".join(v.key for v in victims),
        )  # fmt: skip
        for victim in victims:

            def then(outcome: EvictionOutcome, victim: PodInfo = victim) -> None:
                self._evicted(profile, pod, victim, outcome)

            self.status.evict(victim, preemptor=pod.key, then=then)

    def _evicted(
        self, profile: Profile, preemptor: PodInfo, victim: PodInfo, outcome: EvictionOutcome
    ) -> None:
        """A victim's Preempted event names its own node (a group's victims are on several).

        A victim not evicted runs on: it counts as terminating again only once
        the informer shows it so, and may be chosen again. After a refusal the
        preemptor tries again at once.
        """
        if outcome is EvictionOutcome.EVICTED:
            profile.events.record(
                ref(victim), type="Normal", reason="Preempted", action="Preempting",
                note=f"Preempted by pod {preemptor.key} on node {victim.node_name}",
            )  # fmt: skip
            return
        self.evictions.failed(victim)
        if outcome is EvictionOutcome.REFUSED:
            self.queue.move_all_to_active_or_backoff(lambda p: p.key == preemptor.key)

    def _observe(self, profile: Profile, result: str, started: float) -> None:
        self._metrics.attempt(profile.name, result, time.perf_counter() - started)

    def _record_failure(
        self, profile: Profile, pod: PodInfo, message: str, *, nominated_node: str | None = None
    ) -> None:
        profile.events.record(
            ref(pod), type="Warning", reason="FailedScheduling", action="Scheduling", note=message
        )
        # As kube-scheduler's updatePod: no write when the pod already says this (the
        # informer's copy), unless a node is nominated anew. The Event is still recorded;
        # the recorder aggregates repeats.
        same = pod.unschedulable_message == message
        if same and (nominated_node is None or nominated_node == pod.nominated_node_name):
            return
        self.status.unschedulable(pod, message, nominated_node=nominated_node)

    # ---- the binding cycle ----------------------------------------------------

    async def _binding_cycle(self, a: Attempt) -> None:
        """Permit wait, PreBind, then bind. Every path that does not bind unreserves and
        forgets."""
        pod, node = a.assumed, a.assumed.node_name
        bound = False
        try:
            if a.waiting is not None:
                verdict = await a.waiting.result()
                self.waiting.remove(pod.key)
                if not verdict.ok:
                    self._failed_after_reserve(a, verdict)
                    return
            await self.status.written(pod.key)
            if not self._leading():
                # Paused or cut off past the renew deadline: the next leader decides.
                self._requeue(pod, "this scheduler stopped leading before the bind", error=True)
                return
            pre = await a.profile.framework.run_pre_bind(a.state, pod, node)
            if not pre.ok:
                self._pre_bind_failed(a, pre)
                return
            t0 = time.perf_counter()
            st = await a.profile.framework.run_bind(a.state, pod, node)
            self._metrics.binding(time.perf_counter() - t0)
            bound = st.code is Code.SUCCESS
            if bound:
                self._bound(a)
            elif st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                # Bound elsewhere or deleted: the informer brings the truth; never rebind.
                log.info("pod=%s bind to node=%s: %s", pod.key, node, st.message)
            else:
                a.profile.events.record(
                    ref(pod), type="Warning", reason="FailedScheduling", action="Scheduling",
                    note=st.message,
                )  # fmt: skip
                self._requeue(pod, st.message, error=True)
        except asyncio.CancelledError:
            # Abandoned (the scheduler stepped down or is stopping): the pod left the
            # queue when it was assumed, so it goes back, or it would never be tried again.
            # A binding already written is seen by the informer; a second one conflicts.
            self._requeue(pod, "its binding was abandoned", error=True)
            raise
        finally:
            if not bound:
                a.profile.framework.run_unreserve(a.state, pod, node)
                self.cache.forget(pod)
                # The room it held is free again, and pods parked meanwhile may fit: no
                # informer event says so (kube-scheduler sends the same event).
                self.queue.on_event(ASSIGNED_POD_DELETE, pod, None)

    def _member_bind_failed(self, pod: PodInfo, g: Group, reason: str) -> None:
        placed, need = self.gang.placed(g), self.gang.need(g)
        log.warning(
            "pod=%s bind failed after pod group %s was admitted (%d of %d placed): %s",
            pod.key, g.key, placed, need, reason,
        )  # fmt: skip
        profile = self.profiles.get(pod.scheduler_name)
        if profile is not None:
            profile.events.record(
                ref(pod), type="Warning", reason="GroupMemberBindFailed", action="Binding",
                note=f"pod group {g.key} was admitted but this member's bind failed "
                f"({placed} of {need} placed); retrying: {reason}",
            )  # fmt: skip
        if placed < need:
            self._write_group_phase(g, "Scheduling")

    def _bound(self, a: Attempt) -> None:
        pod = a.assumed
        if pod.key in self.retried_now:
            self.retried_now.discard(pod.key)
            g = self.gang.group_of(pod)
            if g is not None and self.gang.placed(g) >= self.gang.need(g):
                self._write_group_phase(g, "Scheduled")
        self._metrics.bound(a.attempts, self._clock() - a.first_seen)
        a.profile.events.record(
            ref(pod),
            type="Normal",
            reason="Scheduled",
            action="Binding",
            note=self._scheduled_note(pod),
        )

    def _scheduled_note(self, pod: PodInfo) -> str:
        note = f"Successfully assigned {pod.key} to {pod.node_name}"
        if pod.latency is not None and (why := self._placement_note(pod, pod.node_name)):
            note += f": {why}"
        g = self.gang.gang_of(pod)
        if g is not None:
            # The group's state, and where its size came from (a controller, a label, a lull).
            need = self.gang.need(g)
            note += (
                f" (pod group {g.key}: {self.gang.placed(g)} of {need} placed; "
                f"{self.gang.size_source(g)})"
            )
        return note

    def _pre_bind_failed(self, a: Attempt, status: Status) -> None:
        """A PreBind plugin refused or failed (kube-scheduler's ``handleBindingCycleError``):
        the pod goes back, as unschedulable by that plugin or, for an error, with backoff."""
        log.info(
            "pod=%s prebind on node=%s: %s", a.assumed.key, a.assumed.node_name, status.message
        )
        self._record_failure(a.profile, a.assumed, status.message)
        error = status.code is Code.ERROR
        self._requeue(a.assumed, status.message, error=error, plugins=(status.plugin,))

    def _failed_after_reserve(self, a: Attempt, verdict: Status) -> None:
        """Permit rejected or timed out: the pod goes back as unschedulable."""
        message = verdict.message or "rejected at permit"
        log.info("pod=%s rejected at permit: %s", a.assumed.key, message)
        self._record_failure(a.profile, a.assumed, message)
        self._requeue(a.assumed, message, error=False, plugins=(verdict.plugin,))

    def _requeue(
        self, pod: PodInfo, reason: str, *, error: bool, plugins: Iterable[str] = ()
    ) -> None:
        """Return a pod that left the queue (assumed) after its binding cycle failed;
        ``plugins`` rejected it (a verdict, not an error)."""
        fresh = self._fresh(pod.key)
        if fresh is None or fresh.bound or fresh.uid != pod.uid:
            return
        self.queue.add(fresh)
        qp = self.queue.get(fresh.key)
        if qp is None or qp.where != "active":
            return
        qp.attempts += 1
        group = self.gang.group_of(fresh)
        if error and group is not None and group.permitted:
            self._member_bind_failed(fresh, group, reason)
            if fresh.key not in self.retried_now:
                # The rest of its group is bound: retry this member at once, once;
                # a second failure backs off like any other error.
                self.retried_now.add(fresh.key)
                log.info("pod=%s member of bound pod group %s: retrying now", fresh.key, group.key)
                return
        if error:
            self.queue.requeue_error(qp, reason=reason)
        else:
            self.queue.requeue_unschedulable(qp, reason=reason, plugins=plugins)

    # ---- what the gang plugin asks of the scheduler ----------------------------

    def gang_permitted(self, g: Group) -> None:
        """A group reached min-available: its members bind."""
        self._write_group_phase(g, "Scheduled")

    def gang_held(self, group: Group) -> None:
        """``group``'s first member reserved: its other members go to activeQ now."""
        moved = self.queue.activate(group.members)
        if moved:
            log.debug("pod group %s holds: %d members activated", group.key, moved)

    def gang_released(self, group: Group) -> None:
        """``group`` gave up its reservations or finished: waiting groups may go.

        A group that failed backs off. Its members tried meanwhile fail
        PreFilter and are parked, and no cluster event marks the end of the
        backoff: the queue moves them when it ends. (The room its members
        held is freed as each one's binding cycle forgets it.)
        """
        self.queue.on_event(POD_GROUP_UPDATE, None, group)
        # The group next in line, which only waited its turn, goes now, its queue
        # backoff skipped, as a holder's siblings do (gang_held).
        self.queue.activate(self.gang.take_turn())
        now = self._clock()
        for g in self.gang.groups.values():
            if g.backoff_until > now:
                self.queue.move_at(
                    g.backoff_until, self.gang.members_of(g.key), key=f"podgroup-backoff/{g.key}"
                )

    def _write_group_phase(self, g: Group, phase: str) -> None:
        """Groups backed by a PodGroup object show where they are in its status."""
        if g.from_podgroup():
            self.status.podgroup_phase(g.key, phase)


def ref(pod: PodInfo) -> ObjectRef:
    return ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name, uid=pod.uid)
