"""Scenario ``gangs-contended``: many gangs of mixed sizes competing for a cluster that
cannot hold them all, in Kubernetes' own PodGroup API, so one set of manifests serves
every peer.

Each peer, in each repetition, gets a fresh namespace and the same seeded workload:
``gangs`` gangs of ``min_size`` to ``max_size`` members, one ``scheduling.k8s.io``
PodGroup each with ``gang.minCount`` = its size, members naming it with
``spec.schedulingGroup.podGroupName``. Every member asks the same share of a node's cpu,
chosen so that all members together ask ``demand`` times the cluster (1.5: a third of
them cannot fit). The scheduler is started and warmed up first; then every PodGroup and
every member is created at once, in a seeded order.

A watch stamps every member's ADDED and bound events. The peer's phase ends once no
binding came for ``settle_seconds`` (nothing pending can fit any more). Then, if
``free_fraction`` > 0, that share of the fully bound gangs (seeded) is deleted and the
gangs that then fit are timed from the moment the last deleted member was gone.

Figures per run: gangs fully bound; per fully bound gang, time from its last member's
creation to its last member bound; **partial gangs** (some but not all members bound):
at the end, and at the most of any moment sampled every ``sample_seconds`` (a
gang is partial from its first member's binding until its last one's, so a gang
scheduler's own bindings, one API call per member, open a window of milliseconds;
lasting partial gangs, those still partial ``grace_seconds`` later, must be 0);
utilisation: cpu requested by bound members over the cluster's allocatable cpu.

Peers: lasched; kube-scheduler (tuned client) with the cluster's Workload API feature
gates, on v1.37 ``GenericWorkload``, which turns on its ``GangScheduling`` plugin; and
the same kube-scheduler without those gates, a cluster without Kubernetes' gangs, whose
partial gangs show what all-or-nothing prevents.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bench import peers, verify
from bench.report import environment_lines
from bench.throughput import (
    Progress,
    check,
    create_bench_nodes,
    delete_pods,
    percentile,
    pod_body,
    rotation,
    stat,
)
from bench.timeline import Timeline
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import binaries
from lasched_dev.devcluster.cluster import (
    DevCluster,
    ensure_namespace,
    workload_api,
)

SCENARIO = "gangs-contended"
VERSION = 1
NODE_CPU_MILLI = 8000  # nodes.NodeSpec's default cpu: "8"
MEMBER_MEMORY = "64Mi"  # small, so cpu alone decides what fits

KUBE_GANGS = peers.Peer(
    "kube-scheduler-gangs",
    "kube-scheduler + GangScheduling (QPS 5000/10000)",
    "kube-scheduler",
    qps=5000,
    burst=10000,
)
KUBE_NO_GANGS = peers.Peer(
    "kube-scheduler-no-gangs",
    "kube-scheduler, no Workload API (QPS 5000/10000)",
    "kube-scheduler",
    qps=5000,
    burst=10000,
    workload_api=False,
)
PEERS = {p.key: p for p in (peers.LASCHED, KUBE_GANGS, KUBE_NO_GANGS)}
LABELS = {k: p.label for k, p in PEERS.items()}


@dataclass(frozen=True, slots=True)
class Config:
    nodes: int = 50
    gangs: int = 120
    min_size: int = 2
    max_size: int = 16
    demand: float = 1.5  # all members' cpu over the cluster's
    seed: int = 1
    repeat: int = 3
    peers: tuple[str, ...] = tuple(PEERS)
    settle_seconds: float = 10.0  # no binding for this long: the phase is over
    timeout: float = 300.0  # a phase's limit, settled or not
    sample_seconds: float = 0.5
    grace_seconds: float = 1.0
    free_fraction: float = 0.25  # share of the fully bound gangs deleted to make room
    controller_manager: bool = True


# ---- the workload (pure) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gang:
    name: str
    size: int

    def members(self) -> list[str]:
        return [f"{self.name}-m{i}" for i in range(self.size)]


def gang_mix(*, gangs: int, min_size: int, max_size: int, seed: int) -> list[Gang]:
    """``gangs`` gangs, sizes drawn uniformly from ``min_size..max_size`` by ``seed``, in
    the seeded order they are created; the same arguments give the same gangs."""
    if gangs < 1:
        raise ValueError(f"gangs must be at least 1, got {gangs}")
    if not 1 <= min_size <= max_size:
        raise ValueError(
            f"sizes must satisfy 1 <= min_size <= max_size, got {min_size}..{max_size}"
        )
    rng = random.Random(f"gangs-contended/{seed}")
    return [Gang(f"g{i:03d}", rng.randint(min_size, max_size)) for i in range(gangs)]


def member_share(*, members: int, nodes: int, demand: float) -> int:
    """Members per node: the most that keeps all ``members`` asking at least ``demand``
    times the cluster (each member then asks ``1/slots`` of a node's cpu)."""
    if nodes < 1 or members < 1:
        raise ValueError(f"nodes and members must be positive, got {nodes} and {members}")
    if not math.isfinite(demand) or demand <= 0:
        raise ValueError(f"demand must be a positive number, got {demand}")
    return max(1, math.floor(members / (demand * nodes)))


def member_cpu_milli(slots: int) -> int:
    """A member's cpu request: an equal ``1/slots`` of a node, rounded down."""
    return NODE_CPU_MILLI // slots


def partial_at(gangs: Sequence[Gang], bound: Mapping[str, float], t: float) -> int:
    """Gangs with some but not all members bound at time ``t`` (bound stamps <= t)."""
    n = 0
    for g in gangs:
        k = sum(1 for m in g.members() if (b := bound.get(m)) is not None and b <= t)
        n += 0 < k < g.size
    return n


def partial_windows(
    gangs: Sequence[Gang], bound: Mapping[str, float], end: float
) -> dict[str, tuple[float, float]]:
    """Per gang that ever had a member bound: (first member bound, last member bound), or
    ``end`` for a gang still partial at ``end``; the interval in which it was partial."""
    out = {}
    for g in gangs:
        stamps = [bound[m] for m in g.members() if m in bound]
        if stamps:
            out[g.name] = (min(stamps), max(stamps) if len(stamps) == g.size else end)
    return out


def peak_partial(
    gangs: Sequence[Gang],
    bound: Mapping[str, float],
    *,
    start: float,
    end: float,
    step: float,
    grace: float = 0.0,
) -> int:
    """The most gangs partial at any moment ``start, start + step, ... <= end``; with
    ``grace`` > 0 only those still partial ``grace`` seconds later count."""
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    windows = list(partial_windows(gangs, bound, end).values())
    peak = 0
    t = start
    while t <= end:
        peak = max(peak, sum(1 for a, b in windows if a <= t and (b > t + grace or b == end)))
        t += step
    return peak


# ---- one peer ----------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    peer: str
    repeat: int
    position: int
    gangs: int
    members: int
    member_cpu_milli: int
    bound_gangs: int = 0
    bound_members: int = 0
    partial_end: int = 0
    partial_peak: int = 0  # at any sampled moment, the bind spread included
    partial_lasting_peak: int = 0  # still partial grace_seconds later
    bind_spread_max_ms: float = 0.0  # first to last member bound, fully bound gangs
    utilisation: float = 0.0  # requested cpu of bound members / allocatable
    settle_s: float = 0.0  # creation start to the last binding
    all_bound_ms: list[float] = field(default_factory=list)  # per fully bound gang
    freed_gangs: int = 0
    after_free_bound_gangs: int = 0
    after_free_ms: list[float] = field(default_factory=list)  # room freed to all bound
    after_free_partial_end: int = 0
    verify: dict[str, Any] = field(default_factory=dict)


def _podgroup(api_version: str, gang: Gang) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "PodGroup",
        "metadata": {"name": gang.name},
        "spec": {"schedulingPolicy": {"gang": {"minCount": gang.size}}},
    }


