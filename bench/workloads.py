"""Scenario ``workloads``: kube-scheduler's own scheduler_perf test cases, and mixed shapes.

The test cases are kube-scheduler's, not ours: ``bench/scheduler_perf/`` holds
them as the Kubernetes project wrote them (performance-config.yaml and the
templates it names, Apache-2.0, origin and commit in each file's header).
This module interprets their workload ops:

- ``createNodes`` (``count``/``countParam``, ``nodeTemplatePath``,
  ``labelNodePrepareStrategy``: the label's values round robin, as
  scheduler_perf's ``LabelNodePrepareStrategy`` does);
- ``createNamespaces`` (``prefix``, ``count``/``countParam``);
- ``createPods`` (``count``/``countParam``, ``podTemplatePath`` or the test
  case's ``defaultPodTemplatePath``, ``namespace`` or ``namespace-<op index>``
  as scheduler_perf names it, ``collectMetrics``, ``skipWaitToCompletion``);
- ``barrier``: until every pod created so far is bound.

Other ops (churn, deletePods, createPodSets ...) are refused by name. Each
test case runs with the params of its ``500Nodes`` variant (PreemptionBasic
has none: its ``1000Nodes`` one), scaled in proportion to ``--nodes``.
Adaptations, all needed by a real apiserver or by the comparison: nodes are
kwok nodes with the template's capacity and labels (and the
``kubernetes.io/hostname`` label a kubelet sets); each pod gets a name (the
template's ``generateName`` plus the phase and op) and the peer's
``schedulerName``; a template's ``spec.priority: N``, which the Priority
admission plugin refuses without a class, becomes ``priorityClassName:
scheduler-perf-N`` (a PriorityClass of value N).

Per test case the nodes are created once; then, per repetition, each peer in
turn (the order rotating per repetition) starts, runs every pod op, and is
stopped; its pods are deleted before the next. A ``createPods`` op waits
until its pods are bound and their ``Scheduled`` Events written (a bounded
wait, as in the throughput scenario), then pauses. The measured op
(``collectMetrics``) gives pods per second from its first creation to its
last pod done (bound and reported) and on bindings alone. After the peer's
last op the cluster is listed and checked (:mod:`bench.verify`): every pod
bound once within capacity, and every pod's node affinity, taints, pod
affinity and anti-affinity, and topology spread. A scheduler that lacks a
feature the pods use still runs the test case, and the check shows what it
broke: the run is marked failed.

**MixedShapes** is generated from ``--seed``: nodes of four shapes in three
zones, a tenth of them tainted ``dedicated=batch:NoSchedule``; pods of
100m to 2 CPU and 64 MiB to 2 GiB, about 15 % with a required node affinity
(a node pool or two zones), about 10 % tolerating the taint, and three
priorities. No two pods in a row need be alike, so opportunistic batching
gets no free ride.
"""

from __future__ import annotations

import asyncio
import copy
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import yaml

from bench import controlplane, peers, pyspy
from bench.report import check_lines, cores_table, environment_lines, label, order_lines
from bench.throughput import (
    Progress,
    check,
    create_bodies,
    delete_pods,
    ensure_priority_class,
    failures,
    percentile,
    rotation,
    start_floor,
    stat,
    wait_writes,
)
from bench.timeline import Timeline
from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace

SCENARIO = "workloads"
VERSION = 1

CONFIG = Path(__file__).parent / "scheduler_perf" / "performance-config.yaml"
TEMPLATES = CONFIG.parent / "templates"
MIXED_SHAPES = "MixedShapes"
WORKLOADS = (
    "SchedulingBasic",
    "SchedulingNodeAffinity",
    "SchedulingPodAffinity",
    "SchedulingPodAntiAffinity",
    "SchedulingPreferredPodAffinity",
    "SchedulingPreferredPodAntiAffinity",
    "TopologySpreading",
    "PreferredTopologySpreading",
    "PreemptionBasic",
    "MixedSchedulingBasePod",
    MIXED_SHAPES,
)
WORKLOAD_LABEL = "bench.lasched.io/workload"
REFERENCE_VARIANT = "500Nodes"


class UnsupportedOp(ValueError):
    """A workload op this interpreter does not run."""


@dataclass(frozen=True, slots=True)
class PodOp:
    index: int  # the op's index in the workload template
    namespace: str
    bodies: tuple[dict[str, Any], ...]
    measured: bool
    wait: bool = True

    @property
    def names(self) -> list[str]:
        return [b["metadata"]["name"] for b in self.bodies]


