"""The site task: on the leader, sites recomputed from RTTs and written as node labels.

When ``latency.topology.enabled`` is set, the leader recomputes the inferred
topology (:mod:`lasched.latency.inference`) when RTTs changed (the agent hub's
and Goldpinger's coalesced ``on_change``), when a hold ends, and once after it
starts leading; never more often than once per ``intervalSeconds``. A
follower recomputes nothing and forgets what it held: the next leader starts
from the nodes' labels, so the names survive a change of leader.

Cost: reading the fresh pairs is one step per measured pair, done in slices
of :data:`SLICE` that yield to the loop between them (no slice holds the loop
for long); clustering is O(n²). At 1,000 nodes measuring each other (a
million pairs) a recompute costs about a second of CPU in slices of tens of
milliseconds, and about 40 MB while it runs; so at most once per interval.

With ``writeLabels``, each node whose place differs from its
``topology.lasched.io/*`` labels gets one merge patch of those labels and no
other (``label_patch``), beside the loop, one node at a time; a failed patch
is logged, counted and tried again at the next recompute, which then comes
after one interval. Turning ``writeLabels`` off leaves the labels as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

import aiohttp

from lasched import metrics
from lasched.kube.client import ApiError
from lasched.latency.cache import LatencyCache
from lasched.latency.inference import Pending, Place, TopologyInference, label_patch
from lasched.latency.sites import RttMatrix
from lasched.model.node import Node
from lasched.settings import TopologySettings

log = logging.getLogger(__name__)

SLICE = 20_000
"""Pairs read between two yields to the loop."""

PatchLabels = Callable[[str, Mapping[str, str | None]], Awaitable[None]]
"""Merge-patch a node's labels (None removes one); raises ApiError when refused."""


class SiteTask:
    """Recomputes the inferred topology on the leader and writes its labels (see module)."""

    def __init__(
        self,
        settings: TopologySettings,
        *,
        latency: LatencyCache,
        nodes: Callable[[], Iterable[Node]],
        patch: PatchLabels | None,
        is_cloud: Callable[[Node], bool],
        leading: Callable[[], bool],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """``patch`` None: labels are not written (``writeLabels`` off); ``is_cloud``: the
        node is declared a cloud node (``kubernetes.io/role=cloud``)."""
        self.settings = settings
        self.inference = TopologyInference(
            layers=settings.layers, hold_seconds=settings.hold_seconds
        )
        self._latency = latency
        self._nodes = nodes
        self._patch = patch
        self._is_cloud = is_cloud
        self._leading = leading
        self._clock = clock
        self._sleep = sleep
        self._changed = asyncio.Event()
        self._changed.set()  # the first pass runs at once
        self._retry = False

    def changed(self) -> None:
        """RTTs changed: recompute (after the current interval)."""
        self._changed.set()

    async def run(self) -> None:
        """Passes until cancelled; cancelling is safe (a patch sent may still land)."""
        was_leading = False
        while True:
            leading = self._leading()
            if leading and not was_leading:
                self._changed.set()  # a new term starts from the labels
            was_leading = leading
            if not leading:
                self.inference.reset()
            elif self._changed.is_set() or self._due():
                self._changed.clear()
                await self.pass_once()
            await self._sleep(self.settings.interval_seconds)
            if leading and not self._retry:
                await self._cause()

    def _due(self) -> bool:
        due = self.inference.next_due()
        return due is not None and self._clock() >= due

    async def _cause(self) -> None:
        """Until RTTs change, or the earliest hold ends, or leadership may have changed."""
        due = self.inference.next_due()
        wait = self.settings.interval_seconds * 6 if due is None else due - self._clock()
        # Leadership is looked at every few intervals even when nothing else happens.
        wait = min(max(wait, 0.0), self.settings.interval_seconds * 6)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._changed.wait()

    async def pass_once(self) -> list[str]:
        """One recompute (and label writes); returns the nodes whose place changed."""
        started = time.perf_counter()
        nodes = {n.name: n for n in self._nodes()}
        if self._patch is not None:
            for n in nodes.values():
                self.inference.seed(n.name, n.labels)
        matrix = RttMatrix(nodes)
        pairs = self._latency.fresh_pairs()
        while chunk := list(itertools.islice(pairs, SLICE)):
            matrix.add_all(chunk)
            await asyncio.sleep(0)
        self.inference.forget_except(nodes)
        cloud = {name for name, n in nodes.items() if self._is_cloud(n)}
        moved = self.inference.update(matrix, cloud=cloud.__contains__, now=self._clock())
        metrics.topology_recompute_seconds.observe(time.perf_counter() - started)
        metrics.topology_moves.inc(len(moved))
        places = self.inference.places()
        metrics.topology_sites.set(len({p.site for p in places.values()}))
        if moved:
            log.info("topology: %d node(s) placed or moved: %s", len(moved), ", ".join(moved[:10]))
        self._retry = False
        if self._patch is not None:
            await self._write(nodes)
        return moved

    async def _write(self, nodes: Mapping[str, Node]) -> None:
        assert self._patch is not None
        for name, node in nodes.items():
            wanted = self.inference.labels(name)
            if wanted is None:
                continue
            patch = label_patch(node.labels, wanted)
            if not patch:
                continue
            try:
                await self._patch(name, patch)
            except ApiError as e:
                if e.not_found:
                    continue  # the node is gone
                self._failed(name, str(e))
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                self._failed(name, f"{type(e).__name__}: {e}")
            else:
                metrics.topology_label_writes.labels("ok").inc()

    def _failed(self, node: str, why: str) -> None:
        log.warning("node=%s topology labels not written: %s", node, why)
        metrics.topology_label_writes.labels("failed").inc()
        self._retry = True

    def describe(self, now: float | None = None) -> dict[str, object]:
        """What ``/debug/latency`` shows under ``topology``."""
        now = self._clock() if now is None else now
        layers = [layer.name for layer in self.settings.layers]

        def place(p: Place) -> dict[str, str]:
            return {**dict(zip(layers, p.groups, strict=True)), "tier": p.tier}

        def pending(p: Pending | None) -> dict[str, object] | None:
            if p is None:
                return None
            left = max(p.since + self.inference.hold - now, 0.0)
            return {**place(p.place), "inSeconds": round(left, 3)}

        return {
            "layers": [
                {"name": layer.name, "maxRttMs": layer.max_rtt_ms} for layer in self.settings.layers
            ],
            "holdSeconds": self.settings.hold_seconds,
            "writeLabels": self._patch is not None,
            "nodes": {
                name: {**place(p), "pending": pending(self.inference.pending(name))}
                for name, p in sorted(self.inference.places().items())
            },
        }
