"""The demo: a local kwok cluster, lasched, a small workload, where it landed.

Everything is real: etcd, kube-apiserver, kwok, and the scheduler talking to
them over HTTPS. The demo exits non-zero if a pod did not end where the story
says it must (so CI can run it as a check).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.table import Table

from lasched import app
from lasched.devcluster import nodes
from lasched.devcluster.cluster import DevCluster, ensure_namespace
from lasched.devcluster.progress import reporter
from lasched.kube.client import KubeClient
from lasched.settings import ServerSettings, Settings

NAMESPACE = "demo"
GPU = "nvidia.com/gpu"


@dataclass(frozen=True, slots=True)
class DemoPod:
    name: str
    cpu: str
    memory: str
    expect: tuple[str, ...]  # node-name prefixes it may land on; () means it stays pending
    gpu: int = 0

    def manifest(self) -> dict[str, Any]:
        requests: dict[str, str] = {"cpu": self.cpu, "memory": self.memory}
        limits: dict[str, str] = {}
        spec: dict[str, Any] = {"schedulerName": "lasched"}
        if self.gpu:
            requests[GPU] = limits[GPU] = str(self.gpu)
            spec["tolerations"] = [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
        container: dict[str, Any] = {
            "name": "main",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": requests, **({"limits": limits} if limits else {})},
        }
        spec["containers"] = [container]
        return {"metadata": {"name": self.name, "labels": {"app": "demo"}}, "spec": spec}


NODES = [
    *nodes.uniform(3, prefix="small", cpu="2", memory="4Gi", regions=["eu-west"]),
    *nodes.uniform(2, prefix="large", cpu="16", memory="64Gi", regions=["eu-west"]),
    nodes.NodeSpec(
        name="gpu-0",
        cpu="8",
        memory="32Gi",
        extended={GPU: "2"},
        taints=[nodes.Taint("gpu", "true")],
        region="eu-west",
    ),
    nodes.NodeSpec(name="cordoned-0", cpu="64", memory="256Gi", unschedulable=True),
]

PODS = [
    # No toleration: never on the tainted GPU node, never on the cordoned one.
    *(DemoPod(f"web-{i}", "500m", "512Mi", expect=("small", "large")) for i in range(6)),
    DemoPod("batch-0", "6", "24Gi", expect=("large",)),
    DemoPod("batch-1", "6", "24Gi", expect=("large",)),
    DemoPod("train-0", "2", "8Gi", expect=("gpu",), gpu=1),
    DemoPod("too-big", "32", "8Gi", expect=()),
]


async def _placements(kc: KubeClient) -> dict[str, str]:
    listing = await kc.get(f"/api/v1/namespaces/{NAMESPACE}/pods")
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in listing["items"]}


async def _last_event(kc: KubeClient, pod: str) -> str:
    listing = await kc.get(
        f"/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events",
        fieldSelector=f"regarding.name={pod}",
    )
    items = sorted(listing["items"], key=lambda e: e.get("eventTime") or "")
    return items[-1].get("note", "") if items else ""


async def run_demo() -> int:
    console = Console()
    console.rule("[bold]lasched demo")
    with reporter() as progress:
        cluster = DevCluster(progress=progress)
        console.print("starting etcd, kube-apiserver and kwok on 127.0.0.1 ...")
        await cluster.start()
    try:
        async with await cluster.client() as kc:
            console.print(f"creating {len(NODES)} kwok nodes (one tainted for GPUs, one cordoned)")
            await nodes.create_nodes(kc, NODES)
            await nodes.wait_ready(kc, [n.name for n in NODES])
            await ensure_namespace(kc, NAMESPACE)

            settings = replace(
                Settings(), kubeconfig=str(cluster.kubeconfig), server=ServerSettings(port=0)
            )
            stop = asyncio.Event()
            sched = asyncio.create_task(app.run(settings, stop=stop), name="lasched")
            console.print(f"lasched is running; submitting {len(PODS)} pods")
            created = time.monotonic()
            for p in PODS:
                await kc.post(f"/api/v1/namespaces/{NAMESPACE}/pods", p.manifest())

            want = {p.name for p in PODS if p.expect}
            deadline = time.monotonic() + 60
            placed: dict[str, str] = {}
            while time.monotonic() < deadline:
                placed = await _placements(kc)
                if all(placed.get(n) for n in want):
                    break
                await asyncio.sleep(0.2)
            elapsed = time.monotonic() - created
            await asyncio.sleep(1.0)  # let the last events land
            notes = {p.name: await _last_event(kc, p.name) for p in PODS}
            stop.set()
            await sched

        return 0 if _report(console, placed, notes, elapsed) else 1
    finally:
        await cluster.stop()


def _report(
    console: Console, placed: dict[str, str], notes: dict[str, str], elapsed: float
) -> bool:
    table = Table(title="Where each pod landed")
    for col in ("pod", "requests", "node", "as expected", "last event"):
        table.add_column(col)
    ok = True
    for p in PODS:
        node = placed.get(p.name, "")
        good = node.startswith(p.expect) if p.expect else not node
        ok &= good
        req = f"{p.cpu} cpu, {p.memory}" + (f", {p.gpu} gpu" if p.gpu else "")
        table.add_row(
            p.name, req, node or "[yellow]pending", "yes" if good else "[red]NO", notes[p.name]
        )
    console.print(table)
    console.print(f"bound {sum(1 for v in placed.values() if v)} pods in {elapsed:.2f} s")
    console.print("[green]all placements as expected" if ok else "[red]unexpected placements")
    return ok
