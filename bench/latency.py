"""Scenario ``latency``: where pods land relative to their users, and how fast.

An edge topology of kwok nodes: three regions (eu, us, ap), each with two
edge sites and a cloud site, every site a few nodes. The RTTs are known: a
site's access RTT to its region's users (edge-1 3 ms, edge-2 9 ms, cloud
28 ms) plus a backbone RTT between regions (eu-us 80, us-ap 110, eu-ap 150
ms). One simulated agent per node (:mod:`bench.agentsim`) measures that
matrix and streams it to lasched over the real agent protocol; the user
populations are lasched endpoints ``users-eu``, ``users-us``, ``users-ap``.

Pods, per region (500m CPU, 1 GiB each, so an edge node holds 8 and a cloud
node 32):

* **hard**: ``lasched.io/max-rtt: users-<region>=10ms`` (only the region's
  edge sites qualify), with the PriorityClass ``latency-critical``;
* **soft**: ``lasched.io/prefer-low-rtt: users-<region>``.

Per peer and repetition: the peer (and, for lasched, its agents) starts;
once lasched holds every pair's RTT, one warm-up pod is bound, then all pods
are created at once. When every pod is bound, or nothing has bound for
``settle`` seconds, each pod's RTT to its users is read off the matrix by
the node it landed on. Figures: the share of hard pods placed within their
limit, violations (placed beyond it: must be 0), pods left pending,
evictions, the RTT each pod gets (mean, median, p90), and pods bound per
second.

Pods are created one after another, so a soft pod may take an edge slot
that a later hard pod needs and is then preempted. The benchmark replaces
an evicted pod as its ReplicaSet would (same spec, the name suffixed
``-r1``, ``-r2``...), so every pod of the workload ends up placed or
pending and the RTT figures cover all of them; evictions are counted.

The **optimum** is exact: a min-cost assignment of all pods to the sites'
free slots (hard pods only to sites within their limit), minimising the
total RTT; mean RTT is set against it.

kube-scheduler cannot see RTTs: it gets the same pods with ``schedulerName:
default-scheduler`` and places them by its default plugins. **kube-scheduler
+ lasched extender** is the same kube-scheduler with lasched (extender mode,
its own agents) answering its filter and prioritize calls (docs/extender.md).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import peers
from bench.throughput import (
    Progress,
    create_bodies,
    delete_pods,
    ensure_priority_class,
    percentile,
)
from bench.timeline import Timeline
from lasched.devcluster import nodes
from lasched.devcluster.agents import agent_token
from lasched.devcluster.cluster import DevCluster, ensure_namespace
from lasched.devcluster.processes import free_port, spawn, stop_children
from lasched.kube.client import KubeClient

SCENARIO = "latency"
VERSION = 1

REGIONS = ("eu", "us", "ap")
BACKBONE_MS = {("eu", "us"): 80.0, ("us", "ap"): 110.0, ("eu", "ap"): 150.0}
SAME_SITE_MS = 0.4
PRIORITY_CLASS = "latency-critical"
SITE_LABEL = "bench.lasched.io/site"


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    region: str
    access_ms: float  # RTT to the region's users
    nodes: int
    cpu: str
    memory: str

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.nodes)]


@dataclass(frozen=True, slots=True)
class Config:
    edge_nodes: int = 6  # per edge site
    cloud_nodes: int = 8  # per cloud site
    hard_per_region: int = 60
    soft_per_region: int = 60
    max_rtt_ms: float = 10.0
    repeat: int = 3
    peers: tuple[str, ...] = ("lasched", "kube-scheduler-extender", "kube-scheduler-tuned")
    report_interval_seconds: float = 5.0
    settle_seconds: float = 15.0
    timeout: float = 300.0
    controller_manager: bool = True  # run kube-controller-manager in the dev cluster


@dataclass(slots=True)
class Sample:
    peer: str
    repeat: int
    pods: int
    bound: int
    pending_hard: int
    pending_soft: int
    evicted: int  # bound, then preempted during the run (and replaced, see the docstring)
    hard_met: int  # hard pods placed within their limit
    hard_total: int
    violations: int  # hard pods placed beyond their limit
    mean_rtt_ms: float
    median_rtt_ms: float
    p90_rtt_ms: float
    mean_rtt_hard_ms: float
    mean_rtt_soft_ms: float
    pods_per_s: float
    makespan_s: float
    cpu_seconds: float | None = None
    peak_rss_mb: float | None = None
    by_site: dict[str, int] = field(default_factory=dict)  # workload pods per site, at the end
    rtts_ms: list[float] = field(default_factory=list)


# ---- the topology -----------------------------------------------------------------


def sites(cfg: Config) -> list[Site]:
    out = []
    for region in REGIONS:
        out += [
            Site(f"{region}-edge-1", region, 3.0, cfg.edge_nodes, "4", "16Gi"),
            Site(f"{region}-edge-2", region, 9.0, cfg.edge_nodes, "4", "16Gi"),
            Site(f"{region}-cloud", region, 28.0, cfg.cloud_nodes, "16", "64Gi"),
        ]
    return out


def backbone(a: str, b: str) -> float:
    if a == b:
        return 0.0
    return BACKBONE_MS.get((a, b)) or BACKBONE_MS[(b, a)]


def users(region: str) -> str:
    return f"users-{region}"


def rtt_to_users(site: Site, region: str) -> float:
    return site.access_ms + backbone(site.region, region)


def rtt_between(a: Site, b: Site) -> float:
    if a.name == b.name:
        return SAME_SITE_MS
    return a.access_ms + b.access_ms + backbone(a.region, b.region)


def matrix(all_sites: list[Site]) -> dict[str, dict[str, float]]:
    """node -> target (every other node, every user endpoint) -> RTT in ms."""
    out: dict[str, dict[str, float]] = {}
    for a in all_sites:
        for node in a.node_names():
            row = {users(r): rtt_to_users(a, r) for r in REGIONS}
            for b in all_sites:
                for other in b.node_names():
                    if other != node:
                        row[other] = rtt_between(a, b)
            out[node] = row
    return out


POD_CPU_MILLI = 500
POD_MEMORY_GI = 1


def slots(site: Site) -> int:
    """Pods of 500m / 1 GiB that fit one node of the site, times its nodes."""
    per_node = min(int(site.cpu) * 1000 // POD_CPU_MILLI, int(site.memory[:-2]) // POD_MEMORY_GI)
    return per_node * site.nodes


def pod_bodies(cfg: Config, scheduler: str) -> list[dict[str, Any]]:
    """Hard and soft pods of every region, interleaved (hard, soft, hard, ...)."""
    bodies = []
    for region in REGIONS:
        for i in range(max(cfg.hard_per_region, cfg.soft_per_region)):
            if i < cfg.hard_per_region:
                bodies.append(
                    _pod(
                        f"{region}-hard-{i}",
                        scheduler,
                        region,
                        "hard",
                        {"lasched.io/max-rtt": f"{users(region)}={cfg.max_rtt_ms:g}ms"},
                    )
                )
            if i < cfg.soft_per_region:
                bodies.append(
                    _pod(
                        f"{region}-soft-{i}",
                        scheduler,
                        region,
                        "soft",
                        {"lasched.io/prefer-low-rtt": users(region)},
                    )
                )
    return bodies


def _pod(
    name: str, scheduler: str, region: str, kind: str, annotations: dict[str, str]
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "containers": [
            {
                "name": "main",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": f"{POD_CPU_MILLI}m", "memory": "1Gi"}},
            }
        ],
    }
    if kind == "hard":
        spec["priorityClassName"] = PRIORITY_CLASS
    return {
        "metadata": {
            "name": name,
            "labels": {"bench": SCENARIO, "region": region, "kind": kind},
            "annotations": annotations,
        },
        "spec": spec,
    }


# ---- the optimum ---------------------------------------------------------------------


def optimum(cfg: Config) -> list[float]:
    """Each pod's RTT in a min-cost assignment of all pods to the sites' slots.

    Pods of one region and kind are alike, and so are a site's slots, so the
    assignment is a transportation problem: solved exactly as a min-cost
    flow (successive shortest paths; Bellman-Ford, since residual edges have
    negative costs). Pods that fit nowhere within their limits are left out.
    """
    all_sites = sites(cfg)
    classes = [(r, "hard", cfg.hard_per_region) for r in REGIONS]
    classes += [(r, "soft", cfg.soft_per_region) for r in REGIONS]
    # Vertices: 0 source, 1..C classes, C+1..C+S sites, C+S+1 sink.
    c, s = len(classes), len(all_sites)
    sink = c + s + 1
    graph: list[list[list[float]]] = [[] for _ in range(sink + 1)]  # [to, cap, cost, rev]

    def edge(u: int, v: int, cap: float, cost: float) -> None:
        graph[u].append([v, cap, cost, len(graph[v])])
        graph[v].append([u, 0, -cost, len(graph[u]) - 1])

    for i, (region, kind, demand) in enumerate(classes, start=1):
        edge(0, i, demand, 0.0)
        for j, site in enumerate(all_sites, start=c + 1):
            rtt = rtt_to_users(site, region)
            if kind == "soft" or rtt <= cfg.max_rtt_ms:
                edge(i, j, demand, rtt)
    for j, site in enumerate(all_sites, start=c + 1):
        edge(j, sink, slots(site), 0.0)

    while True:
        dist = [float("inf")] * (sink + 1)
        prev: list[tuple[int, int] | None] = [None] * (sink + 1)
        dist[0] = 0.0
        for _ in range(sink):
            changed = False
            for u in range(sink + 1):
                if dist[u] == float("inf"):
                    continue
                for k, (v, cap, cost, _) in enumerate(graph[u]):
                    if cap > 0 and dist[u] + cost < dist[int(v)] - 1e-9:
                        dist[int(v)] = dist[u] + cost
                        prev[int(v)] = (u, k)
                        changed = True
            if not changed:
                break
        if dist[sink] == float("inf"):
            break
        push, v = float("inf"), sink
        while (step := prev[v]) is not None:
            u, k = step
            push = min(push, graph[u][k][1])
            v = u
        v = sink
        while (step := prev[v]) is not None:
            u, k = step
            graph[u][k][1] -= push
            back = graph[int(graph[u][k][0])][int(graph[u][k][3])]
            back[1] += push
            v = u

    rtts: list[float] = []
    for i in range(1, c + 1):
        for v, _cap, cost, rev in graph[i]:
            if c < v <= c + s:
                flow = graph[int(v)][int(rev)][1]  # the reverse edge holds the flow
                rtts += [cost] * int(flow)
    return sorted(rtts)


# ---- running it -----------------------------------------------------------------------


def lasched_settings(cfg: Config) -> dict[str, Any]:
    return {
        "latency": {
            "reportIntervalSeconds": cfg.report_interval_seconds,
            "ttlSeconds": 120,
            "endpoints": [
                {"name": users(r), "address": f"192.0.2.{10 + i}"} for i, r in enumerate(REGIONS)
            ],
        }
    }


async def _metrics(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def wait_for_rtts(port: int, *, agents: int, pairs: int, timeout: float) -> None:
    """Until every agent is connected and lasched has stored a full round of samples."""
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        try:
            seen = await _metrics(port)
        except (aiohttp.ClientError, OSError):
            seen = {}
        connected = seen.get("lasched_agent_connections", 0)
        stored = seen.get('lasched_agent_samples_total{outcome="stored"}', 0)
        if connected >= agents and stored >= pairs:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"agents did not report all RTTs within {timeout:.0f} s: {seen}")


async def _settle(
    timeline: Timeline,
    count: int,
    cfg: Config,
    progress: Progress,
    label: str,
    *,
    replace: Callable[[], Awaitable[int]] | None = None,
) -> None:
    """Until ``count`` pods (plus replacements) are bound, or none has bound for
    ``settle_seconds``. ``replace`` creates replacements of evicted pods and says
    how many there are so far."""
    deadline = time.monotonic() + cfg.timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        target = count + (await replace() if replace is not None else 0)
        if await timeline.wait_bound(target, timeout=0.5):
            if replace is None or await replace() + count == target:
                progress(label, target, target)
                return
            continue
        n = len(timeline.bound)
        progress(label, n, target)
        if n != last:
            last, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > cfg.settle_seconds:
            return
    raise TimeoutError(f"{label}: {len(timeline.bound)}/{count} bound after {cfg.timeout:.0f} s")


class Replacer:
    """Re-creates evicted pods as a ReplicaSet would: same spec, a new name."""

    def __init__(self, kc: KubeClient, namespace: str, timeline: Timeline,
                 bodies: list[dict[str, Any]]) -> None:  # fmt: skip
        self._kc, self._ns, self._timeline = kc, namespace, timeline
        self._body = {b["metadata"]["name"]: b for b in bodies}
        self.latest = {name: name for name in self._body}  # workload pod -> its current pod
        self.replaced: set[str] = set()
        self._generation = dict.fromkeys(self._body, 0)

    async def __call__(self) -> int:
        for logical, current in list(self.latest.items()):
            if current in self._timeline.deleted and current not in self.replaced:
                self.replaced.add(current)
                self._generation[logical] += 1
                body = orjson.loads(orjson.dumps(self._body[logical]))
                body["metadata"]["name"] = f"{logical}-r{self._generation[logical]}"
                await create_bodies(self._kc, self._ns, [body])
                self.latest[logical] = body["metadata"]["name"]
        return len(self.replaced)


async def measure_peer(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    peer: peers.Peer,
    cfg: Config,
    rep: int,
    tokens: dict[str, Path],
    progress: Progress,
) -> Sample:
    all_sites = sites(cfg)
    site_of = {n: s for s in all_sites for n in s.node_names()}
    ns = f"lat-{peer.key}-{rep}"
    label = f"{peer.key} #{rep + 1}"
    workdir = cluster.workdir / ns
    await ensure_namespace(kc, ns)
    uses_lasched = peer.key == peers.LASCHED.key or peer.extender
    port = free_port() if uses_lasched else 0
    running = await peers.start(
        peer,
        kubeconfig=cluster.kubeconfig,
        workdir=workdir,
        lasched_settings=lasched_settings(cfg),
        http_port=port,
    )
    agents = None
    timeline = Timeline(kc, ns)
    await timeline.start()
    try:
        if uses_lasched:
            rtts = matrix(all_sites)
            spec = {
                "url": f"ws://127.0.0.1:{port}/agents/v1",
                "agents": {
                    n: {"token_file": str(tokens[n]), "rtts": row} for n, row in rtts.items()
                },
            }
            spec_path = workdir / "agents.json"
            spec_path.write_bytes(orjson.dumps(spec))
            argv = [sys.executable, "-m", "bench.agentsim", str(spec_path)]
            agents = spawn("agentsim", argv, log_dir=workdir, detached=False)
            progress(f"{label}: agents report", 0, 1)
            pairs = sum(len(row) for row in rtts.values())
            await wait_for_rtts(port, agents=len(rtts), pairs=pairs, timeout=120)
            progress(f"{label}: agents report", 1, 1)
        # A warm-up pod (no requests, so it takes no slot): the peer is scheduling.
        warm = _pod("warmup", peer.scheduler_name, "eu", "plain", {})
        warm["spec"]["containers"][0]["resources"] = {}
        await create_bodies(kc, ns, [warm])
        if not await timeline.wait_bound(1, timeout=60):
            raise TimeoutError(f"{label}: the warm-up pod was not bound within 60 s")
        cpu0 = running.stats().cpu_seconds

        bodies = pod_bodies(cfg, peer.scheduler_name)
        replacer = Replacer(kc, ns, timeline, bodies)
        created = time.monotonic()
        await create_bodies(kc, ns, bodies, progress=progress, label=f"{label}: create")
        await _settle(timeline, len(bodies) + 1, cfg, progress, f"{label}: bind", replace=replacer)
        stats = running.stats()
        return _sample(
            peer.key, rep, cfg, bodies, timeline=timeline, site_of=site_of, created=created,
            cpu=stats.cpu_seconds - cpu0, rss_mb=stats.peak_rss_bytes / 2**20,
            latest=replacer.latest, evicted=len(replacer.replaced),
        )  # fmt: skip
    finally:
        if agents is not None:
            await stop_children([agents], grace=5)
        await running.stop()
        await timeline.stop()
        await delete_pods(kc, ns)


def _sample(
    peer: str,
    rep: int,
    cfg: Config,
    bodies: list[dict[str, Any]],
    *,
    timeline: Timeline,
    site_of: dict[str, Site],
    created: float,
    cpu: float,
    rss_mb: float,
    latest: dict[str, str],
    evicted: int,
) -> Sample:
    """Figures over the workload's pods, each by its current pod (``latest``)."""
    hard_rtts, soft_rtts = [], []
    pending_hard = pending_soft = hard_met = violations = 0
    bound_times = [t for n, t in timeline.bound.items() if n != "warmup"]
    by_site: dict[str, int] = {}
    for body in bodies:
        name = latest[body["metadata"]["name"]]
        region = body["metadata"]["labels"]["region"]
        hard = body["metadata"]["labels"]["kind"] == "hard"
        node = None if name in timeline.deleted else timeline.nodes.get(name)
        if node is None:
            if hard:
                pending_hard += 1
            else:
                pending_soft += 1
            continue
        by_site[site_of[node].name] = by_site.get(site_of[node].name, 0) + 1
        rtt = rtt_to_users(site_of[node], region)
        if hard:
            hard_rtts.append(rtt)
            if rtt <= cfg.max_rtt_ms:
                hard_met += 1
            else:
                violations += 1
        else:
            soft_rtts.append(rtt)
    everything = sorted(hard_rtts + soft_rtts)
    bound_times.sort()
    span = bound_times[-1] - bound_times[0] if len(bound_times) > 1 else 0.0
    return Sample(
        peer=peer,
        repeat=rep,
        pods=len(bodies),
        bound=len(hard_rtts) + len(soft_rtts),
        pending_hard=pending_hard,
        pending_soft=pending_soft,
        evicted=evicted,
        hard_met=hard_met,
        hard_total=cfg.hard_per_region * len(REGIONS),
        violations=violations,
        mean_rtt_ms=_mean(everything),
        median_rtt_ms=percentile(everything, 50),
        p90_rtt_ms=percentile(everything, 90),
        mean_rtt_hard_ms=_mean(hard_rtts),
        mean_rtt_soft_ms=_mean(soft_rtts),
        pods_per_s=(len(bound_times) - 1) / span if span > 0 else float("nan"),
        makespan_s=(bound_times[-1] - created) if bound_times else float("nan"),
        cpu_seconds=cpu,
        peak_rss_mb=rss_mb,
        by_site=by_site,
        rtts_ms=everything,
    )


