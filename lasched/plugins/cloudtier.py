"""CloudTier: nodes labelled ``kubernetes.io/role=cloud`` are the last resort.

kubernetes-edge-scheduler's rule, as a hard tier: a pod goes to an edge node
(any node without that label) whenever one passes every Filter, and to a
cloud node only when none does. It is a Filter whose per-node verdict always
passes, and whose verdict on the feasible nodes together
(:class:`~lasched.framework.interface.FilterFeasiblePlugin`) drops the cloud
nodes when an edge node is among them. Invariant: it never drops every node,
so it never makes a pod unschedulable, only chooses the tier.

LatencyScore's ``cloud`` preference is the soft opposite (pods without
latency requirements *prefer* cloud nodes); a profile picks one or neither.

Not :class:`~lasched.framework.interface.Batchable`: which tier a node is in
for a pod depends on whether other nodes fit, which an opportunistic batch,
judging one node, cannot see; a profile with this plugin never batches.

Which nodes are "feasible" is what the cycle evaluated: with
``percentageOfNodesToScore`` below 100 in a large cluster (100 feasible nodes
or more are found before the search stops), an edge node outside the sample
does not count.
"""

from __future__ import annotations

from collections.abc import Sequence

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import SUCCESS, CycleState, Status, unschedulable
from lasched.model.pod import PodInfo
from lasched.plugins.latency import CLOUD_ROLE, CLOUD_ROLE_LABEL

DROPPED = "node(s) were in the cloud tier (kubernetes.io/role=cloud) while an edge node fits"


def is_cloud(node: NodeInfo) -> bool:
    return node.node is not None and node.node.labels.get(CLOUD_ROLE_LABEL) == CLOUD_ROLE


class CloudTier:
    """Edge nodes first; cloud nodes only when no edge node passes the filters."""

    name = "CloudTier"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        return SUCCESS  # a node's tier counts only beside the other feasible nodes

    def filter_feasible(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[Status] | None:
        cloud = [is_cloud(n) for n in nodes]
        if all(cloud) or not any(cloud):
            return None
        dropped = unschedulable(DROPPED)
        return [dropped if c else SUCCESS for c in cloud]
