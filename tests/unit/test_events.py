"""EventRecorder: one writer in order, more only while a backlog builds."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

from lasched.kube.client import KubeClient
from lasched.kube.events import BACKLOG_PER_WORKER, EventRecorder, ObjectRef


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
