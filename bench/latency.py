"""Scenario ``latency``: where pods land relative to their users, on generated edge topologies.

Each seed gives a topology (:mod:`bench.topology`): regions with edge sites
of varied nodes and a cloud site, user populations at edge sites, RTTs from
geography plus noise, and a workload of hard pods (``lasched.io/max-rtt``
to their users, PriorityClass ``latency-critical``) and soft pods
(``lasched.io/prefer-low-rtt``). Its kwok nodes carry the site as their zone
(``topology.kubernetes.io/zone``) and the region as their region. One
simulated agent per node (:mod:`bench.agentsim`) measures the topology's RTT
matrix and streams it to lasched over the real agent protocol; the user
populations are lasched endpoints ``users-<site>``.

Peers, per seed, in an order that rotates from seed to seed:

- **lasched**;
- **lasched, no plan** (``latency.plan: false``): each pod by its own scores,
  to show what placing the pods together adds;
- **kube-scheduler + lasched extender** (docs/extender.md);
- **kube-scheduler**, latency-blind: the same pods, its default plugins;
- **kube-scheduler + zone affinity**: what a user without lasched would
  write, knowing where the users are but not the RTTs: a hard pod requires
  its users' site (``nodeAffinity`` on the zone), a soft pod prefers it
  (weight 100) and its region (weight 50).

Per peer: the peer (and, for lasched, its agents) starts; once lasched holds
every pair's RTT, one warm-up pod is bound, then one ReplicaSet per class is
created at once, and kube-controller-manager creates their pods, as it does a
Deployment's (a ReplicaSet's first pods come in batches of 1, 2, 4...). When
every pod is bound, or nothing has bound for ``settle`` seconds, the figures
are taken. A soft pod that a hard pod preempts is created again by its
ReplicaSet, and the figures cover the replacement; evictions (pods bound,
then deleted) are counted.

Figures per seed and peer: hard violations (a hard pod placed beyond its
limit), pods left pending, pods left pending although a node had room for
them within every hard constraint (capacity, taints, max RTT) in the final
state, evictions, each placed pod's RTT to its users, and the mean RTT over
the **exact optimum**'s (:mod:`bench.milp`: as many hard pods as possible,
then as many pods, then the least total RTT). The placement check
(:mod:`bench.verify`) runs on every peer's final state; lasched and the
extender are held to the pods' ``max-rtt`` too, the kube-scheduler peers,
which cannot see RTTs, to the Kubernetes rules only (their RTT violations
are the figure above, not a failed run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import matplotlib.pyplot as plt
import orjson
from matplotlib.ticker import FormatStrFormatter
from prometheus_client.parser import text_string_to_metric_families

from bench import milp, peers, topology, verify
from bench.report import cdf_plot, check_lines, environment_lines, order_lines
from bench.throughput import (
    Progress,
    create_bodies,
    delete_pods,
    ensure_priority_class,
    failures,
    percentile,
    rotation,
    stat,
)
from bench.timeline import Timeline
from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.agents import NAMESPACE as AGENT_NAMESPACE
from lasched_dev.devcluster.agents import agent_token
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace
from lasched_dev.devcluster.processes import free_port, spawn, stop_children

SCENARIO = "latency"
VERSION = 2

PRIORITY_CLASS = "latency-critical"
GANG_LABEL = "lasched.io/pod-group"
GANG_MIN_LABEL = "lasched.io/min-available"
GANG_BUDGET_ANNOTATION = "lasched.io/group-max-rtt"
SITE_LABEL = "bench.lasched.io/site"
SEED_LABEL = "bench.lasched.io/seed"

KUBE_ZONE = dataclasses.replace(
    peers.KUBE_LATENCY_BLIND,
    key="kube-scheduler-zone",
    label="kube-scheduler + zone affinity (QPS 5000/10000)",
)
# lasched with each pod placed by its own scores alone: what the plan adds, in the same run.
LASCHED_GREEDY = dataclasses.replace(
    peers.LASCHED, key="lasched-greedy", label="lasched, no plan",
    settings={"latency": {"plan": False}},
)  # fmt: skip
PEERS = {
    "lasched": peers.LASCHED,
    "lasched-greedy": LASCHED_GREEDY,
    "kube-scheduler-extender": peers.KUBE_EXTENDER,
    "kube-scheduler-tuned": peers.KUBE_LATENCY_BLIND,
    "kube-scheduler-zone": KUBE_ZONE,
}
LABELS = {
    "lasched": "lasched",
    "lasched-greedy": "lasched, no plan (latency.plan: false)",
    "kube-scheduler-extender": "kube-scheduler + lasched extender",
    "kube-scheduler-tuned": "kube-scheduler, latency-blind",
    "kube-scheduler-zone": "kube-scheduler + zone affinity",
    "optimum": "optimum (exact)",
}
SEES_RTT = frozenset({"lasched", "lasched-greedy", "kube-scheduler-extender"})
# What every peer's pending pods are measured against: the scenario's own hard constraints.
SCENARIO_RULES = frozenset({verify.CAPACITY, verify.TAINTS, verify.MAX_RTT})


@dataclass(frozen=True, slots=True)
class Config:
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    regions: int = 3
    repeat: int = 1  # per seed
    peers: tuple[str, ...] = tuple(PEERS)
    report_interval_seconds: float = 5.0
    settle_seconds: float = 15.0
    timeout: float = 300.0
    controller_manager: bool = True  # run kube-controller-manager in the dev cluster

    def sizes(self) -> topology.Sizes:
        return topology.Sizes(regions=self.regions)


@dataclass(slots=True)
class Sample:
    seed: int
    peer: str
    repeat: int
    position: int
    pods: int
    bound: int
    pending_hard: int
    pending_soft: int
    pending_feasible: int  # pending although a node had room within the hard constraints
    evicted: int  # bound, then preempted during the run (and replaced, see the docstring)
    hard_met: int  # hard pods placed within their limit
    hard_total: int
    violations: int  # hard pods placed beyond their limit
    mean_rtt_ms: float
    median_rtt_ms: float
    p90_rtt_ms: float
    mean_rtt_hard_ms: float
    mean_rtt_soft_ms: float
    optimum_mean_rtt_ms: float
    rtt_ratio: float  # mean RTT over the optimum's
    pods_per_s: float
    makespan_s: float
    cpu_seconds: float | None = None
    peak_rss_mb: float | None = None
    by_site: dict[str, int] = field(default_factory=dict)  # workload pods per site, at the end
    # class -> site -> pods there at the end, to set beside the optimum's assignment
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    verify: dict[str, Any] = field(default_factory=dict)
    rtts_ms: list[float] = field(default_factory=list)


# ---- the pods -----------------------------------------------------------------------------


def pod_bodies(topo: topology.Topology, peer: str, scheduler: str) -> list[dict[str, Any]]:
    """Every class's pods, the classes interleaved (one of each in turn)."""
    site_of_users = {u.name: u.site for u in topo.users}
    out = []
    longest = max((c.count for c in topo.classes), default=0)
    for i in range(longest):
        for c in topo.classes:
            if i < c.count:
                site = site_of_users[c.users]
                out.append(
                    pod_body(
                        f"{c.name}-{i}",
                        c,
                        scheduler,
                        site=site,
                        region=topo.region_of[site],
                        zone=peer == KUBE_ZONE.key,
                    )
                )
    return out


