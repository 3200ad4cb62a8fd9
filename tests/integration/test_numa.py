"""NUMA placement on the real control plane: NodeResourceTopology objects for kwok nodes,
pods with KubeNexus's NUMA annotations, the FailedScheduling Event and `lasched explain`.

numa-a's zones split its CPUs from its GPUs, numa-b has a zone with both, bare publishes
nothing, and broken publishes a topology lasched cannot read (the informer goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from lasched import settings
from lasched.kube.client import KubeClient
from lasched_agent.numa import TopologyWatch
from lasched_agent.prober import ProbeMethod, Prober
from lasched_agent.stream import AgentClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.agents import agent_token
from tests import fake_sysfs
from tests.fake_sysfs import DISPLAY_3D, NVIDIA
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


# ---- each policy, a gang, stale accounting: nodes of their own, reached by a pool label ----


def nrt_zone(i: int, *, cpu: str, gpu: int = 0, free_cpu: str | None = None) -> dict[str, Any]:
    """Zone ``node-<i>``: ``cpu`` allocatable (``free_cpu`` of it available), 64Gi, GPUs."""
    rows = [("cpu", cpu, free_cpu or cpu), ("memory", "64Gi", "64Gi"), (GPU, str(gpu), str(gpu))]
    return {
        "name": f"node-{i}",
        "type": "Node",
        "resources": [
            {"name": r, "capacity": a, "allocatable": a, "available": f} for r, a, f in rows
        ],
    }


def pool_pod(
    name: str, pool: str, *, cpu: str, gpu: int = 0, policy: str | None = "single-numa"
) -> dict[str, Any]:
    """A Guaranteed pod for the nodes labelled ``pool``; ``policy``: its KubeNexus policy."""
    body = guaranteed_pod(name, cpu=cpu, gpu=gpu)
    if policy is None:
        body["metadata"]["annotations"] = {}
    else:
        body["metadata"]["annotations"] = {**ANNOTATIONS, ANNOTATIONS_POLICY: policy}
    body["spec"]["nodeSelector"] = {"pool": pool}
    return body


ANNOTATIONS_POLICY = "numa.scheduling.kubenexus.io/policy"


async def pool_nodes(
    kc: KubeClient, pool: str, topologies: dict[str, tuple[str, list[dict[str, Any]]]]
) -> None:
    """Nodes labelled ``pool``, each publishing (policy, zones)."""
    specs = [
        nodes.NodeSpec(name=n, cpu="32", memory="128Gi", extended={GPU: "4"},
                       labels={"pool": pool})
        for n in topologies
    ]  # fmt: skip
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, list(topologies))
    for name, (policy, zones) in topologies.items():
        body = topology(name, zones)
        body["attributes"][0]["value"] = policy
        await kc.post(NRTS, body)


async def note_of(kc: KubeClient, namespace: str, pod: str, part: str) -> str:
    """The first FailedScheduling note of ``pod`` that contains ``part``, or ''."""
    for e in await events_for(kc, namespace, pod):
        if e.get("reason") == "FailedScheduling" and part in str(e.get("note")):
            return str(e["note"])
    return ""


async def test_restricted_admits_the_fewest_zones_that_could_hold_the_pod(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """On a restricted node with 10 of 16 CPUs free per zone: 12 CPUs could fit one zone but
    no zone has them (Pending, with the arithmetic); 20 CPUs need two zones, and two have
    them (bound)."""
    await pool_nodes(kc, "r", {"rst-0": ("restricted", [
        nrt_zone(0, cpu="16", free_cpu="10"), nrt_zone(1, cpu="16", free_cpu="10")])})  # fmt: skip
    await run_scheduler(settings.parse({"leaderElection": {"leaderElect": False}}))
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(pods_path, pool_pod("narrow", "r", cpu="12", policy=None))
    await kc.post(pods_path, pool_pod("wide", "r", cpu="20", policy=None))
    assert await eventually(lambda: node_of(kc, namespace, "wide"), timeout=30) == "rst-0"
    note = await eventually(lambda: note_of(kc, namespace, "narrow", "NUMA zone"), timeout=30)
    assert "no 1 NUMA zone(s) together have 12 cpu, 16Gi memory free" in note
    assert await node_of(kc, namespace, "narrow") == ""


async def test_best_effort_only_scores(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A best-effort pod goes where one zone holds its CPUs and GPUs; one that no zone can
    hold is still placed, since best-effort never rejects."""
    await pool_nodes(kc, "be", {
        "be-fit": ("best-effort", [nrt_zone(0, cpu="8", gpu=2), nrt_zone(1, cpu="8")]),
        # The same CPUs and GPUs, but no zone holds 6 CPUs beside 2 GPUs.
        "be-split": ("best-effort", [nrt_zone(0, cpu="12"), nrt_zone(1, cpu="4", gpu=2)]),
    })  # fmt: skip
    await run_scheduler(settings.parse({"leaderElection": {"leaderElect": False}}))
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(pods_path, pool_pod("fits", "be", cpu="6", gpu=2, policy="best-effort"))
    assert await eventually(lambda: node_of(kc, namespace, "fits"), timeout=30) == "be-fit"
    await kc.post(pods_path, pool_pod("huge", "be", cpu="20", gpu=1, policy="best-effort"))
    assert await eventually(lambda: node_of(kc, namespace, "huge"), timeout=30) in {
        "be-fit", "be-split",
    }  # fmt: skip


