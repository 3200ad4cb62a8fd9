"""EventRecorder under a failing apiserver: events may be lost, the writer never is."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import aiohttp

from lasched.kube.client import KubeClient
from lasched.kube.events import EventRecorder, ObjectRef


class FlakyClient:
    """Fails the first POSTs the way a restarting apiserver does, then accepts."""

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.notes: list[str] = []

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        if self.failures:
            raise self.failures.pop(0)
        self.notes.append(body["note"])
        return {}


async def test_transport_failures_lose_the_event_not_the_writer() -> None:
    """ServerDisconnectedError, refused connections and timeouts end no worker."""
    client = FlakyClient(
        [
            aiohttp.ServerDisconnectedError(),
            aiohttp.ClientConnectionError("refused"),
            TimeoutError(),
            RuntimeError("a bug in a write"),
        ]
    )
    rec = EventRecorder(cast(KubeClient, client), controller="lasched")
    task = asyncio.create_task(rec.run())
    try:
        for i in range(6):
            ref = ObjectRef(kind="Pod", namespace="ns", name=f"p-{i}", uid=f"uid-{i}")
            rec.record(ref, type="Normal", reason="Scheduled", action="Binding", note=f"n{i}")
        await rec.flush(timeout=5)
        assert sorted(client.notes) == ["n4", "n5"]
        assert not task.done()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
