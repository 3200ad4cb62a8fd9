"""Network coordinates: RTT estimates for pairs nobody measured.

Vivaldi (Dabek et al., SIGCOMM 2004) with the height vectors that Serf and
Consul use: every place gets a point in 8-dimensional Euclidean space plus a
non-negative *height* (its access link), and the predicted RTT between two
places is ``|a.vec - b.vec| + a.height + b.height``. Each measured RTT pulls
the two points apart or together like a spring, by a step that is large while
a place is uncertain and small once it is not (the adaptive timestep,
``cc = 0.25``). Each place also keeps an *error*: a moving average of its
relative prediction error ``|predicted - measured| / measured``, weighted the
same way (``ce = 0.25``), capped at ``max_error`` and starting there.

The scheduler holds every coordinate, so one sample ``src -> dst`` moves both
ends, each against the other's coordinate from before the sample: a place that
is only ever a target (an endpoint without an agent) still gets a position.

Estimates are for soft preferences only. A hard constraint must never be met
by a guess; ``LatencyCache.get`` stays measured-only for that reason.

Every coordinate stays finite and bounded, whatever it is fed: an RTT is
clamped to ``max_rtt_ms`` (60 s) before it moves anything, a position is
scaled back to at most ``bound_ms`` from the origin and a height capped at
it, and an update whose result would still not be finite is skipped. One
wrong sample (a 1e150 ms report) can therefore move two places by at most a
bounded step, never into overflow for every later sample touching them.

Nothing here reads a clock or a global random generator: times are passed in
by the caller, and the one random choice (a direction when two points
coincide) comes from a generator seeded at construction, so the same samples
in the same order give the same coordinates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

from lasched.model.strict import MAX_RTT_MS

DIMENSION = 8
MAX_COORDINATE_MS = 10 * MAX_RTT_MS
"""No position lies further from the origin, and no height is larger (ms)."""
_ZERO = 1.0e-6  # below this two points coincide, or an RTT counts as zero


@dataclass(frozen=True, slots=True)
class Coordinate:
    """One place's position, its confidence, and how much it has seen."""

    vec: tuple[float, ...]  # ms
    height: float  # ms, at least the configured minimum
    error: float  # relative, dimensionless: 0.1 means predictions are off by ~10 %
    updates: int  # samples folded in
    updated: float  # the caller's clock at the last sample


@dataclass(frozen=True, slots=True)
class Estimate:
    """A predicted RTT and how far off it may be.

    ``error_ms = ms * max(src.error + dst.error, min_relative_error)``. Each
    place's error is its recent relative error against the places it was
    measured with, and a pair nobody measured can be off by both ends' errors
    at once. Those errors shrink toward zero once the measured pairs fit,
    while unmeasured pairs stay further off, so the relative bound never goes
    below ``min_relative_error`` (10 % by default).
    """

    ms: float
    error_ms: float
    updated: float  # the older of the two coordinates' last update


