"""When each pod appeared, was bound and was reported, as watches on the apiserver see it.

The scheduler's own logs are never used: one watch connection, opened by the
benchmark, timestamps every pod's ADDED event and the first event that shows a
``spec.nodeName``. Both stamps come through the same stream, so their
difference is creation-to-bound latency as observed at the apiserver.

With ``events=True`` a second watch, on the namespace's Events, stamps the
first ``Scheduled`` Event of each pod written after the timeline starts (one
about an earlier pod of the same name, by UID, is left out). It watches the core/v1 view, which
shows every Event whichever API wrote it (kube-scheduler and lasched write
events.k8s.io/v1 Events; the apiserver serves both from one store). A pod is
**done** when both its binding and its ``Scheduled`` Event are written: the
scheduler's whole work for it, as a user of ``kubectl describe`` sees it.

A pod seen bound to a second node, or named in ``Scheduled`` Events to two
different nodes, is recorded in :attr:`Timeline.rebound` for the verifier.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

from lasched.kube.client import KubeClient

_Handler = Callable[[str | None, dict[str, Any]], None]


class Timeline:
    def __init__(self, kc: KubeClient, namespace: str, *, events: bool = False) -> None:
        self._kc = kc
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self.nodes: dict[str, str] = {}
        self.deleted: dict[str, float] = {}  # first seen terminating or gone
        self.events = events
        self.scheduled: dict[str, float] = {}  # first Scheduled Event per pod
        self.reported: dict[str, list[str]] = {}  # nodes named by each pod's Scheduled Events
        self.rebound: dict[str, list[str]] = {}  # pods seen on, or reported to, two nodes
        self.uids: dict[str, str] = {}
        self._seen_events: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        # What exists now (the cluster's objects, the pods about to be measured)
        # lives through the measurement: frozen, it is out of the cyclic
        # collector's full passes, which otherwise pause this loop for 100 ms
        # and more and shift the stamps of every pod in flight.
        gc.freeze()
        pods = f"/api/v1/namespaces/{self.namespace}/pods"
        listing = await self._kc.get(pods)
        now = time.monotonic()
        for p in listing["items"]:
            self._see(p, now)
        watches = [(pods, listing["metadata"]["resourceVersion"], self._pod_event)]
        if self.events:
            # Events already written are about earlier pods (this timeline starts before
            # its pods are scheduled): only those written from now on are watched.
            path = f"/api/v1/namespaces/{self.namespace}/events"
            listing = await self._kc.get(path, limit=1)
            watches.append((path, listing["metadata"]["resourceVersion"], self._event_event))
        for path, rv, handle in watches:
            self._tasks.append(
                asyncio.create_task(self._watch(path, rv, handle), name=f"timeline-{path}")
            )

    async def _watch(self, path: str, rv: str, handle: _Handler) -> None:
        while True:
            params: dict[str, str | int | bool] = {
                "watch": True,
                "resourceVersion": rv,
                "allowWatchBookmarks": True,
            }
            async for ev in self._kc.stream(path, params=params):
                obj = ev.get("object") or {}
                rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                handle(ev.get("type"), obj)

    def _pod_event(self, kind: str | None, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._see(obj, time.monotonic())
        elif kind == "DELETED":
            name = str((obj.get("metadata") or {}).get("name", ""))
            self.deleted.setdefault(name, time.monotonic())

    def _event_event(self, kind: str | None, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            self._see_event(obj, time.monotonic())

    def _see(self, pod: dict[str, object], now: float) -> None:
        meta = pod["metadata"]
        spec = pod["spec"]
        assert isinstance(meta, dict) and isinstance(spec, dict)
        name = str(meta["name"])
        self.added.setdefault(name, now)
        self.uids.setdefault(name, str(meta.get("uid", "")))
        if meta.get("deletionTimestamp"):
            self.deleted.setdefault(name, now)
        node = spec.get("nodeName")
        if not node:
            return
        if name not in self.bound:
            self.bound[name] = now
            self.nodes[name] = str(node)
            self._changed.set()
        elif self.nodes[name] != node:
            self.rebound.setdefault(name, [self.nodes[name]]).append(str(node))

    def _see_event(self, ev: dict[str, Any], now: float) -> None:
        if ev.get("reason") != "Scheduled":
            return
        uid = str((ev.get("metadata") or {}).get("uid", ""))
        if uid in self._seen_events:
            return  # the same Event again (a series update)
        obj = ev.get("involvedObject") or ev.get("regarding") or {}
        if obj.get("kind") != "Pod":
            return
        name = str(obj.get("name", ""))
        if obj.get("uid") and self.uids.get(name, obj["uid"]) != obj["uid"]:
            return  # about an earlier pod of the same name
        self._seen_events.add(uid)
        text = str(ev.get("message") or ev.get("note") or "")
        # "Successfully assigned <namespace>/<pod> to <node>", from both schedulers.
        node = text.rsplit(" to ", 1)[1].strip() if " to " in text else ""
        nodes = self.reported.setdefault(name, [])
        nodes.append(node)
        if node and len({n for n in nodes if n}) > 1:
            self.rebound[name] = list(nodes)
        if name not in self.scheduled:
            self.scheduled[name] = now
            self._changed.set()

    def done(self, name: str) -> float | None:
        """When both the binding and the ``Scheduled`` Event of ``name`` were seen."""
        bound, reported = self.bound.get(name), self.scheduled.get(name)
        if bound is None or reported is None:
            return None
        return max(bound, reported)

    def conflicts(self) -> dict[str, list[str]]:
        """Pods seen on two nodes, or reported (``Scheduled``) to a node other than the one
        they are bound to: name -> every node involved, the bound one first."""
        out = {name: list(nodes) for name, nodes in self.rebound.items()}
        for name, reported in self.reported.items():
            bound = self.nodes.get(name)
            if bound and any(n and n != bound for n in reported):
                out.setdefault(name, [bound, *reported])
        return out

    def duplicate_events(self) -> int:
        """Pods with more than one ``Scheduled`` Event."""
        return sum(1 for nodes in self.reported.values() if len(nodes) > 1)

    def stamps(self) -> dict[str, float]:
        """``namespace/name`` -> when it was seen bound (for the verifier)."""
        return {f"{self.namespace}/{n}": t for n, t in self.bound.items()}

    async def wait_bound(self, count: int, *, timeout: float) -> bool:
        """True once ``count`` pods are bound; False on timeout."""
        return await self._wait(lambda: len(self.bound) >= count, timeout)

    async def wait_bound_names(self, names: Iterable[str], *, timeout: float) -> bool:
        """True once every pod of ``names`` is bound; False on timeout."""
        return await self._wait(self._left(names, lambda n: n in self.bound), timeout)

    async def wait_done(self, names: Iterable[str], *, timeout: float) -> bool:
        """True once every pod of ``names`` is done (bound and reported); False on timeout."""
        return await self._wait(self._left(names, lambda n: self.done(n) is not None), timeout)

    async def wait_reported(self, names: Iterable[str], *, timeout: float) -> bool:
        """True once every pod of ``names`` has its ``Scheduled`` Event; False on timeout."""
        return await self._wait(self._left(names, lambda n: n in self.scheduled), timeout)

    @staticmethod
    def _left(names: Iterable[str], ok: Callable[[str], bool]) -> Callable[[], bool]:
        """A test that is true once ``ok`` holds for every name (each checked until it does)."""
        pending = set(names)

        def ready() -> bool:
            pending.difference_update([n for n in pending if ok(n)])
            return not pending

        return ready

    async def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not ready():
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
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
