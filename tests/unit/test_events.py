"""EventRecorder: one writer in order, more only while a backlog builds."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import pytest

from lasched.kube.client import KubeClient
from lasched.kube.events import BACKLOG_PER_WORKER, EventRecorder, ObjectRef, fit_note


class BlockingClient:
    """Every POST waits until released; counts how many wait at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most_in_flight = 0
        self.notes: list[str] = []
        self.release = asyncio.Event()

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.release.wait()
        finally:
            self.in_flight -= 1
        self.notes.append(body["note"])
        return {}


def pod(i: int) -> ObjectRef:
    return ObjectRef(kind="Pod", namespace="ns", name=f"p-{i}", uid=f"uid-{i}")


async def _settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


async def test_one_writer_in_order_without_a_backlog() -> None:
    """A few queued events are written by one worker, one at a time, in order."""
    client = BlockingClient()
    rec = EventRecorder(cast(KubeClient, client), controller="lasched")
    task = asyncio.create_task(rec.run())
    try:
        for i in range(20):
            rec.record(pod(i), type="Normal", reason="Scheduled", action="Binding", note=f"n{i}")
        await _settle()
        assert client.in_flight == 1
        client.release.set()
        await rec.flush(timeout=5)
        assert client.most_in_flight == 1
        assert client.notes == [f"n{i}" for i in range(20)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_helpers_join_while_a_backlog_builds() -> None:
    """Beyond BACKLOG_PER_WORKER queued events a second writer joins, beyond twice a third."""
    client = BlockingClient()
    rec = EventRecorder(cast(KubeClient, client), controller="lasched", workers=4)
    task = asyncio.create_task(rec.run())
    try:
        for i in range(2 * BACKLOG_PER_WORKER + 10):
            rec.record(pod(i), type="Normal", reason="Scheduled", action="Binding", note=f"n{i}")
        await _settle()
        assert client.in_flight == 3
        client.release.set()
        await rec.flush(timeout=5)
        assert sorted(client.notes) == sorted(f"n{i}" for i in range(2 * BACKLOG_PER_WORKER + 10))
        assert rec.written == 2 * BACKLOG_PER_WORKER + 10
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
    task = asyncio.create_task(rec.run())
    try:
        note = "annotation lasched.io/max-rtt=" + "é" * 700
        rec.record(pod(0), type="Warning", reason="InvalidLatencyRequirement", action="Scheduling",
                   note=note)  # fmt: skip
        await rec.flush(timeout=5)
        (written,) = client.notes
        assert len(written.encode()) <= 1024
        assert written.endswith("é…")
        assert note.startswith(written[:-1])
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
