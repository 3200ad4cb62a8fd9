"""Scenario ``throughput``: pods bound per second and creation-to-bound latency.

One control plane and one set of kwok nodes serve every peer in turn, in the
same run, repeated ``repeat`` times in rotation so that a noisy neighbour
hurts all peers alike. Per peer and repetition:

1. **burst**: ``pods`` pods are created while no scheduler runs; the peer is
   started; throughput is ``pods / (last bound - first bound)`` and the
   makespan is from the peer's start to the last bind;
2. **steady**: with the peer running, pods arrive at ``rate`` per second for
   ``steady_seconds``; each one's creation-to-bound latency is recorded;
3. the peer's CPU seconds and peak RSS are read from /proc; its pods are
   deleted before the next peer starts.

The **bind ceiling** is a minimal binder that binds pre-created pods round
robin to nodes with 64 requests in flight: the most this control plane on this
machine accepts, against which the schedulers' throughput is set. In the
steady phase :mod:`bench.floor`, in its own process like the schedulers,
binds each pod the moment its watch shows it: its creation-to-bound latency
is the floor for any scheduler on this control plane and machine.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import controlplane, peers, pyspy
from bench.timeline import Timeline
from lasched.devcluster import nodes
from lasched.devcluster.cluster import DevCluster, ensure_namespace
from lasched.devcluster.processes import Child, spawn, stop_children
from lasched.kube.binding import bind
from lasched.kube.client import ApiError, KubeClient

SCENARIO = "throughput"
VERSION = 1

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Config:
    nodes: int = 100
    pods: int = 1000
    rate: float = 100.0
    steady_seconds: float = 10.0
    repeat: int = 3
    peers: tuple[str, ...] = ("lasched", "kube-scheduler", "kube-scheduler-tuned")
    bind_ceiling: bool = True
    timeout: float = 300.0
    # Sample lasched with py-spy during its burst and steady phases (last repetition).
    profile: str | None = None  # path of the collapsed stacks
    controller_manager: bool = True  # run kube-controller-manager in the dev cluster


@dataclass(slots=True)
class Sample:
    peer: str
    repeat: int
    burst_pods_per_s: float
    burst_makespan_s: float
    steady_p50_ms: float | None = None
    steady_p90_ms: float | None = None
    steady_p99_ms: float | None = None
    cpu_seconds: float | None = None
    peak_rss_mb: float | None = None
    bound_curve: list[float] = field(default_factory=list)  # seconds since start, per bind
    steady_latencies_ms: list[float] = field(default_factory=list)
    # The steady phase: each process's share of one core (%), "scheduler" the peer's own,
    # and the apiserver's mean time per request kind (ms) with the number of requests.
    steady_cpu_percent: dict[str, float] = field(default_factory=dict)
    steady_apiserver: dict[str, dict[str, float]] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def pod_body(name: str, scheduler: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"bench": SCENARIO}},
        "spec": {
            "schedulerName": scheduler,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                }
            ],
        },
    }


async def create_pods(
    kc: KubeClient,
    namespace: str,
    names: list[str],
    scheduler: str,
    *,
    rate: float | None = None,
    progress: Progress | None = None,
    label: str = "",
) -> None:
    """Create pods as fast as possible, or paced at ``rate`` per second."""
    bodies = [pod_body(name, scheduler) for name in names]
    await create_bodies(kc, namespace, bodies, rate=rate, progress=progress, label=label)


async def create_bodies(
    kc: KubeClient,
    namespace: str,
    bodies: list[dict[str, Any]],
    *,
    rate: float | None = None,
    progress: Progress | None = None,
    label: str = "",
) -> None:
    """Create these pods, 64 requests in flight, or paced at ``rate`` per second."""
    sem = asyncio.Semaphore(64)
    done = 0
    start = time.monotonic()

    async def one(body: dict[str, Any]) -> None:
        nonlocal done
        async with sem:
            await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
        done += 1
        if progress and (done % 50 == 0 or done == len(bodies)):
            progress(label, done, len(bodies))

    async with asyncio.TaskGroup() as tg:
        for i, body in enumerate(bodies):
            if rate:
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            tg.create_task(one(body))


async def delete_pods(kc: KubeClient, namespace: str, *, timeout: float = 300) -> None:
    """Delete every pod of ``namespace`` and wait until none is left.

    Deleting thousands of pods in one collection call can outlast the
    apiserver's own request timeout (it answers 504 and goes on deleting), so
    the call is repeated until the namespace is empty.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            await kc.request(
                "DELETE",
                f"/api/v1/namespaces/{namespace}/pods",
                body={"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0},
                timeout=timeout,
            )
        except ApiError as e:
            if e.status != 504:
                raise
        for _ in range(20):
            if not (await kc.get(f"/api/v1/namespaces/{namespace}/pods", limit=1))["items"]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"pods of {namespace} not deleted within {timeout} s")
            await asyncio.sleep(0.5)