@dataclass(frozen=True, slots=True)
class Barrier:
    index: int


Step = PodOp | Barrier


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    variant: str  # which params it runs with, and how they were scaled
    params: dict[str, int]
    nodes: tuple[nodes.NodeSpec, ...]
    namespaces: tuple[str, ...]
    priority_classes: dict[str, int]
    # (scheduler name, a tag unique to the phase) -> the pod ops and barriers, in order
    steps: Callable[[str, str], list[Step]]

    def pod_namespaces(self, steps: list[Step]) -> list[str]:
        return list(dict.fromkeys(s.namespace for s in steps if isinstance(s, PodOp)))


# ---- scheduler_perf's test cases --------------------------------------------------------


def load_cases(path: Path = CONFIG) -> dict[str, dict[str, Any]]:
    cases = yaml.safe_load(path.read_text())
    return {c["name"]: c for c in cases}


def template(path: str) -> dict[str, Any]:
    """A template named as the config does (``../templates/x.yaml``): ours of that name."""
    data: dict[str, Any] = yaml.safe_load((TEMPLATES / Path(path).name).read_text())
    return data


def choose_params(case: dict[str, Any], target_nodes: int) -> tuple[str, dict[str, int]]:
    """The reference variant's params (``500Nodes``, else the smallest of at least 500
    nodes), every count scaled by ``target_nodes`` over the variant's node count."""
    variants = case["workloads"]
    chosen = next((w for w in variants if w["name"] == REFERENCE_VARIANT), None)
    if chosen is None:
        big = [w for w in variants if _node_count(w["params"]) >= 500]
        chosen = min(big, key=lambda w: _node_count(w["params"]))
    base = _node_count(chosen["params"])
    k = target_nodes / base
    params = {p: max(1, round(v * k)) for p, v in chosen["params"].items()}
    how = chosen["name"] if k == 1 else f"{chosen['name']} scaled by {k:g}"
    return how, params


def _node_count(params: dict[str, int]) -> int:
    return sum(v for p, v in params.items() if p.lower().endswith("nodes"))


def _count(op: dict[str, Any], params: dict[str, int]) -> int:
    if "count" in op:
        return int(op["count"])
    name = str(op["countParam"]).lstrip("$")
    return params[name]


def _pod_body(tmpl: dict[str, Any], name: str, scheduler: str, workload: str) -> dict[str, Any]:
    body = copy.deepcopy(tmpl)
    meta = body.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta["name"] = name
    meta.setdefault("labels", {})[WORKLOAD_LABEL] = workload
    spec = body["spec"]
    spec["schedulerName"] = scheduler
    if "priority" in spec:
        spec["priorityClassName"] = priority_class(int(spec.pop("priority")))
    return body


def priority_class(value: int) -> str:
    return f"scheduler-perf-{value}"


def _node_specs(
    tmpl: dict[str, Any],
    count: int,
    *,
    prefix: str,
    workload: str,
    strategy: dict[str, Any] | None,
) -> list[nodes.NodeSpec]:
    cap = (tmpl.get("status") or {}).get("capacity") or {}
    labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
    specs = []
    for i in range(count):
        extra = {WORKLOAD_LABEL: workload}
        if strategy:
            values = strategy["labelValues"]
            extra[strategy["labelKey"]] = values[i % len(values)]
        specs.append(
            nodes.NodeSpec(
                name=f"{prefix}-{i}",
                cpu=str(cap.get("cpu", "4")),
                memory=str(cap.get("memory", "32Gi")),
                pods=str(cap.get("pods", "110")),
                labels={**labels, **extra},
            )
        )
    return specs


