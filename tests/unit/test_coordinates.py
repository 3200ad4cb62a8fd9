"""Vivaldi network coordinates and the cache's estimates for unmeasured pairs."""

from __future__ import annotations

import math
import random
import statistics
import sys
from dataclasses import dataclass

import pytest

from lasched.latency.cache import LatencyCache
from lasched.latency.coordinates import DIMENSION, MAX_COORDINATE_MS, Coordinate, Coordinates


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass(frozen=True)
class World:
    """Places on a 100 x 100 ms plane with 1-5 ms access links: RTT = distance + heights."""

    points: list[tuple[float, float]]
    heights: list[float]
    measured: list[tuple[int, int]]  # each place measures 8 others; every other pair is held out
    held_out: list[tuple[int, int]]

    def rtt(self, i: int, j: int) -> float:
        return math.dist(self.points[i], self.points[j]) + self.heights[i] + self.heights[j]


def make_world(n: int = 30, k: int = 8, seed: int = 1) -> World:
    r = random.Random(seed)
    points = [(r.uniform(0, 100), r.uniform(0, 100)) for _ in range(n)]
    heights = [r.uniform(1, 5) for _ in range(n)]
    measured = sorted(
        {(i, j) for i in range(n) for j in r.sample([x for x in range(n) if x != i], k)}
    )
    linked = {frozenset(p) for p in measured}
    held_out = [
        (i, j) for i in range(n) for j in range(i + 1, n) if frozenset((i, j)) not in linked
    ]
    return World(points, heights, measured, held_out)


def train(world: World, rounds: int, *, skew: float = 1.0, seed: int = 2) -> Coordinates:
    """Every measured pair once per round, in a shuffled order; i -> j with i < j is ``skew`` x."""
    c = Coordinates(seed=7)
    r = random.Random(seed)
    order = list(world.measured)
    for rnd in range(rounds):
        r.shuffle(order)
        for i, j in order:
            c.update(f"p{i}", f"p{j}", world.rtt(i, j) * (skew if i < j else 1.0), now=rnd)
    return c


@dataclass(frozen=True)
class Scores:
    median_rel: float  # median |estimate - truth| / truth over held-out pairs
    median_bound_rel: float  # median error_ms / estimate
    covered: float  # share of held-out pairs with |estimate - truth| <= error_ms


def score(world: World, c: Coordinates, *, skew: float = 1.0) -> Scores:
    rel, bound, covered = [], [], 0
    for i, j in world.held_out:
        est = c.estimate(f"p{i}", f"p{j}")
        assert est is not None
        truth = world.rtt(i, j) * (1 + skew) / 2
        rel.append(abs(est.ms - truth) / truth)
        bound.append(est.error_ms / est.ms)
        covered += abs(est.ms - truth) <= est.error_ms
    return Scores(statistics.median(rel), statistics.median(bound), covered / len(rel))


WORLD = make_world()


def test_unmeasured_pairs_are_estimated_within_8_percent() -> None:
    """After 30 rounds the median relative error on never-measured pairs is below 8 %."""
    assert len(WORLD.held_out) > 200
    s = score(WORLD, train(WORLD, 30))
    assert s.median_rel < 0.08, s


def test_estimates_improve_with_more_samples() -> None:
    """Thirty rounds give at least twice the accuracy of three."""
    early = score(WORLD, train(WORLD, 3))
    late = score(WORLD, train(WORLD, 30))
    assert late.median_rel < early.median_rel / 2, (early, late)


def test_error_bound_shrinks_as_the_system_converges() -> None:
    """The bound narrows from ~46 % to its 10 % floor and covers most unmeasured pairs."""
    early = score(WORLD, train(WORLD, 3))
    late = score(WORLD, train(WORLD, 30))
    assert early.median_bound_rel > 0.3, early
    assert late.median_bound_rel == pytest.approx(0.1), late
    assert early.covered > 0.8, early
    assert late.covered > 0.7, late