async def measure_peer(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    peer: peers.Peer,
    cfg: Config,
    rep: int,
    progress: Progress,
) -> Sample:
    ns = f"{peer.key}-{rep}"
    await ensure_namespace(kc, ns)
    label = f"{peer.key} #{rep + 1}"
    burst = [f"b-{i}" for i in range(cfg.pods)]
    await create_pods(
        kc, ns, burst, peer.scheduler_name, progress=progress, label=f"{label}: create"
    )
    timeline = Timeline(kc, ns)
    await timeline.start()
    running = await peers.start(peer, kubeconfig=cluster.kubeconfig, workdir=cluster.workdir / ns)
    started = time.monotonic()
    recording = None
    if cfg.profile is not None and peer is peers.LASCHED and rep == cfg.repeat - 1:
        recording = await pyspy.Recording.start(running.child.pid, Path(cfg.profile))
    try:
        await _wait(timeline, cfg.pods, cfg.timeout, progress, f"{label}: burst")
        times = sorted(timeline.bound.values())
        sample = Sample(
            peer=peer.key,
            repeat=rep,
            burst_pods_per_s=(len(times) - 1) / max(times[-1] - times[0], 1e-9),
            burst_makespan_s=times[-1] - started,
            bound_curve=[t - started for t in times],
        )
        steady = [f"s-{i}" for i in range(int(cfg.rate * cfg.steady_seconds))]
        if steady:
            meter = controlplane.Meter(cluster, kc)
            await meter.start()
            cpu0 = running.stats().cpu_seconds
            await create_pods(kc, ns, steady, peer.scheduler_name, rate=cfg.rate)
            await _wait(timeline, cfg.pods + len(steady), cfg.timeout, progress, f"{label}: steady")
            window = await meter.stop()
            _steady_figures(sample, timeline, steady)
            _control_plane(sample, window, running.stats().cpu_seconds - cpu0)
        stats = running.stats()
        sample.cpu_seconds = stats.cpu_seconds
        sample.peak_rss_mb = stats.peak_rss_bytes / 2**20
        return sample
    finally:
        if recording is not None:
            await recording.stop()
        await running.stop()
        await timeline.stop()
        await delete_pods(kc, ns)


async def measure_ceiling(
    cluster: DevCluster, kc: KubeClient, cfg: Config, rep: int, progress: Progress
) -> Sample:
    ns = f"bind-ceiling-{rep}"
    await ensure_namespace(kc, ns)
    names = [f"b-{i}" for i in range(cfg.pods)]
    label = f"bind-ceiling #{rep + 1}"
    await create_pods(kc, ns, names, "nobody", progress=progress, label=f"{label}: create")
    listing = await kc.get(f"/api/v1/namespaces/{ns}/pods")
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in listing["items"]}
    timeline = Timeline(kc, ns)
    await timeline.start()
    sem = asyncio.Semaphore(64)
    started = time.monotonic()

    async def one(i: int, name: str) -> None:
        async with sem:
            await bind(kc, namespace=ns, name=name, uid=uids[name], node=f"bench-{i % cfg.nodes}")

    try:
        async with asyncio.TaskGroup() as tg:
            for i, name in enumerate(names):
                tg.create_task(one(i, name))
        await _wait(timeline, cfg.pods, cfg.timeout, progress, f"{label}: bind")
        times = sorted(timeline.bound.values())
        sample = Sample(
            peer="bind-ceiling",
            repeat=rep,
            burst_pods_per_s=(len(times) - 1) / max(times[-1] - times[0], 1e-9),
            burst_makespan_s=times[-1] - started,
            bound_curve=[t - started for t in times],
        )
        steady = [f"s-{i}" for i in range(int(cfg.rate * cfg.steady_seconds))]
        if steady:
            floor = await _start_floor(cluster, ns, cfg.nodes)
            try:
                meter = controlplane.Meter(cluster, kc)
                await meter.start()
                cpu0 = peers.proc_stats(floor.pid).cpu_seconds
                await create_pods(kc, ns, steady, "nobody", rate=cfg.rate)
                await _wait(timeline, cfg.pods + len(steady), cfg.timeout, progress,
                            f"{label}: steady")  # fmt: skip
                window = await meter.stop()
                floor_cpu = peers.proc_stats(floor.pid).cpu_seconds - cpu0
            finally:
                await stop_children([floor], grace=2)
            _steady_figures(sample, timeline, steady)
            _control_plane(sample, window, floor_cpu)
        return sample
    finally:
        await timeline.stop()
        await delete_pods(kc, ns)


