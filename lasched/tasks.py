"""Background work that is owned, named and watched.

No ``create_task`` is left to fire and forget: every task is referenced here
until it ends, and an exception other than cancellation is logged with the
task's name, so a failure is never silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    """A bounded set of short background tasks (binds, status writes)."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self._sem = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self._limited(coro), name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def _limited(self, coro: Coroutine[Any, Any, None]) -> None:
        async with self._sem:
            await coro

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task=%s failed", task.get_name(), exc_info=exc)

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every task; True if all finished."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        return not pending

    async def cancel_all(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
