"""bench.hotpath still builds the scheduler and runs its cycle (so the harness cannot rot)."""

from __future__ import annotations

import random
import time

import pytest

from bench import hotpath


def test_one_small_round_is_repeatable() -> None:
    """Two rounds on the same pods give the same decisions digest, with preemption in it."""
    pods = hotpath.pending(60, uniform=False, priorities=True)
    first = hotpath.one_round(30, 3, pods)
    second = hotpath.one_round(30, 3, pods)
    assert first[1] == second[1]
    assert first[0] > 0


def test_batching_rounds_are_repeatable_whatever_the_wall_clock_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch's age is read on the replay's clock of cycles: a machine that stalls at
    different moments in two rounds (here the wall clock jumps by a second at random)
    does not change which pods a batch serves, and so not the decisions."""
    jumps = random.Random()  # unseeded: each round's stalls fall elsewhere
    now = [0.0]

    def stalling() -> float:
        now[0] += 1.0 if jumps.random() < 0.05 else 1e-5
        return now[0]

    monkeypatch.setattr(time, "monotonic", stalling)
    pods = hotpath.pending(200, uniform=True, priorities=False)
    first = hotpath.one_round(50, 0, pods, batching=True)
    second = hotpath.one_round(50, 0, pods, batching=True)
    assert first[1] == second[1]
    assert first[3] > 100  # most pods were served by a batch