def _mean(values: Iterable[float]) -> float:
    v = list(values)
    return statistics.fmean(v) if v else float("nan")


async def run(cfg: Config, progress: Progress) -> list[Sample]:
    all_sites = sites(cfg)
    samples: list[Sample] = []
    async with (
        DevCluster(controller_manager=cfg.controller_manager) as cluster,
        await cluster.client() as kc,
    ):
        specs = [
            nodes.NodeSpec(
                name=n,
                cpu=s.cpu,
                memory=s.memory,
                region=s.region,
                zone=s.name,
                labels={SITE_LABEL: s.name},
            )
            for s in all_sites
            for n in s.node_names()
        ]
        await nodes.create_nodes(kc, specs, progress=lambda d, t: progress("kwok nodes", d, t))
        await nodes.wait_ready(kc, [s.name for s in specs], timeout=120)
        await ensure_priority_class(
            kc, name=PRIORITY_CLASS, value=1000, description="bench: pods with a hard RTT limit"
        )
        tokens: dict[str, Path] = {}
        token_dir = cluster.workdir / "agent-tokens"
        token_dir.mkdir(exist_ok=True)
        for i, spec in enumerate(specs):
            path = token_dir / spec.name
            path.write_text(await agent_token(kc, node=spec.name, seconds=4 * 3600))
            tokens[spec.name] = path
            progress("agent identities", i + 1, len(specs))
        by_key = {"lasched": peers.LASCHED}
        by_key |= {p.key: p for p in (peers.KUBE_EXTENDER, peers.KUBE_LATENCY_BLIND)}
        for rep in range(cfg.repeat):
            for key in cfg.peers:
                sample = await measure_peer(
                    cluster=cluster, kc=kc, peer=by_key[key], cfg=cfg, rep=rep,
                    tokens=tokens, progress=progress,
                )  # fmt: skip
                samples.append(sample)
    return samples