def from_case(case: dict[str, Any], target_nodes: int, *, node_prefix: str) -> Workload:
    """A scheduler_perf test case as a :class:`Workload`."""
    variant, params = choose_params(case, target_nodes)
    name = case["name"]
    specs: list[nodes.NodeSpec] = []
    namespaces: list[str] = []
    classes: dict[str, int] = {}
    ops = case["workloadTemplate"]
    for i, op in enumerate(ops):
        code = op["opcode"]
        if code == "createNodes":
            tmpl = template(op.get("nodeTemplatePath", "node-default.yaml"))
            specs += _node_specs(
                tmpl,
                _count(op, params),
                prefix=f"{node_prefix}-{i}",
                workload=name,
                strategy=op.get("labelNodePrepareStrategy"),
            )
        elif code == "createNamespaces":
            namespaces += [f"{op['prefix']}-{k}" for k in range(_count(op, params))]
        elif code == "createPods":
            path = op.get("podTemplatePath") or case.get("defaultPodTemplatePath")
            if not path:
                raise UnsupportedOp(f"{name}: op {i} names no pod template")
            prio = (template(path).get("spec") or {}).get("priority")
            if prio is not None:
                classes[priority_class(int(prio))] = int(prio)
            namespaces.append(op.get("namespace") or f"namespace-{i}")
        elif code != "barrier":
            raise UnsupportedOp(
                f"{name}: op {i} is {code!r}, which bench/workloads.py does not run"
            )

    def steps(scheduler: str, tag: str) -> list[Step]:
        out: list[Step] = []
        for i, op in enumerate(ops):
            if op["opcode"] == "barrier":
                out.append(Barrier(i))
            if op["opcode"] != "createPods":
                continue
            path = op.get("podTemplatePath") or case["defaultPodTemplatePath"]
            tmpl = template(path)
            prefix = str((tmpl.get("metadata") or {}).get("generateName") or "pod-")
            bodies = tuple(
                _pod_body(tmpl, f"{prefix}{tag}-{i}-{k}", scheduler, name)
                for k in range(_count(op, params))
            )
            out.append(
                PodOp(
                    i,
                    op.get("namespace") or f"namespace-{i}",
                    bodies,
                    measured=bool(op.get("collectMetrics")),
                    wait=not op.get("skipWaitToCompletion"),
                )
            )
        return out

    return Workload(
        name, variant, params, tuple(specs), tuple(dict.fromkeys(namespaces)), classes, steps
    )


# ---- mixed shapes, from a seed ---------------------------------------------------------

ZONE = nodes.ZONE_LABEL
POOL = "bench.lasched.io/pool"
NODE_SHAPES = {  # pool -> (cpu, memory, share of nodes)
    "general": ("8", "32Gi", 0.5),
    "small": ("4", "16Gi", 0.2),
    "highmem": ("8", "64Gi", 0.15),
    "large": ("16", "64Gi", 0.05),
    "batch": ("8", "32Gi", 0.1),  # tainted dedicated=batch:NoSchedule
}
CPU_SHAPES = (("100m", 30), ("250m", 25), ("500m", 20), ("1", 15), ("2", 10))
MEMORY_SHAPES = (("64Mi", 20), ("256Mi", 25), ("512Mi", 25), ("1Gi", 20), ("2Gi", 10))
MIXED_PRIORITIES = {"bench-mixed-100": 100, "bench-mixed-1000": 1000}
MIXED_NAMESPACE = "mixed-0"


def mixed_shapes(target_nodes: int, seed: int, *, node_prefix: str) -> Workload:
    """Nodes and pods of several shapes, drawn from ``seed`` (the same every phase)."""
    rng = random.Random(seed)
    zones = ("z-a", "z-b", "z-c")
    pools = list(NODE_SHAPES)
    specs = []
    for i in range(target_nodes):
        pool = rng.choices(pools, weights=[NODE_SHAPES[p][2] for p in pools])[0]
        cpu, mem, _ = NODE_SHAPES[pool]
        taints = (nodes.Taint("dedicated", "batch", "NoSchedule"),) if pool == "batch" else ()
        specs.append(
            nodes.NodeSpec(
                name=f"{node_prefix}-{i}",
                cpu=cpu,
                memory=mem,
                taints=taints,
                labels={ZONE: zones[i % len(zones)], POOL: pool, WORKLOAD_LABEL: MIXED_SHAPES},
            )
        )
    init, measure = 2 * target_nodes, 2 * target_nodes
    shapes = [_mixed_pod(rng) for _ in range(init + measure)]

    def steps(scheduler: str, tag: str) -> list[Step]:
        bodies = []
        for k, shape in enumerate(shapes):
            body = copy.deepcopy(shape)
            body["metadata"]["name"] = f"mixed-{tag}-{k}"
            body["spec"]["schedulerName"] = scheduler
            bodies.append(body)
        return [
            PodOp(0, MIXED_NAMESPACE, tuple(bodies[:init]), measured=False),
            PodOp(1, MIXED_NAMESPACE, tuple(bodies[init:]), measured=True),
        ]

    params = {"nodes": target_nodes, "initPods": init, "measurePods": measure, "seed": seed}
    return Workload(
        MIXED_SHAPES,
        f"seed {seed}",
        params,
        tuple(specs),
        (MIXED_NAMESPACE,),
        dict(MIXED_PRIORITIES),
        steps,
    )


