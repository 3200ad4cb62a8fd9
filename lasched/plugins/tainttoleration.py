"""TaintToleration: NoSchedule/NoExecute taints must be tolerated; fewer
untolerated PreferNoSchedule taints score higher. Matching follows
``v1.Toleration.ToleratesTaint``. A pod it rejected is worth another try when
a node it tolerates is added, or one it did not tolerate loses the taint.

The column forms judge every candidate node at once: the cache interns each
node's taint set (lasched/cache/columns.py), and a pod's tolerations are
checked against each distinct taint set once, the verdicts kept in the
columns' ``derived`` for the next pod with the same tolerations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from lasched.cache.cache import NodeInfo
from lasched.cache.columns import NodeColumns
from lasched.framework import events
from lasched.framework.events import ActionType, ClusterEvent, ClusterEventWithHint, EventResource
from lasched.framework.interface import (
    MAX_NODE_SCORE,
    SUCCESS,
    Batchable,
    ColumnVerdicts,
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


def _rejection(taints: tuple[Taint, ...], tolerations: list[dict[str, Any]]) -> Status | None:
    """Filter's verdict on a node with ``taints``: None when it passes."""
    if not taints:
        return None
    taint = untolerated(taints, tolerations, _FILTER_EFFECTS)
    if taint is None:
        return None
    return unschedulable(f"node(s) had untolerated taint {taint!r}", unresolvable=True)


def _intolerable(taints: tuple[Taint, ...], tolerations: list[dict[str, Any]]) -> int:
    """Score's raw value for a node with ``taints``: its untolerated PreferNoSchedule taints."""
    return sum(
        1
        for taint in taints
        if taint.effect == "PreferNoSchedule" and not any(tolerates(t, taint) for t in tolerations)
    )


@dataclass(slots=True)
class _Verdicts:
    """One toleration set's verdicts on the interned taint sets (by taint set id)."""

    covered: int  # taint sets judged: ids below this
    codes: NDArray[np.int64]  # 0 passes; k rejects with statuses[k - 1]
    statuses: tuple[Status, ...]
    intolerable: NDArray[np.int64]
    most: int  # the largest of intolerable: 0 spares reading the nodes' taints


_NO_TOLERATIONS = b"[]"
_DERIVED_LIMIT = 4096  # toleration sets kept; then they are judged afresh


def _verdicts(columns: NodeColumns, pod: PodInfo) -> _Verdicts | None:
    """The pod's tolerations judged against every taint set the columns know; None when
    they are not plain JSON (then only the per-node form can tell)."""
    tolerations = pod.tolerations
    try:
        key = orjson.dumps(tolerations) if tolerations else _NO_TOLERATIONS
    except TypeError:
        return None
    derived = columns.derived
    dk = ("TaintToleration", key)
    v: _Verdicts | None = derived.get(dk)
    sets = columns.taint_sets
    if v is not None and v.covered == len(sets):
        return v
    if not all(isinstance(t, dict) for t in tolerations):
        return None
    codes = v.codes.tolist() if v is not None else []
    statuses = list(v.statuses) if v is not None else []
    intolerable = v.intolerable.tolist() if v is not None else []
    for taints in sets[len(codes) :]:
        st = _rejection(taints, tolerations)
        if st is not None:
            statuses.append(st)
        codes.append(0 if st is None else len(statuses))
        intolerable.append(_intolerable(taints, tolerations))
    v = _Verdicts(
        len(sets),
        np.array(codes, dtype=np.int64),
        tuple(statuses),
        np.array(intolerable, dtype=np.int64),
        max(intolerable),
    )
    if len(derived) >= _DERIVED_LIMIT:
        derived.clear()
    derived[dk] = v
    return v


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
        st = _rejection(node.node.taints, pod.tolerations)
        return SUCCESS if st is None else st

    def filter_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> ColumnVerdicts | None:
        """``filter`` of every node at ``rows``, from its taint set's verdict."""
        v = _verdicts(columns, pod)
        if v is None:
            return None
        if not v.statuses:  # no taint set rejects the pod
            return ColumnVerdicts(np.zeros(len(rows), dtype=np.int64))
        return ColumnVerdicts(v.codes.take(columns.taints.take(rows)), v.statuses)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        assert node.node is not None
        if not node.node.taints:
            return 0
        return _intolerable(node.node.taints, pod.tolerations)

    def score_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> NDArray[np.int64] | None:
        """``score`` of every node at ``rows`` from its taint set, then ``normalize``."""
        v = _verdicts(columns, pod)
        if v is None:
            return None
        if not v.most:  # no node has a PreferNoSchedule taint the pod does not tolerate
            return np.full(len(rows), MAX_NODE_SCORE, dtype=np.int64)
        raw = v.intolerable.take(columns.taints.take(rows))
        worst = int(raw.max()) if raw.size else 0
        if worst == 0:
            return np.full(len(rows), MAX_NODE_SCORE, dtype=np.int64)
        out: NDArray[np.int64] = MAX_NODE_SCORE - raw * MAX_NODE_SCORE // worst
        return out

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Fewer intolerable taints is better: reverse onto 0..100."""
        worst = max(scores, default=0)
        for i, s in enumerate(scores):
            scores[i] = (
                MAX_NODE_SCORE if worst == 0 else MAX_NODE_SCORE - s * MAX_NODE_SCORE // worst
            )