def _member(name: str, gang: Gang, *, scheduler: str, cpu_milli: int) -> dict[str, Any]:
    body = pod_body(name, scheduler)
    body["metadata"]["labels"] = {"bench": SCENARIO, "gang": gang.name}
    body["spec"]["schedulingGroup"] = {"podGroupName": gang.name}
    body["spec"]["containers"][0]["resources"]["requests"] = {
        "cpu": f"{cpu_milli}m",
        "memory": MEMBER_MEMORY,
    }
    return body


async def _settle(
    timeline: Timeline,
    *,
    settle: float,
    timeout: float,
    label: str,
    total: int,
    progress: Progress,
) -> None:
    """Until no binding came for ``settle`` seconds, or ``timeout``."""
    deadline = time.monotonic() + timeout
    seen, quiet_since = len(timeline.bound), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = time.monotonic()
        if len(timeline.bound) != seen:
            seen, quiet_since = len(timeline.bound), now
            progress(f"{label}: bound members", seen, total)
        elif now - quiet_since >= settle:
            return


async def _warm_up(kc: KubeClient, peer: peers.Peer, ns: str) -> None:
    """One small pod bound, so creation does not race the scheduler's start-up."""
    await ensure_namespace(kc, ns)
    timeline = Timeline(kc, ns)
    await timeline.start()
    try:
        body = pod_body("warm", peer.scheduler_name)
        body["spec"]["containers"][0]["resources"]["requests"] = {"cpu": "1m", "memory": "1Mi"}
        await kc.post(f"/api/v1/namespaces/{ns}/pods", body)
        if not await timeline.wait_bound(1, timeout=120):
            raise TimeoutError(f"{peer.key}: the warm-up pod was not bound within 120 s")
    finally:
        await timeline.stop()
        await delete_pods(kc, ns)


