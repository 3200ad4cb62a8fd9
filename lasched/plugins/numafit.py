"""NUMA zone arithmetic: does a request fit one zone (or the fewest zones), and how well.

Pure functions over a node's zones and what is free in each (the published
``available`` less lasched's own recent placements, lasched/cache/topology.py).

* **single** (Topology Manager ``single-numa-node``, KubeNexus ``single-numa``
  and ``isolated``): every aligned resource of the request from one zone. In
  pod scope the pod's effective request; in container scope each container
  alone, app containers taking from the zone they fit (lowest NUMA id first,
  as the kubelet prefers the narrowest, lowest affinity) and init containers
  only checked, since they run before the others and give their share back.
* **restricted**: the request from the fewest zones that could ever hold it
  (counted on the zones' allocatable): the kubelet's ``restricted`` policy
  admits only such a *preferred* affinity. Computed on the pod's request.

A resource that no zone reports is not NUMA-bound (a device without NUMA
affinity) and is left to NodeResourcesFit, unless it is CPU or memory, which
the kubelet always aligns to some zone: then nothing fits (scheduler-plugins'
rule). A zone may be *closed* to the request (it holds an ``isolated`` pod, or
the request is an isolated pod and the zone is in use): it is treated as having
nothing free, and a shortfall names why instead of its amounts. Invariant of a
fit (:class:`Fit` with ``shortfall`` None): the amounts it takes from each zone
are within what that zone has free, and it takes nothing from a closed zone.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from lasched.framework.interface import MAX_NODE_SCORE
from lasched.model.numa import NATIVE, Amounts, NumaRequest, Scope, Zone
from lasched.model.resources import CPU, MEMORY

MAX_SUBSET_ZONES = 8
"""The restricted search tries every set of zones up to this many zones on the node (the
kubelet's own default limit); a larger machine is judged on its zones' sum."""

STRATEGIES = ("LeastAllocated", "MostAllocated", "BalancedAllocation", "LeastNUMANodes")


@dataclass(frozen=True, slots=True)
class Fit:
    """What a request takes from each zone (by index), or why it does not fit."""

    taken: Mapping[int, Amounts] = field(default_factory=dict)
    shortfall: str | None = None

    @property
    def ok(self) -> bool:
        return self.shortfall is None


def shown(resource: str, n: int) -> str:
    """An amount as a person writes it: ``8`` or ``500m`` CPUs, ``64Gi``, ``2``."""
    if resource == CPU:
        return str(n // 1000) if n % 1000 == 0 else f"{n}m"
    if resource == MEMORY or resource.startswith("hugepages-"):
        for suffix, unit in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
            if n and n % unit == 0:
                return f"{n // unit}{suffix}"
    return str(n)


def _amounts(a: Amounts, names: Iterable[str]) -> str:
    return ", ".join(f"{shown(r, a.get(r, 0))} {r}" for r in names)


def _bound(need: Amounts, zones: Sequence[Zone]) -> tuple[dict[str, int], str | None]:
    """The part of ``need`` that zones report; an error when CPU or memory is not reported."""
    reported = {r for z in zones for r in z.allocatable}
    out = {}
    for r, n in need.items():
        if n <= 0:
            continue
        if r in reported:
            out[r] = n
        elif r in NATIVE:
            return {}, f"no NUMA zone reports {r}"
        # else: a resource without NUMA affinity, available at node level
    return out, None


def _fits(need: Amounts, free: Amounts) -> bool:
    return all(free.get(r, 0) >= n for r, n in need.items())


def _per_zone(
    zones: Sequence[Zone], free: Sequence[Amounts], names: Iterable[str], closed: Mapping[int, str]
) -> str:
    names = list(names)
    return "; ".join(
        f"{z.name}: {closed[i] if i in closed else _amounts(f, names)}"
        for i, (z, f) in enumerate(zip(zones, free, strict=True))
    )


def _open(free: Sequence[Amounts], closed: Mapping[int, str]) -> list[Amounts]:
    """``free`` with the closed zones holding nothing."""
    return [{} if i in closed else f for i, f in enumerate(free)] if closed else list(free)


def _no_zone(
    need: Amounts,
    zones: Sequence[Zone],
    free: Sequence[Amounts],
    who: str,
    closed: Mapping[int, str],
) -> str:
    names = sorted(need)
    per_zone = _per_zone(zones, free, names, closed)
    return f"{who}no NUMA zone has {_amounts(need, names)} free ({per_zone})"


def single(
    req: NumaRequest,
    zones: Sequence[Zone],
    free: Sequence[Amounts],
    *,
    scope: Scope,
    resources: frozenset[str],
    closed: Mapping[int, str] | None = None,
) -> Fit:
    """Every aligned resource of the pod (pod scope) or of each container from one open
    zone (``closed``: zone index -> why the request may not use it)."""
    closed = closed or {}
    if scope is Scope.POD:
        need, problem = _bound({r: req.pod[r] for r in resources if r in req.pod}, zones)
        if problem:
            return Fit(shortfall=problem)
        if not need:
            return Fit()
        for i, f in enumerate(free):
            if i not in closed and _fits(need, f):
                return Fit({i: need})
        return Fit(shortfall=_no_zone(need, zones, free, "", closed))
    left = [dict(f) for f in _open(free, closed)]
    taken: dict[int, dict[str, int]] = {}
    for c in req.containers:
        need, problem = _bound({r: n for r, n in c.amounts.items() if r in resources}, zones)
        if problem:
            return Fit(shortfall=problem)
        if not need:
            continue
        i = next((j for j, f in enumerate(left) if _fits(need, f)), -1)
        if i < 0:
            who = f"{'init ' if c.init else ''}container {c.name}: "
            return Fit(shortfall=_no_zone(need, zones, left, who, closed))
        if c.init:
            continue
        into = taken.setdefault(i, {})
        for r, n in need.items():
            left[i][r] -= n
            into[r] = into.get(r, 0) + n
    return Fit(taken)


def _sum(amounts: Iterable[Amounts]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in amounts:
        for r, n in a.items():
            out[r] = out.get(r, 0) + n
    return out


def fewest_zones(need: Amounts, amounts: Sequence[Amounts]) -> tuple[int, ...] | None:
    """The indexes of the fewest zones whose amounts together cover ``need`` (lowest ids
    first among equals); None when all of them do not."""
    if not need:
        return ()
    n = len(amounts)
    if not _fits(need, _sum(amounts)):
        return None
    if n > MAX_SUBSET_ZONES:
        return tuple(range(n))
    for k in range(1, n + 1):
        for subset in itertools.combinations(range(n), k):
            if _fits(need, _sum(amounts[i] for i in subset)):
                return subset
    return None  # unreachable: the whole set fits


def restricted(
    req: NumaRequest,
    zones: Sequence[Zone],
    free: Sequence[Amounts],
    *,
    resources: frozenset[str],
    closed: Mapping[int, str] | None = None,
) -> Fit:
    """The pod's aligned request from as few zones as could ever hold it, all of them open
    (``closed``: zone index -> why the request may not use it)."""
    closed = closed or {}
    shown_free, free = free, _open(free, closed)
    need, problem = _bound({r: req.pod[r] for r in resources if r in req.pod}, zones)
    if problem:
        return Fit(shortfall=problem)
    if not need:
        return Fit()
    names = sorted(need)
    best = fewest_zones(need, [z.allocatable for z in zones])
    if best is None:
        return Fit(shortfall=f"the NUMA zones together cannot hold {_amounts(need, names)}")
    k = len(best)
    for subset in itertools.combinations(range(len(zones)), k) if k <= MAX_SUBSET_ZONES else ():
        if _fits(need, _sum(free[i] for i in subset)):
            return Fit(_spread(need, subset, free))
    if k > MAX_SUBSET_ZONES and _fits(need, _sum(free)):
        return Fit(_spread(need, tuple(range(len(zones))), free))
    per_zone = _per_zone(zones, shown_free, names, closed)
    return Fit(
        shortfall=f"no {k} NUMA zone(s) together have {_amounts(need, names)} free ({per_zone})"
    )


def _spread(need: Amounts, subset: Sequence[int], free: Sequence[Amounts]) -> dict[int, Amounts]:
    """``need`` taken from the zones of ``subset`` in order, each up to what it has free."""
    taken: dict[int, dict[str, int]] = {}
    for r, n in need.items():
        left = n
        for i in subset:
            part = min(left, free[i].get(r, 0))
            if part > 0:
                taken.setdefault(i, {})[r] = part
                left -= part
            if left == 0:
                break
    return dict(taken)


# ---- scores ------------------------------------------------------------------------


def _weighted(parts: Mapping[str, int], weights: Mapping[str, int]) -> int:
    total = sum(weights.get(r, 1) for r in parts)
    return sum(s * weights.get(r, 1) for r, s in parts.items()) // total if total else 0


def zone_score(strategy: str, need: Amounts, free: Amounts, weights: Mapping[str, int]) -> int:
    """One zone's score for ``need`` (0..100; 0 when it does not fit)."""
    if not _fits(need, free):
        return 0
    if strategy == "LeastAllocated":
        parts = {r: (free[r] - n) * MAX_NODE_SCORE // free[r] for r, n in need.items()}
        return max(1, _weighted(parts, weights))  # it fits: never "does not fit"
    if strategy == "MostAllocated":
        return max(
            1, _weighted({r: n * MAX_NODE_SCORE // free[r] for r, n in need.items()}, weights)
        )
    # BalancedAllocation: the closer the fractions requested of each resource, the better.
    fractions = [n / free[r] for r, n in need.items()]
    spread = statistics.pstdev(fractions) if len(fractions) > 1 else 0.0
    return max(1, int((1 - spread) * MAX_NODE_SCORE))


def node_score(
    strategy: str,
    need: Amounts,
    zones: Sequence[Zone],
    free: Sequence[Amounts],
    weights: Mapping[str, int],
) -> int:
    """A node's score for ``need``: with a resource strategy, the lowest score among the
    zones that fit (scheduler-plugins' rule: the kubelet may pick any of them); with
    LeastNUMANodes, the fewer zones needed the higher."""
    bound, problem = _bound(need, zones)
    if problem or not zones:
        return 0
    if not bound:
        return MAX_NODE_SCORE
    if strategy == "LeastNUMANodes":
        best = fewest_zones(bound, free)
        if best is None:
            return 0
        return (len(zones) - len(best) + 1) * MAX_NODE_SCORE // len(zones)
    scores = [s for f in free if (s := zone_score(strategy, bound, f, weights))]
    return min(scores, default=0)
