"""Every folder in examples/ does on the dev cluster what its README says.

Each test creates the example's nodes (its cluster.yaml), starts lasched with the
configuration the chart renders from the example's values.yaml (the RTTs the
agents would measure come from the example's rtt.json, as a static file),
applies the example's manifests as a user would, and checks where each pod
lands, or why it waits (its FailedScheduling event). The extender example also
runs the stock kube-scheduler of its kube-scheduler.yaml, with that manifest's
ServiceAccount and RBAC.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from lasched import settings
from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import binaries, nodes
from lasched_dev.devcluster.apply import apply, load_manifests
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace, service_account_kubeconfig
from lasched_dev.devcluster.processes import spawn, stop_children
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, pods

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "examples"
CHART = ROOT / "deploy" / "charts" / "lasched"
NAMESPACED = {
    "Pod", "Deployment", "StatefulSet", "Job", "PodDisruptionBudget", "ConfigMap", "Service",
    "ServiceAccount", "Role", "RoleBinding",
}  # fmt: skip
JSON = dict[str, Any]
NRTS = "/apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies"


@pytest.fixture(scope="module")
async def helm() -> Path:
    return (await binaries.ensure(["helm"]))["helm"]


def example_settings(helm: Path, folder: Path) -> settings.Settings:
    """The configuration the chart renders from the example's values.yaml, with the
    example's rtt.json as the static RTT file (in a cluster: what the agents measure)."""
    rendered = subprocess.run(
        [str(helm), "template", "lasched", str(CHART), "--namespace", "lasched-system",
         "--values", str(folder / "values.yaml")],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    (config_map,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ConfigMap"]
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    if (folder / "rtt.json").exists():
        config.setdefault("latency", {})["staticFile"] = str(folder / "rtt.json")
    return settings.parse(config)


def rtts(folder: Path) -> dict[tuple[str, str], float]:
    matrix = orjson.loads((folder / "rtt.json").read_bytes())
    return {(src, dst): ms for src, row in matrix.items() for dst, ms in row.items()}


@dataclass
class Example:
    folder: Path
    namespace: str
    kc: KubeClient
    port: int

    async def apply(self, name: str) -> None:
        docs = load_manifests(self.folder / name)
        for d in docs:
            if d["kind"] in NAMESPACED:
                d["metadata"].setdefault("namespace", self.namespace)
        await apply(self.kc, docs)

    async def live(self, **labels: str) -> dict[str, JSON]:
        """Pods not being deleted whose labels include ``labels``."""
        return {
            name: p
            for name, p in (await pods(self.kc, self.namespace)).items()
            if not p["metadata"].get("deletionTimestamp")
            and labels.items() <= (p["metadata"].get("labels") or {}).items()
        }

    async def placed(self, count: int, **labels: str) -> dict[str, str]:
        """Wait until ``count`` live pods with ``labels`` are bound: name -> node."""

        async def check() -> dict[str, str] | None:
            live = await self.live(**labels)
            where = {n: p["spec"].get("nodeName", "") for n, p in live.items()}
            return where if len(where) == count and all(where.values()) else None

        found: dict[str, str] = await eventually(check, timeout=30)
        return found

    async def event(self, pod: str, reason: str) -> JSON:
        async def check() -> JSON | None:
            evs = [
                e for e in await events_for(self.kc, self.namespace, pod) if e["reason"] == reason
            ]
            return evs[-1] if evs else None

        found: JSON = await eventually(check, timeout=30)
        print(f"{pod} {reason} ({found['reportingController']}): {found['note']}")
        return found


@contextlib.asynccontextmanager
async def example(
    name: str, kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, helm: Path
) -> AsyncIterator[Example]:
    """The example's nodes and a lasched configured as the example says; the nodes go
    afterwards, so the next example sees only its own."""
    folder = EXAMPLES / name
    node_docs = load_manifests(folder / "cluster.yaml")
    names = [d["metadata"]["name"] for d in node_docs]
    for d in node_docs:
        d["metadata"]["labels"]["type"] = "kwok"  # how the dev cluster's helpers find its nodes
        await kc.post("/api/v1/nodes", d)
    try:
        await nodes.wait_ready(kc, names)
        await ensure_namespace(kc, "lasched-system")  # where the chart keeps the Lease
        port = await run_scheduler(example_settings(helm, folder))
        yield Example(folder, namespace, kc, int(port))
    finally:
        for n in names:
            with contextlib.suppress(ApiError):
                await kc.delete(f"/api/v1/nodes/{n}")


async def test_kube_scheduler(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, helm: Path
) -> None:
    async with example("kube-scheduler", kc, namespace, run_scheduler, helm) as ex:
        try:
            await ex.apply("workload.yaml")
            web = await ex.placed(2, app="web")
            assert set(web.values()) <= {"node-a1", "node-a2"}, web  # the zone's nodes
            assert set((await ex.placed(1, **{"job-name": "train"})).values()) == {"gpu-b1"}
            note = (await ex.event("too-big", "FailedScheduling"))["note"]
            assert note.startswith(
                "0/4 nodes are available: 3 Insufficient cpu, "
                "1 node(s) had untolerated taint {dedicated: gpu}."
            ), note
        finally:
            with contextlib.suppress(ApiError):
                await kc.delete("/apis/scheduling.k8s.io/v1/priorityclasses/example-critical")


async def test_latent_scheduler(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, helm: Path
) -> None:
    async with example("latent-scheduler", kc, namespace, run_scheduler, helm) as ex:
        await ex.apply("workload.yaml")
        scheduled = await ex.event("hello", "Scheduled")
        assert scheduled["reportingController"] == "my-latency-scheduler"
        (cache_node,) = (await ex.placed(1, app="cache")).values()
        assert cache_node == "node-b"  # the lowest mean RTT to the other nodes
        assert (await ex.live())["hello"]["spec"].get("nodeName") == "node-b"
        rtt = rtts(ex.folder)
        for pod_name, node in (await ex.placed(2, app="api")).items():
            ms = 0.0 if node == cache_node else rtt[(cache_node, node)]
            assert ms <= 5, f"{pod_name} on {node}, {ms} ms from the cache on {cache_node}"


@contextlib.asynccontextmanager
async def stock_kube_scheduler(
    cluster: DevCluster, kc: KubeClient, manifest: Path, *, lasched_port: int, workdir: Path
) -> AsyncIterator[None]:
    """kube-scheduler as the manifest's Deployment runs it: the manifest's objects applied,
    its ConfigMap's configuration, its ServiceAccount's credentials. Only the extender's
    address is this machine's (lasched runs here, not behind a Service)."""
    docs = load_manifests(manifest)
    await apply(kc, docs)
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    (extender,) = config["extenders"]
    assert extender["urlPrefix"] == "http://lasched.lasched-system.svc:10271/extender"
    extender["urlPrefix"] = f"http://127.0.0.1:{lasched_port}/extender"
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    meta = account["metadata"]
    kubeconfig = await service_account_kubeconfig(
        cluster, kc, namespace=meta["namespace"], name=meta["name"]
    )
    config["clientConnection"] = {"kubeconfig": str(kubeconfig)}
    path = workdir / "kube-scheduler.yaml"
    path.write_text(yaml.safe_dump(config))
    exe = (await binaries.ensure(["kube-scheduler"]))["kube-scheduler"]
    argv = [str(exe), f"--config={path}", "--secure-port=0", "--v=2"]
    child = spawn("kube-scheduler", argv, log_dir=workdir, detached=False)
    try:
        yield
    finally:
        await stop_children([child], grace=10)
        print(f"--- kube-scheduler log (tail) ---\n{child.log_tail(40)}")


async def test_latency_aware_scheduler(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    namespace: str,
    run_scheduler: SchedulerFactory,
    helm: Path,
    tmp_path: Path,
) -> None:
    async with (
        example("latency_aware_scheduler", kc, namespace, run_scheduler, helm) as ex,
        stock_kube_scheduler(
            cluster, kc, ex.folder / "kube-scheduler.yaml", lasched_port=ex.port, workdir=tmp_path
        ),
    ):
        await ex.apply("workload.yaml")
        scheduled = await ex.event("my-custom-scheduled-pod", "Scheduled")
        assert scheduled["reportingController"] == "custom-scheduler"
        near = await ex.event("near-users", "Scheduled")
        assert near["note"].endswith(" to edge-1"), near["note"]  # 4 ms from users-eu
        waits = await ex.event("within-2ms", "FailedScheduling")
        assert waits["reportingController"] == "custom-scheduler"
        assert "3 node(s) were more than 2 ms from users-eu" in waits["note"], waits["note"]


async def test_python_custom_scheduler(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, helm: Path
) -> None:
    async with example("python-custom-scheduler", kc, namespace, run_scheduler, helm) as ex:
        await ex.apply("example-deployments.yaml")
        await ex.placed(1, app="high-priority")
        await ex.placed(1, app="low-priority")
        gang = await ex.placed(3, app="group-a")
        for name in gang:
            scheduled = await ex.event(name, "Scheduled")
            assert scheduled["reportingController"] == "custom-scheduler"

        await ex.apply("preemption.yaml")
        lows = await _bound(ex, "low-1", "low-2", "low-3")
        assert len(set(lows.values())) == 3, lows  # one per node, as before
        await ex.apply("preemption-high.yaml")
        (high_node,) = (await _bound(ex, "high-1")).values()

        async def one_evicted() -> list[str] | None:
            live = await ex.live()
            left: list[str] = [n for n in ("low-1", "low-2", "low-3") if n in live]
            return left if len(left) == 2 else None

        left = await eventually(one_evicted, timeout=30)
        (victim,) = {"low-1", "low-2", "low-3"} - set(left)
        assert lows[victim] == high_node


async def _bound(ex: Example, *names: str) -> dict[str, str]:
    async def check() -> dict[str, str] | None:
        live = await ex.live()
        where = {n: live[n]["spec"].get("nodeName", "") if n in live else "" for n in names}
        return where if all(where.values()) else None

    found: dict[str, str] = await eventually(check, timeout=30)
    return found


async def test_kubernetes_edge_scheduler(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, helm: Path
) -> None:
    async with example("kubernetes-edge-scheduler", kc, namespace, run_scheduler, helm) as ex:
        await ex.apply("workload.yaml")
        (near,) = (await ex.placed(1, app="app1")).values()
        assert near in {"edge-1", "edge-2"}  # within 25 ms of edge-1
        (edge,) = (await ex.placed(1, app="app2")).values()
        assert edge in {"edge-1", "edge-2", "edge-3"}  # an edge node fits: not the cloud tier
        (cloud,) = (await ex.placed(1, app="app4")).values()
        assert cloud in {"cloud-1", "cloud-2"}  # no edge node has 12 GiB: the cloud tier
        (waiting,) = await ex.live(app="app3")
        note = (await ex.event(waiting, "FailedScheduling"))["note"]
        assert "more than 25 ms from edge-1" in note, note
        assert "Insufficient memory" in note, note


async def test_kubenexus(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, helm: Path
) -> None:
    async with example("kubenexus", kc, namespace, run_scheduler, helm) as ex:
        await ex.apply("workload.yaml")
        gang = await ex.placed(4, **{"job-name": "distributed-training"})
        assert set(gang.values()) == {"gpu-0", "gpu-1"}, gang  # one GPU each, two per node
        await _bound(ex, "ml-training")
        await ex.placed(2, app="api-server")

        async def three_waiting() -> dict[str, JSON] | None:
            members = await ex.live(**{"job-name": "spark-etl"})
            return members if len(members) == 3 else None

        members = await eventually(three_waiting, timeout=30)
        explained = await _explain(ex, next(iter(members)))
        print(f"explain: {explained['preEnqueue']}")
        assert "3 of 4 members exist" in str(explained["preEnqueue"]["reason"]), explained
        still = await ex.live(**{"job-name": "spark-etl"})
        assert not any(p["spec"].get("nodeName") for p in still.values()), still

        await kc.patch(
            f"/apis/batch/v1/namespaces/{namespace}/jobs/spark-etl", {"spec": {"parallelism": 4}}
        )
        await ex.placed(4, **{"job-name": "spark-etl"})

        try:
            await ex.apply("topology.yaml")
            await ex.apply("numa.yaml")
            await _kubenexus_numa(ex)
        finally:
            for n in ("hpc-0", "hpc-1"):
                with contextlib.suppress(ApiError):
                    await kc.delete(f"{NRTS}/{n}")


async def _kubenexus_numa(ex: Example) -> None:
    """The README's NUMA outcomes: one trainer on hpc-0, the other Pending with the zone
    arithmetic; the isolated solver on hpc-1 keeping its zone, so one postproc waits."""

    async def settled(names: tuple[str, ...]) -> tuple[str, str] | None:
        live = await ex.live()
        where = {n: live[n]["spec"].get("nodeName", "") for n in names if n in live}
        bound = [n for n, node in where.items() if node]
        waiting = [n for n, node in where.items() if not node]
        if len(bound) != 1 or len(waiting) != 1:
            return None
        return bound[0], waiting[0]

    trained, waiting = await eventually(lambda: settled(("trainer", "trainer-2")), timeout=30)
    assert (await ex.live())[trained]["spec"]["nodeName"] == "hpc-0"
    note = (await ex.event(waiting, "FailedScheduling"))["note"]
    assert "node hpc-1: no NUMA zone has 6 cpu, 16Gi memory, 2 nvidia.com/gpu free" in note, note
    _, waiting = await eventually(lambda: settled(("postproc", "postproc-2")), timeout=30)
    solver = (await ex.live())["solver"]
    assert solver["spec"]["nodeName"] == "hpc-1"
    note = (await ex.event(waiting, "FailedScheduling"))["note"]
    assert f"isolated for pod {ex.namespace}/solver" in note, note


async def _explain(ex: Example, pod: str) -> JSON:
    """lasched's explain answer, from its own host (no token needed there)."""
    url = f"http://127.0.0.1:{ex.port}/debug/explain"

    async def check() -> JSON | None:
        async with (
            aiohttp.ClientSession() as s,
            s.get(url, params={"pod": f"{ex.namespace}/{pod}"}) as resp,
        ):
            return dict(await resp.json()) if resp.status == 200 else None

    found: JSON = await eventually(check)
    return found
