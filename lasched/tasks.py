"""Background work that is owned, named and watched.

No ``create_task`` is left to fire and forget: every task is referenced here
until it ends, and an exception other than cancellation is logged with the
task's name, so a failure is never silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from lasched import metrics

log = logging.getLogger(__name__)


async def supervised(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    initial_delay: float = 1.0,
    max_delay: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run a long-lived task's body again whenever it fails, until cancelled.

    A bug in one object's handling must never end the process: the failure is
    logged with its traceback and counted, and the body restarts after a
    delay that doubles with each consecutive failure (reset after a body that
    ran for longer than ``max_delay``). A body that returns normally is done.
    """
    delay = initial_delay
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.task_restarts.labels(name).inc()
            if loop.time() - started > max_delay:
                delay = initial_delay
            log.exception("task=%s failed; restarting in %.1f s", name, delay)
            await sleep(delay)
            delay = min(max_delay, delay * 2)


class Slots:
    """A counting semaphore, first come first served, whose acquire and release cost
    the same with ten thousand tasks waiting as with none.

    asyncio.Semaphore (Python 3.11) removes a waiter cancelled while it waits
    from the middle of its deque, and each release scans past the waiters woken
    but not yet run: with thousands of status writes queued for pending pods,
    and the superseded ones cancelled, that is quadratic (8 % of lasched's
    samples in a run of 1,000 competing gangs; 20,000 waiters, every other
    one cancelled: 0.48 s of CPU against 0.08 s here). A release hands its slot
    to the first live waiter; a waiter cancelled while it waits is skipped when
    its turn comes.
    """

    def __init__(self, value: int) -> None:
        self._free = value
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        waiters = self._waiters
        while waiters and waiters[0].done():  # cancelled while waiting
            waiters.popleft()
        if self._free > 0 and not waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(fut)
        try:
            await fut  # a release hands its slot over: _free is not raised for it
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot, then cancelled before running: pass it on
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1


class TaskSet:
    """A bounded set of short background tasks (binds, status writes)."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self._sem = Slots(limit)
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(self._limited(coro), name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def _limited(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await self._sem.acquire()
        except asyncio.CancelledError:
            coro.close()  # cancelled while queued: it never ran, and must not warn so
            raise
        try:
            await coro
        finally:
            self._sem.release()

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
