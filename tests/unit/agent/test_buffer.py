"""The disconnected buffer keeps the latest sample per target, for a bounded number of targets."""

from __future__ import annotations

import pytest

from lasched_agent.buffer import SampleBuffer
from lasched_protocol import Sample


def sample(target: str, ms: float = 1.0) -> Sample:
    return Sample(target, "icmp", 1, 0.0, ms, ms, ms, None)


def test_latest_sample_per_target_wins() -> None:
    """A newer sample of a target replaces the waiting one; batches keep one time each."""
    buf = SampleBuffer()
    buf.put(1.0, [sample("a", 1), sample("b", 1)])
    buf.put(2.0, [sample("a", 2)])
    assert len(buf) == 2
    assert buf.drain() == [(1.0, (sample("b", 1),)), (2.0, (sample("a", 2),))]
    assert len(buf) == 0
    assert buf.drain() == []


def test_bounded_by_targets_dropping_the_oldest() -> None:
    """Beyond the limit, the target waiting longest is dropped and counted."""
    buf = SampleBuffer(limit=2)
    buf.put(1.0, [sample("a")])
    buf.put(2.0, [sample("b")])
    buf.put(3.0, [sample("c")])
    assert buf.dropped == 1
    assert [s.target for _, batch in buf.drain() for s in batch] == ["b", "c"]


def test_drain_splits_large_batches() -> None:
    """No drained batch holds more than max_batch samples."""
    buf = SampleBuffer()
    buf.put(1.0, [sample(f"n{i}") for i in range(5)])
    assert [len(b) for _, b in buf.drain(max_batch=2)] == [2, 2, 1]


def test_restore_puts_back_only_what_was_not_superseded() -> None:
    """Unsent batches return in front, except targets that have a newer sample."""
    buf = SampleBuffer()
    buf.put(1.0, [sample("a", 1), sample("b", 1)])
    unsent = buf.drain()
    buf.put(2.0, [sample("a", 2)])
    buf.restore(unsent)
    assert buf.drain() == [(1.0, (sample("b", 1),)), (2.0, (sample("a", 2),))]


def test_limit_must_be_positive() -> None:
    """A zero limit is refused, naming the argument."""
    with pytest.raises(ValueError, match="limit must be at least 1"):
        SampleBuffer(0)