def replica_sets(topo: topology.Topology, peer: str, scheduler: str) -> list[dict[str, Any]]:
    """One ReplicaSet per class, its pods :func:`pod_body`'s: kube-controller-manager
    creates them, as it does a Deployment's."""
    site_of_users = {u.name: u.site for u in topo.users}
    out = []
    for c in topo.classes:
        site = site_of_users[c.users]
        template = pod_body(
            "", c, scheduler, site=site, region=topo.region_of[site], zone=peer == KUBE_ZONE.key
        )
        del template["metadata"]["name"]
        out.append(replica_set(c, template, SCENARIO, {"bench": SCENARIO, "class": c.name}))
    return out


def replica_set(
    c: topology.PodClass, template: dict[str, Any], scenario: str, selector: dict[str, str]
) -> dict[str, Any]:
    """The ReplicaSet of class ``c``'s pods (``template``, which ``selector`` matches)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": c.name, "labels": {"bench": scenario}},
        "spec": {"replicas": c.count, "selector": {"matchLabels": selector}, "template": template},
    }


async def create_replica_sets(
    kc: KubeClient, namespace: str, bodies: list[dict[str, Any]], progress: Progress, label: str
) -> None:
    for i, body in enumerate(bodies, 1):
        await kc.post(f"/apis/apps/v1/namespaces/{namespace}/replicasets", body)
        progress(label, i, len(bodies))


async def delete_replica_sets(kc: KubeClient, namespace: str) -> None:
    """Delete the ReplicaSets first: their pods, deleted after, are not created again."""
    await kc.request(
        "DELETE",
        f"/apis/apps/v1/namespaces/{namespace}/replicasets",
        body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Orphan"},
    )


def pod_body(
    name: str, c: topology.PodClass, scheduler: str, *, site: str, region: str, zone: bool
) -> dict[str, Any]:
    labels = {"bench": SCENARIO, "class": c.name, "kind": c.kind}
    if c.kind == "hard":
        annotations = {verify.MAX_RTT_ANNOTATION: f"{c.users}={c.max_rtt_ms:g}ms"}
    else:
        annotations = {"lasched.io/prefer-low-rtt": c.users}
    if c.budget_ms is not None:
        labels |= {GANG_LABEL: c.name, GANG_MIN_LABEL: str(c.count)}
        annotations[GANG_BUDGET_ANNOTATION] = f"{c.budget_ms:g}ms"
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "terminationGracePeriodSeconds": 0,
        "containers": [
            {
                "name": "main",
                "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": f"{c.cpu_milli}m", "memory": f"{c.memory_mi}Mi"}},
            }
        ],
    }
    if c.kind == "hard":
        spec["priorityClassName"] = PRIORITY_CLASS
    if zone:
        spec["affinity"] = {"nodeAffinity": _zone_affinity(c.kind, site, region)}
    return {
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def _zone_affinity(kind: str, site: str, region: str) -> dict[str, Any]:
    def term(key: str, value: str) -> dict[str, Any]:
        return {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}

    if kind == "hard":
        return {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [term(nodes.ZONE_LABEL, site)]
            }
        }
    return {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": term(nodes.ZONE_LABEL, site)},
            {"weight": 50, "preference": term(nodes.REGION_LABEL, region)},
        ]
    }


# ---- running it -----------------------------------------------------------------------


def lasched_settings(topo: topology.Topology, *, report_interval_seconds: float) -> dict[str, Any]:
    """Its endpoints, and room for every simulated agent: they all connect from 127.0.0.1,
    where a real cluster's come from one address per node."""
    return {
        "server": {"maxConnectionsPerSource": 2048},
        "latency": {
            "reportIntervalSeconds": report_interval_seconds,
            "ttlSeconds": 120,
            "endpoints": [
                # TEST-NET-1 addresses: the simulated agents answer from the table, never probe.
                {"name": u.name, "address": f"192.0.2.{10 + i}"}
                for i, u in enumerate(topo.users)
            ],
        },
    }


