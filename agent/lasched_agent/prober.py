"""Probing rounds: which targets, when each probe goes out, how many at once.

One round lasts one interval (the scheduler's ``interval_seconds``) and ends
with one batch of :class:`~lasched_protocol.Sample`, one per probed target.
Three rules keep a node's probing cost flat however large the cluster grows:

* **Rotation.** A round probes at most ``max_targets_per_round`` targets: the
  ones probed least recently, in the order the scheduler listed them. With a
  fixed list this is round-robin, so every target is covered every
  ``ceil(n / max_targets_per_round)`` intervals; when the scheduler replaces
  the list, new targets come first and the others keep their turn.
* **Spreading.** The round's ``k * n`` probes (``k`` per target) start at even
  steps over the first ``interval - timeout`` seconds, targets interleaved,
  so probes to one target are ``(interval - timeout) / k`` apart and the last
  one can still time out before the round ends.
* **Concurrency bound.** At most ``max_in_flight`` probes are outstanding; a
  probe waits for a free slot, so a burst of timeouts delays the next probes
  instead of piling up sockets.

A probe still outstanding when the round ends counts as lost; one that never
got a slot is not counted at all, and a target none of whose probes went out
has no sample in the batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from lasched_agent.clock import Clock, SystemClock
from lasched_agent.stats import summarize
from lasched_protocol import Method, Sample, Target

log = logging.getLogger(__name__)

ProbeFn = Callable[[Target], Awaitable[float]]
"""Probe one target once: the RTT in seconds. Raises :class:`OSError` (for
instance :class:`TimeoutError`) when the probe is lost; anything else is a bug."""

BatchSink = Callable[[float, tuple[Sample, ...]], None]
"""Receives each round's batch: (Unix time at the end of the round, samples)."""


@dataclass(frozen=True, slots=True)
class ProbeMethod:
    """How this agent probes: the wire name, the probe, and its longest duration."""

    name: Method
    probe: ProbeFn
    timeout: float

    @classmethod
    def fixed(cls, rtts_ms: Mapping[str, float | None], *, name: Method = "icmp") -> ProbeMethod:
        """Answers from a table instead of the network, keyed by target id.

        A target missing from ``rtts_ms``, or mapped to ``None``, loses every
        probe. For tests and simulated agents that feed a known RTT matrix
        through the real protocol::

            ProbeMethod.fixed({"edge-2": 1.5, "edge-3": 40.0})
        """

        async def probe(target: Target) -> float:
            rtt = rtts_ms.get(target.id)
            if rtt is None:
                raise TimeoutError(f"no RTT configured for {target.id}")
            return rtt / 1000

        return cls(name=name, probe=probe, timeout=0.0)


class Rotation:
    """The target list and, per target, the round that last probed it. No I/O."""

    def __init__(self, targets: Iterable[Target] = ()) -> None:
        self._round = 0
        self._last: dict[str, int] = {}
        self._targets: tuple[Target, ...] = ()
        self.replace(targets)

    @property
    def targets(self) -> tuple[Target, ...]:
        return self._targets

    def __len__(self) -> int:
        return len(self._targets)

    def replace(self, targets: Iterable[Target]) -> None:
        """A new list (the first of duplicate ids wins); known targets keep their turn."""
        unique: dict[str, Target] = {}
        for t in targets:
            unique.setdefault(t.id, t)
        self._targets = tuple(unique.values())
        self._last = {i: r for i, r in self._last.items() if i in unique}

    def next_round(self, cap: int) -> list[Target]:
        """Up to ``cap`` targets probed least recently (never probed first), in list order."""
        if cap < 1:
            raise ValueError(f"cap must be at least 1, not {cap}")
        self._round += 1
        order = sorted(
            range(len(self._targets)),
            key=lambda i: (self._last.get(self._targets[i].id, 0), i),
        )
        chosen = sorted(order[:cap])
        for i in chosen:
            self._last[self._targets[i].id] = self._round
        return [self._targets[i] for i in chosen]


class _Pending:
    """A probe that went out and has not answered (yet)."""


_PENDING: Final = _Pending()


