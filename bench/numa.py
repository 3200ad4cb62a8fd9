"""Scenario ``numa``: GPU training gangs that need one NUMA zone each, beside ordinary pods.

kwok nodes of 2 to 8 NUMA zones (bench/numazones.py: alike zones of 8 CPUs, 32 GiB and 2
GPUs), each publishing its zones as a NodeResourceTopology created through the API (the
dev cluster installs the CRD). The workload, drawn from a seed, is gangs of 2 to 4
single-numa training pods (Guaranteed; KubeNexus's annotations) whose GPUs come to
``gpu_fill`` of the cluster's, and two ordinary pods per zone, all created at once.

Each repetition runs, in rotation, three peers on the same pods:

* **lasched**: NUMA-aware (NodeResourceTopologyMatch, the holds of its own placements);
* **lasched without NUMA**: the same pods without the annotations and no
  NodeResourceTopology objects (so nothing is checked per zone): the cycle cost of NUMA
  is lasched's CPU seconds here against the first;
* **kube-scheduler**: no NUMA view; there only for the share of NUMA pods placed where
  one zone fits.

A run ends when every pod is bound or no pod has been bound for ``settle_seconds``. Then
the zone check (bench/numazones.py) reads the NodeResourceTopology objects and the
placements: the share of bound NUMA pods a kubelet with ``single-numa-node`` could admit
(lasched's must be 100%; a run where it is not is a failed check). Also reported: the
cluster's GPUs and CPUs taken, the scheduler's CPU seconds from the first pod's creation
to the end, and per bound pod.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import numazones, peers
from bench.report import environment_lines
from bench.throughput import Progress, create_bodies, delete_pods, rotation
from bench.timeline import Timeline
from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace

SCENARIO = "numa"
VERSION = 1
PLAIN = "lasched-plain"
PEERS = ("lasched", PLAIN, "kube-scheduler-tuned")
LABELS = {**peers.LABELS, PLAIN: "lasched without NUMA"}


@dataclass(frozen=True, slots=True)
class Config:
    nodes: int = 20
    repeat: int = 3
    peers: tuple[str, ...] = PEERS
    seed: int = 1
    gpu_fill: float = 0.95
    settle_seconds: float = 15.0
    timeout: float = 300.0
    controller_manager: bool = True


@dataclass(slots=True)
class Sample:
    peer: str
    repeat: int
    numa_pods: int
    numa_bound: int
    numa_in_zone: int
    ordinary_pods: int
    ordinary_bound: int
    gpu_percent: float
    cpu_percent: float
    cpu_seconds: float
    seconds: float

    @property
    def zone_share_percent(self) -> float:
        return 100.0 * self.numa_in_zone / self.numa_bound if self.numa_bound else 100.0

    @property
    def cpu_ms_per_pod(self) -> float:
        bound = self.numa_bound + self.ordinary_bound
        return 1000.0 * self.cpu_seconds / bound if bound else float("nan")


def _peer(key: str) -> peers.Peer:
    return peers.LASCHED if key == PLAIN else peers.PEERS[key]


async def _publish(kc: KubeClient, specs: dict[str, int], *, present: bool) -> None:
    """Create (or delete) every node's NodeResourceTopology."""
    for name, zones in specs.items():
        try:
            if present:
                await kc.post(numazones.NRT_PATH, numazones.topology(name, zones))
            else:
                await kc.request("DELETE", f"{numazones.NRT_PATH}/{name}")
        except ApiError as e:
            if e.status not in (404, 409):  # already as wanted
                raise


async def _settle(
    kc: KubeClient, ns: str, *, total: int, cfg: Config, progress: Progress, label: str
) -> list[dict[str, Any]]:
    """Poll until every pod is bound or none was bound for ``settle_seconds``."""
    start = last_change = time.monotonic()
    bound = -1
    while True:
        pods = (await kc.get(f"/api/v1/namespaces/{ns}/pods"))["items"]
        now_bound = sum(1 for p in pods if p["spec"].get("nodeName"))
        if now_bound != bound:
            bound, last_change = now_bound, time.monotonic()
            progress(label, bound, total)
        now = time.monotonic()
        if bound == total or now - last_change > cfg.settle_seconds or now - start > cfg.timeout:
            return list(pods)
        await asyncio.sleep(1.0)


