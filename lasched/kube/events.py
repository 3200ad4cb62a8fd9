"""Kubernetes Events (events.k8s.io/v1), written beside the scheduling loop.

``record()`` never awaits: it notes the event and queues it for a pool of
writers that runs :data:`CONCURRENCY` writes at once on a connection pool of
its own, so Events keep pace with a burst of bindings (kube-scheduler's
broadcaster writes each Event on a goroutine of its own) and never take the
connections the bindings need. The queue is bounded: past it an event is
dropped and counted (``lasched_events_dropped_total``), as client-go's
broadcaster drops past its channel.

Repeats, as kube-scheduler's event correlator folds them: an event with the
same object, reason and note as one written within :data:`SERIES_WINDOW` is
not a new object but a step of the first one's ``series``. Each series has at
most one write in flight; the repeats that come meanwhile are folded into the
next write, so a pod retried a hundred times costs a handful of PATCHes.
``eventTime`` and ``series.lastObservedTime`` are the times of recording, not
of writing, so a backlog does not shift them.
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
CONCURRENCY = 64  # writes in flight (and connections) per recorder
_PRUNE_AT = 50_000  # series kept before the expired ones are dropped
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


@dataclass(slots=True, eq=False)
class _Series:
    """One event and its repeats: what was recorded, and what the apiserver has."""

    regarding: ObjectRef
    type: str
    reason: str
    action: str
    note: str
    event_time: str  # the first recording's time (eventTime)
    recorded: float  # monotonic time of the last recording
    observed: str  # the last recording's time (series.lastObservedTime)
    count: int = 1  # recordings so far
    written: int = 0  # recordings the apiserver has (0: not created yet)
    name: str | None = None  # the Event's name once created
    queued: bool = False  # waiting in the queue or being written


class EventRecorder:
    """Records events for one reporting controller (a scheduler profile's name)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        controller: str,
        instance: str | None = None,
        queue_size: int = 10_000,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self._client = client
        self.controller = controller
        self.instance = instance or f"{controller}-{socket.gethostname()}"
        self._queue: asyncio.Queue[_Series] = asyncio.Queue(queue_size)
        self._concurrency = concurrency
        self._series: dict[tuple[str, str, str], _Series] = {}
        self.dropped = 0
        self.written = 0

    def record(
        self, regarding: ObjectRef, *, type: str, reason: str, action: str, note: str
    ) -> None:
        """Note an event and queue its write; returns at once."""
        note = fit_note(note)
        key = (regarding.uid, reason, note)
        now = time.monotonic()
        stamp = now_micro()
        series = self._series.get(key)
        if series is not None and now - series.recorded < SERIES_WINDOW:
            series.count += 1
            series.recorded = now
            series.observed = stamp
        else:
            series = _Series(regarding, type, reason, action, note, stamp, now, stamp)
            self._series[key] = series
            if len(self._series) > _PRUNE_AT:
                self._prune(now)
        if not series.queued:
            self._enqueue(series)

    def _enqueue(self, series: _Series) -> None:
        try:
            self._queue.put_nowait(series)
        except asyncio.QueueFull:
            self.dropped += 1
            metrics.events_dropped.inc()
            return
        series.queued = True

    async def run(self) -> None:
        """Write queued events, :data:`CONCURRENCY` at once, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for i in range(self._concurrency):
                tg.create_task(self._worker(), name=f"events-{self.controller}-{i}")

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait (bounded) until every queued event has been written."""
        async with asyncio.timeout(timeout):
            await self._queue.join()

    async def _worker(self) -> None:
        while True:
            series = await self._queue.get()
            ok = False
            try:
                ok = await self._write_one(series)
            finally:
                series.queued = False
                # Repeats recorded while this write was in flight go in the next one.
                # After a failure they wait for the next recording: no retry loop
                # against an apiserver that is away.
                if ok and series.count > series.written:
                    self._enqueue(series)
                self._queue.task_done()

    async def _write_one(self, series: _Series) -> bool:
        """Write one series' state; False when the write failed (logged and counted)."""
        try:
            await self._write(series)
            self.written += 1
            return True
        except ApiError as e:
            # A pod deleted meanwhile, or its namespace terminating: nothing to tell.
            if not (e.not_found or (e.status == 403 and "terminated" in e.message)):
                log.warning("event %s for %s not written: %s", series.reason,
                            series.regarding.name, e)  # fmt: skip
            return False
        except asyncio.CancelledError:
            raise
        except Exception as e:
            # The apiserver restarting (aiohttp's ServerDisconnectedError), a refused
            # connection, a timeout, or a bug: this write is lost, the writer is not.
            log.warning(
                "event %s for %s not written: %s: %s",
                series.reason, series.regarding.name, type(e).__name__, e,
            )  # fmt: skip
            metrics.events_failed.inc()
            return False

    async def _write(self, series: _Series) -> None:
        ns = series.regarding.namespace or "default"
        count = series.count
        if series.name is not None:
            try:
                await self._client.patch(
                    f"/apis/events.k8s.io/v1/namespaces/{ns}/events/{series.name}",
                    {"series": {"count": count, "lastObservedTime": series.observed}},
                )
                series.written = count
                return
            except ApiError as e:
                if not e.not_found:
                    raise
            # The Event expired (the apiserver keeps them an hour): start it again.
        name = f"{series.regarding.name}.{uuid.uuid4().hex[:16]}"
        body: dict[str, object] = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "eventTime": series.event_time,
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": series.action,
            "reason": series.reason,
            "regarding": series.regarding.as_json(),
            "note": series.note,
            "type": series.type,
        }
        if count > 1:
            body["series"] = {"count": count, "lastObservedTime": series.observed}
        await self._client.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", body)
        series.name = name
        series.written = count

    def _prune(self, now: float) -> None:
        """Forget expired series; if too many are live, the older half of them too
        (a repeat of a forgotten one creates a new Event: nothing is lost)."""
        live = [(k, s) for k, s in self._series.items() if now - s.recorded < SERIES_WINDOW]
        if len(live) > _PRUNE_AT // 2:
            live.sort(key=lambda kv: kv[1].recorded)
            live = live[len(live) - _PRUNE_AT // 2 :]
        self._series = dict(live)
