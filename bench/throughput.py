"""Scenario ``throughput``: pods scheduled per second and creation-to-done latency.

One control plane and one set of kwok nodes serve every peer in turn, in the
same run, repeated ``repeat`` times; each repetition runs the peers in a
different order (the list rotated by one place per repetition: a Latin square
when there are as many repetitions as peers), so no peer always runs first on
a fresh apiserver or last on a tired one. Per peer and repetition:

1. **burst**: ``pods`` pods are created while no scheduler runs (all alike,
   or with ``shapes="mixed"`` each of a cpu and memory drawn from its name
   and ``seed``: the same pods for every peer, rarely two alike in a row); the
   peer is started. A pod is **done** when both its binding and its ``Scheduled``
   Event are written (:mod:`bench.timeline`); throughput is ``(pods - 1) /
   (last done - first done)`` and the makespan runs from the peer's start to
   the last pod done. The same figures on bindings alone are reported beside
   them. After the last binding the Events get a bounded wait
   (``event_wait_seconds``): a scheduler whose broadcaster drops Events
   (client-go's does when its queue is full) has its missing Events counted
   and reported, and its done figures are over the pods whose Event came;
2. a pause (``pause_seconds``), so the burst's last writes are not in the
   next window;
3. **steady**: with the peer running, pods arrive at ``rate`` per second for
   ``steady_seconds``; each one's creation-to-done latency is recorded (and
   creation-to-bound beside it). The control plane's meter window closes when
   the last pod is done, so the Events' writes are in it;
4. the peer's CPU seconds and peak RSS are read from /proc; the cluster is
   listed and checked (:mod:`bench.verify`: capacity, every pod bound once,
   the pods' constraints). A failed check marks the run failed; the peer's
   pods are deleted, and the next peer waits ``pause_seconds``.

The **bind ceiling** is a minimal binder that binds pre-created pods round
robin to nodes, each binding followed by its ``Scheduled`` Event, with 64 in
flight: the most this control plane on this machine accepts of the writes a
scheduler makes. In the steady phase :mod:`bench.floor`, in its own process
like the schedulers, binds each pod the moment its watch shows it and then
writes its Event: its creation-to-bound and creation-to-done latencies are
the floor for any scheduler on this control plane and machine.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from bench import controlplane, peers, pyspy, verify
from bench.timeline import Timeline
from lasched.kube.binding import bind, now_micro
from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace
from lasched_dev.devcluster.processes import Child, spawn, stop_children

SCENARIO = "throughput"
VERSION = 2
CEILING = "bind-ceiling"

Progress = Callable[[str, int, int], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Config:
    nodes: int = 100
    pods: int = 1000
    rate: float = 100.0
    steady_seconds: float = 10.0
    repeat: int = 5
    peers: tuple[str, ...] = ("lasched", "kube-scheduler", "kube-scheduler-tuned")
    bind_ceiling: bool = True
    timeout: float = 300.0
    # After the last binding of a phase, how long its Scheduled Events may take to appear.
    event_wait_seconds: float = 60.0
    # Between a phase's last write and the next phase (and between peers).
    pause_seconds: float = 2.0
    # "alike": every pod 100m / 128 MiB; "mixed": each pod's cpu and memory drawn from
    # MIXED_CPU and MIXED_MEMORY by its name and ``seed`` (the same pods for every peer).
    shapes: str = "alike"
    seed: int = 1
    # Sample lasched with py-spy during its burst and steady phases (last repetition).
    profile: str | None = None  # path of the collapsed stacks
    controller_manager: bool = True  # run kube-controller-manager in the dev cluster


@dataclass(slots=True)
class Sample:
    peer: str
    repeat: int
    position: int  # 0: first in its repetition
    burst_pods_per_s: float  # bound and reported
    burst_makespan_s: float
    burst_pods_per_s_binds: float
    burst_makespan_binds_s: float
    burst_events_missing: int = 0  # pods whose Scheduled Event never came in the bounded wait
    burst_events_lag_s: float = 0.0  # last Event seen minus last binding seen
    steady_p50_ms: float | None = None  # creation to done
    steady_p90_ms: float | None = None
    steady_p99_ms: float | None = None
    steady_binds_p50_ms: float | None = None  # creation to bound
    steady_binds_p90_ms: float | None = None
    steady_binds_p99_ms: float | None = None
    steady_events_missing: int = 0
    duplicate_events: int = 0  # pods with more than one Scheduled Event
    cpu_seconds: float | None = None
    peak_rss_mb: float | None = None
    verify: dict[str, Any] = field(default_factory=dict)
    bound_curve: list[float] = field(default_factory=list)  # seconds since start, per bind
    done_curve: list[float] = field(default_factory=list)  # seconds since start, per pod done
    steady_latencies_ms: list[float] = field(default_factory=list)  # creation to done
    steady_bind_latencies_ms: list[float] = field(default_factory=list)
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


def rotation(entries: Sequence[T], rep: int) -> list[T]:
    """``entries`` rotated left by ``rep`` places: each repetition starts with another one."""
    if not entries:
        return []
    k = rep % len(entries)
    return [*entries[k:], *entries[:k]]


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


MIXED_CPU = ("50m", "100m", "200m", "300m", "500m")
MIXED_MEMORY = ("64Mi", "128Mi", "256Mi", "512Mi", "1Gi")
SHAPES = ("alike", "mixed")


def shaped_bodies(names: list[str], scheduler: str, cfg: Config) -> list[dict[str, Any]]:
    """The pods of ``names``: alike, or each of a shape drawn from its name and the seed."""
    bodies = [pod_body(name, scheduler) for name in names]
    if cfg.shapes == "mixed":
        for name, body in zip(names, bodies, strict=True):
            rng = random.Random(f"{cfg.seed}/{name}")
            requests = {"cpu": rng.choice(MIXED_CPU), "memory": rng.choice(MIXED_MEMORY)}
            body["spec"]["containers"][0]["resources"]["requests"] = requests
    return bodies


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


async def create_bench_nodes(kc: KubeClient, count: int, progress: Progress) -> None:
    """``count`` alike kwok nodes (bench-0, ...) over three regions, once all are Ready."""
    specs = nodes.uniform(count, prefix="bench", regions=["r1", "r2", "r3"])
    await nodes.create_nodes(kc, specs, progress=lambda d, t: progress("kwok nodes", d, t))
    await nodes.wait_ready(kc, [s.name for s in specs], timeout=120)


async def delete_pods(kc: KubeClient, namespace: str, *, timeout: float = 300) -> None:
    """Delete every pod of ``namespace`` and wait until none is left.

    Deleting thousands of pods in one collection call can outlast the
    apiserver's own request timeout (it answers 504, or closes the connection,
    and goes on deleting), so the call is repeated until the namespace is empty.
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
        except (OSError, aiohttp.ClientError, TimeoutError) as e:
            print(
                f"deleting the pods of {namespace}: {type(e).__name__}: {e}; again", file=sys.stderr
            )
        for _ in range(20):
            if not (await kc.get(f"/api/v1/namespaces/{namespace}/pods", limit=1))["items"]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"pods of {namespace} not deleted within {timeout} s")
            await asyncio.sleep(0.5)


