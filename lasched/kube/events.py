"""Kubernetes Events (events.k8s.io/v1), written beside the scheduling loop.

``record()`` never awaits: it puts the event on a bounded queue that a few
workers drain, so a slow apiserver can delay events but never scheduling.
When the queue is full the event is dropped and counted, as client-go's
broadcaster does. Repeats of the same event for the same object (same reason
and note) within :data:`SERIES_WINDOW` update the first event's ``series``
instead of creating new objects, like kube-scheduler's repeated
FailedScheduling events.

One worker writes events in order, as kube-scheduler's broadcaster does:
every Event is an apiserver write that competes with the next pods'
bindings, and concurrent Event writes lengthen those bindings when the
apiserver is busy. More workers join only while a backlog builds (a burst of
thousands of pods), one per :data:`BACKLOG_PER_WORKER` queued events.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from dataclasses import dataclass

from lasched import metrics
from lasched.kube.binding import now_micro
from lasched.kube.client import ApiError, KubeClient

log = logging.getLogger(__name__)

SERIES_WINDOW = 30 * 60.0
BACKLOG_PER_WORKER = 256
_MAX_NOTE = 1024  # in UTF-8 bytes: the apiserver rejects longer notes (422)


def fit_note(note: str) -> str:
    """``note`` in at most :data:`_MAX_NOTE` UTF-8 bytes, cut on a character boundary
    and ending in ``…`` when cut. A lone surrogate, which JSON cannot carry, becomes ``?``."""
    # A character takes at least one byte: past _MAX_NOTE characters nothing is kept.
    data = note[: _MAX_NOTE + 1].encode("utf-8", "replace")
    if len(data) <= _MAX_NOTE:
        return data.decode("utf-8")
    # Dropping the bytes of a character cut in half leaves whole characters only.
    return data[: _MAX_NOTE - len("…".encode())].decode("utf-8", "ignore") + "…"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str
    uid: str
    api_version: str = "v1"

    def as_json(self) -> dict[str, str]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
        }


@dataclass(frozen=True, slots=True)
class _Pending:
    regarding: ObjectRef
    type: str
    reason: str
    action: str
    note: str


@dataclass(slots=True)
class _Series:
    name: str
    count: int
    last: float


class EventRecorder:
    """Records events for one reporting controller (a scheduler profile's name)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        controller: str,
        instance: str | None = None,
        queue_size: int = 10_000,
        workers: int = 4,
    ) -> None:
        self._client = client
        self.controller = controller
        self.instance = instance or f"{controller}-{socket.gethostname()}"
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(queue_size)
        self._workers = workers
        self._backlog = asyncio.Event()  # set while more than BACKLOG_PER_WORKER wait
        self._series: dict[tuple[str, str, str], _Series] = {}
        self.dropped = 0
        self.written = 0

    def record(
        self, regarding: ObjectRef, *, type: str, reason: str, action: str, note: str
    ) -> None:
        """Queue an event; returns at once."""
        try:
            self._queue.put_nowait(_Pending(regarding, type, reason, action, fit_note(note)))
        except asyncio.QueueFull:
            self.dropped += 1
        if self._queue.qsize() > BACKLOG_PER_WORKER:
            self._backlog.set()

    async def run(self) -> None:
        """Drain the queue until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for i in range(self._workers):
                tg.create_task(self._worker(i), name=f"events-{self.controller}-{i}")

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until every queued event has been written."""
        async with asyncio.timeout(timeout):
            await self._queue.join()

    async def _worker(self, index: int) -> None:
        while True:
            # Worker 0 always writes; worker i only while more than i backlogs wait.
            while index and self._queue.qsize() <= index * BACKLOG_PER_WORKER:
                self._backlog.clear()
                await self._backlog.wait()
            ev = await self._queue.get()
            try:
                await self._write(ev)
                self.written += 1
            except ApiError as e:
                # A pod deleted meanwhile, or its namespace terminating: nothing to tell.
                if not (e.not_found or (e.status == 403 and "terminated" in e.message)):
                    log.warning("event %s for %s not written: %s", ev.reason, ev.regarding.name, e)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # The apiserver restarting (aiohttp's ServerDisconnectedError), a refused
                # connection, a timeout, or a bug: this event is lost, the writer is not.
                log.warning(
                    "event %s for %s not written: %s: %s",
                    ev.reason, ev.regarding.name, type(e).__name__, e,
                )  # fmt: skip
                metrics.events_failed.inc()
            finally:
                self._queue.task_done()

    async def _write(self, ev: _Pending) -> None:
        ns = ev.regarding.namespace or "default"
        key = (ev.regarding.uid, ev.reason, ev.note)
        now = time.monotonic()
        series = self._series.get(key)
        if series is not None and now - series.last < SERIES_WINDOW:
            series.count += 1
            series.last = now
            try:
                await self._client.patch(
                    f"/apis/events.k8s.io/v1/namespaces/{ns}/events/{series.name}",
                    {"series": {"count": series.count, "lastObservedTime": now_micro()}},
                )
                return
            except ApiError as e:
                if not e.not_found:
                    raise
        name = f"{ev.regarding.name}.{uuid.uuid4().hex[:16]}"
        await self._client.post(
            f"/apis/events.k8s.io/v1/namespaces/{ns}/events",
            {
                "apiVersion": "events.k8s.io/v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": ns},
                "eventTime": now_micro(),
                "reportingController": self.controller,
                "reportingInstance": self.instance,
                "action": ev.action,
                "reason": ev.reason,
                "regarding": ev.regarding.as_json(),
                "note": ev.note,
                "type": ev.type,
            },
        )
        self._series[key] = _Series(name=name, count=1, last=now)
        if len(self._series) > 50_000:
            self._prune(now)

    def _prune(self, now: float) -> None:
        self._series = {k: s for k, s in self._series.items() if now - s.last < SERIES_WINDOW}
