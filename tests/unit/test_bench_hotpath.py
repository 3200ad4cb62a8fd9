"""bench.hotpath still builds the scheduler and runs its cycle (so the harness cannot rot)."""

from __future__ import annotations

from bench import hotpath


def test_one_small_round_is_repeatable() -> None:
    """Two rounds on the same pods give the same decisions digest, with preemption in it."""
    pods = hotpath.pending(60, uniform=False, priorities=True)
    first = hotpath.one_round(30, 3, pods)
    second = hotpath.one_round(30, 3, pods)
    assert first[1] == second[1]
    assert first[0] > 0