def _fully_bound(gangs: Sequence[Gang], bound: Mapping[str, float]) -> list[Gang]:
    return [g for g in gangs if all(m in bound for m in g.members())]


async def measure(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    peer: peers.Peer,
    cfg: Config,
    rep: int,
    position: int,
    api_version: str,
    progress: Progress,
) -> Sample:
    gangs = gang_mix(gangs=cfg.gangs, min_size=cfg.min_size, max_size=cfg.max_size, seed=cfg.seed)
    members = sum(g.size for g in gangs)
    slots = member_share(members=members, nodes=cfg.nodes, demand=cfg.demand)
    cpu = member_cpu_milli(slots)
    label = f"{peer.key} #{rep + 1}"
    ns = f"gc-{peer.key}-{rep}"
    await ensure_namespace(kc, ns)
    timeline = Timeline(kc, ns)
    await timeline.start()
    running = await peers.start(peer, kubeconfig=cluster.kubeconfig, workdir=cluster.workdir / ns)
    sample = Sample(peer.key, rep, position, len(gangs), members, cpu)
    try:
        await _warm_up(kc, peer, f"{ns}-warm")
        sem = asyncio.Semaphore(64)
        groups = f"/apis/{api_version}/namespaces/{ns}/podgroups"

        async def post(path: str, body: dict[str, Any]) -> None:
            async with sem:
                await kc.post(path, body)

        # PodGroups first, so no member waits for its group to appear.
        async with asyncio.TaskGroup() as tg:
            for g in gangs:
                tg.create_task(post(groups, _podgroup(api_version, g)))
        bodies = [
            _member(m, g, scheduler=peer.scheduler_name, cpu_milli=cpu)
            for g in gangs
            for m in g.members()
        ]
        random.Random(f"order/{cfg.seed}").shuffle(bodies)
        started = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            for body in bodies:
                tg.create_task(post(f"/api/v1/namespaces/{ns}/pods", body))
        progress(f"{label}: created", members, members)
        await _settle(
            timeline,
            settle=cfg.settle_seconds,
            timeout=cfg.timeout,
            label=label,
            total=members,
            progress=progress,
        )
        end = time.monotonic()
        _figures(sample, gangs, timeline, started=started, end=end, cfg=cfg)
        if cfg.free_fraction > 0:
            await _free_room(
                kc, ns, sample, gangs, timeline, cfg=cfg, label=label, progress=progress
            )
        verdict = await check(
            kc,
            [timeline],
            expected=[],
            # Pending members may have room alone, never as a gang: "room" does not apply.
            rules=verify.KUBERNETES_RULES - {verify.ROOM},
        )
        sample.verify = verdict.to_json()
        if not verdict.ok:
            print(f"{label}: placement check failed: {verdict.summary()}", file=sys.stderr)
        progress(f"{label}: check", 1, 1)
        return sample
    finally:
        await running.stop()
        await timeline.stop()
        await delete_pods(kc, ns)


