"""RTT statistics of one interval: min, median, p90, jitter, loss."""

from __future__ import annotations

import math

import pytest

from lasched_agent.stats import RttStats, jitter, nearest_rank, summarize
from lasched_protocol import Sample, Samples, decode, encode


def test_statistics_of_answered_probes() -> None:
    """min, median, nearest-rank p90 and mean consecutive difference over answered probes."""
    s = summarize([3.0, 1.0, 2.0, 10.0, 4.0])
    assert s == RttStats(
        count=5, loss=0.0, min_ms=1.0, median_ms=3.0, p90_ms=10.0, jitter_ms=(2 + 1 + 8 + 6) / 4
    )


def test_median_of_even_count_is_mean_of_middle_pair() -> None:
    """An even number of RTTs has the mean of the two middle ones as median."""
    assert summarize([1.0, 2.0, 3.0, 10.0]).median_ms == 2.5


def test_lost_probes_count_as_loss_and_are_skipped_by_jitter() -> None:
    """A lost probe raises loss and its neighbours become consecutive for jitter."""
    s = summarize([1.0, None, 3.0, None])
    assert (s.count, s.loss) == (4, 0.5)
    assert (s.min_ms, s.median_ms, s.p90_ms, s.jitter_ms) == (1.0, 2.0, 3.0, 2.0)


def test_one_answer_has_no_jitter() -> None:
    """Jitter needs two answers; one gives None."""
    s = summarize([None, 5.0])
    assert (s.loss, s.min_ms, s.p90_ms, s.jitter_ms) == (0.5, 5.0, 5.0, None)


def test_all_lost() -> None:
    """Every probe lost: loss 1 and no RTT statistic."""
    assert summarize([None, None, None]) == RttStats(3, 1.0, None, None, None, None)


def test_nothing_sent() -> None:
    """No probe: count 0, loss 0 and no RTT statistic."""
    assert summarize([]) == RttStats(0, 0.0, None, None, None, None)


@pytest.mark.parametrize(
    ("n", "rank"),
    [pytest.param(1, 1, id="1->1st"), pytest.param(10, 9, id="10->9th"),
     pytest.param(11, 10, id="11->10th"), pytest.param(20, 18, id="20->18th")],
)  # fmt: skip
def test_p90_is_nearest_rank(n: int, rank: int) -> None:
    """p90 is the ceil(0.9 n)-th smallest value, a measured RTT."""
    assert nearest_rank([float(i) for i in range(1, n + 1)], 0.9) == rank


def test_bad_arguments_are_named() -> None:
    """Helpers say which argument was wrong."""
    with pytest.raises(ValueError, match="q must be"):
        nearest_rank([1.0], 0)
    with pytest.raises(ValueError, match="at least two"):
        jitter([1.0])


def test_values_rounded_to_microseconds() -> None:
    """RTTs are reported to the microsecond, so frames stay short."""
    assert summarize([1.23456789]).min_ms == 1.235


def test_to_sample_carries_target_and_method() -> None:
    """An RttStats becomes a wire Sample for its target and method."""
    assert summarize([2.0]).to_sample("edge-2", "tcp") == Sample(
        "edge-2", "tcp", 1, 0.0, 2.0, 2.0, 2.0, None
    )


def test_answers_the_wire_format_cannot_carry_count_as_lost() -> None:
    """An RTT above 60 s, negative, or not finite is no answer: the scheduler would refuse it."""
    stats = summarize([2.0, 60_000.0, 60_000.5, -1.0, math.inf, math.nan, 4.0])
    assert stats.count == 7
    assert stats.loss == pytest.approx(4 / 7)
    assert (stats.min_ms, stats.median_ms, stats.p90_ms) == (2.0, 4.0, 60_000.0)
    sample = stats.to_sample("edge-2", "icmp")
    decoded = decode(encode(Samples(seq=0, time=1.0, samples=(sample,))))
    assert isinstance(decoded, Samples) and decoded.samples == (sample,)