async def _check_zones(kc: KubeClient, pods: list[dict[str, Any]]) -> tuple[int, int]:
    """(NUMA pods bound, of them placeable in one zone each) from the NRTs and placements."""
    nrts = (await kc.get(numazones.NRT_PATH))["items"]
    zones = {o["metadata"]["name"]: numazones.zones_from_nrt(o) for o in nrts}
    per_node: dict[str, list[numazones.Need]] = {}
    for p in pods:
        need = numazones.need_of(p)
        if need is not None and p["spec"].get("nodeName"):
            per_node.setdefault(p["spec"]["nodeName"], []).append(need)
    bound = sum(len(v) for v in per_node.values())
    fit = sum(numazones.most_in_zones(zones.get(n, []), v) for n, v in per_node.items())
    return bound, fit


async def _one(
    kc: KubeClient,
    cluster: DevCluster,
    *,
    cfg: Config,
    key: str,
    rep: int,
    specs: dict[str, int],
    plans: list[numazones.PodPlan],
    progress: Progress,
) -> Sample:
    peer = _peer(key)
    plain = key == PLAIN
    if plain:
        await _publish(kc, specs, present=False)
    running = await peers.start(
        peer, kubeconfig=cluster.kubeconfig, workdir=cluster.workdir / f"{key}-{rep}"
    )
    ns = f"numa-{rep}-{key}"
    try:
        # A warm-up pod, so the run does not pay for the scheduler's start.
        warm_ns = f"{ns}-warmup"
        await ensure_namespace(kc, warm_ns)
        warm = Timeline(kc, warm_ns)
        await warm.start()
        warm_pod = numazones.body(numazones.PodPlan("w", None), peer.scheduler_name, numa=False)
        await create_bodies(kc, warm_ns, [warm_pod])
        await warm.wait_bound(1, timeout=60)
        await warm.stop()
        await ensure_namespace(kc, ns)
        bodies = [numazones.body(p, peer.scheduler_name, numa=not plain) for p in plans]
        before = running.stats().cpu_seconds
        t0 = time.monotonic()
        label = f"{LABELS.get(key, key)} (repetition {rep + 1})"
        await create_bodies(kc, ns, bodies, progress=progress, label=f"{label}: pods created")
        pods = await _settle(
            kc, ns, total=len(bodies), cfg=cfg, progress=progress, label=f"{label}: pods bound"
        )
        seconds = time.monotonic() - t0
        cpu = running.stats().cpu_seconds - before
    finally:
        await running.stop()
    if plain:
        await _publish(kc, specs, present=True)
    numa_bound, in_zone = await _check_zones(kc, pods)
    total_zones = sum(specs.values())
    gpus = cpus = 0
    ordinary_bound = 0
    for p in pods:
        if not p["spec"].get("nodeName"):
            continue
        need = numazones.need_of(p)
        if need is None:
            ordinary_bound += 1
            cpus += 500
        else:
            gpus += need.gpus
            cpus += need.milli_cpu
    await delete_pods(kc, ns)
    await delete_pods(kc, warm_ns)
    return Sample(
        peer=key,
        repeat=rep,
        numa_pods=sum(1 for p in plans if p.need is not None),
        numa_bound=numa_bound,
        numa_in_zone=in_zone,
        ordinary_pods=sum(1 for p in plans if p.need is None),
        ordinary_bound=ordinary_bound,
        gpu_percent=100.0 * gpus / (total_zones * numazones.ZONE_GPUS),
        cpu_percent=100.0 * cpus / (total_zones * numazones.ZONE_CPU * 1000),
        cpu_seconds=cpu,
        seconds=seconds,
    )


async def run(cfg: Config, progress: Progress) -> list[Sample]:
    samples: list[Sample] = []
    specs = {f"numa-{i}": numazones.zones_of(i) for i in range(cfg.nodes)}
    plans = numazones.workload(
        zones_total=sum(specs.values()), seed=cfg.seed, gpu_fill=cfg.gpu_fill
    )
    async with (
        DevCluster(
            controller_manager=cfg.controller_manager,
            nodes=cfg.nodes,
        ) as cluster,
        await cluster.client() as kc,
    ):
        node_specs = []
        for name, zones in specs.items():
            cpu, memory, extended = numazones.node_totals(zones)
            node_specs.append(
                nodes.NodeSpec(name=name, cpu=cpu, memory=memory, pods="110", extended=extended)
            )
        await nodes.create_nodes(kc, node_specs, progress=lambda d, t: progress("kwok nodes", d, t))
        await nodes.wait_ready(kc, list(specs), timeout=120)
        await _publish(kc, specs, present=True)
        for rep in range(cfg.repeat):
            for key in rotation(cfg.peers, rep):
                samples.append(
                    await _one(
                        kc,
                        cluster,
                        cfg=cfg,
                        key=key,
                        rep=rep,
                        specs=specs,
                        plans=plans,
                        progress=progress,
                    )
                )
    return samples


