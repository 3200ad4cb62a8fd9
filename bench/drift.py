"""Scenario ``drift``: routes degrade under running pods, and lasched's remediation moves them.

Per seed: the latency scenario's generated topology (:mod:`bench.topology`),
its kwok nodes and simulated agents (:mod:`bench.agentsim`), and lasched
with remediation on (docs/latency.md, "Remediation"), a short grace period
and rate limits wide enough for every route at once. Remediation moves only
pods whose controller recreates them, so here each hard and each soft class
of the workload is one **ReplicaSet** (the latency scenario's bare pods,
which it recreates itself, would never be moved); gangs are left out, since
a pod group's member is never moved. Each hard ReplicaSet of two or more
pods has a PodDisruptionBudget of ``maxUnavailable: 1``.

Once every pod is bound and older than the cool-down (remediation never
evicts a younger pod), ``routes`` of the placed hard pods' (node, users)
routes degrade at one instant: from then on the agent on that node measures
the pods' limit plus ``degrade_ms`` to those users. A route is chosen only
when the topology has room for every hard pod on it on other nodes within
its limit (counting the routes chosen before it), so each affected pod can
be moved; the order routes are tried in is drawn from the seed.

Figures per seed: each affected pod's **recovery**, the seconds from the
change to a new pod of its ReplicaSet bound on a node within the limit (the
k-th such binding recovers the k-th of its ReplicaSet's affected pods to be
deleted), apart for pods whose eviction a budget refused first (*deferred*:
the budget lets one pod of the ReplicaSet go at a time, and remediation tries
a refused pod again 10 s later, at most the cool-down); **evictions** (pods deleted after
the change), and those of pods no route affected; refusals by a budget
(remediation's ``pdb_refused`` count); **PDB violations**: budgets met at the
change that a poll (every 0.5 s) later found with fewer healthy pods than
they require; and hard pods left beyond their limit at the end. Target
(issue 19): every pod evicted at the first try recovered within grace + 5 s,
every affected pod recovered, no violation, no unneeded eviction.
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench import latency, peers, topology
from bench.report import cdf_plot, environment_lines
from bench.throughput import Progress, delete_pods, ensure_priority_class, stat
from bench.timeline import Timeline
from lasched.kube.client import KubeClient
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace
from lasched_dev.devcluster.processes import free_port, spawn, stop_children

SCENARIO = "drift"
VERSION = 1
CLASS_LABEL = "bench.lasched.io/class"
POLL_SECONDS = 0.5
SKIPPED = "LatencyRemediationSkipped"
PDB_REFUSED = 'lasched_remediation_skipped_total{reason="pdb_refused"}'


@dataclass(frozen=True, slots=True)
class Config:
    seeds: tuple[int, ...] = (1, 2, 3)
    regions: int = 3
    routes: int = 4  # per seed
    degrade_ms: float = 20.0  # a degraded route: the pods' limit plus this
    grace_seconds: float = 5.0
    interval_seconds: float = 1.0  # remediation's pass
    cooldown_seconds: float = 10.0
    report_interval_seconds: float = 1.0  # the agents'
    settle_seconds: float = 15.0
    timeout: float = 300.0

    def remediation(self) -> dict[str, Any]:
        """lasched's ``remediation`` settings for the run."""
        wide = 10_000  # the rate limits never hold a route's pods back here
        return {
            "enabled": True,
            "intervalSeconds": self.interval_seconds,
            "gracePeriodSeconds": self.grace_seconds,
            "cooldownSeconds": self.cooldown_seconds,
            "maxPerNode": wide,
            "maxPerNamespace": wide,
            "maxTotal": wide,
        }


@dataclass(frozen=True, slots=True)
class Placed:
    """A workload pod bound before the change."""

    name: str
    cls: str
    node: str


@dataclass(frozen=True, slots=True)
class Route:
    """A (node, users) route that degrades, and the hard pods it puts beyond their limit."""

    node: str
    users: str
    limit_ms: float
    before_ms: float
    after_ms: float
    pods: tuple[str, ...]


@dataclass(slots=True)
class Sample:
    seed: int
    nodes: int
    pods: int  # the workload's
    bound: int  # bound at the change
    budgets: int  # PodDisruptionBudgets
    routes: list[Route]
    affected: int
    recovered: int
    recovery_s: list[float]  # per recovered pod evicted at the first try
    deferred_s: list[float]  # per recovered pod whose eviction a budget refused first
    evicted_s: list[float]  # per affected pod deleted: from the change to its deletion
    evictions: int  # pods deleted after the change
    unneeded_evictions: int  # of pods no route affected
    pdb_refused: int
    pdb_violations: int
    beyond_limit: int  # hard pods bound beyond their limit at the end
    failed: list[str] = field(default_factory=list)