# ---- results --------------------------------------------------------------------------

FIGURES = (
    "hard_met_share", "violations", "pending", "evicted", "mean_rtt_ms", "median_rtt_ms",
    "p90_rtt_ms", "mean_rtt_hard_ms", "mean_rtt_soft_ms", "pods_per_s", "makespan_s", "cpu_seconds",
    "peak_rss_mb",
)  # fmt: skip


def _figure(s: Sample, name: str) -> float | None:
    if name == "hard_met_share":
        return s.hard_met / s.hard_total if s.hard_total else None
    if name == "pending":
        return float(s.pending_hard + s.pending_soft)
    value = getattr(s, name)
    return None if value is None else float(value)


def summarise(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for peer in dict.fromkeys(s.peer for s in samples):
        rows = [s for s in samples if s.peer == peer]
        out[peer] = {}
        for f in FIGURES:
            vals = [v for s in rows if (v := _figure(s, f)) is not None and not math.isnan(v)]
            if vals:
                out[peer][f] = {"median": statistics.median(vals), "min": min(vals),
                                "max": max(vals)}  # fmt: skip
    return out


def to_json(cfg: Config, samples: list[Sample], env: dict[str, str]) -> dict[str, Any]:
    best = optimum(cfg)
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "topology": [asdict(s) for s in sites(cfg)],
        "optimum": {
            "pods": len(best),
            "mean_rtt_ms": _mean(best),
            "median_rtt_ms": percentile(best, 50),
            "p90_rtt_ms": percentile(best, 90),
        },
        "summary": summarise(samples),
        "samples": [{k: v for k, v in asdict(s).items() if k != "rtts_ms"} for s in samples],
    }


