"""Sites from RTTs: complete-linkage clustering of nodes, cut at each layer's delay.

Nodes are grouped by the RTTs measured between them, as kubernetes-edge-scheduler
grouped its topology into layers by delay: a layer of ``maxRttMs`` D puts two
groups together only when *every measured pair* between them is within D (the
earlier system's "maximum delay between clusters", which is complete linkage).
The invariant a user may rely on: two nodes in one group of a layer whose RTT
is measured are within that layer's D of each other. Layers are cuts of one
dendrogram, so they nest: a site lies within one region.

The matrix holds what both directions measured, averaged (routes may differ
one way and the other; a site is about both). A pair measured in neither
direction is *missing* (NaN): it neither joins nor separates two groups, and
two groups with no measured pair between them never join. So a node nobody
measures stays alone, and the caller decides what that means.

Clustering is the nearest-neighbour chain, exact for complete linkage, in
O(n²) time and memory with one O(n) numpy step per link: about 30 ms at
1,000 nodes. Its input is ordered by node name, so the groups depend on the
RTTs and names only, never on the order they were given in (ties included).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]


class RttMatrix:
    """The symmetric node-to-node matrix, filled one measured direction at a time."""

    def __init__(self, nodes: Iterable[str]) -> None:
        self.nodes: list[str] = sorted(set(nodes))
        self._index = {n: i for i, n in enumerate(self.nodes)}
        n = len(self.nodes)
        self._sum = np.zeros((n, n))
        self._count = np.zeros((n, n))

    def add(self, src: str, dst: str, ms: float) -> None:
        """One direction's fresh RTT; places that are not nodes, and a node to itself, are
        ignored, as is a value that is not a finite, non-negative number."""
        i, j = self._index.get(src), self._index.get(dst)
        if i is None or j is None or i == j or not (math.isfinite(ms) and ms >= 0):
            return
        self._sum[i, j] += ms
        self._sum[j, i] += ms
        self._count[i, j] += 1
        self._count[j, i] += 1

    def add_all(self, pairs: Iterable[tuple[str, str, float]]) -> None:
        """Many directions at once, as :meth:`add` takes each (one numpy step for all)."""
        index = self._index
        rows: list[int] = []
        cols: list[int] = []
        values: list[float] = []
        for src, dst, ms in pairs:
            i, j = index.get(src), index.get(dst)
            if i is not None and j is not None and i != j:
                rows.append(i)
                cols.append(j)
                values.append(ms)
        r, c, v = np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp), np.array(values)
        ok = np.isfinite(v) & (v >= 0)
        r, c, v = r[ok], c[ok], v[ok]
        n = len(self.nodes)
        for a, b in ((r, c), (c, r)):
            flat = a * n + b
            self._sum += np.bincount(flat, weights=v, minlength=n * n).reshape(n, n)
            self._count += np.bincount(flat, minlength=n * n).reshape(n, n)

    def ms(self) -> Matrix:
        """RTT in ms, NaN where neither direction was measured (and on the diagonal)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(self._count > 0, self._sum / np.maximum(self._count, 1), np.nan)
        np.fill_diagonal(out, np.nan)
        return out

    def measured(self) -> npt.NDArray[np.bool_]:
        """Per node: is any pair with another node measured?"""
        return np.asarray((self._count > 0).any(axis=1))


def merges(ms: Matrix) -> list[tuple[int, int, float]]:
    """Complete-linkage merges ``(a, b, height)`` of a symmetric matrix (NaN: missing).

    ``a`` and ``b`` are the merged groups' representatives (each group is known by
    one of its members' indices, the one that stays active). Groups with no measured
    pair to any other never merge, so there may be fewer than n - 1 merges.
    """
    n = len(ms)
    d = np.array(ms, dtype=np.float64, copy=True)
    np.fill_diagonal(d, np.nan)
    alive = np.ones(n, dtype=bool)
    out: list[tuple[int, int, float]] = []
    chain: list[int] = []
    left = n
    while left > 1:
        if not chain:
            chain.append(int(np.flatnonzero(alive)[0]))
        a = chain[-1]
        row = np.where(np.isnan(d[a]), np.inf, d[a])
        b = int(np.argmin(row))
        best = float(row[b])
        if best == math.inf:
            # Nothing measured to any live group: it is final (only a chain's start can be).
            alive[a] = False
            d[:, a] = np.nan
            chain.clear()
            left -= 1
            continue
        prev = chain[-2] if len(chain) > 1 else None
        if prev is not None and row[prev] <= best:
            b = prev  # on a tie, close the chain: reciprocal nearest neighbours
        if b != prev:
            chain.append(b)
            continue
        chain.pop()
        chain.pop()
        # Complete linkage: the farthest measured pair; a missing side takes the other's.
        joined = np.fmax(d[a], d[b])
        d[a, :] = joined
        d[:, a] = joined
        d[a, a] = np.nan
        d[b, :] = np.nan
        d[:, b] = np.nan
        alive[b] = False
        out.append((a, b, best))
        left -= 1
    return out


def cut(n: int, merged: Sequence[tuple[int, int, float]], max_ms: float) -> list[int]:
    """Each index's group at ``max_ms``: the merges at that height or below, joined.

    A group's number is its smallest member's index, so equal partitions read equal.
    """
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, height in merged:
        if height <= max_ms:
            ra, rb = root(a), root(b)
            parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(n)]


def layers(ms: Matrix, max_ms: Sequence[float]) -> list[list[int]]:
    """One partition per threshold (ascending thresholds give nested partitions)."""
    merged = merges(ms)
    return [cut(len(ms), merged, t) for t in max_ms]