async def write_scheduled_event(
    kc: KubeClient, namespace: str, name: str, uid: str, node: str
) -> None:
    """The ``Scheduled`` Event a scheduler writes after a binding (events.k8s.io/v1)."""
    await kc.post(
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "eventTime": now_micro(),
            "reportingController": CEILING,
            "reportingInstance": CEILING,
            "action": "Binding",
            "reason": "Scheduled",
            "regarding": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": namespace,
                "name": name,
                "uid": uid,
            },
            "note": f"Successfully assigned {namespace}/{name} to {node}",
            "type": "Normal",
        },
    )


# ---- waiting for a phase's writes ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhaseEnd:
    """How a phase's writes ended: pods never bound (only when a stall ends the wait),
    Events that never came, and how late the last Event was after the last binding."""

    events_missing: int
    events_lag_s: float
    unbound: int = 0


async def wait_writes(
    timeline: Timeline,
    names: list[str],
    *,
    timeout: float,
    event_wait: float,
    progress: Progress,
    label: str,
    events: bool = True,
    stall: float | None = None,
) -> PhaseEnd:
    """Until every pod of ``names`` is bound, then until each has its ``Scheduled`` Event
    or ``event_wait`` seconds have passed since the last binding. Progress shows binds,
    then Events.

    Without ``stall``, pods still unbound after ``timeout`` raise TimeoutError. With it,
    the wait for bindings also ends when none has come for ``stall`` seconds (or at
    ``timeout``), and the pods left unbound are counted instead.
    """
    deadline = time.monotonic() + timeout
    wanted = set(names)
    last, last_change = -1, time.monotonic()
    unbound = 0
    while not await timeline.wait_bound_names(wanted, timeout=0.5):
        got = sum(1 for n in names if n in timeline.bound)
        progress(f"{label}: bound", got, len(names))
        now = time.monotonic()
        if got != last:
            last, last_change = got, now
        if stall is not None and (now - last_change > stall or now > deadline):
            unbound = len(names) - got
            break
        if now > deadline:
            raise TimeoutError(f"{label}: {got}/{len(names)} bound after {timeout:.0f} s")
    bound = [n for n in names if n in timeline.bound]
    progress(f"{label}: bound", len(bound), len(names))
    if not events or not bound:
        return PhaseEnd(0, 0.0, unbound)
    last_bind = max(timeline.bound[n] for n in bound)
    until = last_bind + event_wait
    while not await timeline.wait_reported(bound, timeout=0.5):
        have = sum(1 for n in bound if n in timeline.scheduled)
        progress(f"{label}: Events", have, len(bound))
        if time.monotonic() > until:
            break
    missing = sum(1 for n in bound if n not in timeline.scheduled)
    progress(f"{label}: Events", len(bound) - missing, len(bound))
    seen = [timeline.scheduled[n] for n in bound if n in timeline.scheduled]
    return PhaseEnd(missing, max(0.0, max(seen, default=last_bind) - last_bind), unbound)