# ---- the workload ---------------------------------------------------------------------


def replica_sets(topo: topology.Topology, scheduler: str) -> list[dict[str, Any]]:
    """One ReplicaSet per hard and soft class, its pods as the latency scenario's."""
    site_of_users = {u.name: u.site for u in topo.users}
    out = []
    for c in topo.classes:
        if c.kind not in ("hard", "soft"):
            continue
        site = site_of_users[c.users]
        pod = latency.pod_body(
            c.name, c, scheduler, site=site, region=topo.region_of[site], zone=False
        )
        labels = pod["metadata"]["labels"] | {CLASS_LABEL: c.name}
        template = {
            "metadata": {"labels": labels, "annotations": pod["metadata"]["annotations"]},
            "spec": pod["spec"],
        }
        out.append(latency.replica_set(c, template, SCENARIO, {CLASS_LABEL: c.name}))
    return out


def budgets(topo: topology.Topology) -> list[dict[str, Any]]:
    """``maxUnavailable: 1`` for every hard class of two or more pods."""
    return [
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": c.name},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {CLASS_LABEL: c.name}}},
        }
        for c in topo.classes
        if c.kind == "hard" and c.count >= 2
    ]


# ---- choosing the routes (pure) -----------------------------------------------------------


def choose_routes(
    topo: topology.Topology,
    placed: Iterable[Placed],
    *,
    count: int,
    degrade_ms: float,
    rng: random.Random,
) -> list[Route]:
    """Up to ``count`` routes carrying hard pods whose every pod has room within its limit
    elsewhere once the routes degrade (first fit, room held across routes).

    A node planned to take a moved pod keeps its route to those users: degrading it
    later would put that pod beyond its limit too.
    """
    classes = {c.name: c for c in topo.classes}
    room = {n.name: [n.cpu_milli, n.memory_mi, n.pods] for n in topo.nodes}
    on_route: dict[tuple[str, str], list[Placed]] = {}
    for p in placed:
        c = classes[p.cls]
        _take(room[p.node], c)
        if c.kind == "hard":
            on_route.setdefault((p.node, c.users), []).append(p)
    candidates = sorted(on_route)
    rng.shuffle(candidates)
    degraded: set[tuple[str, str]] = set()
    planned: set[tuple[str, str]] = set()  # (node, users) some moved pod is planned on
    out: list[Route] = []
    for node, users in candidates:
        if len(out) == count:
            break
        if (node, users) in planned:
            continue
        pods = on_route[(node, users)]
        c = classes[pods[0].cls]
        limit = c.max_rtt_ms
        assert limit is not None  # a hard class has one
        trial = {n: list(r) for n, r in room.items()}
        gone = degraded | {(node, users)}
        targets = set()
        for _ in pods:
            target = next(
                (
                    n
                    for n in sorted(trial)
                    if (n, users) not in gone
                    and (rtt := topo.rtt(n, users)) is not None
                    and rtt <= limit
                    and _fits(trial[n], c)
                ),
                None,
            )
            if target is None:
                break
            _take(trial[target], c)
            targets.add((target, users))
        else:
            room = trial
            degraded.add((node, users))
            planned |= targets
            before = topo.rtt(node, users)
            assert before is not None
            out.append(
                Route(
                    node=node,
                    users=users,
                    limit_ms=limit,
                    before_ms=before,
                    after_ms=round(limit + degrade_ms, 1),
                    pods=tuple(sorted(p.name for p in pods)),
                )
            )
    return out


def _fits(room: list[int], c: topology.PodClass) -> bool:
    return room[0] >= c.cpu_milli and room[1] >= c.memory_mi and room[2] >= 1


def _take(room: list[int], c: topology.PodClass) -> None:
    room[0] -= c.cpu_milli
    room[1] -= c.memory_mi
    room[2] -= 1


def drifted(topo: topology.Topology, routes: Iterable[Route]) -> dict[str, dict[str, float]]:
    """The agents' matrix once ``routes`` degrade."""
    matrix = topo.matrix()
    for r in routes:
        matrix[r.node][r.users] = r.after_ms
    return matrix


