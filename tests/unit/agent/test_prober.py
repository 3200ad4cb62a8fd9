"""Probing rounds in virtual time: rotation under a cap, spreading, concurrency bound."""

from __future__ import annotations

import asyncio
import math

import pytest

from lasched_agent.prober import ProbeMethod, Prober, Rotation
from lasched_protocol import Sample, Target
from tests.unit.agent.virtual_clock import VirtualClock, settle


def targets(n: int) -> list[Target]:
    return [Target(id=f"n{i}", address=f"10.0.0.{i}", kind="node") for i in range(n)]


@pytest.mark.parametrize(
    ("n", "cap"),
    [pytest.param(10, 32, id="fewer-than-cap"), pytest.param(32, 32, id="exactly-cap"),
     pytest.param(70, 32, id="70-by-32"), pytest.param(1000, 32, id="1000-by-32"),
     pytest.param(5, 1, id="one-per-round")],
)  # fmt: skip
def test_rotation_covers_all_targets_within_ceil_n_over_cap_rounds(n: int, cap: int) -> None:
    """Every target is probed within ceil(n/cap) rounds, never more than cap per round."""
    rot = Rotation(targets(n))
    seen: set[str] = set()
    for _ in range(math.ceil(n / cap)):
        chosen = rot.next_round(cap)
        assert len(chosen) == min(cap, n)
        seen |= {t.id for t in chosen}
    assert len(seen) == n


def test_rotation_is_round_robin_in_list_order() -> None:
    """With a fixed list, rounds take the targets in turn, wrapping around."""
    rot = Rotation(targets(5))
    rounds = [[t.id for t in rot.next_round(2)] for _ in range(4)]
    assert rounds == [["n0", "n1"], ["n2", "n3"], ["n0", "n4"], ["n1", "n2"]]


def test_replaced_list_probes_new_targets_first_and_keeps_turns() -> None:
    """After a replacement, never-probed targets go first; removed ones are gone."""
    rot = Rotation(targets(4))
    assert [t.id for t in rot.next_round(2)] == ["n0", "n1"]
    new = Target(id="new", address="10.0.1.1", kind="endpoint", port=443)
    rot.replace([*targets(4)[1:], new])
    assert [t.id for t in rot.next_round(3)] == ["n2", "n3", "new"]
    assert [t.id for t in rot.next_round(3)] == ["n1", "n2", "n3"]


def test_duplicate_ids_keep_the_first() -> None:
    """A target id listed twice is probed once, with its first address."""
    a, b = Target("x", "10.0.0.1", "node"), Target("x", "10.0.0.2", "node")
    assert Rotation([a, b]).targets == (a,)


def test_cap_must_be_positive() -> None:
    """A zero cap is refused, naming the argument."""
    with pytest.raises(ValueError, match="cap must be at least 1"):
        Rotation(targets(1)).next_round(0)


class Recorder:
    """A probe that records when it starts and answers after ``delay`` virtual seconds."""

    def __init__(self, clock: VirtualClock, *, delay: float = 0.0, rtt: float = 0.002) -> None:
        self.clock = clock
        self.delay = delay
        self.rtt = rtt
        self.starts: list[tuple[str, float]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, target: Target) -> float:
        self.starts.append((target.id, self.clock.monotonic()))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.clock.sleep(self.delay)
        finally:
            self.in_flight -= 1
        return self.rtt


async def test_probes_are_spread_over_the_interval_minus_timeout() -> None:
    """k probes per target start at even steps over interval - timeout, targets interleaved."""
    clock = VirtualClock(start=0.0)
    rec = Recorder(clock)
    prober = Prober(ProbeMethod("icmp", rec, timeout=1.0), probes_per_target=2, clock=clock)
    round_ = asyncio.create_task(prober.run_round(targets(2), interval=10.0))
    await clock.advance(10.0)
    samples = await round_
    assert rec.starts == [("n0", 0.0), ("n1", 2.25), ("n0", 4.5), ("n1", 6.75)]
    assert samples == (
        Sample("n0", "icmp", 2, 0.0, 2.0, 2.0, 2.0, 0.0),
        Sample("n1", "icmp", 2, 0.0, 2.0, 2.0, 2.0, 0.0),
    )