def _figures(
    sample: Sample,
    gangs: Sequence[Gang],
    timeline: Timeline,
    *,
    started: float,
    end: float,
    cfg: Config,
) -> None:
    bound = dict(timeline.bound)
    full = _fully_bound(gangs, bound)
    sample.bound_gangs = len(full)
    sample.bound_members = sum(1 for g in gangs for m in g.members() if m in bound)
    sample.all_bound_ms = [
        (max(bound[m] for m in g.members()) - max(timeline.added[m] for m in g.members())) * 1000
        for g in full
    ]
    sample.partial_end = partial_at(gangs, bound, end)
    sample.partial_peak = peak_partial(
        gangs, bound, start=started, end=end, step=cfg.sample_seconds
    )
    sample.partial_lasting_peak = peak_partial(
        gangs, bound, start=started, end=end, step=cfg.sample_seconds, grace=cfg.grace_seconds
    )
    spreads = [
        (max(bound[m] for m in g.members()) - min(bound[m] for m in g.members())) * 1000
        for g in full
    ]
    sample.bind_spread_max_ms = max(spreads, default=0.0)
    sample.utilisation = (
        sample.bound_members * sample.member_cpu_milli / (cfg.nodes * NODE_CPU_MILLI)
    )
    sample.settle_s = max(bound.values(), default=started) - started


async def _free_room(
    kc: KubeClient,
    ns: str,
    sample: Sample,
    gangs: Sequence[Gang],
    timeline: Timeline,
    *,
    cfg: Config,
    label: str,
    progress: Progress,
) -> None:
    """Delete a seeded share of the fully bound gangs; time the gangs that then fit."""
    before = dict(timeline.bound)
    full = _fully_bound(gangs, before)
    k = math.floor(len(full) * cfg.free_fraction)
    if k == 0:
        return
    freed = random.Random(f"free/{cfg.seed}").sample(full, k)
    sample.freed_gangs = k
    names = [m for g in freed for m in g.members()]
    sem = asyncio.Semaphore(64)

    async def delete(name: str) -> None:
        async with sem:
            await kc.request(
                "DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", body={"gracePeriodSeconds": 0}
            )

    async with asyncio.TaskGroup() as tg:
        for n in names:
            tg.create_task(delete(n))
    deadline = time.monotonic() + cfg.timeout
    while not all(n in timeline.deleted for n in names):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{label}: freed members not gone within {cfg.timeout} s")
        await asyncio.sleep(0.05)
    freed_at = max(timeline.deleted[n] for n in names)
    gone = {g.name for g in freed}
    waiting = [g for g in gangs if g.name not in gone and g not in full]
    await _settle(
        timeline,
        settle=cfg.settle_seconds,
        timeout=cfg.timeout,
        label=f"{label} after freeing",
        total=sample.members,
        progress=progress,
    )
    bound = dict(timeline.bound)
    newly = _fully_bound(waiting, bound)
    sample.after_free_bound_gangs = len(newly)
    sample.after_free_ms = [(max(bound[m] for m in g.members()) - freed_at) * 1000 for g in newly]
    sample.after_free_partial_end = partial_at(waiting, bound, time.monotonic())


def orders(cfg: Config) -> list[list[str]]:
    """The peers' order in each repetition."""
    return [rotation(cfg.peers, rep) for rep in range(cfg.repeat)]


async def run(cfg: Config, progress: Progress) -> list[Sample]:
    api = workload_api(binaries.kubernetes_minor())
    if api is None or not api.podgroups:
        raise RuntimeError(
            f"Kubernetes {binaries.KUBERNETES_VERSION} serves no PodGroup kind (v1.36 on does)"
        )
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
                samples.append(
                    await measure(
                        cluster=cluster,
                        kc=kc,
                        peer=PEERS[key],
                        cfg=cfg,
                        rep=rep,
                        position=position,
                        api_version=api.group_version,
                        progress=progress,
                    )
                )
    return samples


# ---- figures --------------------------------------------------------------------------------

FIGURES = (
    "bound_gangs",
    "partial_end",
    "partial_lasting_peak",
    "partial_peak",
    "bind_spread_max_ms",
    "utilisation",
    "settle_s",
    "freed_gangs",
    "after_free_bound_gangs",
    "after_free_partial_end",
)


