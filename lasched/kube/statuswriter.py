"""The scheduler's writes beside the loop: pod status, nominations, evictions, PodGroup phases.

The scheduling cycle never awaits, so what it decides that the apiserver
must hear is handed here and written by a bounded set of background tasks
(16 at a time). The writes themselves are in :mod:`lasched.kube.binding`.

Invariant: a pod's status writes reach the apiserver in the order they were
asked for, and its binding waits for those already sent
(:meth:`StatusWriter.written`). A failure's ``PodScheduled=False`` (and
``nominatedNodeName``) arriving after the binding would mark a bound pod
unschedulable, and the apiserver refuses a nominated node on a bound pod; a
preemptor can be bound within milliseconds of its failed attempt. The writes
still queued (waiting for one of the 16 slots) are dropped instead: what a
pod about to bind failed at earlier is no longer news, and under a backlog
(gangs' members failing while other groups hold) a permitted gang's members
would otherwise bind one backlog apart.

A write the apiserver refuses or cannot take is logged and dropped: the next
attempt writes the pod's status again. An eviction's outcome goes back to
whoever asked for it, who decides what a victim that was not evicted means.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from lasched.kube.binding import (
    evict,
    patch_podgroup_status,
    set_nominated,
    set_podgroup_phase,
    set_unschedulable,
)
from lasched.kube.client import JSON, ApiError, KubeClient
from lasched.model.pod import PodInfo, PodKey
from lasched.tasks import TaskSet

log = logging.getLogger(__name__)

# What a write that did not happen raises: the apiserver refused, or was not reached.
NOT_WRITTEN = (ApiError, aiohttp.ClientError, TimeoutError, OSError)


class EvictionOutcome(enum.Enum):
    """What became of one preemption victim's deletion."""

    EVICTED = "evicted"
    REFUSED = "refused"  # the apiserver refused or was not reached: the victim runs on
    ABANDONED = "abandoned"  # cancelled before an answer (the scheduler is stopping)


class _Write:
    """One status write of a pod: its task, and whether it has been sent (begun)."""

    __slots__ = ("sent", "task")

    def __init__(self) -> None:
        self.sent = False
        self.task: asyncio.Task[None]


class StatusWriter:
    """Writes pod status, nominations, evictions and PodGroup phases, in order per pod."""

    def __init__(self, client: KubeClient, *, podgroup_api: str, limit: int = 16) -> None:
        self._client = client
        self._podgroup_api = podgroup_api
        self._tasks = TaskSet("status", limit)
        # A pod's status writes not yet done, in the order asked; its bind waits for
        # those sent and drops the others (see written).
        self._pending: dict[PodKey, list[_Write]] = {}

    @property
    def in_flight(self) -> int:
        """Pods with a status write not yet done."""
        return len(self._pending)

    def unschedulable(
        self, pod: PodInfo, message: str, *, nominated_node: str | None = None
    ) -> None:
        """``PodScheduled=False`` with ``message`` (and the node preemption freed for it)."""
        self.write(
            pod,
            set_unschedulable(
                self._client,
                namespace=pod.namespace,
                name=pod.name,
                message=message,
                nominated_node=nominated_node,
            ),
            name=str(pod.key),
        )

    def nominated(self, pod: PodInfo, node: str) -> None:
        """``status.nominatedNodeName`` of a pod preemption placed along with another."""
        self.write(
            pod,
            set_nominated(self._client, namespace=pod.namespace, name=pod.name, node=node),
            name=f"nominate-{pod.key}",
        )

    def write(self, pod: PodInfo, write: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run ``write`` (a status write of ``pod``) after the pod's previous one."""
        pending = self._pending.setdefault(pod.key, [])
        previous = pending[-1].task if pending else None
        entry = _Write()

        async def ordered() -> None:
            try:
                if previous is not None:
                    await asyncio.wait([previous])
            except asyncio.CancelledError:
                write.close()  # never started: no "never awaited" warning
                raise
            entry.sent = True
            try:
                await write
            except NOT_WRITTEN as e:
                log.warning("pod=%s status not written: %s: %s", pod.key, type(e).__name__, e)

        entry.task = self._tasks.spawn(ordered(), name=name)
        # Dropped before it had a slot, ``ordered`` never ran and so never closed ``write``:
        # closed here instead (a no-op once it ran), or Python warns that it was "never
        # awaited", a line of its own amid the JSON log.
        entry.task.add_done_callback(lambda _: write.close())
        pending.append(entry)

        def forget(t: asyncio.Task[None], key: PodKey = pod.key) -> None:
            writes = self._pending.get(key)
            if writes is None:
                return
            writes[:] = [w for w in writes if w.task is not t]
            if not writes:
                del self._pending[key]

        entry.task.add_done_callback(forget)

    async def written(self, key: PodKey) -> None:
        """Drop the pod's status writes still queued; wait for those already sent.

        Called before the pod is bound: a queued ``PodScheduled=False`` would only
        arrive after the binding. Cancelling the wait is safe: the writes sent go on.
        """
        writes = list(self._pending.get(key, ()))
        for w in writes:
            if not w.sent:
                w.task.cancel()
        sent = [w.task for w in writes if w.sent]
        if sent:
            await asyncio.wait(sent)  # a failure is logged by the TaskSet, not raised here

    def evict(
        self, victim: PodInfo, *, preemptor: PodKey, then: Callable[[EvictionOutcome], None]
    ) -> None:
        """Delete a preemption victim (UID precondition, its own grace period), then tell
        ``then`` what became of it."""
        self._tasks.spawn(self._evict(victim, preemptor, then), name=f"evict-{victim.key}")

    async def _evict(
        self, victim: PodInfo, preemptor: PodKey, then: Callable[[EvictionOutcome], None]
    ) -> None:
        try:
            await evict(self._client, namespace=victim.namespace, name=victim.name, uid=victim.uid)
        except asyncio.CancelledError:
            then(EvictionOutcome.ABANDONED)
            raise
        except NOT_WRITTEN as e:
            log.warning(
                "pod=%s not evicted for pod=%s: %s: %s",
                victim.key, preemptor, type(e).__name__, e,
            )  # fmt: skip
            then(EvictionOutcome.REFUSED)
            return
        then(EvictionOutcome.EVICTED)

    def podgroup_phase(self, key: str, phase: str) -> None:
        """A PodGroup's ``status.phase`` (``namespace/name``; Scheduling, Scheduled)."""
        namespace, _, name = key.partition("/")
        self._tasks.spawn(
            set_podgroup_phase(
                self._client, api=self._podgroup_api, namespace=namespace, name=name, phase=phase
            ),
            name=f"podgroup-{key}",
        )

    def podgroup_status(self, path: str, patch: JSON) -> None:
        """Patch a Kubernetes PodGroup's status at ``path`` (its ``/status`` subresource)."""
        self._tasks.spawn(self._podgroup_status(path, patch), name=f"podgroup-status-{path}")

    async def _podgroup_status(self, path: str, patch: JSON) -> None:
        try:
            await patch_podgroup_status(self._client, path=path, patch=patch)
        except NOT_WRITTEN as e:
            log.warning("%s not written: %s: %s", path, type(e).__name__, e)

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for every write; True if all finished."""
        return await self._tasks.drain(timeout)
