"""The waiting room: pods that passed Reserve and wait at Permit.

A pod waits while at least one Permit plugin returned WAIT and has not yet
allowed it. Any plugin may reject it, and each waiting plugin's deadline
rejects it when it passes. Deadlines are checked by :meth:`WaitingRoom.expire`
(called periodically with the clock's time), so tests drive timeouts in
virtual time instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

from lasched.framework.interface import SUCCESS, Code, Status
from lasched.model.pod import PodInfo, PodKey


class WaitingPod:
    """A reserved pod held at Permit; resolved exactly once."""

    def __init__(self, pod: PodInfo, node: str, deadlines: dict[str, float]) -> None:
        self.pod = pod
        self.node = node
        self.pending = dict(deadlines)  # plugin -> deadline
        self._future: asyncio.Future[Status] = asyncio.get_running_loop().create_future()

    @property
    def key(self) -> PodKey:
        return self.pod.key

    @property
    def resolved(self) -> bool:
        return self._future.done()

    def allow(self, plugin: str) -> None:
        """``plugin`` lets the pod go; it binds once every waiting plugin has."""
        self.pending.pop(plugin, None)
        if not self.pending and not self._future.done():
            self._future.set_result(SUCCESS)

    def reject(self, plugin: str, message: str) -> None:
        if not self._future.done():
            self._future.set_result(Status(Code.UNSCHEDULABLE, (message,), plugin))

    async def result(self) -> Status:
        """Wait for the verdict. Cancelling the waiter does not resolve the pod."""
        return await asyncio.shield(self._future)


class WaitingRoom:
    """All pods waiting at Permit, by key."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._pods: dict[PodKey, WaitingPod] = {}

    def __len__(self) -> int:
        return len(self._pods)

    def __iter__(self) -> Iterator[WaitingPod]:
        return iter(list(self._pods.values()))

    def get(self, key: PodKey) -> WaitingPod | None:
        return self._pods.get(key)

    def add(self, pod: PodInfo, node: str, timeouts: dict[str, float]) -> WaitingPod:
        now = self._clock()
        wp = WaitingPod(pod, node, {p: now + t for p, t in timeouts.items()})
        self._pods[pod.key] = wp
        return wp

    def remove(self, key: PodKey) -> None:
        self._pods.pop(key, None)

    def expire(self) -> int:
        """Reject every pod whose earliest pending deadline has passed."""
        now = self._clock()
        expired = 0
        for wp in list(self._pods.values()):
            for plugin, deadline in wp.pending.items():
                if deadline <= now and not wp.resolved:
                    wp.reject(plugin, f"rejected due to timeout after waiting at permit {plugin}")
                    expired += 1
                    break
        return expired
