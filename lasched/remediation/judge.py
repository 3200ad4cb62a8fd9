"""The decisions of latency remediation, pure: which bound pods to evict, and why not.

:meth:`Judge.judge` is one pass over the bound pods. A pod's *trigger* is its
node NotReady (or unreachable) or a hard limit broken by fresh RTTs; each is
timed from the first pass that saw it and is *due* once it has held for
``nodeNotReadySeconds`` or ``gracePeriodSeconds``. A pass that does not see
it any more forgets it: a trigger that comes back starts its wait again.

For a due trigger the rules go in this order, the first that says no
decides: the safety rules (:func:`~lasched.remediation.rules.exempt`), the
cool-down, the rate limits, and last (it is the dearest) whether a
replacement could be placed now. Then the pod is evicted, or in a dry run
reported as if it were.

Invariants:

* a pod is approved for eviction at most once per ``cooldownSeconds`` (by
  ``namespace/name``, so a StatefulSet's replacement, which takes the same
  name, waits too), and no pod younger than that is approved at all, so a
  replacement never follows its predecessor at once; an approval the
  Eviction API refused (a PodDisruptionBudget's 429, or a failure) is no
  eviction, so that pod is judged again after :data:`REFUSED_RETRY_SECONDS`
  (at most the cool-down) instead: a budget that lets one pod of a
  ReplicaSet go at a time lets the next go once the first's replacement is
  ready, not a cool-down later;
* the rate limits hold over every approval, dry runs included (the report is
  what would happen);
* a decision not to evict is returned once per pod and reason, not once per
  pass, so each becomes one Event; an approval is always returned.

Time is read from two injectable clocks: ``clock`` (monotonic: grace
periods, cool-downs, rate windows) and ``wall`` (Unix: a pod's age, from its
``creationTimestamp``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from lasched.latency.cache import LatencyCache
from lasched.model.node import Node
from lasched.model.pod import UID, PodInfo, PodKey
from lasched.remediation.placement import Placement
from lasched.remediation.rules import WHY, Outcome, RateLimits, broken_limits, exempt
from lasched.settings import RemediationSettings

Clock = Callable[[], float]

LATENCY = "latency"
NODE_NOT_READY = "node_not_ready"


class Placer(Protocol):
    """Where a replacement could go now (lasched.remediation.placement.Placer)."""

    def begin(self) -> None: ...
    def place(self, pod: PodInfo) -> Placement: ...
    def hold(self, pod: PodInfo, node: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Trigger:
    """Why a pod should move: its kind (the metric label) and the figures behind it."""

    kind: str  # LATENCY or NODE_NOT_READY
    figures: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What a pass decided for one pod whose trigger was due."""

    pod: PodInfo
    outcome: Outcome
    trigger: Trigger
    placement: Placement | None = None

    @property
    def evict(self) -> bool:
        return self.outcome is Outcome.EVICTED

    def note(self) -> str:
        """The Event's note: what was decided, why, and the figures."""
        where = self.pod.node_name
        room = f"; a replacement fits on {self.placement.shown()}" if self.placement else ""
        if self.outcome is Outcome.EVICTED:
            return f"evicted from {where}: {self.trigger.figures}{room}"
        if self.outcome is Outcome.DRY_RUN:
            return f"would evict from {where} (dry run): {self.trigger.figures}{room}"
        text = f"not evicted from {where}, {WHY[self.outcome]}: {self.trigger.figures}"
        if self.outcome is Outcome.NO_PLACEMENT and self.placement is not None:
            text += f" ({self.placement.reason})"
        return text

    def refused(self, outcome: Outcome) -> Decision:
        """The same decision after the Eviction API said no (PDB_REFUSED or FAILED)."""
        return Decision(self.pod, outcome, self.trigger, None)


REFUSED_RETRY_SECONDS = 10.0
"""How soon a pod whose eviction was refused is judged again (capped by the cool-down)."""


