"""NUMA placement on the real control plane: NodeResourceTopology objects for kwok nodes,
pods with KubeNexus's NUMA annotations, the FailedScheduling Event and `lasched explain`.

numa-a's zones split its CPUs from its GPUs, numa-b has a zone with both, bare publishes
nothing, and broken publishes a topology lasched cannot read (the informer goes on).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from lasched import settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of

GPU = "nvidia.com/gpu"
NRTS = "/apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies"
ANNOTATIONS = {
    "numa.scheduling.kubenexus.io/policy": "single-numa",
    "numa.scheduling.kubenexus.io/resources": f"cpu,memory,{GPU}",
}
NODES = ["numa-a", "numa-b", "bare", "broken"]


def zone(i: int, cpu: str, gpu: int) -> dict[str, Any]:
    amounts = {"cpu": cpu, "memory": "64Gi", GPU: str(gpu)}
    return {
        "name": f"node-{i}",
        "type": "Node",
        "resources": [
            {"name": r, "capacity": v, "allocatable": v, "available": v} for r, v in amounts.items()
        ],
    }


def topology(name: str, zones: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "topology.node.k8s.io/v1alpha2",
        "kind": "NodeResourceTopology",
        "metadata": {"name": name},
        "attributes": [
            {"name": "topologyManagerPolicy", "value": "single-numa-node"},
            {"name": "topologyManagerScope", "value": "pod"},
        ],
        "zones": zones,
    }


def guaranteed_pod(name: str, *, cpu: str, gpu: int) -> dict[str, Any]:
    amounts = {"cpu": cpu, "memory": "16Gi", GPU: str(gpu)}
    return {
        "metadata": {"name": name, "annotations": ANNOTATIONS},
        "spec": {
            "schedulerName": "lasched",
            "containers": [
                {
                    "name": "training",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": amounts, "limits": amounts},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
async def numa_nodes(kc: KubeClient) -> list[str]:
    specs = [nodes.NodeSpec(name=n, cpu="32", memory="128Gi", extended={GPU: "4"}) for n in NODES]
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, NODES)
    await kc.post(NRTS, topology("numa-a", [zone(0, "6", 2), zone(1, "16", 0)]))
    await kc.post(NRTS, topology("numa-b", [zone(0, "16", 2), zone(1, "16", 2)]))
    # The CRD's schema allows any zone name; lasched needs node-<id> for a NUMA node.
    bad = topology("broken", [zone(0, "16", 2)])
    bad["zones"][0]["name"] = "numa0"
    await kc.post(NRTS, bad)
    return NODES


@pytest.fixture
async def url(numa_nodes: list[str], run_scheduler: SchedulerFactory) -> str:
    port = await run_scheduler(settings.parse({"leaderElection": {"leaderElect": False}}))
    return f"http://127.0.0.1:{port}"


async def explain(base: str, key: str) -> dict[str, Any] | None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/debug/explain", params={"pod": key}) as resp,
    ):
        if resp.status != 200:
            return None
        answer: dict[str, Any] = orjson.loads(await resp.read())
        return answer


async def test_a_single_numa_pod_lands_where_one_zone_fits(
    kc: KubeClient, namespace: str, url: str
) -> None:
    """8 CPUs and 2 GPUs from one zone: numa-a has them only in different zones, bare and
    broken have no topology lasched can read, numa-b has a zone with both."""
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", guaranteed_pod("train", cpu="8", gpu=2))
    assert await eventually(lambda: node_of(kc, namespace, "train"), timeout=30) == "numa-b"


async def test_a_pod_no_zone_fits_waits_and_says_why(
    kc: KubeClient, namespace: str, url: str
) -> None:
    """20 CPUs fit no 16-CPU zone: Pending, a FailedScheduling Event with the zones'
    arithmetic, and `lasched explain` naming the plugin on each node."""
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", guaranteed_pod("wide", cpu="20", gpu=1))

    async def reason() -> str:
        for e in await events_for(kc, namespace, "wide"):
            if e.get("reason") == "FailedScheduling" and "NUMA zone" in str(e.get("note")):
                return str(e["note"])
        return ""

    note = await eventually(reason, timeout=30)
    assert "node numa-b: no NUMA zone has 20 cpu, 16Gi memory, 1 nvidia.com/gpu free" in note
    assert "node-0: 16 cpu, 64Gi memory, 2 nvidia.com/gpu" in note
    assert "publishes no NUMA topology" in note  # bare and broken
    assert await node_of(kc, namespace, "wide") == ""

    async def tried() -> dict[str, Any] | None:
        answer = await explain(url, f"{namespace}/wide")
        return answer if answer and answer["filter"]["nodes"] else None

    answer = await eventually(tried, timeout=30)
    by_node = {v["node"]: v["rejections"] for v in answer["filter"]["nodes"]}
    for name in NODES:
        plugins = [r["plugin"] for r in by_node[name]]
        assert plugins == ["NodeResourceTopologyMatch"], (name, by_node[name])