async def check(
    kc: KubeClient,
    timelines: Sequence[Timeline],
    *,
    expected: Sequence[str],
    rules: frozenset[str] = verify.KUBERNETES_RULES,
    rtt: verify.RttTable | None = None,
) -> verify.Verdict:
    """The cluster as the apiserver holds it now, checked for the pods of ``timelines``'
    namespaces; ``expected`` (``namespace/name``) must be bound."""
    stamps: dict[str, float] = {}
    rebound: dict[str, list[str]] = {}
    for t in timelines:
        stamps |= t.stamps()
        rebound |= {f"{t.namespace}/{n}": nodes for n, nodes in t.conflicts().items()}
    state = await verify.snapshot(kc, bound_at=stamps)
    spaces = {t.namespace for t in timelines}
    return verify.verify(
        state,
        expected=expected,
        rules=rules,
        rtt=rtt,
        rebound=rebound,
        subject=lambda p: p.namespace in spaces,
    )


# ---- one peer ------------------------------------------------------------------------


async def measure_peer(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    peer: peers.Peer,
    cfg: Config,
    rep: int,
    position: int,
    progress: Progress,
) -> Sample:
    ns = f"{peer.key}-{rep}"
    await ensure_namespace(kc, ns)
    label = f"{peer.key} #{rep + 1}"
    burst = [f"b-{i}" for i in range(cfg.pods)]
    await create_bodies(
        kc,
        ns,
        shaped_bodies(burst, peer.scheduler_name, cfg),
        progress=progress,
        label=f"{label}: create",
    )
    timeline = Timeline(kc, ns, events=True)
    await timeline.start()
    running = await peers.start(peer, kubeconfig=cluster.kubeconfig, workdir=cluster.workdir / ns)
    started = time.monotonic()
    recording = None
    if cfg.profile is not None and peer is peers.LASCHED and rep == cfg.repeat - 1:
        recording = await pyspy.Recording.start(running.child.pid, Path(cfg.profile))
    try:
        end = await wait_writes(
            timeline,
            burst,
            timeout=cfg.timeout,
            event_wait=cfg.event_wait_seconds,
            progress=progress,
            label=f"{label}: burst",
        )
        sample = _burst_sample(
            peer.key, rep, position, timeline=timeline, names=burst, started=started, end=end
        )
        await asyncio.sleep(cfg.pause_seconds)
        steady = [f"s-{i}" for i in range(int(cfg.rate * cfg.steady_seconds))]
        if steady:
            meter = controlplane.Meter(cluster, kc)
            await meter.start()
            cpu0 = running.stats().cpu_seconds
            await create_bodies(
                kc, ns, shaped_bodies(steady, peer.scheduler_name, cfg), rate=cfg.rate
            )
            end = await wait_writes(
                timeline,
                steady,
                timeout=cfg.timeout,
                event_wait=cfg.event_wait_seconds,
                progress=progress,
                label=f"{label}: steady",
            )
            window = await meter.stop()
            _steady_figures(sample, timeline, steady, end)
            _control_plane(sample, window, running.stats().cpu_seconds - cpu0)
        stats = running.stats()
        sample.cpu_seconds = stats.cpu_seconds
        sample.peak_rss_mb = stats.peak_rss_bytes / 2**20
        sample.duplicate_events = timeline.duplicate_events()
        verdict = await check(kc, [timeline], expected=[f"{ns}/{n}" for n in burst + steady])
        sample.verify = verdict.to_json()
        progress(f"{label}: check", 1, 1)
        if not verdict.ok:
            print(f"{label}: placement check failed: {verdict.summary()}", file=sys.stderr)
        return sample
    finally:
        if recording is not None:
            await recording.stop()
        await running.stop()
        await timeline.stop()
        await delete_pods(kc, ns)
        await asyncio.sleep(cfg.pause_seconds)


