"""NodeResourcesFit: does the pod's request fit the node's free allocatable?

The filter follows kube-scheduler's ``fitsRequest``: the pod count first, then
CPU, memory, ephemeral storage and every extended resource the pod requests.
The scores are kube-scheduler's ``LeastAllocated`` (spread) and
``MostAllocated`` (bin-pack) over CPU and memory, computed on non-zero
requests so that request-less pods still spread, and its
``RequestedToCapacityRatio`` (a utilization-to-score shape over CPU, memory,
ephemeral storage and extended resources: lasched/plugins/requestedtocapacity.py).

These run for hundreds of nodes per pod, so they are written for speed:
Filter checks the common case (no extended resources, no nominated pods)
inline and builds the reasons only for a node that fails. Both scores have a
``score_all`` that the runtime calls once per cycle instead of ``score`` once
per node; it keeps each node's score in ``NodeInfo.memo`` with the node's
generation and the pod's non-zero requests, so a burst of alike pods computes
only the nodes that changed. Each gives exactly what the plain formulas give.

With the cache's columns (lasched/cache/columns.py) the filter and both
scores judge every candidate node in a few array operations instead
(``filter_columns``, ``score_columns``), in the same integer arithmetic
(and, for BalancedAllocation, the same float64 divisions). A pod with
extended resources, a node with nominated pods, and values too large for
exact arithmetic go the per-node way.

A pod NodeResourcesFit rejected is worth another try when a node that
could hold it arrives or grows, or when room is freed: a pod deleted (or
an assumed pod forgotten, or a preemptor that held room), or one that
shrank its requests (:meth:`NodeResourcesFit.events_to_register`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from lasched.cache.cache import NodeInfo
from lasched.cache.columns import (
    ALLOC_CPU,
    ALLOC_MEMORY,
    NONZERO_CPU,
    NodeColumns,
    regular,
)
from lasched.framework import events
from lasched.framework.events import ActionType, ClusterEvent, ClusterEventWithHint, EventResource
from lasched.framework.interface import (
    MAX_NODE_SCORE,
    SUCCESS,
    Batchable,
    ColumnVerdicts,
    CycleState,
    ScoreReadsNodePods,
    Status,
    unschedulable,
)
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.model.resources import CPU, EPHEMERAL_STORAGE, MEMORY, Resources
from lasched.plugins.requestedtocapacity import RequestedToCapacityRatio

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


def fits_allocatable(pod: PodInfo, node: Node) -> bool:
    """Would ``pod`` fit ``node`` were it empty? (Its requests within the allocatable.)"""
    alloc, req = node.allocatable, pod.requests
    return (
        alloc.pods >= 1
        and req.milli_cpu <= alloc.milli_cpu
        and req.memory <= alloc.memory
        and req.ephemeral_storage <= alloc.ephemeral_storage
        and all(v <= alloc.scalar.get(k, 0) for k, v in req.scalar.items())
    )


def _requested_grew(req: Resources, old: Resources, new: Resources) -> bool:
    """Did the allocatable of anything ``req`` asks for (or the pod count) grow?"""
    return (
        new.pods > old.pods
        or (req.milli_cpu > 0 and new.milli_cpu > old.milli_cpu)
        or (req.memory > 0 and new.memory > old.memory)
        or (req.ephemeral_storage > 0 and new.ephemeral_storage > old.ephemeral_storage)
        or any(v > 0 and new.scalar.get(k, 0) > old.scalar.get(k, 0) for k, v in req.scalar.items())
    )


def _node_grew(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """kube-scheduler's ``isSchedulableAfterNodeChange``: a node that could hold the pod
    was added, or grew in something it asks for."""
    if not isinstance(new, Node) or not fits_allocatable(pod, new):
        return events.SKIP
    if not isinstance(old, Node) or _requested_grew(pod.requests, old.allocatable, new.allocatable):
        return events.QUEUE
    return events.SKIP


def _room_freed(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """A pod deleted frees room (at least a pod slot); a resized one, what it gave back."""
    if new is None:
        return events.QUEUE
    if isinstance(old, PodInfo) and isinstance(new, PodInfo):
        req, was, now = pod.requests, old.requests, new.requests
        if (
            (req.milli_cpu and now.milli_cpu < was.milli_cpu)
            or (req.memory and now.memory < was.memory)
            or (req.ephemeral_storage and now.ephemeral_storage < was.ephemeral_storage)
            or any(v and now.scalar.get(k, 0) < was.scalar.get(k, 0) for k, v in req.scalar.items())
        ):
            return events.QUEUE
    return events.SKIP


def _ratio_free(capacity: int, requested: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def _ratio_used(capacity: int, requested: int) -> int:
    if capacity == 0:
        return 0
    return min(requested, capacity) * MAX_NODE_SCORE // capacity


_REJECTIONS: dict[tuple[str, ...], Status] = {}


def _rejection(reasons: tuple[str, ...]) -> Status:
    """One shared (immutable) Status per combination of reasons, not one per node."""
    st = _REJECTIONS.get(reasons)
    if st is None:
        st = unschedulable(*reasons)
        if len(_REJECTIONS) < 1024:  # extended resource names could be many
            _REJECTIONS[reasons] = st
    return st


# filter_columns' codes: a bit per reason, in fit_reasons' order.
_TOO_MANY_PODS, _NO_CPU, _NO_MEMORY, _NO_EPHEMERAL = 1, 2, 4, 8
_FIT_REJECTIONS = tuple(
    _rejection(
        tuple(
            reason
            for bit, reason in (
                (_TOO_MANY_PODS, REASON_TOO_MANY_PODS),
                (_NO_CPU, insufficient(CPU)),
                (_NO_MEMORY, insufficient(MEMORY)),
                (_NO_EPHEMERAL, insufficient(EPHEMERAL_STORAGE)),
            )
            if code & bit
        )
    )
    for code in range(1, 16)
)

Ints = NDArray[np.int64]
_BITS = np.array([_TOO_MANY_PODS, _NO_CPU, _NO_MEMORY, _NO_EPHEMERAL], dtype=np.int64)
_NEVER = -(1 << 62)  # a need that no free amount is below: the resource is not requested


class _Loads:
    """What both resource scores read of the nodes at some rows, with a pod placed: the
    allocatable CPU and memory (2 x n), that with 1 for 0 (a divisor), and the non-zero
    requests with the pod's. Kept in the CycleState for the other score of the cycle."""

    __slots__ = ("capacity", "columns", "divisor", "non_zero", "requested", "rows", "version")

    def __init__(self, columns: NodeColumns, rows: NDArray[np.intp], pod: PodInfo) -> None:
        self.columns, self.version, self.rows, self.non_zero = (
            columns, columns.version, rows, pod.non_zero
        )  # fmt: skip
        load = columns.load.take(rows, axis=1)
        self.capacity = load[ALLOC_CPU : ALLOC_MEMORY + 1]
        self.requested = load[NONZERO_CPU:]
        self.requested += np.array(pod.non_zero, dtype=np.int64)[:, None]
        self.divisor = np.maximum(self.capacity, 1)

    @classmethod
    def of(
        cls, state: CycleState, columns: NodeColumns, rows: NDArray[np.intp], pod: PodInfo
    ) -> _Loads:
        loads: _Loads | None = state.data.get(_LOADS)
        if (
            loads is None
            or loads.rows is not rows
            or loads.columns is not columns
            or loads.version != columns.version
            or loads.non_zero != pod.non_zero
        ):
            loads = state.data[_LOADS] = cls(columns, rows, pod)
        return loads


