"""A pod group declared without a size takes it from its controller, on the real control plane.

Each controller here creates its pods slowly (more than the 2 s lull apart):
the group still binds all-or-nothing, and the Scheduled events say where its
size came from.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, pod, pods

PAUSE = "registry.k8s.io/pause:3.10"


def container() -> dict[str, Any]:
    return {
        "name": "main",
        "image": PAUSE,
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
    }


async def make_nodes(kc: KubeClient, prefix: str) -> None:
    specs = nodes.uniform(3, prefix=prefix, cpu="4", labels={"pool": prefix})
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, [s.name for s in specs])


async def bound(kc: KubeClient, namespace: str) -> dict[str, str]:
    return {n: p["spec"].get("nodeName", "") for n, p in (await pods(kc, namespace)).items()}


async def scheduled_note(kc: KubeClient, namespace: str, name: str) -> str:
    evs = [e for e in await events_for(kc, namespace, name) if e["reason"] == "Scheduled"]
    return str(evs[0]["note"]) if evs else ""


async def test_a_jobs_slow_pods_bind_all_or_nothing(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A Job of parallelism 3 whose controller creates its pods 4 s apart: nothing binds
    until the third exists, then all three do; the event names the Job's parallelism."""
    await make_nodes(kc, "gjob")
    await run_scheduler()
    # Managed by another controller (as a JobSet or Kueue would): the Job controller
    # leaves it alone, and this test creates its pods, slowly.
    job = await kc.post(
        f"/apis/batch/v1/namespaces/{namespace}/jobs",
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "train"},
            "spec": {
                "parallelism": 3,
                "completions": 3,
                "managedBy": "example.com/slow-controller",
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [container()]},
                },
            },
        },
    )
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": "train",
        "uid": job["metadata"]["uid"],
        "controller": True,
    }

    async def create(i: int) -> None:
        body = pod(f"train-{i}")
        body["metadata"]["annotations"] = {"pod-group": "train"}
        body["metadata"]["ownerReferences"] = [owner]
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)

    await create(0)
    await create(1)
    await asyncio.sleep(4.0)  # twice the lull that used to settle the group at 2
    assert set((await bound(kc, namespace)).values()) == {""}
    await create(2)

    async def all_bound() -> bool:
        got = await bound(kc, namespace)
        return len(got) == 3 and all(got.values())

    await eventually(all_bound)
    note = await eventually(lambda: scheduled_note(kc, namespace, "train-2"))
    assert f"size 3 from Job {namespace}/train's parallelism" in note


async def test_a_replicasets_slow_pods_bind_all_or_nothing(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A ReplicaSet of 3 whose third pod the controller can create only later (a pod
    quota of 2, then 3): the first two wait for it, then all three bind."""
    await make_nodes(kc, "grs")
    quota_path = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await kc.post(
        quota_path,
        {"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "2"}}},
    )

    async def quota_counted() -> bool:
        q = await kc.get(f"{quota_path}/pods")
        return bool(q.get("status", {}).get("hard"))

    await eventually(quota_counted)
    await run_scheduler()
    await kc.post(
        f"/apis/apps/v1/namespaces/{namespace}/replicasets",
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}, "annotations": {"pod-group": "web"}},
                    "spec": {
                        "schedulerName": "lasched",
                        "terminationGracePeriodSeconds": 0,
                        "containers": [container()],
                    },
                },
            },
        },
    )

    async def two_exist() -> bool:
        return len(await pods(kc, namespace)) == 2

    await eventually(two_exist)
    await asyncio.sleep(4.0)
    got = await bound(kc, namespace)
    assert len(got) == 2 and set(got.values()) == {""}, got
    await kc.patch(f"{quota_path}/pods", {"spec": {"hard": {"pods": "3"}}})

    async def all_bound() -> dict[str, str]:
        got = await bound(kc, namespace)
        return got if len(got) == 3 and all(got.values()) else {}

    names = await eventually(all_bound, timeout=60)
    for name in names:

        async def note(name: str = name) -> str:
            return await scheduled_note(kc, namespace, name)

        assert f"size 3 from ReplicaSet {namespace}/web's replicas" in await eventually(note)
