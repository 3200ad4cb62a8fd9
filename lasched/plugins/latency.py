"""LatencyFilter: hard delay constraints against the latency cache.

A node passes when, for every ``delay_<src>: "<ms>"`` label of the pod, the
RTT from ``src`` to the node is known, fresh, and at most ``ms``. Unknown or
stale RTTs fail closed: a hard constraint is never met by a guess.
"""

from __future__ import annotations

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import SKIP, SUCCESS, CycleState, Status, unschedulable
from lasched.latency.cache import LatencyCache
from lasched.model.pod import PodInfo


class LatencyFilter:
    name = "LatencyFilter"

    def __init__(self, cache: LatencyCache) -> None:
        self._cache = cache

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        if pod.latency_error:
            return unschedulable(pod.latency_error, unresolvable=True)
        return SUCCESS if pod.delay_constraints else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        for c in pod.delay_constraints:
            rtt = self._cache.get(c.source, node.name)
            if rtt is None:
                return unschedulable(f"node(s) had no measured RTT from {c.source}")
            if rtt.stale:
                return unschedulable(f"node(s) had only stale RTTs from {c.source}")
            if rtt.ms > c.max_ms:
                return unschedulable(
                    f"node(s) were more than {c.max_ms:g} ms from {c.source} ({c.label})"
                )
        return SUCCESS

    def explain(self, pod: PodInfo, node: str) -> str:
        """The RTTs that admitted ``node``, for the Scheduled event."""
        parts = []
        for c in pod.delay_constraints:
            rtt = self._cache.get(c.source, node)
            if rtt is not None:
                parts.append(rtt.describe(c.source))
        return "; ".join(parts)
