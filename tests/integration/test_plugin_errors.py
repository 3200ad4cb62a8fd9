"""A plugin that raises, at each extension point in turn: lasched reports it and goes on.

The policy is one for every point: the exception is logged with its
traceback, counted in ``lasched_plugin_errors_total{plugin,extension_point}``,
and the pod's attempt ends as an error naming the plugin (a FailedScheduling
Event), retried with backoff. Other pods keep binding; the scheduler never
stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import (
    SKIP,
    SUCCESS,
    Code,
    CycleState,
    PostFilterResult,
    Status,
    unschedulable,
)
from lasched.framework.runtime import Framework
from lasched.kube.client import KubeClient
from lasched.model.pod import PodInfo
from lasched.scheduler import Scheduler
from lasched.settings import LeaderElectionSettings, Settings
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster
from tests.integration.helpers import events_for, eventually, pod, pods

POINTS = [
    "PreEnqueue",
    "PreFilter",
    "Filter",
    "PostFilter",
    "PreScore",
    "Score",
    "Reserve",
    "Unreserve",
    "Permit",
    "Bind",
]


class Exploding:
    """Raises at one extension point, for pods labelled ``explode=<point>`` only."""

    name = "Exploding"

    def _boom(self, pod: PodInfo, point: str) -> None:
        if pod.labels.get("explode") == point:
            raise RuntimeError(f"boom at {point}")

    def pre_enqueue(self, pod: PodInfo) -> Status:
        self._boom(pod, "PreEnqueue")
        return SUCCESS

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        self._boom(pod, "PreFilter")
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        self._boom(pod, "Filter")
        return SUCCESS

    def post_filter(
        self, state: CycleState, pod: PodInfo, statuses: dict[str, Status]
    ) -> tuple[PostFilterResult | None, Status]:
        self._boom(pod, "PostFilter")
        return None, Status(Code.UNSCHEDULABLE)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        self._boom(pod, "PreScore")
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        self._boom(pod, "Score")
        return 0

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        return None

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        self._boom(pod, "Reserve")
        return SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        self._boom(pod, "Unreserve")

    def permit(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        self._boom(pod, "Permit")
        if pod.labels.get("explode") == "Unreserve":
            return unschedulable("rejected at Permit, so that Unreserve runs")
        return SUCCESS

    async def bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        self._boom(pod, "Bind")
        return SKIP


def install(fw: Framework, p: Exploding) -> None:
    """Place the plugin at every extension point, first where order decides."""
    fw.pre_enqueue = (*fw.pre_enqueue, p)
    fw.pre_filters = (*fw.pre_filters, p)
    fw.filters = (*fw.filters, p)
    fw.post_filters = (p, *fw.post_filters)
    fw.pre_scores = (*fw.pre_scores, p)
    fw.scores = (*fw.scores, (p, 1))
    fw.reserves = (*fw.reserves, p)
    fw.permits = (*fw.permits, p)
    fw.binders = (p, *fw.binders)


@pytest.fixture
async def scheduler(cluster: DevCluster) -> AsyncIterator[Scheduler]:
    """lasched's Scheduler with the Exploding plugin in its profile, running."""
    async with await cluster.client() as client:
        sched = Scheduler(
            client, Settings(leader_election=LeaderElectionSettings(leader_elect=False))
        )
        install(sched.profiles["lasched"].framework, Exploding())
        task = asyncio.create_task(sched.run(), name="scheduler-under-test")
        yield sched
        assert not task.done(), f"the scheduler stopped: {task}"
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def errors(point: str) -> float:
    sample = REGISTRY.get_sample_value(
        "lasched_plugin_errors_total", {"plugin": "Exploding", "extension_point": point}
    )
    return sample or 0.0


@pytest.mark.parametrize("point", POINTS)
async def test_a_plugin_raising_is_reported_and_others_keep_binding(
    kc: KubeClient, namespace: str, scheduler: Scheduler, point: str
) -> None:
    """The raising plugin's pod is not bound and its error names the plugin; three other
    pods created after it bind; the error is counted at its extension point."""
    pool = f"boom-{point.lower()}"
    specs = nodes.uniform(2, prefix=pool, cpu="4", labels={"pool": pool})
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, [s.name for s in specs])
    before = errors(point)
    # A shape of its own (no batch with the others); fitting nowhere for PostFilter to run.
    cpu = "100" if point == "PostFilter" else "150m"
    bomb: dict[str, Any] = pod("bomb", cpu=cpu, nodeSelector={"pool": pool})
    bomb["metadata"]["labels"] = {"explode": point}
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", bomb)
    for i in range(3):
        body = pod(f"ok-{i}", nodeSelector={"pool": pool})
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)

    async def others_bound() -> bool:
        listing = await pods(kc, namespace)
        return all(listing[f"ok-{i}"]["spec"].get("nodeName") for i in range(3))

    await eventually(others_bound, timeout=30)
    await eventually(lambda: _counted(point, before), timeout=10)
    assert not (await pods(kc, namespace))["bomb"]["spec"].get("nodeName")
    if point in ("PreEnqueue", "Unreserve"):
        return  # gated (as kube-scheduler does), or rejected at Permit: no error Event
    notes = await eventually(lambda: _failed_notes(kc, namespace), timeout=10)
    assert any("Exploding" in n and f"boom at {point}" in n for n in notes), notes


async def _counted(point: str, before: float) -> bool:
    return errors(point) > before


async def _failed_notes(kc: KubeClient, namespace: str) -> list[str]:
    return [
        str(e.get("note", ""))
        for e in await events_for(kc, namespace, "bomb")
        if e["reason"] == "FailedScheduling"
    ]
