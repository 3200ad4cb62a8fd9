"""Scenario ``gangs``: from the last member's creation to all members bound.

lasched runs as its own process against kwok nodes. For each gang size, gangs
are created one after another (each in its own namespace, all members
declaring ``lasched.io/min-available`` = size); a watch stamps each member's
ADDED and bound events, and the figure per gang is
``max(bound) - max(ADDED)``: how long the last member waited for the whole
gang to go. kube-scheduler has no gang semantics without the coscheduling
plugin, so it has no row here.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from bench import peers
from bench.throughput import (
    Progress,
    create_bench_nodes,
    create_pods,
    delete_pods,
    percentile,
    pod_body,
)
from bench.timeline import Timeline
from lasched.kube.client import KubeClient
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace

SCENARIO = "gangs"
VERSION = 1


@dataclass(frozen=True, slots=True)
class Config:
    nodes: int = 100
    sizes: tuple[int, ...] = (8, 50)
    gangs_per_size: int = 10
    timeout: float = 120.0
    controller_manager: bool = True  # run kube-controller-manager in the dev cluster


@dataclass(slots=True)
class GangSample:
    size: int
    index: int
    last_created_to_all_bound_ms: float


def member_body(name: str, group: str, size: int) -> dict[str, Any]:
    body = pod_body(name, "lasched")
    body["metadata"]["labels"] = {
        "lasched.io/pod-group": group,
        "lasched.io/min-available": str(size),
    }
    return body


async def one_gang(kc: KubeClient, size: int, index: int, timeout: float) -> GangSample:
    ns = f"gang-{size}-{index}"
    await ensure_namespace(kc, ns)
    timeline = Timeline(kc, ns)
    await timeline.start()
    try:
        sem = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            async with sem:
                await kc.post(f"/api/v1/namespaces/{ns}/pods", member_body(f"m-{i}", "g", size))

        await asyncio.gather(*(create(i) for i in range(size)))
        if not await timeline.wait_bound(size, timeout=timeout):
            raise TimeoutError(f"gang {ns}: {len(timeline.bound)}/{size} bound after {timeout} s")
        last_added = max(timeline.added.values())
        all_bound = max(timeline.bound.values())
        return GangSample(size, index, (all_bound - last_added) * 1000)
    finally:
        await timeline.stop()
        await delete_pods(kc, ns)


async def run(cfg: Config, progress: Progress) -> list[GangSample]:
    samples: list[GangSample] = []
    async with (
        DevCluster(
            controller_manager=cfg.controller_manager,
            nodes=cfg.nodes,
        ) as cluster,
        await cluster.client() as kc,
    ):
        await create_bench_nodes(kc, cfg.nodes, progress)
        running = await peers.start(
            peers.LASCHED, kubeconfig=cluster.kubeconfig, workdir=cluster.workdir / "lasched"
        )
        try:
            # A warm-up pod, so the first gang does not pay for start-up.
            await ensure_namespace(kc, "warmup")
            await create_pods(kc, "warmup", ["w"], "lasched")
            warm = Timeline(kc, "warmup")
            await warm.start()
            await warm.wait_bound(1, timeout=60)
            await warm.stop()
            for size in cfg.sizes:
                for i in range(cfg.gangs_per_size):
                    samples.append(await one_gang(kc, size, i, cfg.timeout))
                    progress(f"gangs of {size}", i + 1, cfg.gangs_per_size)
        finally:
            await running.stop()
    return samples


def to_json(cfg: Config, samples: list[GangSample], env: dict[str, str]) -> dict[str, Any]:
    summary = {}
    for size in cfg.sizes:
        ms = [s.last_created_to_all_bound_ms for s in samples if s.size == size]
        summary[str(size)] = {
            "p50_ms": statistics.median(ms),
            "p99_ms": percentile(ms, 99),
            "min_ms": min(ms),
            "max_ms": max(ms),
            "gangs": len(ms),
        }
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "summary": summary,
        "samples": [asdict(s) for s in samples],
    }


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    env = result["environment"]
    lines = [
        f"### gangs: {cfg['nodes']} nodes, {cfg['gangs_per_size']} gangs per size, one at a time",
        "",
        "| gang size | last member created to all bound: p50 ms | p99 ms | min to max ms |",
        "|---|---|---|---|",
    ]
    for size, s in result["summary"].items():
        lines.append(
            f"| {size} | {s['p50_ms']:.0f} | {s['p99_ms']:.0f} | "
            f"{s['min_ms']:.0f} to {s['max_ms']:.0f} |"
        )
    lines += [
        "",
        f"Machine: {env.get('machine', '?')}. Kubernetes {env.get('kubernetes', '?')}, "
        f"Python {env.get('python', '?')}.",
        f"Command: `{env.get('command', '?')}`",
    ]
    if env.get("load"):
        lines.append(f"Load: {env['load']}")
    return "\n".join(lines) + "\n"