def test_error_bound_is_the_sum_of_both_ends_relative_errors() -> None:
    """error_ms = ms * max(src.error + dst.error, min_relative_error)."""
    c = train(WORLD, 3)
    est = c.estimate("p0", "p1")
    a, b = c.get("p0"), c.get("p1")
    assert est is not None and a is not None and b is not None
    assert a.error + b.error > 0.1
    assert est.error_ms == pytest.approx(est.ms * (a.error + b.error))


def test_asymmetric_routes_give_an_estimate_between_the_directions() -> None:
    """A -> B 10 ms and B -> A 30 ms settle near their mean, not on either."""
    c = Coordinates(min_updates=1)
    for _ in range(50):
        c.update("a", "b", 10.0, now=0)
        c.update("b", "a", 30.0, now=0)
    est = c.estimate("a", "b")
    assert est is not None
    assert 15 < est.ms < 25, est


def test_asymmetric_world_still_converges() -> None:
    """With one direction 1.5 x the other, held-out pairs land near the two-way mean."""
    c = train(WORLD, 30, skew=1.5)
    s = score(WORLD, c, skew=1.5)
    assert s.median_rel < 0.15, s
    for _, coord in c.items():
        assert all(math.isfinite(x) for x in coord.vec)
        assert 0 <= coord.error <= 1.5


def test_unknown_or_barely_seen_places_have_no_estimate() -> None:
    """No coordinate, or fewer than min_updates samples, gives None."""
    c = Coordinates(min_updates=3)
    assert c.estimate("a", "b") is None
    c.update("a", "b", 10.0, now=0)
    c.update("a", "b", 10.0, now=0)
    assert c.estimate("a", "b") is None
    assert c.estimate("a", "nowhere") is None
    c.update("a", "b", 10.0, now=0)
    assert c.estimate("a", "b") is not None


def test_same_seed_and_samples_give_the_same_coordinates() -> None:
    """Pure and deterministic: no global random, no clock."""

    def run(seed: int) -> list[tuple[float, ...]]:
        c = Coordinates(seed=seed)
        for i, j in WORLD.measured[:100]:
            c.update(f"p{i}", f"p{j}", WORLD.rtt(i, j), now=0)
        return [coord.vec for _, coord in c.items()]

    assert run(3) == run(3)
    assert run(3) != run(4)


@pytest.mark.parametrize(
    ("src", "dst", "rtt", "message"),
    [
        ("a", "a", 1.0, "cannot be measured against itself"),
        ("a", "b", -1.0, "rtt_ms must be a finite, non-negative number"),
        ("a", "b", math.nan, "rtt_ms must be a finite, non-negative number"),
    ],
    ids=["self", "negative", "nan"],
)
def test_bad_samples_are_refused(src: str, dst: str, rtt: float, message: str) -> None:
    """A sample that cannot be a measurement says why."""
    with pytest.raises(ValueError, match=message):
        Coordinates().update(src, dst, rtt, now=0)


def test_cache_lookup_prefers_fresh_measurements_then_estimates() -> None:
    """lookup: fresh measurement, else estimate; get stays measured-only."""
    clock = Clock()
    cache = LatencyCache(ttl_seconds=30, clock=clock, coordinates=Coordinates(min_updates=2))
    for _ in range(20):
        cache.observe("n1", "edge-1", median_ms=10)
        cache.observe("n2", "edge-1", median_ms=10)
        cache.observe("n1", "n2", median_ms=4)
    measured = cache.lookup("n1", "edge-1")
    assert measured is not None
    assert measured.source == "agent"
    assert measured.error_ms is None

    assert cache.get("edge-1", "n2") is None  # hard constraints never see an estimate
    est = cache.lookup("edge-1", "n2")
    assert est is not None
    assert est.source == "estimate"
    assert not est.stale
    assert est.error_ms is not None
    assert 5 < est.ms < 15, est
    assert est.describe("edge-1") == (
        f"rtt from edge-1 ≈ {est.ms:.1f} ms (estimated ±{est.error_ms:.1f})"
    )

    clock.t = 31  # the measurement went stale: lookup falls back to the estimate
    stale = cache.lookup("n1", "edge-1")
    assert stale is not None
    assert stale.source == "estimate"
    assert stale.age_s == 31
    assert cache.get("n1", "edge-1").stale  # type: ignore[union-attr]
    assert cache.lookup("n1", "unknown") is None


