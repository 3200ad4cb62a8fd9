"""The latency cache: measured round-trip times per ordered pair of places.

A *place* is a node name or a named user endpoint. ``A -> B`` and ``B -> A``
are kept apart (routes are not always symmetric). Each pair keeps an EWMA of
the reported medians, the latest p90 and loss, the sample count and when it
was last updated. Freshness is part of every answer: an entry older than
``ttl`` seconds is *stale*, and a hard constraint treats stale like unknown
(it fails closed). Entries loaded from a static file are ``pinned``: they are
pre-measured on purpose and never go stale.

Every measurement, pinned or not, also moves both places' network
coordinates (see ``coordinates.py``). ``estimate`` answers from those
coordinates alone, and ``lookup`` answers with the fresh measurement or else
the estimate; both are for soft preferences only. ``get`` never estimates:
hard constraints see measured data or nothing.

Whatever a source reports, the cache holds only finite numbers in range: a
median that is not a finite, non-negative number is dropped (the report is
ignored), RTTs above :data:`~lasched.model.strict.MAX_RTT_MS` count as that
much, and loss is kept within 0..1. Sources check their input and name the
bad field (the agent codec, the static file, Goldpinger, the snapshot); this
is the last line, so that no sample can make a later one fail.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from lasched.latency.coordinates import Coordinate, Coordinates
from lasched.model.strict import MAX_RTT_MS


@dataclass(frozen=True, slots=True)
class Rtt:
    """One answer: the RTT estimate and how much to trust it."""

    ms: float
    p90_ms: float | None
    loss: float
    age_s: float
    stale: bool
    source: str  # "agent", "static", "self", "estimate"
    error_ms: float | None = None  # estimates only: see coordinates.Estimate

    def describe(self, src: str) -> str:
        """As events show it: ``rtt from edge-1 = 7.8 ms (p90 9.1, 4 s old)``.

        An estimate reads ``rtt from edge-1 ≈ 12.0 ms (estimated ±3.1)``.
        """
        if self.source == "estimate":
            return f"rtt from {src} ≈ {self.ms:.1f} ms (estimated ±{self.error_ms or 0.0:.1f})"
        extra = [f"p90 {self.p90_ms:.1f}"] if self.p90_ms is not None else []
        extra.append("static" if self.source == "static" else f"{self.age_s:.0f} s old")
        return f"rtt from {src} = {self.ms:.1f} ms ({', '.join(extra)})"


@dataclass(frozen=True, slots=True)
class SavedPair:
    """One measured, unpinned pair as a snapshot keeps it; ``age_s`` is its age then."""

    src: str
    dst: str
    ewma_ms: float
    p90_ms: float | None
    loss: float
    samples: int
    source: str
    age_s: float


@dataclass(frozen=True, slots=True)
class SavedPlace:
    """One place's network coordinate as a snapshot keeps it."""

    place: str
    vec: tuple[float, ...]
    height: float
    error: float
    updates: int
    age_s: float


@dataclass(slots=True)
class _Entry:
    ewma_ms: float
    p90_ms: float | None
    loss: float
    samples: int
    updated: float
    source: str
    pinned: bool


