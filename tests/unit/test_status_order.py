"""A pod's status writes reach the apiserver in order, and before its binding."""

from __future__ import annotations

import asyncio

from kubernetes_asyncio.client import Configuration

from lasched.kube.client import KubeClient
from lasched.scheduler import Scheduler
from lasched.settings import Settings
from tests.unit.factories import make_pod


async def test_binding_waits_for_the_pods_status_writes() -> None:
    """A failure's status (PodScheduled=False, nominated node) is written before a later bind.

    Arriving after the binding, it would mark a bound pod unschedulable, and the
    apiserver refuses a nominated node on a bound pod.
    """
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        sched = Scheduler(client, Settings())
        pod = make_pod("preemptor")
        gate, order = asyncio.Event(), []

        async def write(what: str, *, slow: bool) -> None:
            if slow:
                await gate.wait()
            order.append(what)

        sched._pod_status(pod, write("unschedulable", slow=True), name="first")
        sched._pod_status(pod, write("nominated", slow=False), name="second")
        bind = asyncio.create_task(sched._pod_status_written(pod.key))
        await asyncio.sleep(0.05)
        assert not bind.done(), "the bind must wait for the pending status writes"
        assert order == []  # the second write waits for the first
        gate.set()
        await asyncio.wait_for(bind, 1)
        assert order == ["unschedulable", "nominated"]
        assert sched._pod_status_writes == {}  # forgotten once written
        await asyncio.wait_for(sched._pod_status_written(pod.key), 0.1)  # nothing pending
    finally:
        await client.close()