def test_cache_estimate_answers_from_coordinates_only() -> None:
    """estimate ignores measurements: same in both directions, with an error bound."""
    clock = Clock()
    cache = LatencyCache(clock=clock, coordinates=Coordinates(min_updates=1))
    assert cache.estimate("a", "b") is None
    for _ in range(30):
        cache.observe("a", "b", median_ms=10)
    clock.t = 5
    est = cache.estimate("a", "b")
    assert est is not None
    assert est == cache.estimate("b", "a")
    assert (est.source, est.stale, est.age_s, est.p90_ms) == ("estimate", False, 5, None)
    assert est.ms == pytest.approx(10, rel=0.01)
    assert est.error_ms == pytest.approx(est.ms * 0.1)  # converged: the 10 % floor


def test_static_pins_feed_the_coordinates_too() -> None:
    """Pinned static RTTs are measurements: they place both ends."""
    cache = LatencyCache(coordinates=Coordinates(min_updates=1))
    cache.observe("a", "b", median_ms=12, source="static", pinned=True)
    assert cache.coordinates.get("a") is not None
    assert cache.coordinates.get("b") is not None
    cache.observe("a", "a", median_ms=0)  # a place to itself moves nothing
    assert cache.coordinates.get("a").updates == 1  # type: ignore[union-attr]


def test_a_1e150_sample_cannot_poison_later_reports() -> None:
    """One wild sample moves two places a bounded step; honest reports after it still work."""
    cache = LatencyCache(coordinates=Coordinates(min_updates=1))
    for i, j in WORLD.measured[:200]:
        cache.observe(f"p{i}", f"p{j}", median_ms=WORLD.rtt(i, j))
    cache.observe("p0", "p1", median_ms=1e150)
    for i, j in WORLD.measured:
        cache.observe(f"p{i}", f"p{j}", median_ms=WORLD.rtt(i, j))  # raised OverflowError
    for _, coord in cache.coordinates.items():
        assert all(math.isfinite(x) for x in (*coord.vec, coord.height, coord.error))
        assert math.hypot(*coord.vec) <= MAX_COORDINATE_MS
    est = cache.estimate("p0", "p1")
    assert est is not None and est.error_ms is not None
    assert math.isfinite(est.ms) and math.isfinite(est.error_ms)


@pytest.mark.parametrize("rtt", [60_000.0, 1e150, 1e308, sys.float_info.max])
def test_rtts_above_a_minute_count_as_a_minute(rtt: float) -> None:
    """Coordinates.update clamps an RTT to max_rtt_ms before it moves anything."""
    clamped, wild = Coordinates(seed=1), Coordinates(seed=1)
    for _ in range(50):
        clamped.update("a", "b", 60_000.0, now=0)
        wild.update("a", "b", rtt, now=0)
    assert clamped.items() == wild.items()
    est = wild.estimate("a", "b")
    assert est is not None and est.ms <= 2 * MAX_COORDINATE_MS


def test_restored_coordinates_are_brought_within_bounds() -> None:
    """replace() scales a far position back, caps height and error; refuses non-finite ones."""
    c = Coordinates()
    far = Coordinate((1e287,) * DIMENSION, 1e300, 99.0, 10, 0.0)
    c.replace([("far", far)])
    restored = c.get("far")
    assert restored is not None
    assert math.hypot(*restored.vec) == pytest.approx(MAX_COORDINATE_MS)
    assert (restored.height, restored.error) == (MAX_COORDINATE_MS, c.max_error)
    c.update("far", "near", 5.0, now=1)  # gravity used to raise OverflowError here
    assert all(math.isfinite(x) for _, k in c.items() for x in (*k.vec, k.height))
    with pytest.raises(ValueError, match="is not finite"):
        c.replace([("nan", Coordinate((math.nan,) * DIMENSION, 1.0, 1.0, 1, 0.0))])
