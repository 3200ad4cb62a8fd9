"""NodeResourcesFit's RequestedToCapacityRatio strategy: score utilization along a shape.

kube-scheduler's ``requestedToCapacityRatioScorer``, to the integer. The
user's shape maps utilization (0..100 %) to a score (0..10); each point's
score is scaled by 10 onto 0..100 and the function is linear between
points and flat beyond the ends (``BuildBrokenLinearFunction``, with Go's
integer division, which truncates toward zero). Each listed resource with
allocatable on the node is scored at ``(requested + pod's request) * 100 /
allocatable``; the resources whose score is above 0 are averaged by
weight and rounded half away from zero (Go's ``math.Round``).

What is requested is what kube-scheduler reads: for CPU and memory the
non-zero requests (a request-less container counts 100m and 200Mi), for
ephemeral storage and extended resources the requests; an extended
resource the pod does not request is not scored.

The column form scores CPU and memory only; a strategy that lists another
resource scores node by node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import MAX_NODE_SCORE
from lasched.model.pod import PodInfo
from lasched.model.resources import CPU, EPHEMERAL_STORAGE, MEMORY

MAX_UTILIZATION = 100
MAX_CUSTOM_PRIORITY_SCORE = 10
"""The top of a shape's score scale; kube-scheduler's ``MaxCustomPriorityScore``."""

Ints = NDArray[np.int64]
Shape = tuple[tuple[int, int], ...]
"""(utilization, score) points, utilization strictly increasing."""


class ShapeError(ValueError):
    """A shape kube-scheduler's validation refuses; ``field`` is the path below the shape
    (``[1].utilization``, or empty for the shape as a whole)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"shape{field}: {message}")
        self.field, self.message = field, message


def validate_shape(points: Sequence[tuple[int, int]]) -> Shape:
    """The points as a :data:`Shape`, checked as kube-scheduler's ``validateFunctionShape``
    checks them (the first problem found, in its order)."""
    if not points:
        raise ShapeError("", "Required value: at least one point must be specified")
    for i in range(1, len(points)):
        if points[i - 1][0] >= points[i][0]:
            raise ShapeError(
                f"[{i}].utilization",
                f"Invalid value: {points[i][0]}: utilization values must be sorted "
                "in increasing order",
            )
    for i, (utilization, score) in enumerate(points):
        if not 0 <= utilization <= MAX_UTILIZATION:
            raise ShapeError(
                f"[{i}].utilization",
                f"Invalid value: {utilization}: not in valid range [0, {MAX_UTILIZATION}]",
            )
        if not 0 <= score <= MAX_CUSTOM_PRIORITY_SCORE:
            raise ShapeError(
                f"[{i}].score",
                f"Invalid value: {score}: not in valid range [0, {MAX_CUSTOM_PRIORITY_SCORE}]",
            )
    return tuple((int(u), int(s)) for u, s in points)


def _trunc_div(a: int, b: int) -> int:
    """Go's ``a / b`` for ``b > 0``: the quotient truncated toward zero."""
    return a // b if a >= 0 else -(-a // b)


def broken_linear(shape: Shape, p: int) -> int:
    """kube-scheduler's ``BuildBrokenLinearFunction(shape)(p)``."""
    for i, (u, s) in enumerate(shape):
        if p <= u:
            if i == 0:
                return s
            u0, s0 = shape[i - 1]
            return s0 + _trunc_div((s - s0) * (p - u0), u - u0)
    return shape[-1][1]


def scaled_utilization(requested: int, capacity: int) -> int:
    """``requested * 100 / capacity`` with ``requested`` clamped to ``[0, capacity]``."""
    if capacity <= 0 or requested <= 0:
        return 0
    if requested >= capacity:
        return MAX_UTILIZATION
    return requested * MAX_UTILIZATION // capacity


