"""NodeResourcesFit: does the pod's request fit the node's free allocatable?

The filter follows kube-scheduler's ``fitsRequest``: the pod count first, then
CPU, memory, ephemeral storage and every extended resource the pod requests.
The scores are kube-scheduler's ``LeastAllocated`` (spread) and
``MostAllocated`` (bin-pack) over CPU and memory, computed on non-zero
requests so that request-less pods still spread.
"""

from __future__ import annotations

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import (
    MAX_NODE_SCORE,
    SUCCESS,
    CycleState,
    Status,
    unschedulable,
)
from lasched.model.pod import PodInfo
from lasched.model.resources import CPU, EPHEMERAL_STORAGE, MEMORY

REASON_TOO_MANY_PODS = "Too many pods"


def insufficient(resource: str) -> str:
    return f"Insufficient {resource}"


def fit_reasons(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Every resource the pod does not fit on ``node`` (empty: it fits)."""
    n = node.node
    assert n is not None
    alloc, used, req = n.allocatable, node.requested, pod.requests
    if node.nominated and (held := node.nominated_requests(pod.priority, pod.key)) is not None:
        used = used.copy()
        used.add(held)
    reasons = []
    if used.pods + 1 > alloc.pods:
        reasons.append(REASON_TOO_MANY_PODS)
    if req.milli_cpu and alloc.milli_cpu < used.milli_cpu + req.milli_cpu:
        reasons.append(insufficient(CPU))
    if req.memory and alloc.memory < used.memory + req.memory:
        reasons.append(insufficient(MEMORY))
    if req.ephemeral_storage and (
        alloc.ephemeral_storage < used.ephemeral_storage + req.ephemeral_storage
    ):
        reasons.append(insufficient(EPHEMERAL_STORAGE))
    for name, amount in req.scalar.items():
        if amount and alloc.scalar.get(name, 0) < used.scalar.get(name, 0) + amount:
            reasons.append(insufficient(name))
    return reasons


def _ratio_free(capacity: int, requested: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def _ratio_used(capacity: int, requested: int) -> int:
    if capacity == 0:
        return 0
    return min(requested, capacity) * MAX_NODE_SCORE // capacity


class NodeResourcesFit:
    """Filter, and score by ``strategy``: ``LeastAllocated`` or ``MostAllocated``."""

    name = "NodeResourcesFit"

    def __init__(self, strategy: str = "LeastAllocated") -> None:
        if strategy not in ("LeastAllocated", "MostAllocated"):
            raise ValueError(f"strategy must be LeastAllocated or MostAllocated, not {strategy!r}")
        self.strategy = strategy
        self._ratio = _ratio_free if strategy == "LeastAllocated" else _ratio_used

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        reasons = fit_reasons(pod, node)
        return unschedulable(*reasons) if reasons else SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        n = node.node
        assert n is not None
        cpu = self._ratio(n.allocatable.milli_cpu, node.non_zero_cpu + pod.non_zero[0])
        mem = self._ratio(n.allocatable.memory, node.non_zero_mem + pod.non_zero[1])
        return (cpu + mem) // 2

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        return None


class BalancedAllocation:
    """Prefer nodes whose CPU and memory use stay in proportion after placing the pod.

    kube-scheduler's NodeResourcesBalancedAllocation with two resources:
    ``score = (1 - |cpuFraction - memFraction| / 2) * 100``.
    """

    name = "NodeResourcesBalancedAllocation"

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        n = node.node
        assert n is not None
        if not n.allocatable.milli_cpu or not n.allocatable.memory:
            return 0
        cpu = min(1.0, (node.non_zero_cpu + pod.non_zero[0]) / n.allocatable.milli_cpu)
        mem = min(1.0, (node.non_zero_mem + pod.non_zero[1]) / n.allocatable.memory)
        return int((1 - abs(cpu - mem) / 2) * MAX_NODE_SCORE)

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        return None