class Judge:
    """Remembers triggers, cool-downs and rate limits across passes (see the module)."""

    def __init__(
        self,
        settings: RemediationSettings,
        *,
        latency: LatencyCache,
        placer: Placer,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self._s = settings
        self._latency = latency
        self._placer = placer
        self._clock = clock
        self._wall = wall
        self._limits = RateLimits(
            window=settings.window_seconds,
            per_node=settings.max_per_node,
            per_namespace=settings.max_per_namespace,
            total=settings.max_total,
        )
        self._broken_since: dict[UID, float] = {}
        self._down_since: dict[str, float] = {}
        self._cool_until: dict[PodKey, float] = {}
        self._told: dict[UID, Outcome] = {}

    def refused(self, key: PodKey) -> None:
        """The Eviction API refused the pod approved last: judge it again soon, not after a
        whole cool-down (the rate limits keep the refused approval: they only hold back)."""
        retry = min(REFUSED_RETRY_SECONDS, self._s.cooldown_seconds)
        if key in self._cool_until:
            self._cool_until[key] = min(self._cool_until[key], self._clock() + retry)

    def reset(self) -> None:
        """Forget the triggers seen (this replica stopped leading: the next term starts its
        waits afresh). Cool-downs and rate limits stay: they only ever hold back."""
        self._broken_since.clear()
        self._down_since.clear()
        self._told.clear()

    def judge(self, pods: Iterable[tuple[PodInfo, Node | None]]) -> list[Decision]:
        """One pass over the bound pods (each with its node as the informer saw it)."""
        now = self._clock()
        self._placer.begin()
        self._cool_until = {k: t for k, t in self._cool_until.items() if t > now}
        broken_since: dict[UID, float] = {}
        down_since: dict[str, float] = {}
        told: dict[UID, Outcome] = {}
        decisions: list[Decision] = []
        for pod, node in pods:
            if pod.deleting or not pod.node_name:
                continue
            trigger = None
            if node is not None and not node.ready:
                since = down_since.setdefault(node.name, self._down_since.get(node.name, now))
                if now - since >= self._s.node_not_ready_seconds:
                    trigger = Trigger(
                        NODE_NOT_READY,
                        f"node {node.name} NotReady for {now - since:.0f} s "
                        f"(nodeNotReadySeconds {self._s.node_not_ready_seconds:g})",
                    )
            if trigger is None:
                broken = broken_limits(self._latency, pod, pod.node_name)
                if broken:
                    since = broken_since[pod.uid] = self._broken_since.get(pod.uid, now)
                    if now - since >= self._s.grace_period_seconds:
                        trigger = Trigger(
                            LATENCY,
                            f"{'; '.join(broken)} for {now - since:.0f} s "
                            f"(gracePeriodSeconds {self._s.grace_period_seconds:g})",
                        )
            if trigger is None:
                continue
            decision = self._decide(pod, trigger, now)
            told[pod.uid] = Outcome.COOL_DOWN if decision.outcome in _APPROVED else decision.outcome
            if decision.outcome in _APPROVED or self._told.get(pod.uid) is not decision.outcome:
                decisions.append(decision)
        self._broken_since = broken_since
        self._down_since = down_since
        self._told = told
        return decisions

    def _decide(self, pod: PodInfo, trigger: Trigger, now: float) -> Decision:
        s = self._s
        rule = exempt(
            pod,
            excluded_namespaces=s.excluded_namespaces,
            local_storage=s.evict_local_storage_pods,
        )
        if rule is not None:
            return Decision(pod, rule, trigger)
        young = pod.created > 0 and self._wall() - pod.created < s.cooldown_seconds
        if pod.key in self._cool_until or young:
            return Decision(pod, Outcome.COOL_DOWN, trigger)
        node, ns = pod.node_name, pod.namespace
        if not self._limits.allows(now, node=node, namespace=ns):
            return Decision(pod, Outcome.RATE_LIMITED, trigger)
        placement = self._placer.place(pod)
        if not placement.nodes:
            return Decision(pod, Outcome.NO_PLACEMENT, trigger, placement)
        self._limits.take(now, node=node, namespace=ns)
        self._cool_until[pod.key] = now + s.cooldown_seconds
        self._placer.hold(pod, placement.nodes[0])
        outcome = Outcome.DRY_RUN if s.dry_run else Outcome.EVICTED
        return Decision(pod, outcome, trigger, placement)


_APPROVED = (Outcome.EVICTED, Outcome.DRY_RUN)
