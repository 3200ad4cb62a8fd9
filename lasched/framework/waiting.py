"""The waiting room: pods that passed Reserve and wait at Permit.

A pod waits while at least one Permit plugin returned WAIT and has not yet
allowed it. Any plugin may reject it, and each waiting plugin's deadline
rejects it when it passes. Each deadline is a timer on the scheduler's one
timer heap (lasched.timers), so it fires at its time, and tests drive it in
virtual time. A pod is resolved exactly once; its timers are cancelled when
it is resolved or leaves the room, so no deadline outlives its pod.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator

from lasched.framework.interface import SUCCESS, Code, Status
from lasched.model.pod import PodInfo, PodKey
from lasched.timers import Clock, Timer, TimerHeap


class WaitingPod:
    """A reserved pod held at Permit; resolved exactly once."""

    def __init__(self, pod: PodInfo, node: str, deadlines: dict[str, float]) -> None:
        self.pod = pod
        self.node = node
        self.pending = dict(deadlines)  # plugin -> deadline
        self._future: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
        self._timers: dict[str, Timer] = {}  # plugin -> its deadline's timer

    @property
    def key(self) -> PodKey:
        return self.pod.key

    @property
    def resolved(self) -> bool:
        return self._future.done()

    @property
    def rejected(self) -> bool:
        """Turned away (or timed out): its reservation is on its way back, though its
        binding cycle may not have given it back yet."""
        return self._future.done() and not self._future.result().ok

    def allow(self, plugin: str) -> None:
        """``plugin`` lets the pod go; it binds once every waiting plugin has."""
        self.pending.pop(plugin, None)
        if (t := self._timers.pop(plugin, None)) is not None:
            t.cancel()
        if not self.pending:
            self._resolve(SUCCESS)

    def reject(self, plugin: str, message: str) -> None:
        self._resolve(Status(Code.UNSCHEDULABLE, (message,), plugin))

    async def result(self) -> Status:
        """Wait for the verdict. Cancelling the waiter does not resolve the pod."""
        return await asyncio.shield(self._future)

    def _resolve(self, verdict: Status) -> None:
        if not self._future.done():
            self._future.set_result(verdict)
            self._cancel_timers()

    def _cancel_timers(self) -> None:
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()

    def _timed_out(self, plugin: str) -> None:
        if plugin in self.pending:
            self.reject(plugin, f"rejected due to timeout after waiting at permit {plugin}")


class WaitingRoom:
    """All pods waiting at Permit, by key.

    Deadlines go on ``timers``; without one, the room keeps its own heap on
    ``clock``, which its owner fires (``room.timers.fire_due()``).
    """

    def __init__(self, clock: Clock | None = None, *, timers: TimerHeap | None = None) -> None:
        if clock is not None and timers is not None:
            raise ValueError("give the waiting room `clock` or `timers`, not both")
        self.timers = timers if timers is not None else TimerHeap(clock or time.monotonic)
        self._pods: dict[PodKey, WaitingPod] = {}

    def __len__(self) -> int:
        return len(self._pods)

    def __iter__(self) -> Iterator[WaitingPod]:
        return iter(list(self._pods.values()))

    def get(self, key: PodKey) -> WaitingPod | None:
        return self._pods.get(key)

    def add(self, pod: PodInfo, node: str, timeouts: dict[str, float]) -> WaitingPod:
        """Hold ``pod``; each plugin of ``timeouts`` rejects it that many seconds from now."""
        now = self.timers.now()
        wp = WaitingPod(pod, node, {p: now + t for p, t in timeouts.items()})
        for plugin, deadline in wp.pending.items():
            wp._timers[plugin] = self.timers.call_at(
                deadline, functools.partial(wp._timed_out, plugin)
            )
        self._pods[pod.key] = wp
        return wp

    def remove(self, key: PodKey) -> None:
        wp = self._pods.pop(key, None)
        if wp is not None:
            wp._cancel_timers()