def _burst_sample(
    peer: str,
    rep: int,
    position: int,
    *,
    timeline: Timeline,
    names: list[str],
    started: float,
    end: PhaseEnd,
) -> Sample:
    binds = sorted(timeline.bound[n] for n in names)
    done = sorted(t for n in names if (t := timeline.done(n)) is not None)
    return Sample(
        peer=peer,
        repeat=rep,
        position=position,
        burst_pods_per_s=_rate(done),
        burst_makespan_s=(done[-1] - started) if done else float("nan"),
        burst_pods_per_s_binds=_rate(binds),
        burst_makespan_binds_s=binds[-1] - started,
        burst_events_missing=end.events_missing,
        burst_events_lag_s=end.events_lag_s,
        bound_curve=[t - started for t in binds],
        done_curve=[t - started for t in done],
    )


def _rate(times: list[float]) -> float:
    if len(times) < 2:
        return float("nan")
    return (len(times) - 1) / max(times[-1] - times[0], 1e-9)


async def measure_ceiling(
    cluster: DevCluster,
    kc: KubeClient,
    cfg: Config,
    *,
    rep: int,
    position: int,
    progress: Progress,
) -> Sample:
    ns = f"bind-ceiling-{rep}"
    await ensure_namespace(kc, ns)
    names = [f"b-{i}" for i in range(cfg.pods)]
    label = f"bind-ceiling #{rep + 1}"
    await create_bodies(
        kc, ns, shaped_bodies(names, "nobody", cfg), progress=progress, label=f"{label}: create"
    )
    listing = await kc.get(f"/api/v1/namespaces/{ns}/pods")
    uids = {p["metadata"]["name"]: p["metadata"]["uid"] for p in listing["items"]}
    timeline = Timeline(kc, ns, events=True)
    await timeline.start()
    sem = asyncio.Semaphore(64)
    started = time.monotonic()

    async def one(i: int, name: str) -> None:
        node = f"bench-{i % cfg.nodes}"
        async with sem:
            await bind(kc, namespace=ns, name=name, uid=uids[name], node=node)
            await write_scheduled_event(kc, ns, name, uids[name], node)

    try:
        async with asyncio.TaskGroup() as tg:
            for i, name in enumerate(names):
                tg.create_task(one(i, name))
        end = await wait_writes(
            timeline,
            names,
            timeout=cfg.timeout,
            event_wait=cfg.event_wait_seconds,
            progress=progress,
            label=f"{label}: bind",
        )
        sample = _burst_sample(
            CEILING, rep, position, timeline=timeline, names=names, started=started, end=end
        )
        await asyncio.sleep(cfg.pause_seconds)
        steady = [f"s-{i}" for i in range(int(cfg.rate * cfg.steady_seconds))]
        if steady:
            floor = await start_floor(cluster, [ns], cfg.nodes, workdir=cluster.workdir / ns)
            try:
                meter = controlplane.Meter(cluster, kc)
                await meter.start()
                cpu0 = peers.proc_stats(floor.pid).cpu_seconds
                await create_bodies(kc, ns, shaped_bodies(steady, "nobody", cfg), rate=cfg.rate)
                end = await wait_writes(
                    timeline,
                    steady,
                    timeout=cfg.timeout,
                    event_wait=cfg.event_wait_seconds,
                    progress=progress,
                    label=f"{label}: steady",
                )
                window = await meter.stop()
                floor_cpu = peers.proc_stats(floor.pid).cpu_seconds - cpu0
            finally:
                await stop_children([floor], grace=2)
            _steady_figures(sample, timeline, steady, end)
            _control_plane(sample, window, floor_cpu)
        verdict = await check(kc, [timeline], expected=[f"{ns}/{n}" for n in names + steady])
        sample.verify = verdict.to_json()
        return sample
    finally:
        await timeline.stop()
        await delete_pods(kc, ns)
        await asyncio.sleep(cfg.pause_seconds)


