"""The queue's order on the real control plane: FIFO within a priority across retries,
and a starving pod that binds behind an endless stream of higher-priority pods."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
from dataclasses import replace
from typing import Any

import pytest

from lasched.kube.client import ApiError, KubeClient
from lasched.settings import Settings
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, pod, pods


def in_pool(name: str, pool: str, **spec: Any) -> dict[str, Any]:
    return pod(name, cpu="1", memory="128Mi", nodeSelector={"pool": pool}, **spec)


async def failures(kc: KubeClient, namespace: str, name: str) -> int:
    """FailedScheduling verdicts written for the pod (a repeated one counts in its series)."""
    return sum(
        int((e.get("series") or {}).get("count", 1))
        for e in await events_for(kc, namespace, name)
        if e["reason"] == "FailedScheduling"
    )


async def bound(kc: KubeClient, namespace: str, names: list[str]) -> list[str]:
    current = await pods(kc, namespace)
    return [n for n in names if n in current and current[n]["spec"].get("nodeName")]


async def delete_pod(kc: KubeClient, namespace: str, name: str) -> None:
    await kc.delete(f"/api/v1/namespaces/{namespace}/pods/{name}", {"gracePeriodSeconds": 0})


async def test_same_priority_pods_bind_in_creation_order(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Failed twice or more while the node is full, q1, q2, q3 bind in that order as room frees."""
    await nodes.create_nodes(kc, [nodes.NodeSpec(name="fifo-0", cpu="3", labels={"pool": "fifo"})])
    await nodes.wait_ready(kc, ["fifo-0"])
    fillers = ["filler-0", "filler-1", "filler-2"]
    for name in fillers:  # placed by hand, as another scheduler would
        body = in_pool(name, "fifo", nodeName="fifo-0", scheduler="elsewhere")
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
    # Shorter backoffs than the defaults only to keep the test short.
    base = Settings()
    settings = replace(
        base, queue=replace(base.queue, initial_backoff_seconds=0.5, max_backoff_seconds=2.0)
    )
    await run_scheduler(settings)
    waiting = ["q1", "q2", "q3"]
    for name in waiting:
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", in_pool(name, "fifo"))
        await asyncio.sleep(0.2)

    async def failed(times: int) -> bool:
        return all([await failures(kc, namespace, n) >= times for n in waiting])

    await eventually(lambda: failed(1))
    # A pod deleted that frees no CPU: every waiting pod is tried, and fails, again. (A node
    # label change would not retry them: it cannot help a pod that lacks room.)
    passer_by = pod("passer-by", cpu="0", memory="0", nodeName="fifo-0", scheduler="elsewhere")
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", passer_by)
    await delete_pod(kc, namespace, "passer-by")
    await eventually(lambda: failed(2))

    order: list[str] = []
    for filler in fillers:
        # Room goes to the pods ready when it frees: let the last backoff end first.
        await asyncio.sleep(settings.queue.max_backoff_seconds * 1.1 + 0.5)
        await delete_pod(kc, namespace, filler)
        now_bound = await eventually(
            functools.partial(_bound_exactly, kc, namespace, waiting, len(order) + 1)
        )
        order += [n for n in now_bound if n not in order]
    assert order == ["q1", "q2", "q3"]


async def _bound_exactly(kc: KubeClient, namespace: str, names: list[str], n: int) -> list[str]:
    got = await bound(kc, namespace, names)
    assert len(got) <= n, f"more pods bound than room was freed for: {got}"
    return got if len(got) == n else []


STARVATION = 5.0
# The stream: every tick two new pods arrive and, a tick later, one running pod
# completes. A tick longer than the initial backoff (1 s) means the pods that
# arrived a tick before are out of their first backoff when room frees, so the
# stream is always ahead of "low" until it starves; at 1 s, whether they were
# out of it yet was a race that "low" sometimes won.
TICK = 1.5


@pytest.mark.parametrize(
    "short_backoff", [False, True], ids=["default-backoff", "every-pod-ready-at-each-event"]
)
async def test_a_low_priority_pod_binds_behind_an_endless_stream(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, short_backoff: bool
) -> None:
    """Once starving, it takes the next room freed from a stream of pods 1000 above it."""
    pool = f"stream-{int(short_backoff)}"
    node = f"{pool}-0"
    await nodes.create_nodes(kc, [nodes.NodeSpec(name=node, cpu="2", labels={"pool": pool})])
    await nodes.wait_ready(kc, [node])
    with contextlib.suppress(ApiError):  # one class for the module's cluster
        await kc.post(
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": "stream-never-preempts"},
                "value": 1000,
                "preemptionPolicy": "Never",
            },
        )
    high = {"priorityClassName": "stream-never-preempts"}
    running = ["run-0", "run-1"]
    for name in running:  # the node is full of stream pods when "low" arrives
        body = in_pool(name, pool, nodeName=node, scheduler="elsewhere", **high)
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
    queue = replace(Settings().queue, aging_starvation_seconds=STARVATION)
    if short_backoff:
        # Every pod waiting is ready whenever room frees: the order alone decides, and
        # before "low" starves a stream pod is always ahead of it.
        queue = replace(queue, initial_backoff_seconds=0.05, max_backoff_seconds=0.1)
    await run_scheduler(replace(Settings(), queue=queue))
    low = in_pool("low", pool)
    low["metadata"]["annotations"] = {"priority": "0"}
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", low)
    created = time.monotonic()

    arrivals = itertools.count()
    took_room: list[str] = []  # stream pods bound after "low" arrived

    async def stream() -> None:
        while True:
            for _ in range(2):
                name = f"high-{next(arrivals)}"
                await kc.post(f"/api/v1/namespaces/{namespace}/pods", in_pool(name, pool, **high))
            await asyncio.sleep(TICK)
            current = await pods(kc, namespace)
            for n, p in current.items():
                if n.startswith("high-") and p["spec"].get("nodeName") and n not in took_room:
                    took_room.append(n)
                    running.append(n)
            if running:  # a running stream pod completes: its room frees
                await delete_pod(kc, namespace, running.pop(0))

    feeder = asyncio.create_task(stream(), name="high-priority-stream")
    try:
        await eventually(lambda: bound(kc, namespace, ["low"]), timeout=STARVATION + 15)
        waited = time.monotonic() - created
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feeder
    # The bound: the starvation age, then the next room freed (one tick), plus the
    # informers' and the bind's delays.
    assert waited <= STARVATION + TICK + 3.0, waited
    assert len(took_room) >= 3, f"the stream must have taken the room meanwhile: {took_room}"
    if short_backoff:
        assert waited >= STARVATION, f"bound after {waited:.1f} s, before it was starving"
    assert (await pods(kc, namespace))["low"]["spec"]["nodeName"] == node
