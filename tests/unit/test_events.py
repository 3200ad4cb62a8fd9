"""EventRecorder: concurrent writes, repeats folded into series, a bounded queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY

from lasched.kube.binding import now_micro
from lasched.kube.client import KubeClient
from lasched.kube.events import EventRecorder, ObjectRef, fit_note


class BlockingClient:
    """Every write waits until released; counts how many wait at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.notes: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.patches: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    async def _wait(self) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        await self._wait()
        self.notes.append(body["note"])
        self.bodies.append(body)
        return {}

    async def patch(self, path: str, body: Any) -> dict[str, Any]:
        await self._wait()
        self.patches.append(body)
        return {}


@contextlib.asynccontextmanager
async def writing(rec: EventRecorder) -> AsyncIterator[None]:
    """The recorder's writers run for the block."""
    task = asyncio.create_task(rec.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def pod(i: int) -> ObjectRef:
    return ObjectRef(kind="Pod", namespace="ns", name=f"p-{i}", uid=f"uid-{i}")


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_writes_run_concurrently_up_to_the_limit() -> None:
    """A burst is written CONCURRENCY at a time, not one by one, and every event lands."""
    client = BlockingClient()
    rec = EventRecorder(cast(KubeClient, client), controller="lasched", concurrency=8)
    async with writing(rec):
        for i in range(100):
            rec.record(pod(i), type="Normal", reason="Scheduled", action="Binding", note=f"n{i}")
        await _settle()
        assert client.in_flight == 8
        client.release.set()
        await rec.flush(timeout=5)
        assert client.most_in_flight == 8
        assert sorted(client.notes) == sorted(f"n{i}" for i in range(100))
        assert rec.written == 100


async def test_event_time_is_the_time_of_recording_not_of_writing() -> None:
    """A backlog delays the write, not the eventTime the Event carries."""
    client = BlockingClient()
    rec = EventRecorder(cast(KubeClient, client), controller="lasched", concurrency=1)
    async with writing(rec):
        rec.record(pod(0), type="Normal", reason="Scheduled", action="Binding", note="n0")
        before = now_micro()
        await asyncio.sleep(0.05)
        client.release.set()
        await rec.flush(timeout=5)
        (body,) = client.bodies
        assert body["eventTime"] <= before


async def test_repeats_fold_into_one_series_with_one_write_in_flight() -> None:
    """Fifty repeats while the create is in flight: one create, then one PATCH with the count."""
    client = BlockingClient()
    rec = EventRecorder(cast(KubeClient, client), controller="lasched", concurrency=4)
    async with writing(rec):
        await _settle()  # the writers wait for work
        for i in range(50):
            rec.record(pod(1), type="Warning", reason="FailedScheduling", action="Scheduling",
                       note="0/3 nodes are available")  # fmt: skip
            if i == 0:
                await _settle()  # the create is in flight with a count of 1
        await _settle()
        assert client.in_flight == 1  # one write per series at a time
        client.release.set()
        await rec.flush(timeout=5)
        assert len(client.bodies) == 1
        assert "series" not in client.bodies[0]  # created at the first recording
        assert [p["series"]["count"] for p in client.patches] == [50]
        rec.record(pod(1), type="Warning", reason="FailedScheduling", action="Scheduling",
                   note="0/3 nodes are available")  # fmt: skip
        await rec.flush(timeout=5)
        assert [p["series"]["count"] for p in client.patches] == [50, 51]
        # Another note is another Event.
        rec.record(pod(1), type="Warning", reason="FailedScheduling", action="Scheduling",
                   note="0/4 nodes are available")  # fmt: skip
        await rec.flush(timeout=5)
        assert len(client.bodies) == 2


async def test_a_full_queue_drops_and_counts() -> None:
    """Past the queue's bound an event is dropped and counted, never awaited."""
    client = BlockingClient()
    rec = EventRecorder(cast(KubeClient, client), controller="lasched", queue_size=10,
                        concurrency=2)  # fmt: skip
    dropped_before = _dropped_total()
    async with writing(rec):
        await _settle()
        for i in range(20):
            rec.record(pod(i), type="Normal", reason="Scheduled", action="Binding", note=f"n{i}")
        assert rec.dropped == 10  # 10 queued; the writers had not taken any yet
        assert _dropped_total() - dropped_before == 10
        client.release.set()
        await rec.flush(timeout=5)
        assert len(client.notes) == 10
        # A dropped event is not remembered as written: recorded again, it is created.
        rec.record(pod(15), type="Normal", reason="Scheduled", action="Binding", note="n15")
        await rec.flush(timeout=5)
        assert "n15" in client.notes


def _dropped_total() -> float:
    value = REGISTRY.get_sample_value("lasched_events_dropped_total")
    return value or 0.0


@pytest.mark.parametrize(
    ("note", "kept"),
    [
        pytest.param("a" * 1024, "a" * 1024, id="ascii-at-the-limit"),
        pytest.param("a" * 2000, "a" * 1021 + "…", id="ascii-over"),
        pytest.param("é" * 600, "é" * 510 + "…", id="two-byte-characters"),
        pytest.param("a" + "😀" * 300, "a" + "😀" * 255 + "…", id="four-byte-cut-inside"),
        pytest.param("€" * 341, "€" * 341, id="three-byte-exactly-under"),
        pytest.param("x\ud800y", "x?y", id="lone-surrogate"),
    ],
)
def test_fit_note_counts_utf8_bytes_and_cuts_on_a_character(note: str, kept: str) -> None:
    """The apiserver limits notes to 1024 bytes: non-ASCII text is cut by bytes, whole."""
    fitted = fit_note(note)
    assert fitted == kept
    assert len(fitted.encode()) <= 1024


async def test_record_writes_a_non_ascii_note_within_1024_bytes() -> None:
    """A Warning of 700 two-byte characters (1,400 bytes) is written cut to 1,024 bytes."""
    client = BlockingClient()
    client.release.set()
    rec = EventRecorder(cast(KubeClient, client), controller="lasched")
    async with writing(rec):
        note = "annotation lasched.io/max-rtt=" + "é" * 700
        rec.record(pod(0), type="Warning", reason="InvalidLatencyRequirement", action="Scheduling",
                   note=note)  # fmt: skip
        await rec.flush(timeout=5)
        (written,) = client.notes
        assert len(written.encode()) <= 1024
        assert written.endswith("é…")
        assert note.startswith(written[:-1])
