"""Latency pods planned together on the real control plane: the pods a controller will
still create keep the near room they need from a pod that loses little elsewhere.

Three nodes, RTTs streamed by simulated agents (as in test_latency_placement):
node 1 is 4 ms from the users and has room for exactly four web pods; node 2 is
30 ms from them. A StatefulSet of four web pods (its controller creates them
one at a time) prefers the users; a cache pod prefers to be near node 0, 5 ms
from node 1 and 10 ms from node 2, and is created once the first web pod is
bound. Placed greedily, the cache takes node 1 (5 ms against 10) and three web
pods go 30 ms from their users; planned, it goes to node 2 and every web pod
stays near. The same run with ``latency.plan:
false`` shows the greedy placement, so the test fails if the plan does nothing.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import eventually, node_of
from tests.integration.test_latency_placement import latency_pod, simulated_agents


def cluster(prefix: str) -> tuple[list[nodes.NodeSpec], dict[str, dict[str, float | None]]]:
    """Nodes ``<prefix>-0``, ``-1`` and ``-2`` (each case its own: an earlier case's pods may
    still be leaving theirs) and the RTTs their agents measure."""
    a, near, far = (f"{prefix}-{i}" for i in range(3))
    matrix: dict[str, dict[str, float | None]] = {
        a: {near: 5.0, far: 10.0, "users-eu": 50.0},
        near: {a: 5.0, far: 30.0, "users-eu": 4.0},
        far: {a: 10.0, near: 30.0, "users-eu": 30.0},
    }
    specs = [
        nodes.NodeSpec(name=a, memory="512Mi"),
        nodes.NodeSpec(name=near, memory="1Gi"),
        nodes.NodeSpec(name=far, memory="8Gi"),
    ]
    return specs, matrix


async def _statefulset(kc: KubeClient, namespace: str) -> None:
    """Four web pods, created one at a time: each after the one before has been ready for
    3 s (the StatefulSet controller's ordered start with ``minReadySeconds``)."""
    labels = {"app": "web"}
    template = latency_pod(
        "", memory="256Mi", labels=labels, annotations={"lasched.io/prefer-low-rtt": "users-eu"}
    )
    del template["metadata"]["name"]
    await kc.post(
        f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 4,
                "minReadySeconds": 3,
                "serviceName": "web",
                "selector": {"matchLabels": labels},
                "template": template,
            },
        },
    )  # fmt: skip


async def placed_on(kc: KubeClient, namespace: str, name: str) -> str:
    """The pod's node; "" while it is not bound or not created yet."""
    try:
        return await node_of(kc, namespace, name)
    except ApiError as e:
        if e.not_found:
            return ""
        raise


# (latency.plan, where the cache pod goes, web pods placed away from <prefix>-1)
CASES = [(True, 2, 0), (False, 1, 3)]


@pytest.mark.parametrize("case", CASES, ids=["planned", "greedy"])
async def test_a_controllers_pods_to_come_keep_their_near_room(
    kc: KubeClient,
    namespace: str,
    run_scheduler: SchedulerFactory,
    tmp_path: Path,
    case: tuple[bool, int, int],
) -> None:
    plan, cache_on, web_far = case
    prefix = "planned" if plan else "greedy"
    specs, matrix = cluster(prefix)
    async with simulated_agents(
        kc, run_scheduler, tmp_path, specs, matrix, latency={"plan": plan}, measured=True
    ):
        pods = f"/api/v1/namespaces/{namespace}/pods"
        await _statefulset(kc, namespace)
        near = f"{prefix}-1"
        assert await eventually(lambda: placed_on(kc, namespace, "web-0"), timeout=30) == near
        await kc.post(
            pods,
            latency_pod(
                "cache", memory="768Mi", annotations={"lasched.io/prefer-low-rtt": f"{prefix}-0"}
            ),
        )
        assert (
            await eventually(lambda: node_of(kc, namespace, "cache"), timeout=30)
            == f"{prefix}-{cache_on}"
        )
        # web-1 is created 3 s after web-0 is ready at the earliest: after the cache pod.
        placed = [
            await eventually(functools.partial(placed_on, kc, namespace, f"web-{i}"), timeout=60)
            for i in range(1, 4)
        ]
        assert sum(n != near for n in placed) == web_far, placed