def recoveries(
    routes: Iterable[Route],
    *,
    class_of: Mapping[str, str],
    within: Mapping[str, bool],
    before: set[str],
    bound: Mapping[str, float],
    deleted: Mapping[str, float],
    changed: float,
) -> dict[str, float | None]:
    """Per affected pod, seconds from the change to its recovery, or None (see the module).

    ``within``: whether each new pod's node is within its class's limit (after the change).
    """
    affected = [p for r in routes for p in r.pods]
    out: dict[str, float | None] = dict.fromkeys(affected)
    by_class: dict[str, list[str]] = {}
    for p in affected:
        by_class.setdefault(class_of[p], []).append(p)
    for cls, pods in by_class.items():
        pods.sort(key=lambda p: (deleted.get(p, math.inf), p))
        fresh = sorted(
            t - changed
            for name, t in bound.items()
            if name not in before and class_of.get(name) == cls and within.get(name, False)
        )
        for pod, took in zip(pods, fresh, strict=False):
            out[pod] = took
    return out


# ---- running it -------------------------------------------------------------------------


async def run(cfg: Config, progress: Progress) -> list[Sample]:
    samples: list[Sample] = []
    async with (
        DevCluster(controller_manager=True) as cluster,
        await cluster.client() as kc,
    ):
        await ensure_priority_class(
            kc,
            name=latency.PRIORITY_CLASS,
            value=1000,
            description="bench: pods with a hard RTT limit",
        )
        for seed in cfg.seeds:
            topo = topology.generate(seed, topology.Sizes(regions=cfg.regions))
            tokens = await latency.seed_nodes(kc, cluster, topo, progress)
            try:
                samples.append(
                    await _measure(
                        cluster=cluster, kc=kc, cfg=cfg, topo=topo, tokens=tokens, progress=progress
                    )
                )
            finally:
                await latency.teardown_seed(kc, seed)
    return samples


@dataclass(frozen=True, slots=True)
class _Seed:
    """What one seed's measurement works with."""

    kc: KubeClient
    cfg: Config
    topo: topology.Topology
    ns: str
    timeline: Timeline
    progress: Progress

    @property
    def label(self) -> str:
        return f"seed {self.topo.seed}"

    def within(self, name: str, class_of: Mapping[str, str], routes: Iterable[Route]) -> bool:
        """Whether pod ``name`` is bound within its class's limit, the routes degraded."""
        node = self.timeline.nodes.get(name)
        c = next((c for c in self.topo.classes if c.name == class_of.get(name)), None)
        if node is None or c is None or c.max_rtt_ms is None:
            return node is not None  # no limit, or not bound
        rtt = next(
            (r.after_ms for r in routes if (r.node, r.users) == (node, c.users)),
            self.topo.rtt(node, c.users),
        )
        return rtt is not None and rtt <= c.max_rtt_ms

    async def pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.kc.get(f"/api/v1/namespaces/{self.ns}/pods"))[
            "items"
        ]
        return items

    async def budgets(self) -> list[dict[str, Any]]:
        path = f"/apis/policy/v1/namespaces/{self.ns}/poddisruptionbudgets"
        items: list[dict[str, Any]] = (await self.kc.get(path))["items"]
        return items


