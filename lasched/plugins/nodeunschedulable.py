"""NodeUnschedulable: skip nodes that are cordoned or not Ready.

kube-scheduler relies on the ``node.kubernetes.io/not-ready`` taint for
readiness; lasched also reads the Ready condition itself, so that a cluster
whose taint manager lags (or has none) never gets pods on a dead node.
A pod it rejected is worth another try when a node that is Ready and not
cordoned (or cordoned, and tolerated) is added or becomes so.

``filter_columns`` reads readiness and the cordon from the cache's columns
for every candidate node at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from lasched.cache.cache import NodeInfo
from lasched.cache.columns import NodeColumns
from lasched.framework import events
from lasched.framework.events import ActionType, ClusterEvent, ClusterEventWithHint, EventResource
from lasched.framework.interface import (
    SUCCESS,
    Batchable,
    ColumnVerdicts,
    CycleState,
    Status,
    unschedulable,
)
from lasched.model.node import Node
from lasched.model.pod import PodInfo

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NOT_READY = "node(s) were not ready"

_NOT_READY = unschedulable(REASON_NOT_READY, unresolvable=True)
_CORDONED = unschedulable(REASON_UNSCHEDULABLE, unresolvable=True)
_REJECTIONS = (_NOT_READY, _CORDONED)  # codes 1 and 2 of filter_columns
# filter_columns' code by the columns' condition bits (NOT_READY 1, CORDONED 2): not
# ready first, as filter() checks; a cordon only for a pod that does not tolerate it.
_CODES = np.array([0, 1, 2, 1], dtype=np.int64)
_CODES_TOLERATED = np.array([0, 1, 0, 1], dtype=np.int64)


def _tolerates_unschedulable(pod: PodInfo) -> bool:
    for t in pod.tolerations:
        key = t.get("key", "")
        effect = t.get("effect", "")
        if (key == UNSCHEDULABLE_TAINT or (key == "" and t.get("operator") == "Exists")) and (
            effect in ("", "NoSchedule")
        ):
            return True
    return False


def _open_to(pod: PodInfo, node: Node) -> bool:
    return node.ready and (not node.unschedulable or _tolerates_unschedulable(pod))


def _node_opened(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """A node the pod may go to, which it could not before (or is new)."""
    if not isinstance(new, Node) or not _open_to(pod, new):
        return events.SKIP
    if isinstance(old, Node) and _open_to(pod, old):
        return events.SKIP
    return events.QUEUE


class NodeUnschedulable(Batchable):
    name = "NodeUnschedulable"

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.NODE,
                    ActionType.ADD
                    | ActionType.UPDATE_NODE_TAINT
                    | ActionType.UPDATE_NODE_CONDITION,
                ),
                _node_opened,
            )
        ]

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        n = node.node
        assert n is not None
        if not n.ready:
            return _NOT_READY
        if n.unschedulable and not _tolerates_unschedulable(pod):
            return _CORDONED
        return SUCCESS

    def filter_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> ColumnVerdicts:
        """``filter`` of every node at ``rows``: 1 not ready, 2 cordoned (and not tolerated)."""
        table = _CODES_TOLERATED if _tolerates_unschedulable(pod) else _CODES
        return ColumnVerdicts(table.take(columns.condition.take(rows)), _REJECTIONS)