class Prober:
    """Runs rounds forever over the scheduler's current targets.

    ``clock`` schedules rounds and probe start times (inject a virtual one in
    tests); RTTs are measured by the probe itself.
    """

    def __init__(
        self,
        method: ProbeMethod,
        *,
        probes_per_target: int = 5,
        max_targets_per_round: int = 32,
        max_in_flight: int = 8,
        clock: Clock | None = None,
    ) -> None:
        for name, value in (
            ("probes_per_target", probes_per_target),
            ("max_targets_per_round", max_targets_per_round),
            ("max_in_flight", max_in_flight),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        self.method = method
        self._per_target = probes_per_target
        self.max_targets_per_round = max_targets_per_round
        self._max_in_flight = max_in_flight
        self._clock: Clock = clock or SystemClock()
        self._rotation = Rotation()
        self._interval = 0.0
        self._changed = asyncio.Event()

    @property
    def targets(self) -> tuple[Target, ...]:
        return self._rotation.targets

    @property
    def interval(self) -> float:
        return self._interval

    def set_targets(self, targets: Iterable[Target], *, interval: float) -> None:
        """Replace the targets and interval; the round under way finishes with the old ones."""
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        if interval <= self.method.timeout:
            log.warning(
                "interval_s=%g is not longer than the probe timeout_s=%g: "
                "probes go out at once and slow ones count as lost",
                interval, self.method.timeout,
            )  # fmt: skip
        self._rotation.replace(targets)
        self._interval = interval
        self._changed.set()

    async def run(self, sink: BatchSink) -> None:
        """Probe round after round, passing each non-empty batch to ``sink``.

        Waits while there are no targets. Runs until cancelled; cancelling is
        safe (outstanding probes are cancelled with the round).
        """
        clock = self._clock
        start = clock.monotonic()
        while True:
            while not self._rotation:
                self._changed.clear()
                await self._changed.wait()
                start = clock.monotonic()
            interval = self._interval
            chosen = self._rotation.next_round(self.max_targets_per_round)
            samples = await self.run_round(chosen, interval=interval, start=start)
            if samples:
                sink(clock.time(), samples)
            # Rounds keep to a fixed beat; after a stall, start afresh rather than catch up.
            start = max(start + interval, clock.monotonic())

    async def run_round(
        self, targets: Sequence[Target], *, interval: float, start: float | None = None
    ) -> tuple[Sample, ...]:
        """Probe ``targets`` spread over one interval from ``start``; returns at its end."""
        clock = self._clock
        start = clock.monotonic() if start is None else start
        n, k = len(targets), self._per_target
        results: list[list[float | _Pending | None]] = [[] for _ in targets]
        step = max(0.0, interval - self.method.timeout) / (k * n) if n else 0.0
        slots = asyncio.Semaphore(self._max_in_flight)
        probes: list[asyncio.Task[None]] = []

        async def one(i: int, p: int) -> None:
            try:
                results[i][p] = await self._probe(targets[i])
            finally:
                slots.release()

        async def launch(tg: asyncio.TaskGroup) -> None:
            for j in range(k * n):
                await clock.sleep(start + j * step - clock.monotonic())
                await slots.acquire()
                i = j % n
                results[i].append(_PENDING)
                name = f"probe:{targets[i].id}:{j // n}"
                probes.append(tg.create_task(one(i, len(results[i]) - 1), name=name))

        async with asyncio.TaskGroup() as tg:
            launcher = tg.create_task(launch(tg), name="probe-launcher")
            await clock.sleep(start + interval - clock.monotonic())
            launcher.cancel()
            for task in probes:
                task.cancel()

        return tuple(
            summarize([None if isinstance(r, _Pending) else r for r in rtts]).to_sample(
                t.id, self.method.name
            )
            for t, rtts in zip(targets, results, strict=True)
            if rtts
        )

    async def _probe(self, target: Target) -> float | None:
        try:
            rtt = await self.method.probe(target)
        except OSError as e:  # TimeoutError included: a lost probe, not an error
            log.debug("probe lost target=%s address=%s reason=%r", target.id, target.address, e)
            return None
        return rtt * 1000