def summarise(samples: Sequence[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    """Per peer: each figure's median, min, max over repetitions, and the per-run median
    and p99 of time to all-bound (and after freeing), each as median (min to max)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for peer in dict.fromkeys(s.peer for s in samples):
        rows = [s for s in samples if s.peer == peer]
        fig = {f: stat([float(getattr(s, f)) for s in rows]) for f in FIGURES}
        for name, attr in (("all_bound", "all_bound_ms"), ("after_free", "after_free_ms")):
            runs = [getattr(s, attr) for s in rows if getattr(s, attr)]
            if runs:
                fig[f"{name}_p50_ms"] = stat([statistics.median(v) for v in runs])
                fig[f"{name}_p99_ms"] = stat([percentile(v, 99) for v in runs])
        out[peer] = fig
    return out


def failures(samples: Sequence[Sample]) -> list[str]:
    """One line per run whose placement check failed (partial gangs are a figure, not a
    failure: the peer without gangs is there to show them)."""
    out = []
    for s in samples:
        if s.verify and not s.verify.get("ok", True):
            out.append(f"{s.peer} #{s.repeat + 1}: placement check: {s.verify.get('by_rule')}")
    return out


def to_json(cfg: Config, samples: Sequence[Sample], env: dict[str, str]) -> dict[str, Any]:
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "orders": orders(cfg),
        "summary": summarise(samples),
        "failed": failures(samples),
        "samples": [asdict(s) for s in samples],
    }


def _cell(st: dict[str, float] | None, digits: int = 0, scale: float = 1.0) -> str:
    if not st:
        return "-"
    m, lo, hi = (st[k] * scale for k in ("median", "min", "max"))
    return f"{m:.{digits}f}" if lo == hi else f"{m:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    first = (result["samples"] or [{}])[0]
    lines = [
        f"### gangs-contended: {cfg['nodes']} nodes, {cfg['gangs']} gangs of "
        f"{cfg['min_size']} to {cfg['max_size']} members ({first.get('members', '?')} members "
        f"of {first.get('member_cpu_milli', '?')}m cpu), demand {cfg['demand']:g}x the cluster, "
        f"seed {cfg['seed']}",
        "",
        "Median over repetitions (min to max); per run, the time figures are that run's "
        "median and p99 over its fully bound gangs.",
        "",
        "| peer | runs | gangs fully bound | partial at end | partial lasting "
        f"> {cfg['grace_seconds']:g} s (peak) | partial at any {cfg['sample_seconds']:g} s "
        "sample (peak) | created to all bound p50 ms | p99 ms | cpu utilisation % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for peer, f in result["summary"].items():
        runs = f["bound_gangs"]["n"]
        lines.append(
            f"| {LABELS.get(peer, peer)} | {runs:.0f} | {_cell(f['bound_gangs'])} | "
            f"{_cell(f['partial_end'])} | {_cell(f['partial_lasting_peak'])} | "
            f"{_cell(f['partial_peak'])} | {_cell(f.get('all_bound_p50_ms'))} | "
            f"{_cell(f.get('all_bound_p99_ms'))} | {_cell(f['utilisation'], 1, 100)} |"
        )
    if cfg["free_fraction"] > 0:
        lines += [
            "",
            f"After deleting {cfg['free_fraction']:.0%} of the fully bound gangs:",
            "",
            "| peer | gangs deleted | gangs then fully bound | partial at end | room freed to "
            "all bound p50 ms | p99 ms |",
            "|---|---|---|---|---|---|",
        ]
        for peer, f in result["summary"].items():
            lines.append(
                f"| {LABELS.get(peer, peer)} | {_cell(f['freed_gangs'])} | "
                f"{_cell(f['after_free_bound_gangs'])} | "
                f"{_cell(f['after_free_partial_end'])} | {_cell(f.get('after_free_p50_ms'))} | "
                f"{_cell(f.get('after_free_p99_ms'))} |"
            )
    text = "; ".join(
        f"{i + 1}: {', '.join(LABELS.get(p, p) for p in o)}" for i, o in enumerate(result["orders"])
    )
    lines += ["", f"Order of the peers in each repetition: {text}."]
    failed = result.get("failed") or []
    runs_total = len(result["samples"])
    lines += [
        "",
        f"Placement checks (bench/verify.py): all {runs_total} runs passed."
        if not failed
        else f"**Placement checks failed in {len(failed)} of {runs_total} runs**: "
        + "; ".join(failed),
    ]
    lines += environment_lines(result["environment"])
    return "\n".join(lines) + "\n"


def cdf_series(samples: Sequence[Sample]) -> dict[str, list[float]]:
    """Per peer's label: every fully bound gang's creation-to-all-bound ms, all runs."""
    out: dict[str, list[float]] = {}
    for s in samples:
        out.setdefault(LABELS.get(s.peer, s.peer), []).extend(s.all_bound_ms)
    return out
