"""When each pod appeared and when it was bound, as a watch on the apiserver sees it.

The scheduler's own logs are never used: one watch connection, opened by the
benchmark, timestamps every pod's ADDED event and the first event that shows a
``spec.nodeName``. Both stamps come through the same stream, so their
difference is creation-to-bound latency as observed at the apiserver.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

from lasched.kube.client import KubeClient


class Timeline:
    def __init__(self, kc: KubeClient, namespace: str) -> None:
        self._kc = kc
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.nodes: dict[str, str] = {}
        self.deleted: dict[str, float] = {}  # first seen terminating or gone
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> None:
        # What exists now (the cluster's objects, the pods about to be measured)
        # lives through the measurement: frozen, it is out of the cyclic
        # collector's full passes, which otherwise pause this loop for 100 ms
        # and more and shift the stamps of every pod in flight.
        gc.freeze()
        listing = await self._kc.get(f"/api/v1/namespaces/{self.namespace}/pods")
        now = time.monotonic()
        for p in listing["items"]:
            self._see(p, now)
        rv = listing["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._watch(rv), name=f"timeline-{self.namespace}")

    async def _watch(self, rv: str) -> None:
        while True:
            params: dict[str, str | int | bool] = {
                "watch": True,
                "resourceVersion": rv,
                "allowWatchBookmarks": True,
            }
            async for ev in self._kc.stream(
                f"/api/v1/namespaces/{self.namespace}/pods", params=params
            ):
                obj = ev.get("object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                kind = ev.get("type")
                if kind in ("ADDED", "MODIFIED"):
                    self._see(obj, time.monotonic())
                elif kind == "DELETED":
                    name = str((obj.get("metadata") or {}).get("name", ""))
                    self.deleted.setdefault(name, time.monotonic())

    def _see(self, pod: dict[str, object], now: float) -> None:
        meta = pod["metadata"]
        spec = pod["spec"]
        assert isinstance(meta, dict) and isinstance(spec, dict)
        name = str(meta["name"])
        self.added.setdefault(name, now)
        if meta.get("deletionTimestamp"):
            self.deleted.setdefault(name, now)
        node = spec.get("nodeName")
        if node and name not in self.bound:
            self.bound[name] = now
            self.nodes[name] = str(node)
            self._changed.set()

    async def wait_bound(self, count: int, *, timeout: float) -> bool:
        """True once ``count`` pods are bound; False on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.bound) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return True

    def latencies(self) -> list[float]:
        """Seconds from ADDED to bound, for every bound pod."""
        return [self.bound[n] - self.added[n] for n in self.bound if n in self.added]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
