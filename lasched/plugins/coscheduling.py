"""Coscheduling: pod groups bind all-or-nothing.

How a group moves (docs/workload-api.md, "Pod groups (gangs)", has the user's view):

1. **PreEnqueue** gates members until at least min-available members exist,
   so a half-created group holds nothing; invalid declarations gate too. A
   group declared without a size (the ``pod-group`` annotation) takes it from
   its controller, through the ``owner_size`` lookup the scheduler hands in
   (a Job's parallelism, a ReplicaSet's replicas, ...: lasched.model.podgroup),
   and waits while that is being read; only when the controller says nothing
   is the group the members that exist after a lull. Every message about a
   group's progress says where its size came from (:meth:`Coscheduling.size_source`).
2. **One group reserves at a time.** The first member to reach Reserve makes
   its group the *holder*; members of other groups fail PreFilter with a
   reason naming the holder until it is done. Two groups can therefore never
   each hold part of what both need: there is no deadlock by construction.
   Which group goes first is the queue's order (priority, then age, with
   starvation aging), and a group that had to wait keeps its age. When the
   holder is done, the group next in line among those it turned away goes
   back to activeQ at once (``take_turn``), its queue backoff skipped:
   waiting a turn is not a failure, and in a burst the nodes near its users
   would fill meanwhile.
3. Members pass Filter and Score, are **assumed and reserved** on their nodes
   (no other pod can take that capacity), and **wait at Permit**. When the first
   member reserves, the group's other members are **activated** (``on_hold``:
   out of backoff and the unschedulable pool, as scheduler-plugins'
   Coscheduling activates siblings): a backoff they earned while the group
   waited its turn must not hold every other group up.
4. When min-available members are placed, every waiting member is allowed and
   binds; later members beyond min-available bind as capacity allows, as long
   as min-available members stay placed. Members that leave (deleted, or
   terminating: they no longer count) can take the group below min-available;
   it is then all-or-nothing again, so replacements made by its controller
   wait for each other as the first members did, instead of binding one by
   one into a group that is not running (kube-scheduler's gang plugins count
   the members assigned now, not once).
5. If a member fits nowhere (**PostFilter**), or the group's timeout passes, or
   a waiting member is deleted, every waiting member is rejected at once: all
   reservations are released together, each member gets a Warning Event that
   says how many of how many were placed and why the rest were not, and the
   members return to the queue together.
6. The group then **backs off as a unit**: its members fail PreFilter for
   1 s, doubling per failed round up to 10 s (the queue's backoff settings),
   so a group that cannot fit does not keep taking the turn from others.
   Room freed since the failure (a bound pod deleted, a node added) ends the
   backoff at once and brings the members back, their queue backoff skipped
   (:meth:`Coscheduling.room_freed`): the group may fit now, and waiting out
   the rest would leave the room idle.

What brings a member back to the queue: a new member or a PodGroup change
rechecks the gated members; a group that stops holding is a ``PodGroup``
event that moves every pod this plugin rejected (:meth:`Coscheduling.
events_to_register`); the end of a group's backoff, and of the settling
time of a group without min-available, are timed moves (the scheduler sets
them: :meth:`Coscheduling.settles_at`). The reservation deadline is a timer
on the scheduler's timer heap, so a group times out at its time.

Kubernetes' own PodGroups (and v1.35's Workloads) are groups too
(lasched.model.nativegroup): a gang policy's ``minCount`` is min-available, and
a basic policy is no gang at all: its members are tried one by one as pods
without a group (:meth:`Coscheduling.gang_of` is None for them) while still
counting as a group for what reads membership (latency budgets, explain). Each
round's outcome goes to ``on_outcome`` (the scheduler writes it into the
PodGroup's status condition).

Never is a group bound below min-available: a member binds only after Permit
allowed the whole group.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lasched.framework import events
from lasched.framework.events import ClusterEvent, ClusterEventWithHint, QueueingHint
from lasched.framework.interface import (
    SKIP,
    SUCCESS,
    Batchable,
    CycleState,
    PostFilterResult,
    Status,
    unschedulable,
    wait,
)
from lasched.framework.waiting import WaitingRoom
from lasched.model.nativegroup import NativeGroup, Policy
from lasched.model.pod import PodInfo, PodKey
from lasched.model.podgroup import (
    ANNOTATION_SETTLE_SECONDS,
    ANNOTATION_SIZE,
    DEFAULT_TIMEOUT_SECONDS,
    KUBENEXUS_MIN,
    LASCHED_MIN,
    GroupDecl,
    OwnerRef,
    OwnerSize,
    PodGroup,
)
from lasched.timers import Timer, TimerHeap

log = logging.getLogger(__name__)

OwnerSizeLookup = Callable[[str, OwnerRef], OwnerSize | None]
"""(namespace, controller) -> what it says about the size; None while it is being read."""

_DECLARED_BY = {
    "lasched": f"label {LASCHED_MIN}",
    "kubenexus": f"label {KUBENEXUS_MIN}",
    "annotation": f"annotation {ANNOTATION_SIZE}",
}


NativeLookup = Callable[[GroupDecl], Policy | None]
"""A native member's declaration -> its group's policy; None while its object is unseen."""

OutcomeHook = Callable[["Group", bool, str], None]
"""(group, scheduled, message): a round placed min-available members, or failed."""


def _no_owner_lookup(namespace: str, ref: OwnerRef) -> OwnerSize:
    return OwnerSize(None, "controllers are not read")


def _no_native(decl: GroupDecl) -> Policy | None:
    return None


@dataclass(slots=True)
class Group:
    key: str
    members: dict[PodKey, PodInfo] = field(default_factory=dict)
    last_joined: float = 0.0
    permitted: bool = False  # min-available placed (and still): later members need not wait
    deadline: float | None = None  # of the current reservation round
    failures: int = 0  # failed rounds in a row
    backoff_until: float = 0.0
    failed_at: float = -math.inf  # when its last round failed

    def _declared(self) -> set[int]:
        return {
            p.group.min_available
            for p in self.members.values()
            if p.group is not None and p.group.min_available is not None
        }

    def min_available(self) -> int | None:
        """The agreed min-available; None when only 'all members seen' applies."""
        values = self._declared()
        return values.pop() if len(values) == 1 else None

    def native(self) -> GroupDecl | None:
        """The reference to Kubernetes' PodGroup (or Workload) its members name."""
        return next(
            (p.group for p in self.members.values() if p.group and p.group.source == "native"),
            None,
        )

    def disagreement(self) -> str | None:
        sources = {p.group.source == "native" for p in self.members.values() if p.group}
        if len(sources) > 1:
            return (
                f"members of pod group {self.key} name it both in spec.schedulingGroup "
                "(or spec.workloadRef) and in labels or annotations"
            )
        values = sorted(self._declared())
        if len(values) > 1:
            shown = ", ".join(str(v) for v in values)
            return f"members of pod group {self.key} disagree on min-available ({shown})"
        return None

    def owner(self) -> tuple[str, OwnerRef] | None:
        """The controller of the members without a declared size, when they share one."""
        owners = {p.owner for p in self.members.values() if p.owner is not None}
        if len(owners) != 1:
            return None
        first = next(iter(self.members.values()))
        return first.namespace, owners.pop()

    def from_podgroup(self) -> bool:
        return any(
            p.group is not None and p.group.source == "podgroup" for p in self.members.values()
        )

    def timeout(self, default: float) -> float:
        for p in self.members.values():
            if p.group and p.group.timeout_seconds:
                return p.group.timeout_seconds
        return default


