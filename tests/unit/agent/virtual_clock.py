"""A :class:`~lasched_agent.clock.Clock` whose time moves only when a test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools

_SETTLE_HOPS = 50  # event-loop turns that let woken tasks run until they wait again


class VirtualClock:
    """Sleepers wake in time order as :meth:`advance` moves the clock forward."""

    def __init__(self, start: float = 1000.0, epoch: float = 1_700_000_000.0) -> None:
        self._now = start
        self._epoch = epoch
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._epoch + self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), fut))
        await fut

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, letting every task due meanwhile run."""
        until = self._now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= until:
            when, _, fut = heapq.heappop(self._sleepers)
            if fut.done():  # its sleeper was cancelled
                continue
            self._now = max(self._now, when)
            fut.set_result(None)
            await settle()
        self._now = until
        await settle()


async def settle() -> None:
    """Let ready tasks run until they all wait on something."""
    for _ in range(_SETTLE_HOPS):
        await asyncio.sleep(0)
