"""Samples waiting to be sent: the latest per target, a bounded number of targets.

While the scheduler is unreachable the agent keeps probing; what it measures
waits here. Only the newest sample of each target is worth sending (the
scheduler keeps an EWMA and a staleness bound, not a history), so a new
sample replaces the waiting one, and at most ``limit`` targets wait: beyond
that the target waiting longest is dropped. The buffer is empty again as
soon as it is drained, which the sender does after every round while
connected, so it only fills while disconnected.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from lasched_protocol import Sample

Batch = tuple[float, tuple[Sample, ...]]
"""Samples measured together, with their Unix time."""


class SampleBuffer:
    """Latest sample per target, oldest first, at most ``limit`` targets. No I/O."""

    def __init__(self, limit: int = 4096) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.dropped = 0
        """Samples evicted because the buffer was full (a running total)."""
        self._items: OrderedDict[str, tuple[float, Sample]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, time: float, samples: Iterable[Sample]) -> None:
        """Add one round's samples; each replaces the waiting sample of its target."""
        for s in samples:
            self._items.pop(s.target, None)
            self._items[s.target] = (time, s)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
            self.dropped += 1

    def drain(self, *, max_batch: int = 1024) -> list[Batch]:
        """Everything waiting, emptied out, as batches of one time each, oldest first.

        A batch holds at most ``max_batch`` samples so that a frame stays well
        under :data:`lasched_protocol.MAX_FRAME_BYTES`.
        """
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        batches: list[Batch] = []
        current: list[Sample] = []
        current_time = 0.0
        for time, sample in self._items.values():
            if current and (time != current_time or len(current) >= max_batch):
                batches.append((current_time, tuple(current)))
                current = []
            current_time = time
            current.append(sample)
        if current:
            batches.append((current_time, tuple(current)))
        self._items.clear()
        return batches

    def restore(self, batches: Iterable[Batch]) -> None:
        """Put back batches that could not be sent, unless a newer sample arrived meanwhile.

        They go back in front (they are older than anything put since), and
        are the first dropped if the buffer is full.
        """
        for time, samples in reversed(list(batches)):
            for s in reversed(samples):
                if s.target in self._items:
                    continue  # superseded by a newer sample
                if len(self._items) >= self.limit:
                    self.dropped += 1
                    continue
                self._items[s.target] = (time, s)
                self._items.move_to_end(s.target, last=False)
