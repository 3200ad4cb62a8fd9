"""A stock kube-scheduler asks lasched, through the extender API, where pods may go."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from lasched import settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import binaries, nodes
from lasched_dev.devcluster.cluster import DevCluster
from lasched_dev.devcluster.processes import Child, spawn, stop_children
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod

RTTS = {"edge-1": {"edge-2": 12.0, "edge-3": 41.0, "cloud-1": 60.0}}
NODES = ("edge-1", "edge-2", "edge-3", "cloud-1")
KUBE = "default-scheduler"


def kube_scheduler_config(*, kubeconfig: Path, lasched_port: int) -> str:
    """What a user adds to a stock kube-scheduler (docs/extender.md), pointed at this lasched."""
    return f"""\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
leaderElection:
  leaderElect: false
profiles:
  - schedulerName: {KUBE}
extenders:
  - urlPrefix: http://127.0.0.1:{lasched_port}/extender
    filterVerb: filter
    prioritizeVerb: prioritize
    weight: 5
    nodeCacheCapable: true
    ignorable: false
    httpTimeout: 5s
"""


@contextlib.asynccontextmanager
async def kube_scheduler(
    *, kubeconfig: Path, lasched_port: int, workdir: Path
) -> AsyncIterator[Child]:
    """kube-scheduler v1.35 as a child process (killed with us), stopped on exit."""
    exe = (await binaries.ensure(["kube-scheduler"]))["kube-scheduler"]
    config = workdir / "kube-scheduler.yaml"
    config.write_text(kube_scheduler_config(kubeconfig=kubeconfig, lasched_port=lasched_port))
    argv = [str(exe), f"--config={config}", "--secure-port=0", "--v=2"]
    child = spawn("kube-scheduler", argv, log_dir=workdir, detached=False)
    try:
        yield child
    finally:
        await stop_children([child], grace=10)
        print(f"--- kube-scheduler log (tail) ---\n{child.log_tail(40)}")


async def get_text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, await resp.text()


def labelled(
    name: str,
    *,
    scheduler: str = KUBE,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    body = pod(name, scheduler=scheduler)
    body["metadata"]["labels"] = labels or {}
    body["metadata"]["annotations"] = annotations or {}
    return body


async def test_kube_scheduler_places_pods_by_lasched_latency_answers(
    cluster: DevCluster,
    kc: KubeClient,
    namespace: str,
    run_scheduler: SchedulerFactory,
    tmp_path: Path,
) -> None:
    """default-scheduler pods keep lasched's delay limits and preferences, and its reasons."""
    rtt_file = tmp_path / "rtt.json"
    rtt_file.write_bytes(orjson.dumps(RTTS))
    await nodes.create_nodes(kc, [nodes.NodeSpec(name=n) for n in NODES])
    await nodes.wait_ready(kc, list(NODES))
    cfg = settings.parse({"latency": {"staticFile": str(rtt_file)}, "extender": {"enabled": True}})
    port = await run_scheduler(cfg)
    base = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        return (await get_text(f"{base}/readyz"))[0] == 200

    await eventually(ready)

    async with kube_scheduler(
        kubeconfig=cluster.kubeconfig, lasched_port=port, workdir=tmp_path
    ) as child:
        create = f"/api/v1/namespaces/{namespace}/pods"
        await kc.post(create, labelled("tight", labels={"delay_edge-1": "5"}))
        for i in range(3):
            await kc.post(create, labelled(f"loose-{i}", labels={"delay_edge-1": "25"}))
        await kc.post(create, labelled("near", annotations={"lasched.io/prefer-low-rtt": "edge-1"}))
        await kc.post(create, labelled("lost", labels={"delay_edge-9": "5"}))
        await kc.post(create, labelled("garbled", annotations={"lasched.io/max-rtt": "x"}))
        # lasched's own profile keeps scheduling the pods that name it.
        await kc.post(create, labelled("own", scheduler="lasched", labels={"delay_edge-1": "5"}))

        assert await eventually(lambda: node_of(kc, namespace, "tight"), timeout=40) == "edge-1"
        for name in ("loose-0", "loose-1", "loose-2"):
            placed = await eventually(partial(node_of, kc, namespace, name))
            assert placed in {"edge-1", "edge-2"}
        assert await eventually(lambda: node_of(kc, namespace, "near")) == "edge-1"
        assert await eventually(lambda: node_of(kc, namespace, "own")) == "edge-1"

        async def note(name: str, reason: str) -> tuple[str, str]:
            """(reporting controller, note) of the pod's first event with ``reason``."""
            evs = [e for e in await events_for(kc, namespace, name) if e["reason"] == reason]
            return (evs[0]["reportingController"], str(evs[0]["note"])) if evs else ("", "")

        assert (await eventually(lambda: note("tight", "Scheduled")))[0] == KUBE
        assert (await eventually(lambda: note("own", "Scheduled")))[0] == "lasched"

        controller, lost = await eventually(lambda: note("lost", "FailedScheduling"))
        assert controller == KUBE
        assert "4 node(s) had no measured RTT from edge-9" in lost, lost
        controller, garbled = await eventually(lambda: note("garbled", "FailedScheduling"))
        assert controller == KUBE
        assert 'lasched.io/max-rtt="x"' in garbled, garbled
        assert await node_of(kc, namespace, "lost") == ""
        assert await node_of(kc, namespace, "garbled") == ""
        assert child.alive()

    _, exposition = await get_text(f"{base}/metrics")
    assert 'lasched_extender_requests_total{outcome="success",verb="filter"}' in exposition
    assert 'lasched_extender_requests_total{outcome="success",verb="prioritize"}' in exposition
