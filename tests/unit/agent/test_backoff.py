"""Reconnect backoff: exponential ceiling, full jitter, reset after a long-lived connection."""

from __future__ import annotations

import random
from typing import Any

import pytest

from lasched_agent.backoff import Backoff


class _Top(random.Random):
    """Always draws the top of the range, to see the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_ceiling_doubles_up_to_the_maximum() -> None:
    """Consecutive failures double the delay from 0.5 s up to 30 s."""
    b = Backoff(rng=_Top())
    delays = [b.next_delay() for _ in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_delays_are_jittered_below_the_ceiling() -> None:
    """Each delay is drawn uniformly in [0, ceiling], so they differ."""
    b = Backoff(rng=random.Random(7))
    drawn = []
    for _ in range(20):
        ceiling = b.ceiling
        drawn.append(d := b.next_delay())
        assert 0 <= d <= ceiling
    assert len(set(drawn)) == len(drawn)
    assert b.ceiling == 30.0


def test_long_lived_connection_resets_backoff() -> None:
    """A connection up longer than 60 s starts the delays from 0.5 s again."""
    b = Backoff(rng=_Top())
    for _ in range(5):
        b.next_delay()
    assert b.next_delay(connected_for=61.0) == 0.5
    assert b.next_delay(connected_for=None) == 1.0


def test_short_connection_keeps_growing() -> None:
    """A connection that dropped within 60 s does not reset the backoff."""
    b = Backoff(rng=_Top())
    b.next_delay()
    assert b.next_delay(connected_for=59.0) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"initial": 0}, "initial must be positive", id="initial"),
        pytest.param({"maximum": 0.1}, "maximum", id="maximum"),
        pytest.param({"reset_after": -1}, "reset_after", id="reset_after"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    """Invalid settings are refused with the argument's name."""
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