FIGURES = ("zone_share_percent", "numa_bound", "ordinary_bound", "gpu_percent", "cpu_percent",
           "cpu_seconds", "cpu_ms_per_pod", "seconds")  # fmt: skip


def _stat(vals: list[float]) -> dict[str, float]:
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def summarise(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for peer in dict.fromkeys(s.peer for s in samples):
        rows = [s for s in samples if s.peer == peer]
        out[peer] = {f: _stat([float(getattr(s, f)) for s in rows]) for f in FIGURES}
    return out


def cost_ratios(samples: list[Sample]) -> dict[str, float] | None:
    """lasched's CPU seconds with NUMA over without, within each repetition."""
    mine = {s.repeat: s for s in samples if s.peer == "lasched"}
    plain = {s.repeat: s for s in samples if s.peer == PLAIN}
    vals = [mine[r].cpu_seconds / plain[r].cpu_seconds for r in mine.keys() & plain.keys()
            if plain[r].cpu_seconds > 0]  # fmt: skip
    return _stat(vals) if vals else None


def failures(samples: list[Sample]) -> list[str]:
    """Runs of lasched with NUMA that placed a NUMA pod where no zone fits."""
    return [
        f"lasched, repetition {s.repeat + 1}: {s.numa_bound - s.numa_in_zone} of "
        f"{s.numa_bound} NUMA pods bound where no zone fits"
        for s in samples
        if s.peer == "lasched" and s.numa_in_zone < s.numa_bound
    ]


def to_json(cfg: Config, samples: list[Sample], env: dict[str, str]) -> dict[str, Any]:
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "summary": summarise(samples),
        "cost_ratio": cost_ratios(samples),
        "orders": [rotation(cfg.peers, rep) for rep in range(cfg.repeat)],
        "failed": failures(samples),
        "samples": [
            {
                **asdict(s),
                "zone_share_percent": s.zone_share_percent,
                "cpu_ms_per_pod": s.cpu_ms_per_pod,
            }
            for s in samples
        ],
    }


def _fmt(stat: dict[str, float] | None, digits: int = 0) -> str:
    if not stat:
        return "-"
    m = stat["median"]
    if stat["min"] == stat["max"]:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ({stat['min']:.{digits}f} to {stat['max']:.{digits}f})"


def markdown(result: dict[str, Any]) -> str:
    cfg, env, summary = result["config"], result["environment"], result["summary"]
    first = result["samples"][0] if result["samples"] else {}
    lines = [
        f"### numa: {cfg['nodes']} nodes of 2 to 8 NUMA zones, {first.get('numa_pods', '?')} "
        f"single-numa GPU training pods in gangs and {first.get('ordinary_pods', '?')} ordinary "
        f"pods, {cfg['repeat']} repetition(s)",
        "",
        "Medians over repetitions, the range in brackets. The zone share is of the NUMA pods "
        "bound: those a kubelet with `single-numa-node` could admit, from the "
        "NodeResourceTopology objects and the placements. CPU s: the scheduler's, from the "
        "first pod's creation until every pod was bound or none was for "
        f"{cfg['settle_seconds']:g} s.",
        "",
        "| scheduler | placed where one zone fits % | NUMA pods bound | ordinary pods bound "
        "| GPUs taken % | CPUs taken % | CPU s | CPU ms per pod bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for peer, s in summary.items():
        share = _fmt(s["zone_share_percent"], 1)
        if peer == PLAIN:
            share = f"({share}, no NUMA asked)"
        lines.append(
            f"| {LABELS.get(peer, peer)} | {share} | {_fmt(s['numa_bound'])} "
            f"| {_fmt(s['ordinary_bound'])} | {_fmt(s['gpu_percent'], 1)} "
            f"| {_fmt(s['cpu_percent'], 1)} | {_fmt(s['cpu_seconds'], 2)} "
            f"| {_fmt(s['cpu_ms_per_pod'], 1)} |"
        )
    ratio = result.get("cost_ratio")
    lines.append("")
    if ratio:
        lines.append(
            f"- lasched's CPU seconds with NUMA / without: **{_fmt(ratio, 2)}x**, "
            "within each repetition"
        )
    lines.append(
        "- kube-scheduler has no NUMA view: it is here for the zone share only (its pods left "
        "without a zone would fail with TopologyAffinityError on a real node)."
    )
    lines += [
        "- Orders: " + "; ".join(", ".join(LABELS.get(p, p) for p in o) for o in result["orders"]),
        *environment_lines(env),
    ]
    return "\n".join(lines) + "\n"