_LOADS = "NodeResources/loads"


def _ratios_free(loads: _Loads) -> Ints:
    """:func:`_ratio_free` of each node and resource (regular values: a capacity of 0
    leaves nothing free)."""
    free = np.maximum(loads.capacity - loads.requested, 0)
    out: Ints = free * MAX_NODE_SCORE // loads.divisor
    return out


def _ratios_used(loads: _Loads) -> Ints:
    """:func:`_ratio_used` of each node and resource (regular values: capacity 0 gives 0)."""
    out: Ints = np.minimum(loads.requested, loads.capacity) * MAX_NODE_SCORE // loads.divisor
    return out


class _NodeScore(Protocol):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int: ...


# Scores kept per node: a few pod shapes for each plugin, then the memo starts afresh.
_MEMO_LIMIT = 16


def _remembered(
    plugin: _NodeScore, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
) -> list[int]:
    """``plugin.score`` of each node, kept in ``NodeInfo.memo`` per plugin and pod shape.

    Valid for scores that read only the node's allocatable and non-zero
    requests (both change the generation) and the pod's non-zero requests.
    The key holds the plugin object, so profiles with other strategies keep
    their own.
    """
    key = (plugin, *pod.non_zero)
    score = plugin.score
    out: list[int] = []
    append = out.append
    for ni in nodes:
        memo, gen = ni.memo, ni.generation
        m = memo.get(key)
        if m is not None and m[0] == gen:
            append(m[1])
            continue
        value = score(state, pod, ni)
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[key] = (gen, value)
        append(value)
    return out