async def _start_floor(cluster: DevCluster, ns: str, nodes: int) -> Child:
    """``bench.floor`` in its own process, once its watch is open."""
    workdir = cluster.workdir / ns
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bench.floor", str(cluster.kubeconfig), ns, str(nodes)]
    child = spawn("floor", argv, log_dir=workdir, detached=False)
    log = workdir / "floor.log"
    for _ in range(200):
        if b"watching" in log.read_bytes():
            return child
        await asyncio.sleep(0.05)
    await stop_children([child], grace=2)
    raise TimeoutError(f"bench.floor did not start watching: {log.read_text()[-2000:]}")


def _steady_figures(sample: Sample, timeline: Timeline, steady: list[str]) -> None:
    lat = [
        (timeline.bound[n] - timeline.added[n]) * 1000
        for n in steady
        if n in timeline.bound and n in timeline.added
    ]
    sample.steady_latencies_ms = lat
    sample.steady_p50_ms = percentile(lat, 50)
    sample.steady_p90_ms = percentile(lat, 90)
    sample.steady_p99_ms = percentile(lat, 99)


def _control_plane(sample: Sample, window: controlplane.Window, scheduler_cpu: float) -> None:
    sample.steady_cpu_percent = {
        **window.cpu_percent,
        "scheduler": 100 * scheduler_cpu / max(window.seconds, 1e-9),
    }
    sample.steady_apiserver = {
        kind: {"requests": n, "mean_ms": ms} for kind, (n, ms) in window.requests.items()
    }


async def _wait(
    timeline: Timeline, count: int, timeout: float, progress: Progress, label: str
) -> None:
    deadline = time.monotonic() + timeout
    while not await timeline.wait_bound(count, timeout=0.5):
        progress(label, min(len(timeline.bound), count), count)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{label}: {len(timeline.bound)}/{count} bound after {timeout:.0f} s"
            )
    progress(label, count, count)


async def run(cfg: Config, progress: Progress) -> list[Sample]:
    samples: list[Sample] = []
    async with (
        DevCluster(controller_manager=cfg.controller_manager) as cluster,
        await cluster.client() as kc,
    ):
        specs = nodes.uniform(cfg.nodes, prefix="bench", regions=["r1", "r2", "r3"])
        await nodes.create_nodes(kc, specs, progress=lambda d, t: progress("kwok nodes", d, t))
        await nodes.wait_ready(kc, [s.name for s in specs], timeout=120)
        for rep in range(cfg.repeat):
            for key in cfg.peers:
                peer = peers.PEERS[key]
                samples.append(
                    await measure_peer(
                        cluster=cluster, kc=kc, peer=peer, cfg=cfg, rep=rep, progress=progress
                    )
                )
            if cfg.bind_ceiling:
                samples.append(await measure_ceiling(cluster, kc, cfg, rep, progress))
    return samples


def summarise(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    """Median, min and max of every figure, per peer."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    figures = (
        "burst_pods_per_s", "burst_makespan_s", "steady_p50_ms", "steady_p90_ms",
        "steady_p99_ms", "cpu_seconds", "peak_rss_mb",
    )  # fmt: skip
    for peer in dict.fromkeys(s.peer for s in samples):
        rows = [s for s in samples if s.peer == peer]
        out[peer] = {}
        for f in figures:
            vals = [v for s in rows if (v := getattr(s, f)) is not None]
            if vals:
                out[peer][f] = _stat(vals)
        for name in dict.fromkeys(k for s in rows for k in s.steady_cpu_percent):
            vals = [s.steady_cpu_percent[name] for s in rows if name in s.steady_cpu_percent]
            out[peer][f"cpu_percent:{name}"] = _stat(vals)
        for kind in dict.fromkeys(k for s in rows for k in s.steady_apiserver):
            vals = [s.steady_apiserver[kind]["mean_ms"] for s in rows if kind in s.steady_apiserver]
            out[peer][f"apiserver_ms:{kind}"] = _stat(vals)
    return out


def _stat(vals: list[float]) -> dict[str, float]:
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}


def to_json(cfg: Config, samples: list[Sample], env: dict[str, str]) -> dict[str, Any]:
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "summary": summarise(samples),
        "samples": [
            {k: v for k, v in asdict(s).items() if k not in ("bound_curve", "steady_latencies_ms")}
            for s in samples
        ],
    }


def results_dir() -> Path:
    return Path(__file__).parent / "results"


async def ensure_priority_class(kc: KubeClient, *, name: str, value: int, description: str) -> None:
    """Create a PriorityClass unless one of that name exists."""
    try:
        await kc.post(
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": {"name": name},
                "value": value,
                "description": description,
            },
        )
    except ApiError as e:
        if not e.conflict:
            raise