class RequestedToCapacityRatio:
    """The strategy's scorer: a shape (scores already on 0..100) and resource weights."""

    __slots__ = ("_cpu_mem_only", "_points", "resources", "shape")

    def __init__(self, shape: Sequence[tuple[int, int]], resources: Mapping[str, int]) -> None:
        points = validate_shape(shape)
        # The user's 0..10 scores on the scheduler's 0..100 (MaxNodeScore / MaxCustomPriorityScore).
        self.shape: Shape = tuple(
            (u, s * (MAX_NODE_SCORE // MAX_CUSTOM_PRIORITY_SCORE)) for u, s in points
        )
        self.resources = dict(resources)
        self._cpu_mem_only = set(self.resources) <= {CPU, MEMORY}
        self._points = (
            np.array([u for u, _ in self.shape], dtype=np.int64),
            np.array([s for _, s in self.shape], dtype=np.int64),
        )

    @property
    def reads_only_cpu_and_memory(self) -> bool:
        """Does the score read nothing of the pod but its non-zero CPU and memory requests?"""
        return self._cpu_mem_only

    def _resource_score(self, requested: int, capacity: int) -> int:
        if capacity == 0 or requested > capacity:
            return broken_linear(self.shape, MAX_UTILIZATION)
        return broken_linear(self.shape, scaled_utilization(requested, capacity))

    def score(self, pod: PodInfo, node: NodeInfo) -> int:
        n = node.node
        assert n is not None
        alloc, req = n.allocatable, pod.requests
        total = weights = 0
        for resource, weight in self.resources.items():
            if resource == CPU:
                capacity, requested = alloc.milli_cpu, node.non_zero_cpu + pod.non_zero[0]
            elif resource == MEMORY:
                capacity, requested = alloc.memory, node.non_zero_mem + pod.non_zero[1]
            elif resource == EPHEMERAL_STORAGE:
                capacity = alloc.ephemeral_storage
                requested = node.requested.ephemeral_storage + req.ephemeral_storage
            else:
                wanted = req.scalar.get(resource, 0)
                if not wanted:
                    continue  # an extended resource the pod does not ask for is not scored
                capacity = alloc.scalar.get(resource, 0)
                requested = node.requested.scalar.get(resource, 0) + wanted
            if capacity == 0:
                continue
            score = self._resource_score(requested, capacity)
            if score > 0:
                total += score * weight
                weights += weight
        if not weights:
            return 0
        return (2 * total + weights) // (2 * weights)  # math.Round of total / weights (>= 0)

    def score_columns(self, capacity: Ints, requested: Ints) -> Ints | None:
        """``score`` of nodes from their CPU and memory capacity and requested (each
        2 x n, the pod's non-zero requests included; regular values); None when the
        strategy lists other resources."""
        if not self._cpu_mem_only:
            return None
        divisor = np.maximum(capacity, 1)
        utilization = np.where(
            requested >= capacity, MAX_UTILIZATION, requested * MAX_UTILIZATION // divisor
        )
        # capacity 0 is skipped below; requested > capacity scores at 100 %, as above.
        scores = self._broken_linear(utilization)
        total = np.zeros(capacity.shape[1], dtype=np.int64)
        weights = np.zeros(capacity.shape[1], dtype=np.int64)
        for row, resource in enumerate((CPU, MEMORY)):
            weight = self.resources.get(resource, 0)
            if not weight:
                continue
            counted = (capacity[row] != 0) & (scores[row] > 0)
            total += np.where(counted, scores[row] * weight, 0)
            weights += np.where(counted, weight, 0)
        out: Ints = np.where(weights > 0, (2 * total + weights) // (2 * np.maximum(weights, 1)), 0)
        return out

    def _broken_linear(self, p: Ints) -> Ints:
        """:func:`broken_linear` of every value of ``p`` (0..100)."""
        us, ss = self._points
        i = np.searchsorted(us, p, side="left")  # the first point with p <= utilization
        last = len(us) - 1
        hi = np.minimum(i, last)
        lo = np.maximum(i - 1, 0)
        u0, s0, u1, s1 = us[lo], ss[lo], us[hi], ss[hi]
        num = (s1 - s0) * (p - u0)
        den = np.maximum(u1 - u0, 1)
        step = np.where(num >= 0, num // den, -(-num // den))  # Go's truncating division
        out: Ints = np.where(i == 0, ss[0], np.where(i > last, ss[last], s0 + step))
        return out
