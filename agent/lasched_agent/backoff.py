"""Reconnect delays: exponential backoff with full jitter. No I/O.

The n-th consecutive failure waits a uniformly random time in
``[0, min(maximum, initial * 2**n)]`` ("full jitter", as in the AWS
architecture blog's *Exponential Backoff and Jitter*), so a scheduler restart
does not see every agent of the cluster reconnect in the same instant. A
connection that stayed up longer than ``reset_after`` seconds proves the
scheduler healthy again: the next delay starts from ``initial``.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays for consecutive reconnect attempts."""

    def __init__(
        self,
        *,
        initial: float = 0.5,
        maximum: float = 30.0,
        reset_after: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0:
            raise ValueError(f"initial must be positive, not {initial}")
        if maximum < initial:
            raise ValueError(f"maximum ({maximum}) must be at least initial ({initial})")
        if reset_after < 0:
            raise ValueError(f"reset_after must be non-negative, not {reset_after}")
        self.initial = initial
        self.maximum = maximum
        self.reset_after = reset_after
        self._rng = rng or random.Random()
        self._failures = 0

    @property
    def ceiling(self) -> float:
        """The largest delay the next attempt may draw."""
        return min(self.maximum, self.initial * 2.0 ** min(self._failures, 64))

    def next_delay(self, *, connected_for: float | None = None) -> float:
        """Seconds to wait before the next attempt.

        ``connected_for`` is how long the connection that just ended was up,
        or ``None`` if the attempt did not connect.
        """
        if connected_for is not None and connected_for > self.reset_after:
            self.reset()
        delay = self._rng.uniform(0.0, self.ceiling)
        self._failures += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial``."""
        self._failures = 0
