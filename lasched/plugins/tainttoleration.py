"""TaintToleration: NoSchedule/NoExecute taints must be tolerated; fewer
untolerated PreferNoSchedule taints score higher. Matching follows
``v1.Toleration.ToleratesTaint``. A pod it rejected is worth another try when
a node it tolerates is added, or one it did not tolerate loses the taint."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lasched.cache.cache import NodeInfo
from lasched.framework import events
from lasched.framework.events import ActionType, ClusterEvent, ClusterEventWithHint, EventResource
from lasched.framework.interface import (
    MAX_NODE_SCORE,
    SUCCESS,
    Batchable,
    CycleState,
    Status,
    unschedulable,
)
from lasched.model.node import Node, Taint
from lasched.model.pod import PodInfo

_FILTER_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(toleration: Mapping[str, Any], taint: Taint) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if key != taint.key and not (key == "" and operator == "Exists"):
        return False
    if operator == "Exists":
        return True
    return bool(operator == "Equal" and (toleration.get("value") or "") == taint.value)


def untolerated(
    taints: Iterable[Taint], tolerations: list[dict[str, Any]], effects: tuple[str, ...]
) -> Taint | None:
    """The first taint of the given effects that no toleration tolerates."""
    for taint in taints:
        if taint.effect in effects and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _now_tolerated(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """A node whose NoSchedule/NoExecute taints the pod tolerates, and did not before."""
    if not isinstance(new, Node):
        return events.SKIP
    if untolerated(new.taints, pod.tolerations, _FILTER_EFFECTS) is not None:
        return events.SKIP
    if isinstance(old, Node) and untolerated(old.taints, pod.tolerations, _FILTER_EFFECTS) is None:
        return events.SKIP
    return events.QUEUE


class TaintToleration(Batchable):
    name = "TaintToleration"

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_TAINT),
                _now_tolerated,
            )
        ]

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        assert node.node is not None
        if not node.node.taints:
            return SUCCESS
        taint = untolerated(node.node.taints, pod.tolerations, _FILTER_EFFECTS)
        if taint is None:
            return SUCCESS
        return unschedulable(f"node(s) had untolerated taint {taint!r}", unresolvable=True)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        assert node.node is not None
        if not node.node.taints:
            return 0
        return sum(
            1
            for taint in node.node.taints
            if taint.effect == "PreferNoSchedule"
            and not any(tolerates(t, taint) for t in pod.tolerations)
        )

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Fewer intolerable taints is better: reverse onto 0..100."""
        worst = max(scores, default=0)
        for i, s in enumerate(scores):
            scores[i] = (
                MAX_NODE_SCORE if worst == 0 else MAX_NODE_SCORE - s * MAX_NODE_SCORE // worst
            )