def gang_pod(name: str, group: str, minimum: int) -> dict[str, Any]:
    body = pool_pod(name, "gang", cpu="4", gpu=2)
    body["metadata"]["labels"] = {
        "lasched.io/pod-group": group,
        "lasched.io/min-available": str(minimum),
        "lasched.io/timeout-seconds": "5",
    }
    return body


async def test_a_gang_of_single_numa_gpu_pods_is_placed_zone_by_zone_or_not_at_all(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Four zones hold 2 GPUs (one node's zone 1 has CPUs but none): a gang of 3 binds, each
    member in a zone of its own; then a gang of 2 finds one zone left and binds nobody."""
    single = "single-numa-node"
    await pool_nodes(kc, "gang", {
        "gang-0": (single, [nrt_zone(0, cpu="16", gpu=2), nrt_zone(1, cpu="16", gpu=2)]),
        "gang-1": (single, [nrt_zone(0, cpu="16", gpu=2), nrt_zone(1, cpu="16")]),
        "gang-2": (single, [nrt_zone(0, cpu="16", gpu=2)]),
    })  # fmt: skip
    await run_scheduler(settings.parse({"leaderElection": {"leaderElect": False}}))
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    for i in range(3):
        await kc.post(pods_path, gang_pod(f"a-{i}", "a", 3))

    async def placed() -> list[str] | None:
        where = [await node_of(kc, namespace, f"a-{i}") for i in range(3)]
        return where if all(where) else None

    where = await eventually(placed, timeout=30)
    assert where.count("gang-0") <= 2 and where.count("gang-1") <= 1 and where.count("gang-2") <= 1
    for i in range(2):
        await kc.post(pods_path, gang_pod(f"b-{i}", "b", 2))
    note = await eventually(
        lambda: note_of(kc, namespace, "b-0", "members were placed"), timeout=30
    )
    assert "1 of 2 members were placed" in note
    assert [await node_of(kc, namespace, f"b-{i}") for i in range(2)] == ["", ""]


async def test_two_pods_before_the_topology_updates_fill_a_zone_once(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """The NRT keeps saying zone 0 has 8 CPUs free: of two 6-CPU single-numa pods one binds,
    the other waits, judged on 8 less the 6 lasched placed."""
    await pool_nodes(kc, "stale", {"stale-0": ("single-numa-node", [
        nrt_zone(0, cpu="8"), nrt_zone(1, cpu="2")])})  # fmt: skip
    await run_scheduler(settings.parse({"leaderElection": {"leaderElect": False}}))
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(pods_path, pool_pod("first", "stale", cpu="6"))
    await kc.post(pods_path, pool_pod("second", "stale", cpu="6"))

    async def one_bound() -> list[str] | None:
        where = [await node_of(kc, namespace, p) for p in ("first", "second")]
        return where if any(where) else None

    where = await eventually(one_bound, timeout=30)
    waiting = "second" if where[0] else "first"
    note = await eventually(lambda: note_of(kc, namespace, waiting, "NUMA zone"), timeout=30)
    assert "node stale-0: no NUMA zone has 6 cpu, 16Gi memory free" in note
    assert "node-0: 2 cpu" in note
    assert sorted(where) == ["", "stale-0"]


async def test_an_isolated_pod_keeps_its_zone_to_itself(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """An isolated pod takes zone 0; a single-numa pod goes to zone 1; a third finds zone 0's
    numbers would do but the zone kept, and a second isolated pod finds every zone in use."""
    await pool_nodes(kc, "iso", {"iso-0": ("single-numa-node", [
        nrt_zone(0, cpu="16", gpu=2), nrt_zone(1, cpu="16", gpu=2)])})  # fmt: skip
    await run_scheduler(settings.parse({"leaderElection": {"leaderElect": False}}))
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(pods_path, pool_pod("alone", "iso", cpu="4", gpu=1, policy="isolated"))
    assert await eventually(lambda: node_of(kc, namespace, "alone"), timeout=30) == "iso-0"
    await kc.post(pods_path, pool_pod("beside", "iso", cpu="4", gpu=2))
    assert await eventually(lambda: node_of(kc, namespace, "beside"), timeout=30) == "iso-0"
    await kc.post(pods_path, pool_pod("third", "iso", cpu="4", gpu=1))
    note = await eventually(lambda: note_of(kc, namespace, "third", "NUMA zone"), timeout=30)
    assert f"node-0: isolated for pod {namespace}/alone" in note
    await kc.post(pods_path, pool_pod("alone-2", "iso", cpu="1", gpu=0, policy="isolated"))
    note = await eventually(lambda: note_of(kc, namespace, "alone-2", "NUMA zone"), timeout=30)
    assert "node-1: in use, not free for an isolated pod" in note
    assert [await node_of(kc, namespace, p) for p in ("third", "alone-2")] == ["", ""]


async def test_a_high_priority_pod_preempts_the_pod_lasched_placed_in_its_zone(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Only zone 0 has GPUs and a low-priority pod holds them: a high-priority pod that needs
    them evicts it and binds, as the node's GPUs alone would not have shown."""
    await pool_nodes(kc, "pre", {"pre-0": ("single-numa-node", [
        nrt_zone(0, cpu="16", gpu=2), nrt_zone(1, cpu="16")])})  # fmt: skip
    await run_scheduler(settings.parse({"leaderElection": {"leaderElect": False}}))
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    low = pool_pod("low", "pre", cpu="4", gpu=2)
    low["metadata"]["annotations"]["priority"] = "1"
    await kc.post(pods_path, low)
    assert await eventually(lambda: node_of(kc, namespace, "low"), timeout=30) == "pre-0"
    high = pool_pod("high", "pre", cpu="4", gpu=2)
    high["metadata"]["annotations"]["priority"] = "100"
    await kc.post(pods_path, high)
    assert await eventually(lambda: node_of(kc, namespace, "high"), timeout=60) == "pre-0"
    reasons = [e.get("reason") for e in await events_for(kc, namespace, "low")]
    assert "Preempted" in reasons


# ---- zones reported by the nodes' agents, where nothing publishes NodeResourceTopology ----

GIB_KB = 1024 * 1024


@contextlib.asynccontextmanager
async def agent(
    kc: KubeClient, port: int, node: str, sysfs: Path, tmp: Path
) -> AsyncIterator[AgentClient]:
    """The real agent client for ``node`` with its TokenReview token, reporting ``sysfs``."""
    token_file = tmp / f"token-{node}"
    token_file.write_text(await agent_token(kc, node=node))
    client = AgentClient(
        url=f"ws://127.0.0.1:{port}/agents/v1",
        node=node,
        prober=Prober(ProbeMethod.fixed({})),
        token_file=token_file,
        topology=TopologyWatch(sysfs, policy="single-numa-node", scope="pod"),
    )
    task = asyncio.create_task(client.run(), name=f"agent:{node}")
    try:
        yield client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_zones_an_agent_reports_place_a_single_numa_pod_and_count_it(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """agent-0 reports 4 CPUs in zone 0 and 8 CPUs with 2 GPUs in zone 1, agent-1 one GPU per
    zone: a pod of 6 CPUs and 2 GPUs from one zone lands on agent-0; a second one waits,
    since lasched counts the first in that zone (the agent cannot)."""
    names = ["agent-0", "agent-1"]
    specs = [
        nodes.NodeSpec(name=n, cpu="32", memory="128Gi", extended={GPU: "4"},
                       labels={"pool": "agents"})
        for n in names
    ]  # fmt: skip
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, names)
    gpu = (NVIDIA, DISPLAY_3D)
    sysfs0 = fake_sysfs.build(
        tmp_path / "sys0", {0: ("0-3", 64 * GIB_KB), 1: ("4-11", 64 * GIB_KB)},
        [(*gpu, 1), (*gpu, 1)],
    )  # fmt: skip
    sysfs1 = fake_sysfs.build(
        tmp_path / "sys1", {0: ("0-7", 64 * GIB_KB), 1: ("8-15", 64 * GIB_KB)},
        [(*gpu, 0), (*gpu, 1)],
    )  # fmt: skip
    port = await run_scheduler(settings.parse({"leaderElection": {"leaderElect": False}}))
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    async with (
        agent(kc, port, "agent-0", sysfs0, tmp_path),
        agent(kc, port, "agent-1", sysfs1, tmp_path),
    ):
        await kc.post(pods_path, pool_pod("first", "agents", cpu="6", gpu=2))
        assert await eventually(lambda: node_of(kc, namespace, "first"), timeout=30) == "agent-0"
        await kc.post(pods_path, pool_pod("second", "agents", cpu="6", gpu=2))
        note = await eventually(lambda: note_of(kc, namespace, "second", "NUMA zone"), timeout=30)
        assert "node agent-0: no NUMA zone has 6 cpu, 16Gi memory, 2 nvidia.com/gpu free" in note
        assert "node-1: 2 cpu, 48Gi memory, 0 nvidia.com/gpu" in note
        assert await node_of(kc, namespace, "second") == ""
