"""NodeUnschedulable: skip nodes that are cordoned or not Ready.

kube-scheduler relies on the ``node.kubernetes.io/not-ready`` taint for
readiness; lasched also reads the Ready condition itself, so that a cluster
whose taint manager lags (or has none) never gets pods on a dead node.
A pod it rejected is worth another try when a node that is Ready and not
cordoned (or cordoned, and tolerated) is added or becomes so.
"""

from __future__ import annotations

from typing import Any

from lasched.cache.cache import NodeInfo
from lasched.framework import events
from lasched.framework.events import ActionType, ClusterEvent, ClusterEventWithHint, EventResource
from lasched.framework.interface import SUCCESS, Batchable, CycleState, Status, unschedulable
from lasched.model.node import Node
from lasched.model.pod import PodInfo

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NOT_READY = "node(s) were not ready"


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
            return unschedulable(REASON_NOT_READY, unresolvable=True)
        if n.unschedulable and not _tolerates_unschedulable(pod):
            return unschedulable(REASON_UNSCHEDULABLE, unresolvable=True)
        return SUCCESS
