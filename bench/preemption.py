"""Scenario ``preemption``: churn on a full cluster, every new pod needing preemption.

``nodes`` kwok nodes of 4 CPU / 16 GiB are filled with low-priority pods
(priority 0, 500m / 1 GiB: 8 per node, created already bound, so no
scheduler is involved in filling). Then, with the peer running, high-priority
pods (PriorityClass ``bench-high``, 1 CPU / 2 GiB) arrive at ``rate`` per
second. None fits anywhere: each must evict at least two fillers.

Per preemptor, the time from its creation (ADDED on the benchmark's watch) to
its binding; victims per preemptor are the fillers deleted during the run
divided by the preemptors bound (2.0 is the least possible). The fillers and
preemptors are deleted, and the fillers created again, before the next peer.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import peers
from bench.throughput import (
    Progress,
    create_bodies,
    delete_pods,
    ensure_priority_class,
    percentile,
)
from bench.timeline import Timeline
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace

SCENARIO = "preemption"
VERSION = 1
HIGH = "bench-high"
FILLERS_PER_NODE = 8


@dataclass(frozen=True, slots=True)
class Config:
    nodes: int = 50
    preemptors: int = 100
    rate: float = 2.0
    repeat: int = 3
    peers: tuple[str, ...] = ("lasched", "kube-scheduler-tuned")
    timeout: float = 300.0
    controller_manager: bool = True  # run kube-controller-manager in the dev cluster


@dataclass(slots=True)
class Sample:
    peer: str
    repeat: int
    preemptors: int
    bound: int
    victims: int
    victims_per_preemptor: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    cpu_seconds: float | None = None
    peak_rss_mb: float | None = None
    latencies_ms: list[float] = field(default_factory=list)


def filler(i: int, node: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"filler-{i}", "labels": {"bench": SCENARIO, "role": "filler"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                }
            ],
        },
    }


def preemptor(i: int, scheduler: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"high-{i}", "labels": {"bench": SCENARIO, "role": "preemptor"}},
        "spec": {
            "schedulerName": scheduler,
            "priorityClassName": HIGH,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
                }
            ],
        },
    }


async def measure_peer(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    peer: peers.Peer,
    cfg: Config,
    rep: int,
    node_names: list[str],
    progress: Progress,
) -> Sample:
    ns = f"churn-{peer.key}-{rep}"
    label = f"{peer.key} #{rep + 1}"
    await ensure_namespace(kc, ns)
    fillers = [
        filler(i, node_names[i % len(node_names)])
        for i in range(len(node_names) * FILLERS_PER_NODE)
    ]
    timeline = Timeline(kc, ns)
    await timeline.start()
    await create_bodies(kc, ns, fillers, progress=progress, label=f"{label}: fill")
    running = await peers.start(peer, kubeconfig=cluster.kubeconfig, workdir=cluster.workdir / ns)
    try:
        # A warm-up preemptor (not counted): the peer has synced and preempts.
        await create_bodies(kc, ns, [_named(preemptor(0, peer.scheduler_name), "warmup")])
        deadline = time.monotonic() + 120
        while "warmup" not in timeline.bound:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: the warm-up preemptor was not bound within 120 s")
            await timeline.wait_bound(len(timeline.bound) + 1, timeout=0.5)
        before = {n for n in timeline.deleted if n.startswith("filler-")}
        cpu0 = running.stats().cpu_seconds

        bodies = [preemptor(i, peer.scheduler_name) for i in range(cfg.preemptors)]
        names = [b["metadata"]["name"] for b in bodies]
        creating = asyncio.create_task(
            create_bodies(kc, ns, bodies, rate=cfg.rate), name=f"preemptors-{ns}"
        )
        deadline = time.monotonic() + cfg.timeout + cfg.preemptors / cfg.rate
        while True:
            done = sum(1 for n in names if n in timeline.bound)
            progress(f"{label}: preemptors bound", done, len(names))
            if done == len(names):
                break
            if time.monotonic() > deadline:
                creating.cancel()
                raise TimeoutError(f"{label}: {done}/{len(names)} preemptors bound in time")
            await timeline.wait_bound(len(timeline.bound) + 1, timeout=0.5)
        await creating
        stats = running.stats()
        victims = len({n for n in timeline.deleted if n.startswith("filler-")} - before)
        lat = [(timeline.bound[n] - timeline.added[n]) * 1000 for n in names]
        return Sample(
            peer=peer.key,
            repeat=rep,
            preemptors=len(names),
            bound=len(names),
            victims=victims,
            victims_per_preemptor=victims / len(names),
            p50_ms=percentile(lat, 50),
            p90_ms=percentile(lat, 90),
            p99_ms=percentile(lat, 99),
            max_ms=max(lat),
            cpu_seconds=stats.cpu_seconds - cpu0,
            peak_rss_mb=stats.peak_rss_bytes / 2**20,
            latencies_ms=lat,
        )
    finally:
        await running.stop()
        await timeline.stop()
        await delete_pods(kc, ns)


def _named(body: dict[str, Any], name: str) -> dict[str, Any]:
    body["metadata"]["name"] = name
    return body


async def run(cfg: Config, progress: Progress) -> list[Sample]:
    samples: list[Sample] = []
    async with (
        DevCluster(
            controller_manager=cfg.controller_manager,
            nodes=cfg.nodes,
        ) as cluster,
        await cluster.client() as kc,
    ):
        specs = nodes.uniform(cfg.nodes, prefix="churn", cpu="4", memory="16Gi")
        await nodes.create_nodes(kc, specs, progress=lambda d, t: progress("kwok nodes", d, t))
        await nodes.wait_ready(kc, [s.name for s in specs], timeout=120)
        await ensure_priority_class(
            kc, name=HIGH, value=1000, description="bench: pods that preempt"
        )
        for rep in range(cfg.repeat):
            for key in cfg.peers:
                sample = await measure_peer(
                    cluster=cluster, kc=kc, peer=peers.PEERS[key], cfg=cfg, rep=rep,
                    node_names=[s.name for s in specs], progress=progress,
                )  # fmt: skip
                samples.append(sample)
    return samples


FIGURES = ("p50_ms", "p90_ms", "p99_ms", "max_ms", "victims_per_preemptor", "cpu_seconds",
           "peak_rss_mb")  # fmt: skip


def summarise(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for peer in dict.fromkeys(s.peer for s in samples):
        rows = [s for s in samples if s.peer == peer]
        out[peer] = {}
        for f in FIGURES:
            vals = [float(v) for s in rows if (v := getattr(s, f)) is not None]
            if vals:
                out[peer][f] = {"median": statistics.median(vals), "min": min(vals),
                                "max": max(vals)}  # fmt: skip
        pooled = [x for s in rows for x in s.latencies_ms]
        out[peer]["pooled_p50_ms"] = {"median": percentile(pooled, 50)}
        out[peer]["pooled_p99_ms"] = {"median": percentile(pooled, 99)}
    return out


def to_json(cfg: Config, samples: list[Sample], env: dict[str, str]) -> dict[str, Any]:
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "summary": summarise(samples),
        "samples": [{k: v for k, v in asdict(s).items() if k != "latencies_ms"} for s in samples],
    }


def markdown(result: dict[str, Any]) -> str:
    cfg, env, summary = result["config"], result["environment"], result["summary"]

    def fmt(stat: dict[str, float] | None, digits: int = 0) -> str:
        if not stat:
            return "-"
        m = stat["median"]
        if "min" not in stat or stat["min"] == stat["max"]:
            return f"{m:.{digits}f}"
        return f"{m:.{digits}f} ({stat['min']:.{digits}f} to {stat['max']:.{digits}f})"

    lines = [
        f"### preemption: {cfg['nodes']} full nodes ({cfg['nodes'] * FILLERS_PER_NODE} "
        f"priority-0 pods), {cfg['preemptors']} priority-1000 pods at {cfg['rate']:g}/s, "
        f"{cfg['repeat']} repetitions",
        "",
        "Creation to bound, per preemptor; medians over repetitions with the range in brackets, "
        "and the percentiles of all repetitions pooled.",
        "",
        "| scheduler | p50 ms | p90 ms | p99 ms | pooled p50 ms | pooled p99 ms "
        "| victims per preemptor (least: 2) | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for peer, s in summary.items():
        lines.append(
            f"| {peers.LABELS.get(peer, peer)} | {fmt(s.get('p50_ms'))} | {fmt(s.get('p90_ms'))} "
            f"| {fmt(s.get('p99_ms'))} | {fmt(s.get('pooled_p50_ms'))} "
            f"| {fmt(s.get('pooled_p99_ms'))} | {fmt(s.get('victims_per_preemptor'), 2)} "
            f"| {fmt(s.get('cpu_seconds'), 1)} | {fmt(s.get('peak_rss_mb'))} |"
        )
    ours = summary.get("lasched", {})
    lines.append("")
    for peer in (p for p in summary if p != "lasched"):
        theirs = summary[peer]
        for fig, name in (("pooled_p50_ms", "p50"), ("pooled_p99_ms", "p99")):
            a, b = ours.get(fig, {}).get("median"), theirs.get(fig, {}).get("median")
            if a and b:
                lines.append(f"- lasched {name} / {peers.LABELS.get(peer, peer)}: **{a / b:.2f}x**")
    lines += [
        "",
        f"Machine: {env.get('machine', '?')}. Kubernetes {env.get('kubernetes', '?')}, "
        f"etcd {env.get('etcd', '?')}, kwok {env.get('kwok', '?')}, "
        f"Python {env.get('python', '?')}.",
        f"Command: `{env.get('command', '?')}`",
    ]
    if env.get("load"):
        lines.append(f"Load: {env['load']}")
    return "\n".join(lines) + "\n"