async def scrape_metrics(port: int) -> dict[str, float]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


async def wait_for_rtts(port: int, *, agents: int, pairs: int, timeout: float) -> None:
    """Until every agent is connected and lasched has stored a full round of samples."""
    deadline = time.monotonic() + timeout
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        try:
            seen = await scrape_metrics(port)
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


@dataclass(frozen=True, slots=True)
class Seeded:
    """One seed's topology, its optimum and its agents' identities."""

    topo: topology.Topology
    optimum: milp.Optimum
    tokens: dict[str, Path]


async def measure_peer(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    peer: peers.Peer,
    cfg: Config,
    seeded: Seeded,
    rep: int,
    position: int,
    progress: Progress,
) -> Sample:
    topo = seeded.topo
    ns = f"lat-{topo.seed}-{peer.key}-{rep}"
    label = f"seed {topo.seed} {peer.key} #{rep + 1}"
    workdir = cluster.workdir / ns
    await ensure_namespace(kc, ns)
    uses_lasched = peer.is_lasched or peer.extender
    port = free_port() if uses_lasched else 0
    running = await peers.start(
        peer,
        kubeconfig=cluster.kubeconfig,
        workdir=workdir,
        lasched_settings=lasched_settings(
            topo, report_interval_seconds=cfg.report_interval_seconds
        ),
        http_port=port,
    )
    agents = None
    timeline = Timeline(kc, ns)
    await timeline.start()
    try:
        if uses_lasched:
            rtts = topo.matrix()
            spec = {
                "url": f"ws://127.0.0.1:{port}/agents/v1",
                "agents": {
                    n: {"token_file": str(seeded.tokens[n]), "rtts": row} for n, row in rtts.items()
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
        # A warm-up pod (no requests, so it takes no room): the peer is scheduling.
        warm = {
            "metadata": {"name": "warmup", "labels": {"bench": SCENARIO}},
            "spec": {
                "schedulerName": peer.scheduler_name,
                "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}],
            },
        }
        await create_bodies(kc, ns, [warm])
        if not await timeline.wait_bound(1, timeout=60):
            raise TimeoutError(f"{label}: the warm-up pod was not bound within 60 s")
        cpu0 = running.stats().cpu_seconds

        sets = replica_sets(topo, peer.key, peer.scheduler_name)
        total = sum(c.count for c in topo.classes)

        async def evicted() -> int:
            """Pods bound and then deleted (preempted); their ReplicaSet makes new ones."""
            return sum(1 for n in timeline.deleted if n in timeline.bound and n != "warmup")

        created = time.monotonic()
        await create_replica_sets(kc, ns, sets, progress, f"{label}: ReplicaSets")
        await _settle(timeline, total + 1, cfg, progress, f"{label}: bind", replace=evicted)
        stats = running.stats()
        state = await verify.snapshot(kc, bound_at=timeline.stamps())
        rules = verify.KUBERNETES_RULES | ({verify.MAX_RTT} if peer.key in SEES_RTT else set())
        verdict = verify.verify(
            state,
            rules=rules,
            rtt=topo.rtt,
            subject=lambda p: p.namespace == ns,
            rebound={f"{ns}/{n}": v for n, v in timeline.conflicts().items()},
        )
        if not verdict.ok:
            print(f"{label}: placement check failed: {verdict.summary()}", file=sys.stderr)
        return _sample(
            peer.key,
            rep,
            position,
            seeded,
            timeline=timeline,
            created=created,
            cpu=stats.cpu_seconds - cpu0,
            rss_mb=stats.peak_rss_bytes / 2**20,
            evicted=await evicted(),
            state=state,
            ns=ns,
            verdict=verdict,
        )
    finally:
        if agents is not None:
            await stop_children([agents], grace=5)
        await running.stop()
        await timeline.stop()
        await delete_replica_sets(kc, ns)
        await delete_pods(kc, ns)


def _sample(
    peer: str,
    rep: int,
    position: int,
    seeded: Seeded,
    *,
    timeline: Timeline,
    created: float,
    cpu: float,
    rss_mb: float,
    evicted: int,
    state: verify.State,
    ns: str,
    verdict: verify.Verdict,
) -> Sample:
    """Figures over each class's live pods; a pod its ReplicaSet has not created (again)
    counts as pending."""
    topo = seeded.topo
    live: dict[str, list[verify.Pod]] = {c.name: [] for c in topo.classes}
    for p in state.pods:
        if p.namespace == ns and not p.terminating and p.labels.get("class") in live:
            live[p.labels["class"]].append(p)
    hard_rtts, soft_rtts = [], []
    pending_hard = pending_soft = hard_met = violations = 0
    pending: list[verify.Pod] = []
    bound_times = [t for n, t in timeline.bound.items() if n != "warmup"]
    by_site: dict[str, int] = {}
    by_class: dict[str, dict[str, int]] = {}
    placements: list[tuple[topology.PodClass, str | None]] = []
    for c in topo.classes:
        pods = sorted(live[c.name], key=lambda p: p.name)[: c.count]
        pending += [p for p in pods if not p.node]
        placements += [(c, p.node or None) for p in pods]
        placements += [(c, None)] * (c.count - len(pods))
    for c, node in placements:
        if node is None:
            if c.kind == "hard":
                pending_hard += 1
            else:
                pending_soft += 1
            continue
        site = topo.site_of.get(node, "?")
        by_site[site] = by_site.get(site, 0) + 1
        here = by_class.setdefault(c.name, {})
        here[site] = here.get(site, 0) + 1
        rtt = topo.users_rtt.get((c.users, site), math.nan)
        if c.kind == "hard":
            hard_rtts.append(rtt)
            if c.max_rtt_ms is not None and rtt <= c.max_rtt_ms:
                hard_met += 1
            else:
                violations += 1
        else:
            soft_rtts.append(rtt)
    # A group's members have room together or not at all (verify.rooms).
    pending_feasible = len(verify.rooms(pending, state, rules=SCENARIO_RULES, rtt=topo.rtt))
    everything = sorted(hard_rtts + soft_rtts)
    bound_times.sort()
    span = bound_times[-1] - bound_times[0] if len(bound_times) > 1 else 0.0
    mean = _mean(everything)
    return Sample(
        seed=topo.seed,
        peer=peer,
        repeat=rep,
        position=position,
        pods=len(placements),
        bound=len(everything),
        pending_hard=pending_hard,
        pending_soft=pending_soft,
        pending_feasible=pending_feasible,
        evicted=evicted,
        hard_met=hard_met,
        hard_total=sum(c.count for c in topo.classes if c.kind == "hard"),
        violations=violations,
        mean_rtt_ms=mean,
        median_rtt_ms=percentile(everything, 50),
        p90_rtt_ms=percentile(everything, 90),
        mean_rtt_hard_ms=_mean(hard_rtts),
        mean_rtt_soft_ms=_mean(soft_rtts),
        optimum_mean_rtt_ms=seeded.optimum.mean_rtt_ms,
        rtt_ratio=mean / seeded.optimum.mean_rtt_ms if seeded.optimum.mean_rtt_ms else math.nan,
        pods_per_s=(len(bound_times) - 1) / span if span > 0 else math.nan,
        makespan_s=(bound_times[-1] - created) if bound_times else math.nan,
        cpu_seconds=cpu,
        peak_rss_mb=rss_mb,
        by_site=by_site,
        by_class=by_class,
        verify=verdict.to_json(),
        rtts_ms=everything,
    )


def _mean(values: Iterable[float]) -> float:
    v = list(values)
    return statistics.fmean(v) if v else math.nan


async def _setup_seed(
    kc: KubeClient, cluster: DevCluster, cfg: Config, seed: int, progress: Progress
) -> Seeded:
    topo = topology.generate(seed, cfg.sizes())
    progress(f"seed {seed}: optimum", 0, 1)
    best = await asyncio.to_thread(milp.optimum, topo)
    progress(f"seed {seed}: optimum", 1, 1)
    return Seeded(topo, best, await seed_nodes(kc, cluster, topo, progress))


async def seed_nodes(
    kc: KubeClient, cluster: DevCluster, topo: topology.Topology, progress: Progress
) -> dict[str, Path]:
    """The topology's kwok nodes, Ready, and a token per node for its simulated agent."""
    seed = topo.seed
    specs = [
        nodes.NodeSpec(
            name=n.name,
            cpu=f"{n.cpu_milli}m",
            memory=f"{n.memory_mi}Mi",
            pods=str(n.pods),
            region=topo.region_of[n.site],
            zone=n.site,
            labels={SITE_LABEL: n.site, SEED_LABEL: str(seed)},
        )
        for n in topo.nodes
    ]
    step = f"seed {seed}: kwok nodes"
    await nodes.create_nodes(kc, specs, progress=lambda d, t: progress(step, d, t))
    await nodes.wait_ready(kc, [s.name for s in specs], timeout=120)
    tokens: dict[str, Path] = {}
    token_dir = cluster.workdir / f"agent-tokens-{seed}"
    token_dir.mkdir(exist_ok=True)
    for i, spec in enumerate(specs):
        path = token_dir / spec.name
        path.write_text(await agent_token(kc, node=spec.name, seconds=4 * 3600))
        tokens[spec.name] = path
        progress(f"seed {seed}: agent identities", i + 1, len(specs))
    return tokens


async def teardown_seed(kc: KubeClient, seed: int, timeout: float = 300) -> None:
    """The seed's agent pods and nodes, gone before the next seed's are created."""
    await delete_pods(kc, AGENT_NAMESPACE)
    selector = f"{SEED_LABEL}={seed}"
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
            raise TimeoutError(f"the nodes of seed {seed} were not deleted in {timeout:.0f} s")
        await asyncio.sleep(0.5)


def orders(cfg: Config) -> list[list[str]]:
    """The peers' order for each (seed, repetition), in run order."""
    return [rotation(list(cfg.peers), i) for i in range(len(cfg.seeds) * cfg.repeat)]


async def run(cfg: Config, progress: Progress) -> tuple[dict[int, Seeded], list[Sample]]:
    samples: list[Sample] = []
    seeded: dict[int, Seeded] = {}
    order = iter(orders(cfg))
    async with (
        DevCluster(controller_manager=cfg.controller_manager) as cluster,
        await cluster.client() as kc,
    ):
        await ensure_priority_class(
            kc, name=PRIORITY_CLASS, value=1000, description="bench: pods with a hard RTT limit"
        )
        for seed in cfg.seeds:
            seeded[seed] = await _setup_seed(kc, cluster, cfg, seed, progress)
            for rep in range(cfg.repeat):
                for position, key in enumerate(next(order)):
                    samples.append(
                        await measure_peer(
                            cluster=cluster,
                            kc=kc,
                            peer=PEERS[key],
                            cfg=cfg,
                            seeded=seeded[seed],
                            rep=rep,
                            position=position,
                            progress=progress,
                        )
                    )
            await teardown_seed(kc, seed)
    return seeded, samples


# ---- results --------------------------------------------------------------------------

FIGURES = (
    "rtt_ratio",
    "hard_met_share",
    "violations",
    "pending",
    "pending_feasible",
    "evicted",
    "mean_rtt_ms",
    "median_rtt_ms",
    "p90_rtt_ms",
    "mean_rtt_hard_ms",
    "mean_rtt_soft_ms",
    "pods_per_s",
    "makespan_s",
    "cpu_seconds",
    "peak_rss_mb",
)


def _figure(s: Sample, name: str) -> float | None:
    if name == "hard_met_share":
        return s.hard_met / s.hard_total if s.hard_total else None
    if name == "pending":
        return float(s.pending_hard + s.pending_soft)
    value = getattr(s, name)
    return None if value is None else float(value)


def summarise(samples: list[Sample]) -> dict[str, dict[str, dict[str, float]]]:
    """Per peer, over every seed and repetition: median, min, max and count of each figure;
    ``checks``: runs whose placement check passed."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for peer in dict.fromkeys(s.peer for s in samples):
        rows = [s for s in samples if s.peer == peer]
        out[peer] = {}
        for f in FIGURES:
            vals = [v for s in rows if (v := _figure(s, f)) is not None and math.isfinite(v)]
            if vals:
                out[peer][f] = stat(vals)
        passed = sum(1 for s in rows if s.verify.get("ok", False))
        out[peer]["checks"] = {"median": passed, "min": passed, "max": passed, "n": len(rows)}
    return out


def to_json(
    cfg: Config, seeded: dict[int, Seeded], samples: list[Sample], env: dict[str, str]
) -> dict[str, Any]:
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "seeds": {
            str(seed): {
                "topology": s.topo.describe(),
                "sites": [asdict(x) for x in s.topo.sites],
                "nodes": [asdict(x) for x in s.topo.nodes],
                "users": [asdict(x) for x in s.topo.users],
                "classes": [asdict(x) for x in s.topo.classes],
                "optimum": {
                    "pods": s.optimum.pods,
                    "mean_rtt_ms": s.optimum.mean_rtt_ms,
                    "median_rtt_ms": percentile(s.optimum.rtts_ms, 50),
                    "p90_rtt_ms": percentile(s.optimum.rtts_ms, 90),
                    "status": s.optimum.status,
                    "gap": s.optimum.gap,
                },
            }
            for seed, s in seeded.items()
        },
        "orders": orders(cfg),
        "summary": summarise(samples),
        "failed": [f"seed {s.seed}: {line}" for s in samples for line in failures([s])],
        "samples": [{k: v for k, v in asdict(s).items() if k != "rtts_ms"} for s in samples],
    }


def _fmt(st: dict[str, float] | None, digits: int = 1, pct: bool = False) -> str:
    if not st:
        return "-"
    k = 100.0 if pct else 1.0
    m, lo, hi = st["median"] * k, st["min"] * k, st["max"] * k
    unit = " %" if pct else ""
    if lo == hi:
        return f"{m:.{digits}f}{unit}"
    return f"{m:.{digits}f}{unit} ({lo:.{digits}f} to {hi:.{digits}f})"


def markdown(result: dict[str, Any]) -> str:
    cfg, summary = result["config"], result["summary"]
    seeds = result["seeds"]
    lines = [
        f"### latency: {len(seeds)} generated edge topologies (seeds "
        f"{', '.join(seeds)}), {cfg['repeat']} repetition(s) each",
        "",
        "Over every seed: medians with the range in brackets; `runs`: how many (seeds times "
        "repetitions). Mean RTT / optimum: each run's mean RTT from a placed pod to its "
        "users over the exact optimum's for its seed (bench/milp.py). Pending (feasible): "
        "pods left pending although a node had room for them within every hard constraint. "
        "Checks: runs whose placement check passed (lasched and the extender are held to "
        "`max-rtt` too).",
        "",
        "| scheduler | runs | mean RTT / optimum | hard limits met | hard violations "
        "| pending | pending (feasible) | evictions | pods/s | CPU s | checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for peer, s in summary.items():
        checks = s.get("checks") or {}
        ratio = s.get("rtt_ratio")
        ratio_text = "-"
        if ratio:
            ratio_text = f"{ratio['median']:.2f}x"
            if ratio["min"] != ratio["max"]:
                ratio_text += f" ({ratio['min']:.2f}x to {ratio['max']:.2f}x)"
        lines.append(
            f"| {LABELS.get(peer, peer)} | {checks.get('n', 0):.0f} | {ratio_text} "
            f"| {_fmt(s.get('hard_met_share'), 0, pct=True)} | {_fmt(s.get('violations'), 0)} "
            f"| {_fmt(s.get('pending'), 0)} | {_fmt(s.get('pending_feasible'), 0)} "
            f"| {_fmt(s.get('evicted'), 0)} | {_fmt(s.get('pods_per_s'), 0)} "
            f"| {_fmt(s.get('cpu_seconds'))} "
            f"| {checks.get('median', 0):.0f}/{checks.get('n', 0):.0f} |"
        )
    lines += [
        "",
        "Per seed (each figure one run, or the median of the seed's repetitions; the "
        "order the peers ran in is below):",
        "",
        "| seed | topology | optimum mean RTT ms | scheduler | hard violations | pending "
        "| pending (feasible) | evictions | mean RTT ms | / optimum |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, info in seeds.items():
        rows = [s for s in result["samples"] if str(s["seed"]) == seed]
        for peer in [p for p in cfg["peers"] if any(r["peer"] == p for r in rows)]:
            mine = [r for r in rows if r["peer"] == peer]

            def med(key: str, rows: list[dict[str, Any]] = mine) -> float:
                vals = [float(r[key]) for r in rows if r[key] is not None]
                vals = [v for v in vals if math.isfinite(v)]
                return statistics.median(vals) if vals else math.nan

            pending = med("pending_hard") + med("pending_soft")
            lines.append(
                f"| {seed} | {info['topology']} | {info['optimum']['mean_rtt_ms']:.2f} "
                f"| {LABELS.get(peer, peer)} | {med('violations'):.0f} | {pending:.0f} "
                f"| {med('pending_feasible'):.0f} | {med('evicted'):.0f} "
                f"| {med('mean_rtt_ms'):.2f} | {med('rtt_ratio'):.2f}x |"
            )
    lines += order_lines(result.get("orders") or [], lambda p: LABELS.get(p, p))
    lines += check_lines(result)
    lines += [
        "",
        "CPU s: the scheduler's CPU from the pods' creation to the end (lasched's includes "
        "receiving the agents' reports; the extender row adds kube-scheduler and lasched).",
    ]
    lines += environment_lines(result["environment"])
    return "\n".join(lines) + "\n"


def plots(
    result: dict[str, Any], seeded: dict[int, Seeded], samples: list[Sample], directory: Path
) -> list[Path]:
    """Mean RTT over the optimum per seed and peer, and the RTT CDF of all seeds."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    seeds = list(seeded)
    peer_keys = list(dict.fromkeys(s.peer for s in samples))
    for j, peer in enumerate(peer_keys):
        xs, ys = [], []
        for i, seed in enumerate(seeds):
            for s in samples:
                if s.peer == peer and s.seed == seed and math.isfinite(s.rtt_ratio):
                    xs.append(i + (j - (len(peer_keys) - 1) / 2) * 0.12)
                    ys.append(s.rtt_ratio)
        ax.scatter(xs, ys, color=f"C{j}", label=LABELS.get(peer, peer), s=28)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%gx"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%gx"))
    ax.set_ylabel("mean RTT / optimum (log scale)")
    ax.set_title("Mean RTT to the users over the exact optimum, per seed")
    ax.grid(alpha=0.3, which="both", axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    ratio_path = directory / "latency-ratio.png"
    fig.savefig(ratio_path, dpi=110)
    plt.close(fig)

    series: dict[str, list[float]] = {}
    for s in samples:
        series.setdefault(LABELS.get(s.peer, s.peer), []).extend(s.rtts_ms)
    repeat = int(result["config"]["repeat"])
    series[LABELS["optimum"]] = [x for sd in seeded.values() for x in sd.optimum.rtts_ms] * repeat
    cdf = cdf_plot(
        series,
        directory / "latency-rtt-cdf.png",
        title="RTT from each placed pod to its users (all seeds)",
        xlabel="RTT to the pod's users, ms (log scale)",
        log=True,
        dashed=frozenset({LABELS["optimum"]}),
    )
    return [ratio_path, cdf]
