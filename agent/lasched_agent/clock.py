"""Time as an argument, so rounds, heartbeats and backoff run in virtual time in tests.

Only the *schedule* goes through a :class:`Clock`: when a round starts, when a
probe is due, how long to back off. An RTT itself is always measured with the
real :func:`time.perf_counter`, by the probe.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def time(self) -> float:
        """Wall-clock Unix time in seconds, for the ``time`` of a message."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` (at most a yield when not positive); safe to cancel."""
        ...


class SystemClock:
    """The event loop's monotonic clock and the system's wall clock."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
