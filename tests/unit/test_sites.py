"""lasched.latency.sites: complete-linkage groups of nodes cut at each layer's delay."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lasched.latency.cache import LatencyCache
from lasched.latency.sites import RttMatrix, cut, layers, merges

NAN = math.nan


def matrix(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=float)


def groups(partition: list[int]) -> set[frozenset[int]]:
    out: dict[int, set[int]] = {}
    for i, g in enumerate(partition):
        out.setdefault(g, set()).add(i)
    return {frozenset(s) for s in out.values()}


def test_two_sites_and_one_region() -> None:
    """Two pairs 0.3 ms apart internally and 10 ms across: two sites at 1 ms, one at 30 ms."""
    ms = matrix([[NAN, 0.3, 10, 10], [0.3, NAN, 10, 10], [10, 10, NAN, 0.3], [10, 10, 0.3, NAN]])
    site, region = layers(ms, [1.0, 30.0])
    assert groups(site) == {frozenset({0, 1}), frozenset({2, 3})}
    assert groups(region) == {frozenset({0, 1, 2, 3})}


def test_complete_linkage_does_not_chain() -> None:
    """A chain of 0.8 ms steps is not one 1 ms site: its ends are 1.6 ms apart."""
    ms = matrix([[NAN, 0.8, 1.6], [0.8, NAN, 0.8], [1.6, 0.8, NAN]])
    (site,) = layers(ms, [1.0])
    assert len(groups(site)) == 2


def test_missing_pair_neither_joins_nor_separates() -> None:
    """0-2 unmeasured: 0, 1 and 2 still form one site through their measured pairs."""
    ms = matrix([[NAN, 0.3, NAN], [0.3, NAN, 0.4], [NAN, 0.4, NAN]])
    (site,) = layers(ms, [1.0])
    assert groups(site) == {frozenset({0, 1, 2})}


def test_unmeasured_node_stays_alone() -> None:
    """A node with no measured pair never joins a group."""
    ms = matrix([[NAN, 0.3, NAN], [0.3, NAN, NAN], [NAN, NAN, NAN]])
    assert len(merges(ms)) == 1
    (site,) = layers(ms, [100.0])
    assert groups(site) == {frozenset({0, 1}), frozenset({2})}


def test_threshold_is_inclusive() -> None:
    """Two nodes exactly maxRttMs apart share a group."""
    ms = matrix([[NAN, 2.0], [2.0, NAN]])
    assert groups(cut(2, merges(ms), 2.0)) == {frozenset({0, 1})}


def test_matrix_averages_both_directions_and_ignores_other_places() -> None:
    """a->b 1 ms and b->a 3 ms read 2 ms; endpoints, self pairs and bad values are left out."""
    m = RttMatrix(["b", "a"])
    m.add_all([("a", "b", 1.0), ("b", "a", 3.0), ("a", "users", 5.0), ("a", "a", 0.0)])
    m.add("a", "b", math.inf)
    assert m.nodes == ["a", "b"]
    ms = m.ms()
    assert ms[0, 1] == ms[1, 0] == 2.0
    assert math.isnan(ms[0, 0])
    assert m.measured().tolist() == [True, True]


def test_fresh_pairs_leave_stale_ones_out() -> None:
    """The cache yields fresh and pinned pairs only."""
    now = [0.0]
    cache = LatencyCache(ttl_seconds=10, clock=lambda: now[0])
    cache.observe("a", "b", median_ms=1.0)
    cache.observe("a", "c", median_ms=2.0, source="static", pinned=True)
    now[0] = 11.0
    cache.observe("b", "a", median_ms=3.0)
    assert sorted(cache.fresh_pairs()) == [("a", "c", 2.0), ("b", "a", 3.0)]


@st.composite
def rtt_matrices(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(2, 12))
    values = st.one_of(st.floats(0.0, 50.0), st.just(NAN))
    ms = np.full((n, n), NAN)
    for i in range(n):
        for j in range(i + 1, n):
            ms[i, j] = ms[j, i] = draw(values)
    return ms


@given(rtt_matrices(), st.randoms())
def test_partition_does_not_depend_on_node_order(ms: np.ndarray, rnd: object) -> None:
    """Renaming the order nodes are given in changes no group (names decide, not positions)."""
    n = len(ms)
    names = [f"n{i:02d}" for i in range(n)]
    order = list(range(n))
    rnd.shuffle(order)  # type: ignore[attr-defined]

    def by_name(perm: list[int]) -> set[frozenset[str]]:
        m = RttMatrix(names[p] for p in perm)
        for a in perm:
            for b in perm:
                if a != b and not math.isnan(ms[a, b]):
                    m.add(names[a], names[b], float(ms[a, b]))
        (part,) = layers(m.ms(), [5.0])
        return {frozenset(m.nodes[i] for i in g) for g in groups(part)}

    assert by_name(order) == by_name(list(range(n)))


@given(rtt_matrices(), st.floats(0.1, 40.0))
def test_measured_pairs_within_a_group_are_within_its_limit(ms: np.ndarray, t: float) -> None:
    """Complete linkage's promise: any two members' measured RTT is at most maxRttMs."""
    (part,) = layers(ms, [t])
    for g in groups(part):
        for i in g:
            for j in g:
                assert math.isnan(ms[i, j]) or ms[i, j] <= t


@given(
    st.integers(1, 6),
    st.integers(0, 6),
    st.floats(0.0, 0.99),
    st.floats(1.01, 50.0),
    st.randoms(),
)
def test_well_separated_cluster_stays_together(
    inside: int, outside: int, near: float, far: float, rnd: object
) -> None:
    """Nodes all under the limit from each other and over it from the rest form one group."""
    n = inside + outside
    ms = np.full((n, n), NAN)
    for i in range(n):
        for j in range(i + 1, n):
            both_in = i < inside and j < inside
            if both_in:
                v = near * rnd.random()  # type: ignore[attr-defined]
            elif i < inside:
                v = far + rnd.random()  # type: ignore[attr-defined]
            else:
                v = rnd.uniform(0.0, 60.0)  # type: ignore[attr-defined]
            ms[i, j] = ms[j, i] = v
    (part,) = layers(ms, [1.0])
    assert frozenset(range(inside)) in groups(part)


@given(rtt_matrices())
def test_layers_nest(ms: np.ndarray) -> None:
    """Every site lies within one region."""
    site, region = layers(ms, [2.0, 20.0])
    for g in groups(site):
        assert len({region[i] for i in g}) == 1


@pytest.mark.parametrize("n", [400], ids=["400-nodes"])
def test_hundreds_of_nodes_in_tens_of_sites(n: int) -> None:
    """Hundreds of nodes in 30 sites, 2 ms or more apart, come out as exactly those sites."""
    rng = np.random.default_rng(7)
    site = rng.integers(0, 30, n)
    pos = rng.uniform(0, 1000, (30, 2))
    apart = np.linalg.norm(pos[site][:, None] - pos[site][None], axis=2) / 50 + 2.0
    ms = np.where(site[:, None] == site[None], 0.3, apart)
    np.fill_diagonal(ms, NAN)
    (part,) = layers(ms, [1.0])
    assert groups(part) == {frozenset(np.flatnonzero(site == s).tolist()) for s in set(site)}