class Coscheduling(Batchable):
    """PreEnqueue, PreFilter, PostFilter, Reserve/Unreserve and Permit for pod groups."""

    name = "Coscheduling"

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        room: WaitingRoom,
        node_of: Callable[[PodKey], str | None],
        on_release: Callable[[Group], None] = lambda g: None,
        on_permitted: Callable[[Group], None] = lambda g: None,
        on_hold: Callable[[Group], None] = lambda g: None,
        podgroup: Callable[[str], PodGroup | None] = lambda key: None,
        native: NativeLookup = _no_native,
        on_outcome: OutcomeHook = lambda g, scheduled, message: None,
        owner_size: OwnerSizeLookup = _no_owner_lookup,
        default_timeout: float = DEFAULT_TIMEOUT_SECONDS,
        settle_seconds: float = ANNOTATION_SETTLE_SECONDS,
        initial_backoff: float = 1.0,
        max_backoff: float = 10.0,
        timers: TimerHeap | None = None,
    ) -> None:
        """``on_release``: the group stopped holding (it failed or was permitted);
        ``on_hold``: the group began holding (its first member reserved): its other
        members are wanted now, whatever backoff they earned while it waited its turn;
        ``timers``: where the holder's deadline goes (None: its owner calls
        :meth:`expire`); ``owner_size``: what a group's controller says about its size
        (never awaits: None while it is being read); ``native``: the policy of the
        Kubernetes PodGroup a member names."""
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._room = room
        self._node_of = node_of
        self._on_release = on_release
        self._on_permitted = on_permitted
        self._on_hold = on_hold
        self._podgroup = podgroup
        self._native = native
        self._on_outcome = on_outcome
        self._owner_size = owner_size
        self.default_timeout = default_timeout
        self.settle_seconds = settle_seconds
        self.groups: dict[str, Group] = {}
        self.holder: str | None = None
        # When room was last freed (a bound pod deleted, a node added): a group that
        # failed before it need not wait out its backoff.
        self._room_freed_at = -math.inf
        # Groups whose failed round's backoff no room freed has ended yet: the next room
        # freed ends theirs, and them only (an index, so that a burst of deletions costs
        # one look at them, not one per deletion and per parked pod).
        self._failed: dict[str, Group] = {}
        self._timers = timers
        self._deadline: Timer | None = None  # the holder's, on ``timers``
        # Groups whose members PreFilter turned away because another group held: their
        # wait was not their failure, so the end of the hold brings them back at once.
        self._awaiting_turn: set[str] = set()

    # ---- membership (fed by the pod informer) -------------------------------

    def pod_added(self, pod: PodInfo) -> list[PodKey]:
        """Track a member; returns the group's members, whose gates may now open."""
        if pod.group is None or pod.terminal:
            return []
        g = self.groups.get(pod.group.key)
        if g is None:
            g = self.groups[pod.group.key] = Group(pod.group.key)
        if pod.key not in g.members:
            g.last_joined = self._clock()
        g.members[pod.key] = pod
        if pod.deleting:
            self._recheck_permitted(g)
        return list(g.members)

    def pod_deleted(self, pod: PodInfo) -> None:
        if pod.group is None:
            return
        g = self.groups.get(pod.group.key)
        if g is None:
            return
        g.members.pop(pod.key, None)
        if not g.members:
            del self.groups[g.key]
            if self.holder == g.key:
                self._release(g)
            return
        self._recheck_permitted(g)

    def _recheck_permitted(self, g: Group) -> None:
        """A permitted group whose placed members fell below min-available (members
        deleted, or terminating, and replaced) is all-or-nothing again: its next members
        wait for each other, as the first ones did, instead of binding one by one."""
        if not g.permitted:
            return
        need = self.required(g)
        placed = self.placed(g)
        if need is None or placed >= need:
            return
        g.permitted = False
        g.failures = 0
        log.info(
            "pod group %s: %d of %d members placed after members left (%s); "
            "its next members are placed all or nothing",
            g.key, placed, need, self.size_source(g),
        )  # fmt: skip

    def group_of(self, pod: PodInfo) -> Group | None:
        """The pod's group, whatever its policy (membership: latency budgets, explain)."""
        return self.groups.get(pod.group.key) if pod.group else None

    def gang_of(self, pod: PodInfo) -> Group | None:
        """The pod's group when it is all-or-nothing: not a basic-policy native group."""
        g = self.group_of(pod)
        return g if g is not None and self.all_or_nothing(g) else None

    def policy(self, g: Group) -> Policy | None:
        """A native group's policy; None for other groups, or while its object is unseen."""
        decl = g.native()
        return self._native(decl) if decl is not None else None

    def all_or_nothing(self, g: Group) -> bool:
        """False only for a native group whose object says ``basic``."""
        if g.native() is None:
            return True
        p = self.policy(g)
        return p is None or p.problem is not None or p.gang

    def placed_on(self, pod: PodInfo) -> str | None:
        """The node a member is bound or reserved on, as :meth:`placed` counts it."""
        wp = self._room.get(pod.key)
        return None if wp is not None and wp.rejected else self._node_of(pod.key)

    def placed(self, g: Group) -> int:
        """Members bound or assumed (reserved) on a node, and not terminating: a member
        on its way out no longer counts toward min-available. Nor does one rejected at
        Permit: it stays assumed until its binding cycle gives its reservation back, and
        a new round that started meanwhile (room freed brings a failed group back at
        once) would otherwise be permitted on reservations that are going away, and
        bind part of the group only."""
        return sum(1 for p in g.members.values() if not p.deleting and self.placed_on(p))

    def required(self, g: Group) -> int | None:
        """min-available, or for 'all members seen' the count once settled (None: not yet,
        or a basic-policy native group)."""
        if g.native() is not None:
            p = self.policy(g)
            return p.min_count if p is not None and p.problem is None else None
        if g.from_podgroup():
            obj = self._podgroup(g.key)
            return obj.min_member if obj is not None else None
        declared = g.min_available()
        if declared is not None:
            return declared
        owned = self.owner_size(g)
        if owned is not None and owned.size is not None:
            return owned.size
        if self._clock() - g.last_joined < self.settle_seconds or (
            owned is None and g.owner() is not None
        ):
            return None
        return len(g.members)

    def need(self, g: Group) -> int:
        """The members the group must place together: min-available (:meth:`required`),
        or every member while its size is not known."""
        return self.required(g) or len(g.members)

    def owner_size(self, g: Group) -> OwnerSize | None:
        """What the group's controller says (None: no controller, or it is being read)."""
        if g.from_podgroup() or g.native() is not None or g.min_available() is not None:
            return None
        owner = g.owner()
        return None if owner is None else self._owner_size(*owner)

    def disruption_budget(self, pod: PodInfo) -> tuple[str, int] | None:
        """For a member of an all-or-nothing group: the group's key and how many of its
        placed members may go before fewer than min-available remain (what preemption
        weighs as a PodDisruptionBudget's allowed disruptions). None outside one."""
        g = self.gang_of(pod)
        if g is None:
            return None
        need = self.need(g)
        return g.key, self.placed(g) - need

    def members_owned_by(self, namespace: str, uid: str) -> list[PodKey]:
        """Members of the groups sized by this controller (its size was read again)."""
        return [
            k
            for g in self.groups.values()
            if (o := g.owner()) is not None and o[0] == namespace and o[1].uid == uid
            for k in g.members
        ]

    def size_source(self, g: Group) -> str:
        """Where the group's size comes from: ``size 3 from Job default/train's parallelism``."""
        need = self.required(g)
        if (decl := g.native()) is not None:
            p = self.policy(g)
            if p is None:
                return f"no {_native_kind(decl)} {decl.ref} yet"
            if p.problem is not None:
                return p.problem
            return f"min-available {need} from {p.source}" if p.gang else p.source
        if g.from_podgroup():
            return f"min-available {need} from PodGroup {g.key}" if need else f"no PodGroup {g.key}"
        declared = g.min_available()
        if declared is not None:
            decls = [p.group for p in g.members.values() if p.group is not None]
            by = _DECLARED_BY.get(decls[0].source, "its members") if decls else "its members"
            return f"min-available {declared} from {by}"
        owned = self.owner_size(g)
        if owned is not None and owned.size is not None:
            return f"size {owned.size} from {owned.source}"
        owner = g.owner()
        if owned is None and owner is not None:
            return f"size not known yet: reading {owner[1].shown(owner[0])}"
        why = f"; {owned.source}" if owned is not None else ""
        lull = f"the members that exist after {self.settle_seconds:g} s without a new one"
        return f"size {need}: {lull}{why}" if need is not None else f"size: {lull}{why}"

    # ---- PreEnqueue -----------------------------------------------------------

    def timeout(self, g: Group) -> float:
        if g.from_podgroup() and (obj := self._podgroup(g.key)) and obj.timeout_seconds:
            return obj.timeout_seconds
        return g.timeout(self.default_timeout)

    def settles_at(self, g: Group) -> float | None:
        """When a group without min-available counts its members as complete, if it
        has not yet: its gate may open then, with no event to say so."""
        if g.from_podgroup() or g.native() is not None or g.min_available() is not None:
            return None
        owned = self.owner_size(g)
        if owned is not None and owned.size is not None:
            return None
        when = g.last_joined + self.settle_seconds
        return when if when > self._clock() else None

    def members_of(self, key: str) -> Callable[[PodInfo], bool]:
        """Selects the members of group ``key`` (for the queue's timed moves)."""

        def member(pod: PodInfo) -> bool:
            return pod.group is not None and pod.group.key == key

        return member

    # ---- the events that can help the pods this plugin rejected -------------------

    def events_to_register(self) -> list[ClusterEventWithHint]:
        """PodGroup objects and groups that stopped holding.

        Members' arrivals recheck the gated members directly (the informer
        handler), room freed brings back the members of groups backing off
        (:meth:`room_freed`, which the informer handlers call), and the ends of
        backoffs and settling are timed moves.
        """
        return [
            ClusterEventWithHint(
                ClusterEvent(events.EventResource.POD_GROUP, events.ActionType.ALL),
                _group_hint,
            ),
        ]

    def take_turn(self) -> list[PodKey]:
        """The members of the group next in line among those turned away while another
        group held (the queue's order: highest priority, then oldest member), to be
        tried now: waiting its turn is not a failure, and in a burst the nodes near its
        users would fill while it sat out a queue backoff. One group only: handing back
        every waiting group would send all their members through a cycle just to be
        turned away again by the first to reserve. Groups backing off after a failure
        of their own are not in line.
        """
        now = self._clock()
        line = [
            g
            for name in self._awaiting_turn
            if (g := self.groups.get(name)) is not None
            and g.members
            and not self._backing_off(g, now)
            and not g.permitted
        ]
        if not line:
            self._awaiting_turn.clear()
            return []
        nxt = min(
            line,
            key=lambda g: (
                -max(p.priority for p in g.members.values()),
                min(p.created for p in g.members.values()),
                g.key,
            ),
        )
        self._awaiting_turn.discard(nxt.key)
        return list(nxt.members)

    def _backing_off(self, g: Group, now: float) -> bool:
        """Whether ``g`` sits out the backoff of a failed round: room freed since the
        failure ends it."""
        return g.backoff_until > now and self._room_freed_at <= g.failed_at

    def room_freed(self) -> list[PodKey]:
        """A bound pod was deleted or a node added: groups that failed before may try
        again now. Returns the members of the groups whose backoff this ends, for the
        queue to activate: they come back at once, whatever queue backoff each member
        earned in the failed rounds (the group's backoff stood for those).
        """
        now = self._clock()
        self._room_freed_at = now
        ended = [g for g in self._failed.values() if g.backoff_until > now and g.members]
        self._failed.clear()
        return [key for g in ended for key in g.members]

    def pre_enqueue(self, pod: PodInfo) -> Status:
        if pod.group_error:
            return unschedulable(pod.group_error)
        g = self.group_of(pod)
        if g is None:
            return SUCCESS
        if problem := g.disagreement():
            return unschedulable(problem)
        if (decl := g.native()) is not None:
            p = self.policy(g)
            if p is None:
                kind = _native_kind(decl)
                return unschedulable(f"pod group {g.key}: waiting for {kind} {decl.ref} to exist")
            if p.problem is not None:
                return unschedulable(f"pod group {g.key}: {p.problem}")
            if not p.gang:
                return SUCCESS  # basic: each member is scheduled on its own
        need = self.required(g)
        if need is None and g.from_podgroup():
            return unschedulable(f"pod group {g.key}: waiting for PodGroup {g.key} to exist")
        if need is None:
            return unschedulable(
                f"pod group {g.key}: waiting for its members to arrive ({self.size_source(g)})"
            )
        if len(g.members) < need:
            return unschedulable(
                f"pod group {g.key}: {len(g.members)} of {need} members exist "
                f"({self.size_source(g)}); waiting for the rest before reserving anything"
            )
        return SUCCESS

    # ---- PreFilter: one group reserves at a time ------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        g = self.gang_of(pod)
        if g is None or g.permitted:
            return SKIP
        now = self._clock()
        if self.holder != g.key and self._backing_off(g, now):
            return unschedulable(
                f"pod group {g.key} backs off for {g.backoff_until - now:.1f} s "
                "after a failed attempt"
            )
        if self.holder in (None, g.key):
            return SKIP  # nothing to filter per node
        self._awaiting_turn.add(g.key)
        return unschedulable(
            f"pod group {g.key} waits for pod group {self.holder} to finish reserving"
        )

    # ---- PostFilter: a member fits nowhere -------------------------------------

    def post_filter(
        self, state: CycleState, pod: PodInfo, statuses: dict[str, Status]
    ) -> tuple[PostFilterResult | None, Status]:
        g = self.gang_of(pod)
        if g is None or g.permitted or self.holder != g.key:
            return None, unschedulable()
        reasons: Counter[str] = Counter(r for st in statuses.values() for r in st.reasons)
        why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "no node fits"
        message = self._summary(g, f"member {pod.name} fits no node ({why})")
        self._reject_waiting(g, message)
        self._release(g, failed=True)
        self._on_outcome(g, False, message)
        return None, unschedulable(message)

    # ---- Reserve / Unreserve ----------------------------------------------------

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        g = self.gang_of(pod)
        if g is None or g.permitted:
            return SUCCESS
        if self.holder is None:
            self.holder = g.key
            self._on_hold(g)
        if g.deadline is None:
            g.deadline = self._clock() + self.timeout(g)
            if self._timers is not None and self.holder == g.key:
                if self._deadline is not None:
                    self._deadline.cancel()
                self._deadline = self._timers.call_at(g.deadline, self.expire)
        return SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        """A member's reservation ended without a binding: the round is over for all."""
        g = self.gang_of(pod)
        if g is None or g.permitted:
            return
        message = self._summary(g, f"member {pod.name} was not bound")
        self._reject_waiting(g, message)
        if self.holder == g.key:
            self._release(g, failed=True)
            self._on_outcome(g, False, message)

    # ---- Permit -----------------------------------------------------------------------

    def permit(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        g = self.gang_of(pod)
        if g is None or g.permitted:
            return SUCCESS
        need = self.need(g)
        placed = self.placed(g)
        if placed >= need:
            g.permitted = True
            g.failures = 0
            for key in g.members:
                wp = self._room.get(key)
                if wp is not None:
                    wp.allow(self.name)
            log.info(
                "pod group %s: %d of %d members placed (%s); binding",
                g.key, placed, need, self.size_source(g),
            )  # fmt: skip
            self._on_permitted(g)
            if self.holder == g.key:
                self._release(g)
            self._on_outcome(g, True, f"{placed} of {need} members placed ({self.size_source(g)})")
            return SUCCESS
        remaining = (g.deadline or self._clock()) - self._clock()
        return wait(max(remaining, 0.0), f"pod group {g.key}: {placed} of {need} placed")

    # ---- internals ------------------------------------------------------------------------

    def _summary(self, g: Group, why: str) -> str:
        need = self.need(g)
        return (
            f"pod group {g.key}: {self.placed(g)} of {need} members were placed "
            f"({self.size_source(g)}); all reservations released ({why})"
        )

    def _reject_waiting(self, g: Group, message: str) -> None:
        for key in g.members:
            wp = self._room.get(key)
            if wp is not None and not wp.resolved:
                wp.reject(self.name, message)

    def _release(self, g: Group, *, failed: bool = False) -> None:
        g.deadline = None
        if failed and self.holder == g.key:
            g.failures += 1
            g.failed_at = self._clock()
            delay = min(self.max_backoff, self.initial_backoff * 2.0 ** (g.failures - 1))
            g.backoff_until = self._clock() + delay
            self._failed[g.key] = g
        if self.holder == g.key:
            self.holder = None
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._on_release(g)

    def expire(self) -> None:
        """Reject the holder's waiting members once its deadline passed (group timeout).

        Set on the timer heap before any member's own Permit deadline (the
        same instant), so the group's one message wins.
        """
        if self.holder is None:
            return
        g = self.groups.get(self.holder)
        if g is None or g.deadline is None or self._clock() < g.deadline:
            return
        timeout = self.timeout(g)
        message = self._summary(g, f"timed out after {timeout:g} s")
        self._reject_waiting(g, message)
        self._release(g, failed=True)
        self._on_outcome(g, False, message)


def _native_kind(decl: GroupDecl) -> str:
    return "PodGroup" if decl.template is None else "Workload"


def _group_hint(pod: PodInfo, old: Any, new: Any) -> QueueingHint:
    """A group that stopped holding lets any group go; a PodGroup object (scheduler-plugins'
    or Kubernetes' own, or a v1.35 Workload), its members."""
    if isinstance(new, Group):
        return events.QUEUE
    changed = new if new is not None else old
    if pod.group is None:
        return events.SKIP
    if isinstance(changed, PodGroup) and changed.key == pod.group.key:
        return events.QUEUE
    if isinstance(changed, NativeGroup) and changed.key == pod.group.ref:
        return events.QUEUE
    return events.SKIP
