"""The latency cache: measured round-trip times per ordered pair of places.

A *place* is a node name or a named user endpoint. ``A -> B`` and ``B -> A``
are kept apart (routes are not always symmetric). Each pair keeps an EWMA of
the reported medians, the latest p90 and loss, the sample count and when it
was last updated. Freshness is part of every answer: an entry older than
``ttl`` seconds is *stale*, and a hard constraint treats stale like unknown
(it fails closed). Entries loaded from a static file are ``pinned``: they are
pre-measured on purpose and never go stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rtt:
    """One answer: the RTT estimate and how much to trust it."""

    ms: float
    p90_ms: float | None
    loss: float
    age_s: float
    stale: bool
    source: str  # "agent", "static", ...

    def describe(self, src: str) -> str:
        """As events show it: ``rtt from edge-1 = 7.8 ms (p90 9.1, 4 s old)``."""
        extra = [f"p90 {self.p90_ms:.1f}"] if self.p90_ms is not None else []
        extra.append("static" if self.source == "static" else f"{self.age_s:.0f} s old")
        return f"rtt from {src} = {self.ms:.1f} ms ({', '.join(extra)})"


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
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be within (0, 1], not {alpha}")
        self.ttl = ttl_seconds
        self.alpha = alpha
        self._clock = clock
        self._pairs: dict[tuple[str, str], _Entry] = {}

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
        """Fold one report into the pair; returns the change of the estimate in ms."""
        now = self._clock()
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
            stale=not e.pinned and age > self.ttl,
            source=e.source,
        )
