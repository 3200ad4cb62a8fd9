"""NodeUnschedulable: skip nodes that are cordoned or not Ready.

kube-scheduler relies on the ``node.kubernetes.io/not-ready`` taint for
readiness; lasched also reads the Ready condition itself, so that a cluster
whose taint manager lags (or has none) never gets pods on a dead node.
"""

from __future__ import annotations

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import SUCCESS, Batchable, CycleState, Status, unschedulable
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


class NodeUnschedulable(Batchable):
    name = "NodeUnschedulable"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        n = node.node
        assert n is not None
        if not n.ready:
            return unschedulable(REASON_NOT_READY, unresolvable=True)
        if n.unschedulable and not _tolerates_unschedulable(pod):
            return unschedulable(REASON_UNSCHEDULABLE, unresolvable=True)
        return SUCCESS