def _mixed_pod(rng: random.Random) -> dict[str, Any]:
    cpu = rng.choices([c for c, _ in CPU_SHAPES], weights=[w for _, w in CPU_SHAPES])[0]
    mem = rng.choices([m for m, _ in MEMORY_SHAPES], weights=[w for _, w in MEMORY_SHAPES])[0]
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 0,
        "containers": [
            {
                "name": "main",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": cpu, "memory": mem}},
            }
        ],
    }
    roll = rng.random()
    if roll < 0.15:
        if rng.random() < 0.5:
            expr = {"key": POOL, "operator": "In", "values": ["highmem", "large"]}
        else:
            expr = {"key": ZONE, "operator": "In", "values": rng.sample(["z-a", "z-b", "z-c"], 2)}
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [expr]}]
                }
            }
        }
    elif roll < 0.25:
        spec["tolerations"] = [
            {"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}
        ]
    prio = rng.random()
    if prio < 0.1:
        spec["priorityClassName"] = "bench-mixed-1000"
    elif prio < 0.3:
        spec["priorityClassName"] = "bench-mixed-100"
    return {
        "metadata": {"labels": {WORKLOAD_LABEL: MIXED_SHAPES, "shape": f"{cpu}-{mem}"}},
        "spec": spec,
    }


def build(name: str, target_nodes: int, *, seed: int, node_prefix: str) -> Workload:
    if name == MIXED_SHAPES:
        return mixed_shapes(target_nodes, seed, node_prefix=node_prefix)
    cases = load_cases()
    if name not in cases:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return from_case(cases[name], target_nodes, node_prefix=node_prefix)


# ---- running -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    workloads: tuple[str, ...] = WORKLOADS
    nodes: int = 500
    repeat: int = 3
    peers: tuple[str, ...] = ("lasched", "kube-scheduler-tuned")
    seed: int = 1  # MixedShapes
    timeout: float = 600.0
    # An op whose pods have not bound for this long is given up (its pods stay pending
    # and the check says so).
    stall_seconds: float = 60.0
    event_wait_seconds: float = 60.0
    pause_seconds: float = 2.0
    controller_manager: bool = True
    # Where py-spy's samples of lasched go: one file per test case, named
    # ``{profile_stem}-{test case}-pyspy.txt``, sampled over the last repetition.
    profile_stem: str | None = None


# The test cases the floor (bench.floor, round robin) runs on: their pods ask only for
# room that round robin leaves them, so its placements pass the check. Every other test
# case's pods name affinities, spreads or priorities that only a scheduler honours.
FLOOR_WORKLOADS = frozenset({"SchedulingBasic"})
# The peers a workloads run may name: the schedulers and the floor.
PEERS = {**peers.PEERS, peers.FLOOR.key: peers.FLOOR}


def peers_for(cfg: Config, workload: str) -> list[str]:
    """The peers that run ``workload``: all but the floor where round robin breaks it."""
    return [p for p in cfg.peers if p != peers.FLOOR.key or workload in FLOOR_WORKLOADS]


def profile_path(cfg: Config, workload: str) -> Path | None:
    return None if cfg.profile_stem is None else Path(f"{cfg.profile_stem}-{workload}-pyspy.txt")


@dataclass(slots=True)
class Sample:
    workload: str
    peer: str
    repeat: int
    position: int
    measured_pods: int
    pods_per_s: float  # the measured op: first creation to last pod done
    pods_per_s_binds: float
    makespan_s: float
    makespan_binds_s: float
    p50_ms: float  # creation to done, measured pods
    p99_ms: float
    events_missing: int  # every op of the phase
    unbound: int  # pods left pending when an op's wait stalled
    setup_s: float  # the unmeasured ops
    cpu_seconds: float
    peak_rss_mb: float
    verify: dict[str, Any] = field(default_factory=dict)
    # The measured op, first creation to last pod done: each process's CPU as a share of
    # one core (the control plane's, the scheduler's and this harness's), and the
    # apiserver's own mean time per request kind.
    cpu_percent: dict[str, float] = field(default_factory=dict)
    apiserver_ms: dict[str, float] = field(default_factory=dict)


async def measure(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    wl: Workload,
    peer: peers.Peer,
    cfg: Config,
    rep: int,
    position: int,
    progress: Progress,
) -> Sample:
    # Unique to the phase, so that no Event of another phase is taken for one of this.
    tag = f"w{cfg.workloads.index(wl.name)}p{cfg.peers.index(peer.key)}r{rep}"
    label = f"{wl.name} {peer.key} #{rep + 1}"
    steps = wl.steps(peer.scheduler_name, tag)
    timelines = {ns: Timeline(kc, ns, events=True) for ns in wl.pod_namespaces(steps)}
    for t in timelines.values():
        await t.start()
    workdir = cluster.workdir / f"{wl.name.lower()}-{peer.key}-{rep}"
    running = await _start(cluster, peer, wl, list(timelines), workdir)
    recording = None
    if (path := profile_path(cfg, wl.name)) and peer is peers.LASCHED and rep == cfg.repeat - 1:
        recording = await pyspy.Recording.start(running.child.pid, path)
    missing = unbound = 0
    figures: dict[str, Any] = {}
    shares: dict[str, dict[str, float]] = {}
    setup_s = 0.0
    created: list[tuple[str, str]] = []  # (namespace, name)
    try:
        for step in steps:
            if isinstance(step, Barrier):
                unbound += await _barrier(timelines, created, cfg, progress, label)
                continue
            tl = timelines[step.namespace]
            meter = _OpMeter(cluster, kc, running) if step.measured else None
            if meter is not None:
                await meter.start()
            t0 = time.monotonic()
            await create_bodies(
                kc,
                step.namespace,
                list(step.bodies),
                progress=progress,
                label=f"{label}: op {step.index} create",
            )
            created += [(step.namespace, n) for n in step.names]
            if not step.wait and not step.measured:
                continue
            end = await wait_writes(
                tl,
                step.names,
                timeout=cfg.timeout,
                event_wait=cfg.event_wait_seconds,
                progress=progress,
                label=f"{label}: op {step.index}",
                stall=cfg.stall_seconds,
            )
            missing += end.events_missing
            unbound += end.unbound
            if meter is not None:
                shares = await meter.stop()
                figures = _measured(tl, step.names, t0)
            else:
                setup_s += time.monotonic() - t0
            await asyncio.sleep(cfg.pause_seconds)
        stats = running.stats()
        gone = {(ns, n) for ns, tl in timelines.items() for n in tl.deleted}
        expected = [f"{ns}/{n}" for ns, n in created if (ns, n) not in gone]
        verdict = await check(kc, list(timelines.values()), expected=expected)
        progress(f"{label}: check", 1, 1)
        if not verdict.ok:
            print(f"{label}: placement check failed: {verdict.summary()}", file=sys.stderr)
        return Sample(
            workload=wl.name,
            peer=peer.key,
            repeat=rep,
            position=position,
            measured_pods=figures.get("pods", 0),
            pods_per_s=figures.get("rate", math.nan),
            pods_per_s_binds=figures.get("rate_binds", math.nan),
            makespan_s=figures.get("makespan", math.nan),
            makespan_binds_s=figures.get("makespan_binds", math.nan),
            p50_ms=figures.get("p50", math.nan),
            p99_ms=figures.get("p99", math.nan),
            events_missing=missing,
            unbound=unbound,
            setup_s=setup_s,
            cpu_seconds=stats.cpu_seconds,
            peak_rss_mb=stats.peak_rss_bytes / 2**20,
            verify=verdict.to_json(),
            **shares,
        )
    finally:
        if recording is not None:
            await recording.stop()
        await running.stop()
        await _clear(kc, timelines, cfg)


async def _clear(kc: KubeClient, timelines: dict[str, Timeline], cfg: Config) -> None:
    """The phase's watches stopped, its pods deleted, and a pause before the next."""
    for t in timelines.values():
        await t.stop()
    for ns in timelines:
        await delete_pods(kc, ns)
    await asyncio.sleep(cfg.pause_seconds)


async def _start(
    cluster: DevCluster, peer: peers.Peer, wl: Workload, namespaces: list[str], workdir: Path
) -> peers.RunningPeer:
    """The peer's process; the floor binds the test case's pods to its nodes."""
    if peer is not peers.FLOOR:
        return await peers.start(peer, kubeconfig=cluster.kubeconfig, workdir=workdir)
    floor = await start_floor(
        cluster,
        namespaces,
        f"{WORKLOAD_LABEL}={wl.name}",
        workdir=workdir,
        scheduler=peer.scheduler_name,
    )
    return peers.RunningPeer(peer, [floor], http_port=None)


async def _barrier(
    timelines: dict[str, Timeline],
    created: list[tuple[str, str]],
    cfg: Config,
    progress: Progress,
    label: str,
) -> int:
    """Until every pod created so far is bound; how many were left unbound."""
    unbound = 0
    for ns, tl in timelines.items():
        names = [n for s, n in created if s == ns]
        end = await wait_writes(
            tl,
            names,
            timeout=cfg.timeout,
            event_wait=0,
            progress=progress,
            label=f"{label}: barrier",
            events=False,
            stall=cfg.stall_seconds,
        )
        unbound += end.unbound
    return unbound


class _OpMeter:
    """The measured op's CPU: the control plane's (with the apiserver's time per request),
    the scheduler's and this harness's."""

    def __init__(self, cluster: DevCluster, kc: KubeClient, running: peers.RunningPeer) -> None:
        self._meter = controlplane.Meter(cluster, kc)
        self._running = running
        self._cpu0 = (0.0, 0.0)

    async def start(self) -> None:
        await self._meter.start()
        self._cpu0 = (self._running.stats().cpu_seconds, time.process_time())

    async def stop(self) -> dict[str, dict[str, float]]:
        window = await self._meter.stop()
        return _shares(
            window,
            scheduler=self._running.stats().cpu_seconds - self._cpu0[0],
            harness=time.process_time() - self._cpu0[1],
        )


def _shares(
    window: controlplane.Window | None, *, scheduler: float, harness: float
) -> dict[str, dict[str, float]]:
    """The Sample's ``cpu_percent`` and ``apiserver_ms`` from the measured op's window."""
    if window is None:
        return {}
    per_core = 100 / max(window.seconds, 1e-9)
    return {
        "cpu_percent": {
            **window.cpu_percent,
            "scheduler": scheduler * per_core,
            "harness": harness * per_core,
        },
        "apiserver_ms": {kind: ms for kind, (_, ms) in window.requests.items()},
    }


def _measured(tl: Timeline, names: list[str], t0: float) -> dict[str, Any]:
    done = [t for n in names if (t := tl.done(n)) is not None]
    binds = [tl.bound[n] for n in names if n in tl.bound]
    lat = [
        (t - tl.added[n]) * 1000 for n in names if n in tl.added and (t := tl.done(n)) is not None
    ]
    out: dict[str, Any] = {"pods": len(names)}
    if done:
        out["makespan"] = max(done) - t0
        out["rate"] = len(done) / out["makespan"]
    if binds:
        out["makespan_binds"] = max(binds) - t0
        out["rate_binds"] = len(binds) / out["makespan_binds"]
    if lat:
        out["p50"], out["p99"] = percentile(lat, 50), percentile(lat, 99)
    return out


async def _delete_nodes(kc: KubeClient, workload: str, timeout: float = 300) -> None:
    selector = f"{WORKLOAD_LABEL}={workload}"
    try:
        await kc.request(
            "DELETE", "/api/v1/nodes", params={"labelSelector": selector}, timeout=timeout
        )
    except ApiError as e:
        if e.status != 504:
            raise
    deadline = time.monotonic() + timeout
    while (await kc.get("/api/v1/nodes", labelSelector=selector, limit=1))["items"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the nodes of {workload} were not deleted in {timeout:.0f} s")
        await asyncio.sleep(0.5)


def _node_progress(progress: Progress, workload: str) -> Callable[[int, int], None]:
    return lambda done, total: progress(f"{workload}: nodes", done, total)


async def run(
    cfg: Config,
    progress: Progress,
    checkpoint: Callable[[list[Workload], list[Sample]], None] | None = None,
) -> tuple[list[Workload], list[Sample]]:
    """Every test case of ``cfg``, each peer in rotation; ``checkpoint`` gets what is done
    after each test case but the last (so that a run cut short keeps its finished cases)."""
    samples: list[Sample] = []
    built: list[Workload] = []
    async with (
        DevCluster(
            controller_manager=cfg.controller_manager,
            nodes=cfg.nodes,
        ) as cluster,
        await cluster.client() as kc,
    ):
        for wi, name in enumerate(cfg.workloads):
            wl = build(name, cfg.nodes, seed=cfg.seed, node_prefix=f"w{wi}")
            built.append(wl)
            for cls, value in wl.priority_classes.items():
                await ensure_priority_class(
                    kc, name=cls, value=value, description="bench: scheduler_perf priorities"
                )
            for ns in wl.namespaces:
                await ensure_namespace(kc, ns)
            await nodes.create_nodes(kc, list(wl.nodes), progress=_node_progress(progress, name))
            await nodes.wait_ready(kc, [s.name for s in wl.nodes], timeout=300)
            for rep in range(cfg.repeat):
                for position, key in enumerate(rotation(peers_for(cfg, name), rep)):
                    samples.append(
                        await measure(
                            cluster=cluster,
                            kc=kc,
                            wl=wl,
                            peer=PEERS[key],
                            cfg=cfg,
                            rep=rep,
                            position=position,
                            progress=progress,
                        )
                    )
            await _delete_nodes(kc, name)
            progress("workloads", wi + 1, len(cfg.workloads))
            if checkpoint is not None and wi + 1 < len(cfg.workloads):
                checkpoint(list(built), list(samples))
    return built, samples


# ---- results --------------------------------------------------------------------------

FIGURES = (
    "pods_per_s",
    "pods_per_s_binds",
    "makespan_s",
    "makespan_binds_s",
    "p50_ms",
    "p99_ms",
    "events_missing",
    "unbound",
    "setup_s",
    "cpu_seconds",
    "peak_rss_mb",
)


def summarise(samples: list[Sample]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """workload -> peer -> figure -> median, min, max, n (plus violations and checks)."""
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for wl in dict.fromkeys(s.workload for s in samples):
        for peer in dict.fromkeys(s.peer for s in samples if s.workload == wl):
            rows = [s for s in samples if s.workload == wl and s.peer == peer]
            figs: dict[str, dict[str, float]] = {}
            for f in FIGURES:
                vals = [float(v) for s in rows if math.isfinite(v := float(getattr(s, f)))]
                if vals:
                    figs[f] = stat(vals)
            for key in ("cpu_percent", "apiserver_ms"):
                for name in dict.fromkeys(k for s in rows for k in getattr(s, key)):
                    figs[f"{key}:{name}"] = stat(
                        [getattr(s, key)[name] for s in rows if name in getattr(s, key)]
                    )
            figs["violations"] = stat([float(s.verify.get("violations", 0)) for s in rows])
            passed = sum(1 for s in rows if s.verify.get("ok", False))
            figs["checks"] = {"median": passed, "min": passed, "max": passed, "n": len(rows)}
            out.setdefault(wl, {})[peer] = figs
    return out


def ratios(samples: list[Sample], ours: str = "lasched") -> dict[str, dict[str, dict[str, float]]]:
    """workload -> peer -> lasched's pods/s over the peer's, per repetition."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for wl in dict.fromkeys(s.workload for s in samples):
        mine = {s.repeat: s for s in samples if s.workload == wl and s.peer == ours}
        for peer in dict.fromkeys(s.peer for s in samples if s.workload == wl and s.peer != ours):
            theirs = {s.repeat: s for s in samples if s.workload == wl and s.peer == peer}
            vals = [
                mine[r].pods_per_s / theirs[r].pods_per_s
                for r in sorted(mine.keys() & theirs.keys())
                if math.isfinite(mine[r].pods_per_s) and theirs[r].pods_per_s > 0
            ]
            if vals:
                out.setdefault(wl, {})[peer] = stat(vals)
    return out


def to_json(
    cfg: Config, built: list[Workload], samples: list[Sample], env: dict[str, str]
) -> dict[str, Any]:
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "workloads": {
            w.name: {"variant": w.variant, "params": w.params, "nodes": len(w.nodes)} for w in built
        },
        "orders": [rotation(list(cfg.peers), rep) for rep in range(cfg.repeat)],
        "floor_workloads": sorted(FLOOR_WORKLOADS) if peers.FLOOR.key in cfg.peers else [],
        "summary": summarise(samples),
        "ratios": ratios(samples),
        "failed": [f"{s.workload}: {line}" for s in samples for line in failures([s])],
        "samples": [asdict(s) for s in samples],
    }


def markdown(result: dict[str, Any]) -> str:
    cfg, summary = result["config"], result["summary"]

    def fmt(st: dict[str, float] | None, digits: int = 0) -> str:
        if not st:
            return "-"
        if st["min"] == st["max"]:
            return f"{st['median']:.{digits}f}"
        return f"{st['median']:.{digits}f} ({st['min']:.{digits}f} to {st['max']:.{digits}f})"

    lines = [
        f"### workloads: kube-scheduler's scheduler_perf test cases and MixedShapes, "
        f"{cfg['nodes']} nodes each, {cfg['repeat']} repetition(s)",
        "",
        "Pods/s: the measured op's pods over the time from its first creation to its last pod "
        "done (binding and `Scheduled` Event written); binds: the same on bindings alone. "
        "Medians with the range over repetitions; `runs`: how many. Violations: placement "
        "check findings per run (bench/verify.py); checks: runs that passed, of all.",
        "",
        "| workload | params | scheduler | runs | pods/s | pods/s (binds) | p99 ms | "
        "Events missing | unbound | violations | checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for wl, by_peer in summary.items():
        info = result["workloads"].get(wl, {})
        params = ", ".join(f"{k} {v}" for k, v in (info.get("params") or {}).items())
        for peer, s in by_peer.items():
            checks = s.get("checks") or {}
            lines.append(
                f"| {wl} | {params} | {label(peer)} | {checks.get('n', 0):.0f} "
                f"| {fmt(s.get('pods_per_s'))} | {fmt(s.get('pods_per_s_binds'))} "
                f"| {fmt(s.get('p99_ms'))} | {fmt(s.get('events_missing'))} "
                f"| {fmt(s.get('unbound'))} | {fmt(s.get('violations'))} "
                f"| {checks.get('median', 0):.0f}/{checks.get('n', 0):.0f} |"
            )
    rat = result.get("ratios") or {}
    if rat:
        lines += ["", "lasched's pods/s over each peer's, within each repetition:", ""]
        for wl, by_peer in rat.items():
            for peer, st in by_peer.items():
                rng = "" if st["min"] == st["max"] else f" ({st['min']:.2f}x to {st['max']:.2f}x)"
                lines.append(
                    f"- {wl}, lasched / {label(peer)}: **{st['median']:.2f}x**{rng}, "
                    f"{st['n']:.0f} repetition(s)"
                )
    lines += _cpu_lines(summary)
    lines += order_lines(result.get("orders") or [])
    if only := result.get("floor_workloads"):
        lines += [
            "",
            f"The floor (bench/floor.py: each pod bound round robin the moment its watch shows "
            f"it, then its `Scheduled` Event, 64 in flight) runs on {', '.join(only)} only, "
            "whose pods ask for nothing round robin breaks; in the other test cases it is left "
            "out of the order. lasched over the floor is the share of this control plane's "
            "rate for a scheduler's writes that lasched reaches.",
        ]
    lines += check_lines(result)
    lines += environment_lines(result["environment"])
    return "\n".join(lines) + "\n"


# The columns of the CPU table: the control plane's processes (DevCluster's names), the
# scheduler under test, and this harness (creating the pods, watching them and their Events).
_PROCESSES = ("kube-apiserver", "etcd", "kwok", "kube-controller-manager", "scheduler", "harness")
_REQUESTS = ("pod create", "binding", "Event create")


def _cpu_lines(summary: dict[str, dict[str, dict[str, dict[str, float]]]]) -> list[str]:
    """Where the cores went during each measured op: on a two-core machine a scheduler
    that uses little of them is waiting on the control plane, not on itself."""
    if not any(
        f"cpu_percent:{p}" in figs for by in summary.values() for figs in by.values()
        for p in _PROCESSES
    ):  # fmt: skip
        return []
    rows = [
        ([wl, label(peer)], figs)
        for wl, by_peer in summary.items()
        for peer, figs in by_peer.items()
    ]
    return [
        "",
        "The measured op, first creation to last pod done: each process's CPU as a share of "
        f"one core (the machine has {os.cpu_count()}; all: their sum), and the apiserver's own "
        "mean time per request (its `apiserver_request_duration_seconds`); medians over "
        "repetitions.",
        "",
        *cores_table(
            ["workload", "scheduler"], rows, processes=_PROCESSES, requests=_REQUESTS, total=True
        ),
    ]


def plot(result: dict[str, Any], path: Path) -> Path:
    """Pods/s per workload and peer (median, min-to-max bar); a failed check marked ✗."""
    summary = result["summary"]
    names = list(summary)
    peer_keys = list(dict.fromkeys(p for by in summary.values() for p in by))
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(names) + 2), 4.8))
    width = 0.8 / max(1, len(peer_keys))
    for j, peer in enumerate(peer_keys):
        xs, ys, lo, hi, bad = [], [], [], [], []
        for i, wl in enumerate(names):
            st = summary[wl].get(peer, {}).get("pods_per_s")
            if not st:
                continue
            xs.append(i + (j - (len(peer_keys) - 1) / 2) * width)
            ys.append(st["median"])
            lo.append(st["median"] - st["min"])
            hi.append(st["max"] - st["median"])
            checks = summary[wl][peer].get("checks") or {}
            bad.append(checks.get("median", 0) < checks.get("n", 0))
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, color=f"C{j}", label=label(peer))
        for x, y, b in zip(xs, ys, bad, strict=True):
            if b:
                ax.annotate("✗", (x, y), ha="center", va="bottom", color="red", fontsize=12)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("measured pods/s (bound and reported)")
    ax.set_title("scheduler_perf test cases: pods/s, median and range (✗: a check failed)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