async def start_floor(
    cluster: DevCluster,
    namespaces: list[str],
    nodes: int | str,
    *,
    workdir: Path,
    scheduler: str | None = None,
) -> Child:
    """``bench.floor`` in its own process, once its watches are open: it binds the new pods
    of ``namespaces`` round robin over ``nodes`` (a count of bench nodes, or a label
    selector), only those naming ``scheduler`` if given."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "bench.floor", str(cluster.kubeconfig), ",".join(namespaces)]
    argv += [str(nodes), *([scheduler] if scheduler else [])]
    child = spawn("floor", argv, log_dir=workdir, detached=False)
    log = workdir / "floor.log"
    for _ in range(400):
        if b"watching" in log.read_bytes():
            return child
        if not child.alive():
            break
        await asyncio.sleep(0.05)
    await stop_children([child], grace=2)
    raise TimeoutError(f"bench.floor did not start watching: {log.read_text()[-2000:]}")


def _steady_figures(sample: Sample, timeline: Timeline, steady: list[str], end: PhaseEnd) -> None:
    binds = [
        (timeline.bound[n] - timeline.added[n]) * 1000
        for n in steady
        if n in timeline.bound and n in timeline.added
    ]
    done = [
        (t - timeline.added[n]) * 1000
        for n in steady
        if n in timeline.added and (t := timeline.done(n)) is not None
    ]
    sample.steady_latencies_ms = done
    sample.steady_bind_latencies_ms = binds
    sample.steady_p50_ms = percentile(done, 50)
    sample.steady_p90_ms = percentile(done, 90)
    sample.steady_p99_ms = percentile(done, 99)
    sample.steady_binds_p50_ms = percentile(binds, 50)
    sample.steady_binds_p90_ms = percentile(binds, 90)
    sample.steady_binds_p99_ms = percentile(binds, 99)
    sample.steady_events_missing = end.events_missing


def _control_plane(sample: Sample, window: controlplane.Window, scheduler_cpu: float) -> None:
    sample.steady_cpu_percent = {
        **window.cpu_percent,
        "scheduler": 100 * scheduler_cpu / max(window.seconds, 1e-9),
    }
    sample.steady_apiserver = {
        kind: {"requests": n, "mean_ms": ms} for kind, (n, ms) in window.requests.items()
    }


def orders(cfg: Config) -> list[list[str]]:
    """The peers' order in each repetition."""
    entries = [*cfg.peers, *([CEILING] if cfg.bind_ceiling else [])]
    return [rotation(entries, rep) for rep in range(cfg.repeat)]


async def run(cfg: Config, progress: Progress) -> list[Sample]:
    samples: list[Sample] = []
    async with (
        DevCluster(
            controller_manager=cfg.controller_manager,
            nodes=cfg.nodes,
        ) as cluster,
        await cluster.client() as kc,
    ):
        await create_bench_nodes(kc, cfg.nodes, progress)
        for rep, order in enumerate(orders(cfg)):
            for position, key in enumerate(order):
                if key == CEILING:
                    samples.append(
                        await measure_ceiling(
                            cluster, kc, cfg, rep=rep, position=position, progress=progress
                        )
                    )
                    continue
                samples.append(
                    await measure_peer(
                        cluster=cluster,
                        kc=kc,
                        peer=peers.PEERS[key],
                        cfg=cfg,
                        rep=rep,
                        position=position,
                        progress=progress,
                    )
                )
    return samples