class LatencyCache:
    def __init__(
        self,
        *,
        ttl_seconds: float = 30.0,
        alpha: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
        coordinates: Coordinates | None = None,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be within (0, 1], not {alpha}")
        self.ttl = ttl_seconds
        self.alpha = alpha
        self._clock = clock
        self._pairs: dict[tuple[str, str], _Entry] = {}
        # A source whose agent rotates through its targets refreshes each pair
        # only every so often; its pairs stay fresh for that long times three.
        self._refresh: dict[str, float] = {}
        self.coordinates = coordinates if coordinates is not None else Coordinates()
        self.version = 0
        """Counts the changes to the pairs: what is derived from them (LatencyScore's mean
        RTT per node) is worked out again only when it moved."""

    def __len__(self) -> int:
        return len(self._pairs)

    def observe(
        self,
        src: str,
        dst: str,
        *,
        median_ms: float,
        p90_ms: float | None = None,
        loss: float = 0.0,
        samples: int = 1,
        source: str = "agent",
        pinned: bool = False,
    ) -> float:
        """Fold one report into the pair and the coordinates; returns the EWMA's change in ms.

        A report whose median is not a finite, non-negative number changes
        nothing and returns 0.0.
        """
        if not (math.isfinite(median_ms) and median_ms >= 0):
            return 0.0
        median_ms = min(median_ms, MAX_RTT_MS)
        p90_ms = _clamped_ms(p90_ms)
        loss = min(max(loss, 0.0), 1.0) if math.isfinite(loss) else 1.0
        samples = max(samples, 0)
        now = self._clock()
        self._feed(src, dst, median_ms, now)
        self.version += 1
        e = self._pairs.get((src, dst))
        if e is None or e.pinned != pinned:
            self._pairs[(src, dst)] = _Entry(median_ms, p90_ms, loss, samples, now, source, pinned)
            return abs(median_ms - e.ewma_ms) if e is not None else median_ms
        before = e.ewma_ms
        e.ewma_ms = self.alpha * median_ms + (1 - self.alpha) * e.ewma_ms
        e.p90_ms = p90_ms
        e.loss = loss
        e.samples += samples
        e.updated = now
        e.source = source
        return abs(e.ewma_ms - before)

    def set_refresh(self, src: str, seconds: float | None) -> None:
        """How often each pair measured from ``src`` is refreshed (None: every report).

        A pair is stale after ``max(ttl, 3 x refresh)``: agents that probe a
        rotating subset of a large cluster's nodes per interval are not
        judged stale between their visits.
        """
        if seconds is None:
            self._refresh.pop(src, None)
        else:
            self._refresh[src] = seconds

    def stale_after(self, src: str) -> float:
        return max(self.ttl, 3 * self._refresh.get(src, 0.0))

    def get(self, src: str, dst: str) -> Rtt | None:
        """The pair's estimate, or None if it was never measured. A place to itself is 0 ms."""
        if src == dst:
            return Rtt(0.0, 0.0, 0.0, 0.0, False, "self")
        e = self._pairs.get((src, dst))
        if e is None:
            return None
        age = self._clock() - e.updated
        return Rtt(
            ms=e.ewma_ms,
            p90_ms=e.p90_ms,
            loss=e.loss,
            age_s=age,
            stale=not e.pinned and age > self.stale_after(src),
            source=e.source,
        )

    def pairs(self) -> list[tuple[str, str, Rtt]]:
        """Every measured pair (pinned ones included) as :meth:`get` answers it, sorted."""
        out = []
        for src, dst in sorted(self._pairs):
            rtt = self.get(src, dst)
            if rtt is not None:
                out.append((src, dst, rtt))
        return out

    def fresh_pairs(self) -> Iterator[tuple[str, str, float]]:
        """``(src, dst, ms)`` of every fresh measured pair (pinned ones included), unsorted.

        Over a copy of the keys taken at the first step, so the caller may consume it
        in slices between which the cache changes: each pair is read when reached.
        """
        keys = list(self._pairs)
        pairs = self._pairs
        now = self._clock()
        for key in keys:
            e = pairs.get(key)
            if e is not None and (e.pinned or now - e.updated <= self.stale_after(key[0])):
                yield key[0], key[1], e.ewma_ms

    def lookup(self, src: str, dst: str) -> Rtt | None:
        """For soft preferences: the fresh measurement, else ``estimate``.

        Never stale: a stale or missing pair is answered by the estimate, or
        None when the two places have too few samples for one. Hard
        constraints must use ``get``.
        """
        rtt = self.get(src, dst)
        if rtt is not None and not rtt.stale:
            return rtt
        return self.estimate(src, dst)

    def estimate(self, src: str, dst: str) -> Rtt | None:
        """The network coordinates' prediction, measured or not; soft preferences only.

        ``source="estimate"``, ``error_ms`` as ``coordinates.Estimate`` defines
        it, ``age_s`` the age of the older coordinate, never stale. None while
        either place has too few samples. Symmetric: coordinates cannot tell
        the two directions apart.
        """
        est = self.coordinates.estimate(src, dst)
        if est is None:
            return None
        return Rtt(
            ms=est.ms,
            p90_ms=None,
            loss=0.0,
            age_s=self._clock() - est.updated,
            stale=False,
            source="estimate",
            error_ms=est.error_ms,
        )

    def export_pairs(self) -> list[SavedPair]:
        """Every measured pair except pinned ones (the static file reloads those)."""
        now = self._clock()
        return [
            SavedPair(src, dst, e.ewma_ms, e.p90_ms, e.loss, e.samples, e.source, now - e.updated)
            for (src, dst), e in sorted(self._pairs.items())
            if not e.pinned
        ]

    def import_pairs(self, pairs: Iterable[SavedPair]) -> int:
        """Restore saved pairs with their age; a pair already present wins. Returns how many.

        Restored pairs do not move the coordinates: those are restored as they were.
        """
        now = self._clock()
        n = 0
        for p in pairs:
            ewma = _clamped_ms(p.ewma_ms)
            if (p.src, p.dst) in self._pairs or ewma is None or not math.isfinite(p.age_s):
                continue
            updated = now - max(p.age_s, 0.0)
            loss = min(max(p.loss, 0.0), 1.0) if math.isfinite(p.loss) else 1.0
            self._pairs[(p.src, p.dst)] = _Entry(
                ewma, _clamped_ms(p.p90_ms), loss, p.samples, updated, p.source, False
            )
            n += 1
        self.version += n
        return n

    def export_places(self) -> list[SavedPlace]:
        """Every place's network coordinate, with its age."""
        now = self._clock()
        return [
            SavedPlace(place, c.vec, c.height, c.error, c.updates, now - c.updated)
            for place, c in self.coordinates.items()
        ]

    def import_places(self, places: Iterable[SavedPlace]) -> int:
        """Replace every coordinate with the saved ones; returns how many.

        Coordinates are only comparable within one embedding, so nothing is
        merged. Pinned pairs are then folded in once more, so a place known
        only from the static file has a position in the restored embedding.
        """
        now = self._clock()
        restored = [
            (p.place, Coordinate(p.vec, p.height, p.error, p.updates, now - max(p.age_s, 0.0)))
            for p in places
        ]
        self.coordinates.replace(restored)
        for (src, dst), e in sorted(self._pairs.items()):
            if e.pinned:
                self._feed(src, dst, e.ewma_ms, e.updated)
        return len(restored)

    def _feed(self, src: str, dst: str, ms: float, now: float) -> None:
        if src != dst and math.isfinite(ms) and ms >= 0:
            self.coordinates.update(src, dst, ms, now=now)


def _clamped_ms(ms: float | None) -> float | None:
    """An RTT within 0..MAX_RTT_MS, or None when it is not a finite, non-negative number."""
    if ms is None or not (math.isfinite(ms) and ms >= 0):
        return None
    return min(ms, MAX_RTT_MS)
