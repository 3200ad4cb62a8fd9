"""RTT statistics over one interval: pure functions, no I/O.

A round gives, per target, the probes it sent in send order, each an RTT in
milliseconds or ``None`` when no answer came in time. From those:

``count``
    probes sent (answered or not).
``loss``
    lost / count, within 0..1 (0.0 when nothing was sent).
``min_ms``, ``median_ms``
    over the answered probes; the median of an even count is the mean of the
    two middle values.
``p90_ms``
    nearest rank: the ``ceil(0.9 * n)``-th smallest of the ``n`` answered
    probes, so it is always an RTT that was actually measured.
``jitter_ms``
    the mean absolute difference between consecutive answered RTTs, in send
    order. RFC 3550 (6.4.1) estimates jitter from the same differences
    ``|D(i-1, i)|`` but smooths them with a gain of 1/16; over a handful of
    probes in one interval a plain mean is the better estimate, and the
    smoothing across intervals is the scheduler's business. A lost probe is
    skipped, so its neighbours become consecutive. ``None`` with fewer than
    two answers.

Every statistic other than ``count`` and ``loss`` is ``None`` when no probe
was answered. An answer that is not an RTT the wire format carries (not
finite, negative, or above :data:`lasched_protocol.MAX_RTT_MS`) counts as
lost: the scheduler refuses such a sample, and a round trip that long is no
answer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from lasched_protocol import MAX_RTT_MS, Method, Sample

_DECIMALS = 3  # microseconds: finer than any RTT a userspace probe can measure


@dataclass(frozen=True, slots=True)
class RttStats:
    """The statistics of one target over one interval, in milliseconds."""

    count: int
    loss: float
    min_ms: float | None
    median_ms: float | None
    p90_ms: float | None
    jitter_ms: float | None

    def to_sample(self, target: str, method: Method) -> Sample:
        """This interval's statistics as a wire :class:`~lasched_protocol.Sample`."""
        return Sample(
            target=target,
            method=method,
            count=self.count,
            loss=self.loss,
            min_ms=self.min_ms,
            median_ms=self.median_ms,
            p90_ms=self.p90_ms,
            jitter_ms=self.jitter_ms,
        )


def summarize(rtts_ms: Sequence[float | None]) -> RttStats:
    """Statistics of probes in send order; ``None`` marks a lost probe."""
    count = len(rtts_ms)
    # The comparison is false for nan too.
    answered = [r for r in rtts_ms if r is not None and 0 <= r <= MAX_RTT_MS]
    loss = (count - len(answered)) / count if count else 0.0
    if not answered:
        return RttStats(count, loss, None, None, None, None)
    ordered = sorted(answered)
    return RttStats(
        count=count,
        loss=loss,
        min_ms=_round(ordered[0]),
        median_ms=_round(median(ordered)),
        p90_ms=_round(nearest_rank(ordered, 0.9)),
        jitter_ms=None if len(answered) < 2 else _round(jitter(answered)),
    )


def median(ordered: Sequence[float]) -> float:
    """The median of a non-empty, sorted sequence."""
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 < q <= 1) of a non-empty, sorted sequence, by nearest rank."""
    if not 0 < q <= 1:
        raise ValueError(f"q must be within (0, 1], not {q!r}")
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def jitter(rtts: Sequence[float]) -> float:
    """The mean absolute difference of consecutive values (at least two)."""
    if len(rtts) < 2:
        raise ValueError(f"jitter needs at least two RTTs, not {len(rtts)}")
    return sum(abs(b - a) for a, b in itertools.pairwise(rtts)) / (len(rtts) - 1)


def _round(ms: float) -> float:
    return round(ms, _DECIMALS)