# ---- figures ---------------------------------------------------------------------------

FIGURES = (
    "burst_pods_per_s",
    "burst_makespan_s",
    "burst_pods_per_s_binds",
    "burst_makespan_binds_s",
    "burst_events_missing",
    "burst_events_lag_s",
    "steady_p50_ms",
    "steady_p90_ms",
    "steady_p99_ms",
    "steady_binds_p50_ms",
    "steady_binds_p90_ms",
    "steady_binds_p99_ms",
    "steady_events_missing",
    "duplicate_events",
    "cpu_seconds",
    "peak_rss_mb",
)

# Ratios of lasched's figure to another peer's, each in the same repetition.
RATIOS = ("burst_pods_per_s", "burst_pods_per_s_binds", "steady_p99_ms", "steady_binds_p99_ms")


def stat(vals: list[float]) -> dict[str, float]:
    """Median, min, max and how many values."""
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def summarise(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    """Median, min, max and count of every figure, per peer."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for peer in dict.fromkeys(s.peer for s in samples):
        rows = [s for s in samples if s.peer == peer]
        out[peer] = {
            "runs": {"median": len(rows), "min": len(rows), "max": len(rows), "n": len(rows)}
        }
        for f in FIGURES:
            vals = [float(v) for s in rows if _finite(v := getattr(s, f))]
            if vals:
                out[peer][f] = stat(vals)
        for name in dict.fromkeys(k for s in rows for k in s.steady_cpu_percent):
            vals = [s.steady_cpu_percent[name] for s in rows if name in s.steady_cpu_percent]
            out[peer][f"cpu_percent:{name}"] = stat(vals)
        for kind in dict.fromkeys(k for s in rows for k in s.steady_apiserver):
            vals = [s.steady_apiserver[kind]["mean_ms"] for s in rows if kind in s.steady_apiserver]
            out[peer][f"apiserver_ms:{kind}"] = stat(vals)
    return out


def ratios(samples: list[Sample], ours: str = "lasched") -> dict[str, dict[str, dict[str, float]]]:
    """Per other peer and figure: lasched's value over the peer's, in each repetition
    where both ran; median, min, max and the count."""
    mine = {s.repeat: s for s in samples if s.peer == ours}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for peer in dict.fromkeys(s.peer for s in samples if s.peer != ours):
        theirs = {s.repeat: s for s in samples if s.peer == peer}
        for f in RATIOS:
            vals = []
            for rep in sorted(mine.keys() & theirs.keys()):
                a, b = getattr(mine[rep], f), getattr(theirs[rep], f)
                if _finite(a) and _finite(b) and b:
                    vals.append(a / b)
            if vals:
                out.setdefault(peer, {})[f] = stat(vals)
    return out


def failures(samples: list[Any]) -> list[str]:
    """One line per run whose placement check failed."""
    out = []
    for s in samples:
        v = s.verify if hasattr(s, "verify") else {}
        if v and not v.get("ok", True):
            first = (v.get("first") or [{}])[0]
            out.append(
                f"{s.peer} #{s.repeat + 1}: {v['violations']} violation(s) "
                f"({', '.join(f'{k} {n}' for k, n in sorted(v['by_rule'].items()))}); first: "
                f"{first.get('rule')} pod {first.get('pod')} node {first.get('node')}: "
                f"{first.get('detail')}"
            )
    return out


def to_json(cfg: Config, samples: list[Sample], env: dict[str, str]) -> dict[str, Any]:
    failed = failures(samples)
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "orders": orders(cfg),
        "summary": summarise(samples),
        "ratios": ratios(samples),
        "failed": failed,
        "samples": [
            {
                k: v
                for k, v in asdict(s).items()
                if k
                not in (
                    "bound_curve",
                    "done_curve",
                    "steady_latencies_ms",
                    "steady_bind_latencies_ms",
                )
            }
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