async def _measure(
    *,
    cluster: DevCluster,
    kc: KubeClient,
    cfg: Config,
    topo: topology.Topology,
    tokens: dict[str, Path],
    progress: Progress,
) -> Sample:
    ns = f"drift-{topo.seed}"
    workdir = cluster.workdir / ns
    await ensure_namespace(kc, ns)
    port = free_port()
    settings = latency.lasched_settings(topo, report_interval_seconds=cfg.report_interval_seconds)
    settings["remediation"] = cfg.remediation()
    running = await peers.start(
        peers.LASCHED,
        kubeconfig=cluster.kubeconfig,
        workdir=workdir,
        lasched_settings=settings,
        http_port=port,
    )
    agents = None
    timeline = Timeline(kc, ns)
    await timeline.start()
    seed = _Seed(kc, cfg, topo, ns, timeline, progress)
    try:
        spec_path = workdir / "agents.json"
        _write_spec(spec_path, port, tokens, topo.matrix())
        argv = [sys.executable, "-m", "bench.agentsim", str(spec_path)]
        agents = spawn("agentsim", argv, log_dir=workdir, detached=False)
        progress(f"{seed.label}: agents report", 0, 1)
        pairs = sum(len(row) for row in topo.matrix().values())
        await latency.wait_for_rtts(port, agents=len(topo.nodes), pairs=pairs, timeout=120)
        progress(f"{seed.label}: agents report", 1, 1)
        total, pdbs = await _workload(seed)

        class_of = _classes(await seed.pods())
        placed = [
            Placed(p["metadata"]["name"], class_of[p["metadata"]["name"]], p["spec"]["nodeName"])
            for p in await seed.pods()
            if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
        ]
        rng = random.Random(f"drift-{topo.seed}")
        routes = choose_routes(topo, placed, count=cfg.routes, degrade_ms=cfg.degrade_ms, rng=rng)
        met = {b["metadata"]["name"] for b in await seed.budgets() if _met(b)}
        before = set(timeline.added)
        _write_spec(spec_path, port, tokens, drifted(topo, routes))
        changed = time.monotonic()
        found, violated = await _observe(
            seed, routes=routes, class_of=class_of, before=before, changed=changed, met=met
        )
        metrics = await latency.scrape_metrics(port)
        touched = {p for r in routes for p in r.pods}
        gone = [n for n, t in timeline.deleted.items() if n in before and t >= changed]
        hard = {c.name for c in topo.classes if c.kind == "hard"}
        beyond = sum(
            1
            for p in await seed.pods()
            if p["spec"].get("nodeName")
            and not p["metadata"].get("deletionTimestamp")
            and class_of.get(p["metadata"]["name"]) in hard
            and not seed.within(p["metadata"]["name"], class_of, routes)
        )
        refused = await _refused(seed)
        recovered = sorted(v for p, v in found.items() if v is not None and p not in refused)
        deferred = sorted(v for p, v in found.items() if v is not None and p in refused)
        sample = Sample(
            seed=topo.seed,
            nodes=len(topo.nodes),
            pods=total,
            bound=len(placed),
            budgets=pdbs,
            routes=routes,
            affected=len(touched),
            recovered=len(recovered) + len(deferred),
            recovery_s=recovered,
            deferred_s=deferred,
            evicted_s=sorted(
                timeline.deleted[p] - changed for p in touched if p in timeline.deleted
            ),
            evictions=len(gone),
            unneeded_evictions=sum(1 for n in gone if n not in touched),
            pdb_refused=int(metrics.get(PDB_REFUSED, 0)),
            pdb_violations=len(violated),
            beyond_limit=beyond,
        )
        sample.failed = failures(sample, cfg)
        return sample
    finally:
        if agents is not None:
            await stop_children([agents], grace=5)
        await running.stop()
        await timeline.stop()
        await kc.request("DELETE", f"/apis/apps/v1/namespaces/{ns}/replicasets")
        await delete_pods(kc, ns)


async def _workload(seed: _Seed) -> tuple[int, int]:
    """The budgets and ReplicaSets, bound and older than the cool-down: (pods, budgets)."""
    sets = replica_sets(seed.topo, peers.LASCHED.scheduler_name)
    pdbs = budgets(seed.topo)
    for pdb in pdbs:
        await seed.kc.post(f"/apis/policy/v1/namespaces/{seed.ns}/poddisruptionbudgets", pdb)
    for rs in sets:
        await seed.kc.post(f"/apis/apps/v1/namespaces/{seed.ns}/replicasets", rs)
    total = sum(rs["spec"]["replicas"] for rs in sets)
    await _settle(seed.timeline, total, seed.cfg, seed.progress, f"{seed.label}: bind")
    # creationTimestamp has whole seconds: one more, and no pod is too young to move.
    youngest = max(seed.timeline.added.values())
    cool = youngest + seed.cfg.cooldown_seconds + 1
    await _wait_out(cool, seed.progress, f"{seed.label}: cool-down")
    return total, len(pdbs)


async def _observe(
    seed: _Seed,
    *,
    routes: list[Route],
    class_of: dict[str, str],
    before: set[str],
    changed: float,
    met: set[str],
) -> tuple[dict[str, float | None], set[str]]:
    """Poll until every affected pod recovered (and a grace period more, for stray
    evictions) or the deadline: the recoveries, and the budgets found violated.
    ``class_of`` gains the new pods'."""
    cfg, timeline = seed.cfg, seed.timeline
    affected = sum(len(r.pods) for r in routes)
    violated: set[str] = set()
    deadline = changed + cfg.grace_seconds + cfg.cooldown_seconds + 30
    quiet_until = math.inf
    found: dict[str, float | None] = {}
    while time.monotonic() < min(deadline, quiet_until):
        await asyncio.sleep(POLL_SECONDS)
        class_of |= _classes(await seed.pods())
        violated |= {
            b["metadata"]["name"]
            for b in await seed.budgets()
            if b["metadata"]["name"] in met and not _met(b)
        }
        found = recoveries(
            routes,
            class_of=class_of,
            within={n: seed.within(n, class_of, routes) for n in timeline.bound if n not in before},
            before=before,
            bound=timeline.bound,
            deleted=timeline.deleted,
            changed=changed,
        )
        done = sum(1 for v in found.values() if v is not None)
        seed.progress(f"{seed.label}: recovered", done, affected)
        if done == affected and quiet_until == math.inf:
            quiet_until = time.monotonic() + cfg.grace_seconds + 2 * cfg.interval_seconds
    return found, violated


