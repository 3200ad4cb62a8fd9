"""Scenario ``memory``: the scheduler's resident memory on a large cluster.

One cluster state for every peer: ``nodes`` kwok nodes and ``pods`` pods in
all, of which ``pods - tail`` are created already bound (spread round robin,
100m / 128 MiB each) before any scheduler runs. Per peer: the scheduler
starts, lists and watches everything; then ``tail`` pending pods are created
and the peer schedules them (its informers must have synced to bind the
first). Once they are bound and the peer has idled ``idle_seconds``, its
peak RSS (VmHWM: the high-water mark since it started, which covers the
initial lists) and current RSS are read from /proc. The tail pods are
deleted before the next peer, so every peer sees the same cluster.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import peers, pyspy, residency
from bench.throughput import Progress, create_bodies, delete_pods, pod_body, rotation
from bench.timeline import Timeline
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace

SCENARIO = "memory"
VERSION = 1
BASE_NAMESPACE = "memory-base"


@dataclass(frozen=True, slots=True)
class Config:
    nodes: int = 5000
    pods: int = 30000
    tail: int = 1000
    repeat: int = 3
    peers: tuple[str, ...] = ("lasched", "kube-scheduler-tuned")
    idle_seconds: float = 10.0
    timeout: float = 900.0
    # Sample lasched with py-spy from its start to its first bind (last repetition).
    profile: str | None = None
    controller_manager: bool = True  # run kube-controller-manager in the dev cluster


@dataclass(slots=True)
class Sample:
    peer: str
    repeat: int
    peak_rss_mb: float
    rss_mb: float
    first_bind_s: float  # from the peer's start: lists, sync, first cycle, first bind
    tail_pods_per_s: float
    cpu_seconds: float
    # lasched only: MB resident by part after idling (bench/residency.py)
    parts_mb: dict[str, float] = field(default_factory=dict)


def bound_body(i: int, node: str) -> dict[str, Any]:
    body = pod_body(f"bound-{i}", "nobody")
    body["spec"]["nodeName"] = node
    return body


async def populate(kc: KubeClient, cfg: Config, node_names: list[str], progress: Progress) -> None:
    """The bound pods, created in chunks so that a progress line appears as they go."""
    await ensure_namespace(kc, BASE_NAMESPACE)
    count = cfg.pods - cfg.tail
    chunk = 2000
    for start in range(0, count, chunk):
        bodies = [
            bound_body(i, node_names[i % len(node_names)])
            for i in range(start, min(count, start + chunk))
        ]
        await create_bodies(kc, BASE_NAMESPACE, bodies)
        progress("bound pods", min(count, start + chunk), count)


async def measure_peer(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    peer: peers.Peer,
    cfg: Config,
    rep: int,
    progress: Progress,
) -> Sample:
    ns = f"mem-{peer.key}-{rep}"
    label = f"{peer.key} #{rep + 1}"
    await ensure_namespace(kc, ns)
    timeline = Timeline(kc, ns)
    await timeline.start()
    names = [f"tail-{i}" for i in range(cfg.tail)]
    await create_bodies(
        kc, ns, [pod_body(n, peer.scheduler_name) for n in names], progress=progress,
        label=f"{label}: create tail",
    )  # fmt: skip
    running = await peers.start(peer, kubeconfig=cluster.kubeconfig, workdir=cluster.workdir / ns)
    started = time.monotonic()
    recording = None
    if cfg.profile is not None and peer is peers.LASCHED and rep == cfg.repeat - 1:
        recording = await pyspy.Recording.start(running.child.pid, Path(cfg.profile))
    try:
        deadline = started + cfg.timeout
        while not await timeline.wait_bound(cfg.tail, timeout=1.0):
            if recording is not None and timeline.bound:
                await recording.stop()
                recording = None
            progress(f"{label}: sync and schedule", len(timeline.bound), cfg.tail)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: {len(timeline.bound)}/{cfg.tail} bound in time")
            if not running.alive():
                raise RuntimeError(f"{label}: the scheduler exited; see {cluster.workdir / ns}")
        progress(f"{label}: sync and schedule", cfg.tail, cfg.tail)
        await asyncio.sleep(cfg.idle_seconds)
        stats = running.stats()
        parts = residency.of_process(running.child.pid) if peer.is_lasched else {}
        times = sorted(timeline.bound.values())
        return Sample(
            peer=peer.key,
            repeat=rep,
            peak_rss_mb=stats.peak_rss_bytes / 2**20,
            rss_mb=stats.rss_bytes / 2**20,
            first_bind_s=times[0] - started,
            tail_pods_per_s=(len(times) - 1) / max(times[-1] - times[0], 1e-9),
            cpu_seconds=stats.cpu_seconds,
            parts_mb=parts,
        )
    finally:
        if recording is not None:
            await recording.stop()
        await running.stop()
        await timeline.stop()
        await delete_pods(kc, ns, timeout=600)


async def run(cfg: Config, progress: Progress) -> list[Sample]:
    samples: list[Sample] = []
    async with (
        DevCluster(
            controller_manager=cfg.controller_manager,
            nodes=cfg.nodes,
        ) as cluster,
        await cluster.client() as kc,
    ):
        specs = nodes.uniform(cfg.nodes, prefix="mem", regions=["r1", "r2", "r3"])
        await nodes.create_nodes(kc, specs, progress=lambda d, t: progress("kwok nodes", d, t))
        await nodes.wait_ready(kc, [s.name for s in specs], timeout=900)
        await populate(kc, cfg, [s.name for s in specs], progress)
        for rep in range(cfg.repeat):
            for key in rotation(cfg.peers, rep):
                sample = await measure_peer(
                    cluster=cluster, kc=kc, peer=peers.PEERS[key], cfg=cfg, rep=rep,
                    progress=progress,
                )  # fmt: skip
                samples.append(sample)
    return samples


FIGURES = ("peak_rss_mb", "rss_mb", "first_bind_s", "tail_pods_per_s", "cpu_seconds")


def summarise(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for peer in dict.fromkeys(s.peer for s in samples):
        rows = [s for s in samples if s.peer == peer]
        out[peer] = {
            f: {
                "median": statistics.median(getattr(s, f) for s in rows),
                "min": min(getattr(s, f) for s in rows),
                "max": max(getattr(s, f) for s in rows),
            }
            for f in FIGURES
        }
    return out


def to_json(
    cfg: Config,
    samples: list[Sample],
    env: dict[str, str],
    baseline: dict[str, object] | None = None,
) -> dict[str, Any]:
    """``baseline``: :func:`bench.residency.import_baseline`, measured in this run."""
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "summary": summarise(samples),
        "samples": [asdict(s) for s in samples],
        "import_baseline": baseline,
    }


def markdown(result: dict[str, Any]) -> str:
    cfg, env, summary = result["config"], result["environment"], result["summary"]

    def fmt(stat: dict[str, float] | None, digits: int = 0) -> str:
        if not stat:
            return "-"
        if stat["min"] == stat["max"]:
            return f"{stat['median']:.{digits}f}"
        return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f} to {stat['max']:.{digits}f})"

    lines = [
        f"### memory: {cfg['nodes']} nodes, {cfg['pods']} pods ({cfg['pods'] - cfg['tail']} "
        f"bound before the scheduler starts, {cfg['tail']} scheduled by it), "
        f"{cfg['repeat']} repetition(s)",
        "",
        "| scheduler | peak RSS MB | RSS after idling MB | start to first bind s "
        "| tail pods/s | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for peer, s in summary.items():
        lines.append(
            f"| {peers.LABELS.get(peer, peer)} | {fmt(s.get('peak_rss_mb'))} "
            f"| {fmt(s.get('rss_mb'))} | {fmt(s.get('first_bind_s'), 1)} "
            f"| {fmt(s.get('tail_pods_per_s'))} | {fmt(s.get('cpu_seconds'), 1)} |"
        )
    ours = summary.get("lasched", {}).get("peak_rss_mb", {}).get("median")
    for peer in (p for p in summary if p != "lasched"):
        theirs = summary[peer].get("peak_rss_mb", {}).get("median")
        if ours and theirs:
            lines.append("")
            lines.append(
                f"- lasched peak RSS / {peers.LABELS.get(peer, peer)}: **{ours / theirs:.2f}x**"
            )
    ours_last = [s for s in result["samples"] if s["peer"] == "lasched" and s.get("parts_mb")]
    if ours_last and result.get("import_baseline"):
        lines += ["", *residency.markdown(ours_last[-1]["parts_mb"], result["import_baseline"])]
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