def markdown(result: dict[str, Any]) -> str:
    cfg, env, opt = result["config"], result["environment"], result["optimum"]
    n_nodes = sum(s["nodes"] for s in result["topology"])
    pods = (cfg["hard_per_region"] + cfg["soft_per_region"]) * len(REGIONS)

    def fmt(stat: dict[str, float] | None, digits: int = 1, pct: bool = False) -> str:
        if not stat:
            return "-"
        k = 100.0 if pct else 1.0
        m, lo, hi = stat["median"] * k, stat["min"] * k, stat["max"] * k
        unit = " %" if pct else ""
        if lo == hi:
            return f"{m:.{digits}f}{unit}"
        return f"{m:.{digits}f}{unit} ({lo:.{digits}f} to {hi:.{digits}f})"

    lines = [
        f"### latency: {n_nodes} nodes in {len(result['topology'])} sites, {pods} pods "
        f"(hard: max-rtt {cfg['max_rtt_ms']:g} ms to their users; soft: prefer-low-rtt), "
        f"{cfg['repeat']} repetitions",
        "",
        "Medians, with the range over repetitions in brackets. RTT: each placed pod's RTT "
        "to its own users. Evictions: pods preempted by later pods and replaced, as a "
        "ReplicaSet would; the RTTs are those of the replacements.",
        "",
        "| scheduler | hard limits met | violations | pending | evictions | RTT mean ms "
        "| RTT median ms | RTT p90 ms | mean / optimum | pods/s | makespan s | CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for peer, s in result["summary"].items():
        mean = s.get("mean_rtt_ms", {}).get("median")
        ratio = f"{mean / opt['mean_rtt_ms']:.2f}x" if mean and opt["mean_rtt_ms"] else "-"
        lines.append(
            f"| {peers.LABELS.get(peer, peer)} | {fmt(s.get('hard_met_share'), 0, pct=True)} "
            f"| {fmt(s.get('violations'), 0)} | {fmt(s.get('pending'), 0)} "
            f"| {fmt(s.get('evicted'), 0)} | {fmt(s.get('mean_rtt_ms'))} "
            f"| {fmt(s.get('median_rtt_ms'))} | {fmt(s.get('p90_rtt_ms'))} | {ratio} "
            f"| {fmt(s.get('pods_per_s'), 0)} "
            f"| {fmt(s.get('makespan_s'), 2)} | {fmt(s.get('cpu_seconds'))} |"
        )
    lines.append(
        f"| optimum (exact) | 100 % | 0 | {pods - opt['pods']} | 0 | {opt['mean_rtt_ms']:.1f} "
        f"| {opt['median_rtt_ms']:.1f} | {opt['p90_rtt_ms']:.1f} | 1.00x | - | - | - |"
    )
    lines += [
        "",
        "CPU s: the scheduler's CPU from the burst's creation to its end (lasched's includes "
        "receiving the agents' reports; the extender row adds kube-scheduler and lasched).",
        "",
        f"Machine: {env.get('machine', '?')}. Kubernetes {env.get('kubernetes', '?')}, "
        f"etcd {env.get('etcd', '?')}, kwok {env.get('kwok', '?')}, "
        f"Python {env.get('python', '?')}.",
        f"Command: `{env.get('command', '?')}`",
    ]
    if env.get("load"):
        lines.append(f"Load: {env['load']}")
    return "\n".join(lines) + "\n"