def _write_spec(
    path: Path, port: int, tokens: Mapping[str, Path], matrix: dict[str, dict[str, float]]
) -> None:
    """The agents' spec, renamed into place so that agentsim never reads half of it."""
    spec = {
        "url": f"ws://127.0.0.1:{port}/agents/v1",
        "agents": {n: {"token_file": str(tokens[n]), "rtts": row} for n, row in matrix.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(orjson.dumps(spec))
    tmp.replace(path)


def _classes(pods: Iterable[dict[str, Any]]) -> dict[str, str]:
    return {
        p["metadata"]["name"]: p["metadata"].get("labels", {}).get(CLASS_LABEL, "") for p in pods
    }


async def _refused(seed: _Seed) -> set[str]:
    """The pods an eviction of which a budget refused (from remediation's Events)."""
    path = f"/apis/events.k8s.io/v1/namespaces/{seed.ns}/events"
    items = (await seed.kc.get(path, fieldSelector=f"reason={SKIPPED}"))["items"]
    return {
        e["regarding"]["name"] for e in items if "PodDisruptionBudget" in str(e.get("note", ""))
    }


def _met(budget: dict[str, Any]) -> bool:
    """The disruption controller's view: at least as many healthy pods as the budget needs."""
    st = budget.get("status") or {}
    return int(st.get("currentHealthy", 0)) >= int(st.get("desiredHealthy", 0))


async def _settle(
    timeline: Timeline, count: int, cfg: Config, progress: Progress, label: str
) -> None:
    """Until ``count`` pods are bound, or none has bound for ``settle_seconds``."""
    deadline = time.monotonic() + cfg.timeout
    last, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        if await timeline.wait_bound(count, timeout=0.5):
            progress(label, count, count)
            return
        n = len(timeline.bound)
        progress(label, n, count)
        if n != last:
            last, last_change = n, time.monotonic()
        elif time.monotonic() - last_change > cfg.settle_seconds:
            return
    raise TimeoutError(f"{label}: {len(timeline.bound)}/{count} bound after {cfg.timeout:.0f} s")


async def _wait_out(until: float, progress: Progress, label: str) -> None:
    """Sleep until the monotonic ``until``, showing the seconds left."""
    total = max(0, math.ceil(until - time.monotonic()))
    while (left := until - time.monotonic()) > 0:
        progress(label, total - math.ceil(left), total)
        await asyncio.sleep(min(left, 1.0))
    progress(label, total, total)


def failures(s: Sample, cfg: Config) -> list[str]:
    """What misses the scenario's targets (an empty list: none)."""
    out = []
    if s.recovered < s.affected:
        out.append(f"{s.affected - s.recovered} of {s.affected} affected pods not recovered")
    late = [t for t in s.recovery_s if t > cfg.grace_seconds + 5]
    if late:
        out.append(
            f"{len(late)} evicted at the first try recovered later than grace + 5 s "
            f"(longest {max(late):.1f} s)"
        )
    if s.pdb_violations:
        out.append(f"{s.pdb_violations} PodDisruptionBudget(s) violated")
    if s.unneeded_evictions:
        out.append(f"{s.unneeded_evictions} pod(s) evicted that no route affected")
    return out


# ---- results ------------------------------------------------------------------------------


def to_json(cfg: Config, samples: list[Sample], env: dict[str, str]) -> dict[str, Any]:
    recovery = [t for s in samples for t in s.recovery_s]
    deferred = [t for s in samples for t in s.deferred_s]
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "summary": {
            "recovery_s": stat(recovery) if recovery else None,
            "deferred_s": stat(deferred) if deferred else None,
            "deferred": len(deferred),
            "affected": sum(s.affected for s in samples),
            "recovered": sum(s.recovered for s in samples),
            "evictions": sum(s.evictions for s in samples),
            "unneeded_evictions": sum(s.unneeded_evictions for s in samples),
            "pdb_refused": sum(s.pdb_refused for s in samples),
            "pdb_violations": sum(s.pdb_violations for s in samples),
            "beyond_limit": sum(s.beyond_limit for s in samples),
        },
        "failed": [f"seed {s.seed}: {line}" for s in samples for line in s.failed],
        "samples": [asdict(s) for s in samples],
    }


def _range(values: list[float]) -> str:
    if not values:
        return "-"
    st = stat(values)
    if st["min"] == st["max"]:
        return f"{st['median']:.1f}"
    return f"{st['median']:.1f} ({st['min']:.1f} to {st['max']:.1f})"


def markdown(result: dict[str, Any]) -> str:
    cfg, total = result["config"], result["summary"]
    target = cfg["grace_seconds"] + 5
    lines = [
        f"### drift: routes degrade under running pods ({len(result['samples'])} seed(s), "
        f"grace period {cfg['grace_seconds']:g} s, cool-down {cfg['cooldown_seconds']:g} s)",
        "",
        "Recovery: seconds from the change to a new pod of the affected pod's ReplicaSet "
        "bound within its limit, median with the range in brackets; the target is grace + 5 s "
        f"= {target:g} s. Deferred: affected pods whose eviction a PodDisruptionBudget "
        "refused first (it allows one pod of the ReplicaSet away at a time; remediation tries "
        "again 10 s later, at most the cool-down). Evictions: pods deleted after the change "
        "(unneeded: of pods no route affected). PDB refused: refusals counted by lasched. "
        "PDB violations: budgets met at the change later found short of healthy pods.",
        "",
        "| seed | nodes | pods | routes | affected pods | recovered | recovery s "
        "| deferred: pods, recovery s | evictions (unneeded) | PDB refused | PDB violations "
        "| beyond limit at the end |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["samples"]:
        deferred = f"{len(s['deferred_s'])}, {_range(s['deferred_s'])}" if s["deferred_s"] else "0"
        lines.append(
            f"| {s['seed']} | {s['nodes']} | {s['pods']} | {len(s['routes'])} "
            f"| {s['affected']} | {s['recovered']} | {_range(s['recovery_s'])} | {deferred} "
            f"| {s['evictions']} ({s['unneeded_evictions']}) "
            f"| {s['pdb_refused']} | {s['pdb_violations']} | {s['beyond_limit']} |"
        )
    lines += [
        "",
        _total_line(total),
        "",
        "Routes (node -> users: RTT before -> after, the limit):",
        "",
    ]
    for s in result["samples"]:
        for r in s["routes"]:
            lines.append(
                f"- seed {s['seed']}: {r['node']} -> {r['users']}: {r['before_ms']:g} -> "
                f"{r['after_ms']:g} ms (limit {r['limit_ms']:g} ms), {len(r['pods'])} pod(s)"
            )
    if result["failed"]:
        lines += ["", "Targets missed:", ""] + [f"- {f}" for f in result["failed"]]
    lines += environment_lines(result["environment"])
    return "\n".join(lines) + "\n"


def _total_line(total: dict[str, Any]) -> str:
    def rng(st: dict[str, float] | None) -> str:
        return (
            f" in {st['median']:.1f} s (median; {st['min']:.1f} to {st['max']:.1f})" if st else ""
        )

    return (
        f"All seeds: {total['recovered']} of {total['affected']} affected pods recovered; "
        f"evicted at the first try,{rng(total['recovery_s'])}; deferred by a budget: "
        f"{total['deferred']}{rng(total['deferred_s'])}; {total['evictions']} evictions, "
        f"{total['unneeded_evictions']} unneeded; {total['pdb_violations']} PDB violations."
    )


def plot(result: dict[str, Any], directory: Path) -> Path:
    """The CDF of recovery times per seed (and of the deferred pods), the target marked."""
    cfg = result["config"]
    series = {f"seed {s['seed']}": s["recovery_s"] for s in result["samples"]}
    deferred = "deferred by a budget (all seeds)"
    series[deferred] = [t for s in result["samples"] for t in s["deferred_s"]]
    return cdf_plot(
        series,
        directory / "drift-recovery-cdf.png",
        title="From a route's degradation to the replacement bound within its limit",
        xlabel="s",
        dashed=frozenset({deferred}),
        marks={f"target: grace + 5 s ({cfg['grace_seconds'] + 5:g} s)": cfg["grace_seconds"] + 5},
    )