class Coordinates:
    """A Vivaldi coordinate per place, updated from measured RTTs."""

    def __init__(
        self,
        *,
        dimension: int = DIMENSION,
        cc: float = 0.25,
        ce: float = 0.25,
        max_error: float = 1.5,
        height_min_ms: float = 0.01,
        gravity_rho_ms: float = 150_000.0,
        min_updates: int = 8,
        min_relative_error: float = 0.1,
        max_rtt_ms: float = MAX_RTT_MS,
        bound_ms: float = MAX_COORDINATE_MS,
        seed: int = 0,
    ) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be at least 1, not {dimension}")
        if not 0 < cc <= 1:
            raise ValueError(f"cc must be within (0, 1], not {cc}")
        if not 0 < ce <= 1:
            raise ValueError(f"ce must be within (0, 1], not {ce}")
        if not max_error > 0:
            raise ValueError(f"max_error must be positive, not {max_error}")
        if not height_min_ms >= 0:
            raise ValueError(f"height_min_ms must not be negative, not {height_min_ms}")
        if not gravity_rho_ms > 0:
            raise ValueError(f"gravity_rho_ms must be positive, not {gravity_rho_ms}")
        if min_updates < 1:
            raise ValueError(f"min_updates must be at least 1, not {min_updates}")
        if not min_relative_error >= 0:
            raise ValueError(f"min_relative_error must not be negative, not {min_relative_error}")
        if not (0 < max_rtt_ms < math.inf):
            raise ValueError(f"max_rtt_ms must be positive and finite, not {max_rtt_ms}")
        if not (max_rtt_ms <= bound_ms < math.inf):
            raise ValueError(f"bound_ms must be finite and at least max_rtt_ms, not {bound_ms}")
        self.dimension = dimension
        self.cc = cc
        self.ce = ce
        self.max_error = max_error
        self.height_min_ms = height_min_ms
        self.gravity_rho_ms = gravity_rho_ms
        self.min_updates = min_updates
        self.min_relative_error = min_relative_error
        self.max_rtt_ms = max_rtt_ms
        self.bound_ms = bound_ms
        self._random = random.Random(seed)
        self._places: dict[str, Coordinate] = {}

    def __len__(self) -> int:
        return len(self._places)

    def get(self, place: str) -> Coordinate | None:
        return self._places.get(place)

    def items(self) -> list[tuple[str, Coordinate]]:
        """Every place's coordinate, sorted by place."""
        return sorted(self._places.items())

    def replace(self, places: Iterable[tuple[str, Coordinate]]) -> None:
        """Drop every coordinate and take these (one embedding: never mix two).

        Each is brought within bounds (position, height, error); a coordinate
        with a number that is not finite is refused with ValueError.
        """
        new: dict[str, Coordinate] = {}
        for place, c in places:
            if len(c.vec) != self.dimension:
                raise ValueError(
                    f"coordinate of {place!r} has dimension {len(c.vec)}, not {self.dimension}"
                )
            if not all(math.isfinite(x) for x in (*c.vec, c.height, c.error)):
                raise ValueError(f"coordinate of {place!r} is not finite: {c}")
            vec, height = self._bounded(c.vec, c.height)
            error = min(max(c.error, 0.0), self.max_error)
            new[place] = Coordinate(vec, height, error, c.updates, c.updated)
        self._places = new

    def update(self, src: str, dst: str, rtt_ms: float, *, now: float) -> None:
        """Fold one measured RTT into both places' coordinates.

        An RTT above ``max_rtt_ms`` counts as ``max_rtt_ms``. Raises
        ValueError for a place against itself or an RTT that is negative or
        not finite.
        """
        if src == dst:
            raise ValueError(f"a place cannot be measured against itself ({src!r})")
        if not math.isfinite(rtt_ms) or rtt_ms < 0:
            raise ValueError(f"rtt_ms must be a finite, non-negative number, not {rtt_ms}")
        rtt_ms = min(rtt_ms, self.max_rtt_ms)
        a = self._places.get(src) or self._new(now)
        b = self._places.get(dst) or self._new(now)
        new_a = self._step(a, b, rtt_ms, now)
        new_b = self._step(b, a, rtt_ms, now)
        if not (_finite(new_a) and _finite(new_b)):
            return  # cannot happen within the bounds; never store what cannot be used
        self._places[src] = new_a
        self._places[dst] = new_b

    def estimate(self, src: str, dst: str) -> Estimate | None:
        """The predicted RTT, or None while either place has too few samples."""
        a = self._places.get(src)
        b = self._places.get(dst)
        if a is None or b is None or min(a.updates, b.updates) < self.min_updates:
            return None
        updated = min(a.updated, b.updated)
        if src == dst:
            return Estimate(0.0, 0.0, updated)
        ms = _distance(a, b)
        relative = max(a.error + b.error, self.min_relative_error)
        return Estimate(ms=ms, error_ms=ms * relative, updated=updated)

    def _new(self, now: float) -> Coordinate:
        return Coordinate((0.0,) * self.dimension, self.height_min_ms, self.max_error, 0, now)

    def _step(self, c: Coordinate, other: Coordinate, rtt_ms: float, now: float) -> Coordinate:
        rtt = max(rtt_ms, _ZERO)
        dist = _distance(c, other)
        wrongness = abs(dist - rtt) / rtt
        weight = c.error / max(c.error + other.error, _ZERO)
        error = min(self.ce * weight * wrongness + c.error * (1 - self.ce * weight), self.max_error)
        force = self.cc * weight * (rtt - dist)
        vec, height = self._push(c.vec, c.height, force, other.vec, other.height)
        # Gravity: a pull toward the origin that only matters far from it, so
        # the whole system cannot drift without bound.
        origin = (0.0,) * self.dimension
        from_origin = math.dist(vec, origin) + height + self.height_min_ms
        scaled = from_origin / self.gravity_rho_ms
        # x * x, not x ** 2: a float power raises OverflowError where a product gives inf.
        vec, height = self._push(vec, height, -(scaled * scaled), origin, self.height_min_ms)
        vec, height = self._bounded(vec, height)
        return Coordinate(vec, height, error, c.updates + 1, now)

    def _bounded(self, vec: tuple[float, ...], height: float) -> tuple[tuple[float, ...], float]:
        """The position scaled back to at most ``bound_ms`` from the origin, the height capped."""
        norm = math.hypot(*vec)
        if norm > self.bound_ms:
            vec = tuple(x * (self.bound_ms / norm) for x in vec)
        return vec, min(max(height, self.height_min_ms), self.bound_ms)

    def _push(
        self,
        vec: tuple[float, ...],
        height: float,
        force: float,
        other_vec: tuple[float, ...],
        other_height: float,
    ) -> tuple[tuple[float, ...], float]:
        """Move ``force`` ms away from ``other`` (toward it when negative)."""
        mag = math.dist(vec, other_vec)
        if mag > _ZERO:
            unit = tuple((x - y) / mag for x, y in zip(vec, other_vec, strict=True))
            height = max(height + force * (height + other_height) / mag, self.height_min_ms)
        else:
            unit = self._random_unit()
        return tuple(x + force * u for x, u in zip(vec, unit, strict=True)), height

    def _random_unit(self) -> tuple[float, ...]:
        v = [self._random.random() - 0.5 for _ in range(self.dimension)]
        mag = math.hypot(*v)
        if mag > _ZERO:
            return tuple(x / mag for x in v)
        return (1.0,) + (0.0,) * (self.dimension - 1)


def _finite(c: Coordinate) -> bool:
    return all(math.isfinite(x) for x in (*c.vec, c.height, c.error))


def _distance(a: Coordinate, b: Coordinate) -> float:
    return math.dist(a.vec, b.vec) + a.height + b.height