REQUESTED_TO_CAPACITY_RATIO = "RequestedToCapacityRatio"
STRATEGIES = ("LeastAllocated", "MostAllocated", REQUESTED_TO_CAPACITY_RATIO)
SCORED_RESOURCES = (CPU, MEMORY)
"""What LeastAllocated and MostAllocated score; RequestedToCapacityRatio takes any resource."""
DEFAULT_RESOURCE_WEIGHTS: Mapping[str, int] = {CPU: 1, MEMORY: 1}


class NodeResourcesFit(Batchable, ScoreReadsNodePods):
    """Filter, and score by ``strategy``: ``LeastAllocated``, ``MostAllocated`` or
    ``RequestedToCapacityRatio`` (which needs ``shape``, its (utilization, score) points).

    ``resources`` weighs the resource scores as kube-scheduler's
    ``scoringStrategy.resources`` does (LeastAllocated and MostAllocated: the
    weighted mean of CPU and memory, rounded down; RequestedToCapacityRatio:
    see its module); a resource left out is not scored.
    """

    name = "NodeResourcesFit"

    def __init__(
        self,
        strategy: str = "LeastAllocated",
        *,
        resources: Mapping[str, int] = DEFAULT_RESOURCE_WEIGHTS,
        shape: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
        shaped = strategy == REQUESTED_TO_CAPACITY_RATIO
        for resource, weight in resources.items():
            if not shaped and resource not in SCORED_RESOURCES:
                raise ValueError(
                    f"resources may name cpu and memory only with {strategy}, not {resource!r}"
                )
            if not isinstance(resource, str) or not resource:
                raise ValueError(f"resources must be named, not {resource!r}")
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise ValueError(
                    f"resources[{resource!r}] must be a positive integer, not {weight!r}"
                )
        if not resources:
            raise ValueError("resources must name at least one resource")
        if shaped != (shape is not None):
            raise ValueError(
                f"shape is for {REQUESTED_TO_CAPACITY_RATIO}, which needs one"
                if shaped
                else f"shape is for {REQUESTED_TO_CAPACITY_RATIO} only, not {strategy}"
            )
        self.strategy = strategy
        self.resources = dict(resources)
        self._shaped = RequestedToCapacityRatio(shape, resources) if shape is not None else None
        self._cpu_weight = resources.get(CPU, 0)
        self._mem_weight = resources.get(MEMORY, 0)
        self._ratio = _ratio_free if strategy == "LeastAllocated" else _ratio_used
        self._ratios = _ratios_free if strategy == "LeastAllocated" else _ratios_used

    def events_to_register(self) -> list[ClusterEventWithHint]:
        """A node added or grown; a pod deleted or scaled down."""
        return [
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_ALLOCATABLE
                ),
                _node_grew,
            ),
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.POD, ActionType.DELETE | ActionType.UPDATE_POD_SCALE_DOWN
                ),
                _room_freed,
            ),
        ]

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        n = node.node
        assert n is not None
        req = pod.requests
        if not req.scalar and not node.nominated:
            # fit_reasons() without a list, for a node that fits (most of them).
            alloc, used = n.allocatable, node.requested
            cpu, mem, eph = req.milli_cpu, req.memory, req.ephemeral_storage
            if (
                used.pods < alloc.pods
                and (not cpu or alloc.milli_cpu >= used.milli_cpu + cpu)
                and (not mem or alloc.memory >= used.memory + mem)
                and (not eph or alloc.ephemeral_storage >= used.ephemeral_storage + eph)
            ):
                return SUCCESS
        reasons = fit_reasons(pod, node)
        return _rejection(tuple(reasons)) if reasons else SUCCESS

    def filter_all(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[Status]:
        """``[filter(state, pod, n) for n in nodes]``, the common case inline."""
        req = pod.requests
        if req.scalar:
            return [self.filter(state, pod, ni) for ni in nodes]
        cpu, mem, eph = req.milli_cpu, req.memory, req.ephemeral_storage
        out: list[Status] = []
        append = out.append
        for ni in nodes:
            if not ni.nominated:
                alloc, used = ni.node.allocatable, ni.requested  # type: ignore[union-attr]
                if (
                    used.pods < alloc.pods
                    and (not cpu or alloc.milli_cpu >= used.milli_cpu + cpu)
                    and (not mem or alloc.memory >= used.memory + mem)
                    and (not eph or alloc.ephemeral_storage >= used.ephemeral_storage + eph)
                ):
                    append(SUCCESS)
                    continue
            append(self.filter(state, pod, ni))
        return out

    def filter_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> ColumnVerdicts | None:
        """``filter`` of every node at ``rows``: a bit per missing resource, in
        fit_reasons' order; -1 (the per-node form) where pods are nominated."""
        req = pod.requests
        cpu, mem, eph = req.milli_cpu, req.memory, req.ephemeral_storage
        if req.scalar or columns.irregular or not regular(cpu, mem, eph):
            return None
        # Not room for it: free < need (allocatable < requested + need, both exact).
        need = np.array([[1], [cpu or _NEVER], [mem or _NEVER], [eph or _NEVER]], dtype=np.int64)
        codes: Ints = _BITS @ (columns.free.take(rows, axis=1) < need)
        if not columns.nominated_rows:
            return ColumnVerdicts(codes, _FIT_REJECTIONS)
        codes[columns.nominated.take(rows) > 0] = -1  # the room they hold: see fit_reasons()
        return ColumnVerdicts(codes, _FIT_REJECTIONS, settled=False)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        if self._shaped is not None:
            return self._shaped.score(pod, node)
        n = node.node
        assert n is not None
        cpu = self._ratio(n.allocatable.milli_cpu, node.non_zero_cpu + pod.non_zero[0])
        mem = self._ratio(n.allocatable.memory, node.non_zero_mem + pod.non_zero[1])
        wc, wm = self._cpu_weight, self._mem_weight
        if wc == wm:
            return (cpu + mem) // 2
        return (cpu * wc + mem * wm) // (wc + wm)

    def score_all(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """``[score(state, pod, n) for n in nodes]``, remembered per node when the score
        reads only CPU and memory."""
        shaped = self._shaped
        if shaped is not None and not shaped.reads_only_cpu_and_memory:
            return [shaped.score(pod, ni) for ni in nodes]
        return _remembered(self, state, pod, nodes)

    def score_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> Ints | None:
        """``score`` of every node at ``rows`` (normalize changes nothing)."""
        if columns.irregular or not regular(*pod.non_zero):
            return None
        if self._shaped is not None:
            if not self._shaped.reads_only_cpu_and_memory:
                return None
            loads = _Loads.of(state, columns, rows, pod)
            return self._shaped.score_columns(loads.capacity, loads.requested)
        cpu, mem = self._ratios(_Loads.of(state, columns, rows, pod))
        wc, wm = self._cpu_weight, self._mem_weight
        out: Ints = (cpu + mem) // 2 if wc == wm else (cpu * wc + mem * wm) // (wc + wm)
        return out

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        return None


class BalancedAllocation(Batchable, ScoreReadsNodePods):
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

    def score_all(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """``[score(state, pod, n) for n in nodes]``, remembered per node."""
        return _remembered(self, state, pod, nodes)

    def score_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> Ints | None:
        """``score`` of every node at ``rows``, in the same float64 steps."""
        if columns.irregular or not regular(*pod.non_zero):
            return None
        loads = _Loads.of(state, columns, rows, pod)
        # Both operands are below 2**53, so int / int is float64 division, as in Python.
        cpu, mem = np.minimum(1.0, loads.requested / loads.divisor)
        scores = ((1 - np.abs(cpu - mem) / 2) * MAX_NODE_SCORE).astype(np.int64)  # int(): trunc
        cpu_capacity, mem_capacity = loads.capacity
        empty = (cpu_capacity == 0) | (mem_capacity == 0)
        out: Ints = np.where(empty, 0, scores)
        return out

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        return None