async def test_in_flight_probes_are_bounded_and_late_ones_count_as_lost() -> None:
    """No more than max_in_flight probes run at once; one unanswered at the round's end is lost."""
    clock = VirtualClock(start=0.0)
    rec = Recorder(clock, delay=6.0)
    method = ProbeMethod("tcp", rec, timeout=0.0)
    prober = Prober(method, probes_per_target=1, max_in_flight=2, clock=clock)
    round_ = asyncio.create_task(prober.run_round(targets(4), interval=10.0))
    await clock.advance(10.0)
    samples = await round_
    # Due at 0, 2.5, 5 and 7.5; the last two wait for a free slot (until 6 and 8.5)
    # and are still unanswered when the round ends at 10.
    assert rec.starts == [("n0", 0.0), ("n1", 2.5), ("n2", 6.0), ("n3", 8.5)]
    assert rec.max_in_flight == 2
    assert [(s.target, s.count, s.loss) for s in samples] == [
        ("n0", 1, 0.0), ("n1", 1, 0.0), ("n2", 1, 1.0), ("n3", 1, 1.0),
    ]  # fmt: skip


async def test_lost_and_failed_probes() -> None:
    """A probe raising OSError (a timeout, no route) is lost, not an error."""
    clock = VirtualClock()
    prober = Prober(ProbeMethod.fixed({"n0": 3.0, "n1": None}), probes_per_target=3, clock=clock)
    round_ = asyncio.create_task(prober.run_round(targets(3), interval=1.0))
    await clock.advance(1.0)
    by_target = {s.target: s for s in await round_}
    assert by_target["n0"] == Sample("n0", "icmp", 3, 0.0, 3.0, 3.0, 3.0, 0.0)
    assert by_target["n1"] == Sample("n1", "icmp", 3, 1.0, None, None, None, None)
    assert by_target["n2"].loss == 1.0


async def test_run_emits_one_batch_per_interval_rotating_under_the_cap() -> None:
    """Each interval yields one batch of at most max_targets_per_round samples, in rotation."""
    clock = VirtualClock()
    method = ProbeMethod.fixed({t.id: 1.0 for t in targets(5)})
    prober = Prober(method, probes_per_target=1, max_targets_per_round=2, clock=clock)
    batches: list[tuple[float, tuple[Sample, ...]]] = []
    task = asyncio.create_task(prober.run(lambda t, s: batches.append((t, s))), name="prober")
    try:
        await clock.advance(5.0)
        assert batches == []  # no targets yet: nothing to do
        prober.set_targets(targets(5), interval=2.0)
        t0 = clock.time()
        await clock.advance(6.0)
        assert [t - t0 for t, _ in batches] == [2.0, 4.0, 6.0]
        assert [[s.target for s in b] for _, b in batches] == [
            ["n0", "n1"], ["n2", "n3"], ["n0", "n4"],
        ]  # fmt: skip
        prober.set_targets(targets(1), interval=1.0)  # applies from the next round
        await clock.advance(3.0)
        assert [[s.target for s in b] for _, b in batches[3:]] == [["n1", "n2"], ["n0"]]
    finally:
        task.cancel()
        await settle()
    assert task.cancelled()


def test_prober_arguments_are_named() -> None:
    """Non-positive settings are refused with their name."""
    with pytest.raises(ValueError, match="max_in_flight must be at least 1"):
        Prober(ProbeMethod.fixed({}), max_in_flight=0)
    with pytest.raises(ValueError, match="interval must be positive"):
        Prober(ProbeMethod.fixed({})).set_targets(targets(1), interval=0)
