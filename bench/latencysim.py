"""The latency scenario's placements in process: lasched's cycle on a seeded topology,
against the exact optimum, in seconds instead of minutes.

    python -m bench.latencysim [--seeds 1,2,3,4,5] [--regions 3] [--arrival fifo|burst]
                               [--plan none|pending|forecast] [--json OUT]

Seed 0 is the scenario's earlier fixed topology (:func:`bench.topology.fixed`).
``--plan`` gives lasched its plan (``latency.plan``) with the demand it would
see: ``pending``, the pods arrived and not placed (bare pods); ``forecast``,
every class's pods not placed yet (what each class's ReplicaSet says; in the
cluster a controller is known from its first pod on, so this is the plan at
its best). ``none``: each pod by its own scores (``latency.plan: false``).

No apiserver and no agents: a :class:`~lasched.scheduler.Scheduler` gets the
topology's nodes (with one agent pod bound on each, as the cluster scenario
has) and its RTT matrix fed straight into its latency cache, then schedules
the scenario's pods with its own framework: PreFilter to Permit, and
PostFilter (preemption) for a pod that fits nowhere, whose victims are
deleted and created again as their ReplicaSet would, at the end of the
arrivals. ``fifo`` schedules each pod as it arrives, in the scenario's
creation order (the cluster scenario's case: pods are created about as fast
as they are bound); ``burst`` lets every pod arrive first, so the queue's
priority order decides. A pod that fits nowhere waits and is tried again
whenever room frees or a pod arrives (a gang's first members wait for the
rest). Time does not pass while pods arrive: a gang that failed sits out its
backoff until the last arrival. Then time passes, as it does in the
cluster: failed gangs' backoffs end and every pod still waiting is tried
again, round after round, until a round places none. A gang whose members
are not all placed at the end counts as pending in full (its waiting
members would time out and leave); Permit timeouts are not played out.

This is where placement policy is worked on; the cluster scenario
(``python -m bench run latency``) is where its results are measured. The two
share the topology, the pods and the optimum (:mod:`bench.topology`,
:mod:`bench.milp`), so a policy that does well here and not there points at
timing, not at the policy.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
import statistics
import sys
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson

from bench import latency as scenario
from bench import milp, topology
from lasched import settings as settings_mod
from lasched.framework.interface import Code, CycleState
from lasched.framework.runtime import FitError
from lasched.kube.client import KubeClient
from lasched.latency import plan as plan_mod
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.plugins.latency import LatencyScore, between
from lasched.scheduler import Scheduler

ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
PRIORITY = {"hard": 1000, "soft": 0, "gang": 0}
NAMESPACE = "sim"


class _NoClient:
    """Stands in for the API client: the cycle itself never does I/O."""

    def companion(self, options: object) -> _NoClient:
        return self


@dataclass
class Outcome:
    """One seed's placements, by pod name (the latest incarnation of each)."""

    seed: int
    topo: topology.Topology
    optimum: milp.Optimum
    node_of: dict[str, str] = field(default_factory=dict)  # body name -> node ('' pending)
    evictions: int = 0

    def members(self, c: topology.PodClass) -> dict[str, str]:
        """The class's pods (body names, ``<class>-<i>``) and their nodes ('' pending)."""
        return {m: n for m, n in self.node_of.items() if m.rsplit("-", 1)[0] == c.name}

    def rtt(self, c: topology.PodClass, node: str) -> float:
        """The RTT from a pod of class ``c`` on ``node`` to its users."""
        return self.topo.users_rtt[(c.users, self.topo.site_of[node])]

    def rtts(self, kind: str | None = None) -> list[float]:
        return [
            self.rtt(c, n)
            for c in self.topo.classes
            if kind is None or c.kind == kind
            for n in self.members(c).values()
            if n
        ]

    @property
    def pending(self) -> int:
        return sum(1 for n in self.node_of.values() if not n)

    def drop_partial_gangs(self) -> None:
        """A gang not placed in full leaves: all or nothing, as its Permit ensures."""
        for c in self.topo.classes:
            members = self.members(c)
            if c.budget_ms is not None and not all(members.values()):
                for m in members:
                    self.node_of[m] = ""

    @property
    def gang_violations(self) -> int:
        """Placed gangs with two members farther apart than their budget."""
        bad = 0
        for c in self.topo.classes:
            if c.budget_ms is None:
                continue
            sites = {self.topo.site_of[n] for n in self.members(c).values() if n}
            bad += any(self.topo.site_rtt[(a, b)] > c.budget_ms for a in sites for b in sites)
        return bad

    @property
    def violations(self) -> int:
        return sum(
            self.rtt(c, n) > c.max_rtt_ms
            for c in self.topo.classes
            if c.max_rtt_ms is not None
            for n in self.members(c).values()
            if n
        )

    @property
    def ratio(self) -> float:
        r = self.rtts()
        return (sum(r) / len(r)) / self.optimum.mean_rtt_ms if r else math.nan

    def gang_ratio(self) -> float:
        """Gang members' mean RTT to their users over the optimum's, for gangs both placed."""
        mine, best = [], []
        for c in self.topo.classes:
            if c.budget_ms is None:
                continue
            nodes = [n for n in self.members(c).values() if n]
            opt = [(n, k) for (cn, n), k in self.optimum.assignment.items() if cn == c.name]
            if len(nodes) == c.count and opt:
                mine += [self.rtt(c, n) for n in nodes]
                best += [self.rtt(c, n) for n, k in opt for _ in range(k)]
        return statistics.fmean(mine) / statistics.fmean(best) if mine else math.nan

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "pods": len(self.node_of),
            "pending": self.pending,
            "optimum_pending": self.topo.pods() - self.optimum.pods,
            "violations": self.violations + self.gang_violations,
            "gangs": sum(1 for c in self.topo.classes if c.budget_ms is not None),
            "gang_rtt_ratio": round(self.gang_ratio(), 4),
            "evictions": self.evictions,
            "mean_rtt_ms": round(statistics.fmean(self.rtts()), 3),
            "mean_rtt_hard_ms": round(statistics.fmean(self.rtts("hard") or [0]), 3),
            "mean_rtt_soft_ms": round(statistics.fmean(self.rtts("soft") or [0]), 3),
            "optimum_mean_rtt_ms": round(self.optimum.mean_rtt_ms, 3),
            "ratio": round(self.ratio, 4),
        }


def _node_json(n: topology.Node, topo: topology.Topology) -> dict[str, Any]:
    alloc = {"cpu": f"{n.cpu_milli}m", "memory": f"{n.memory_mi}Mi", "pods": str(n.pods)}
    return {
        "metadata": {
            "name": n.name,
            "labels": {
                "kubernetes.io/hostname": n.name,
                ZONE_LABEL: n.site,
                REGION_LABEL: topo.region_of[n.site],
            },
            "resourceVersion": "1",
        },
        "spec": {},
        "status": {
            "allocatable": alloc,
            "capacity": alloc,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def _pod_info(body: dict[str, Any], name: str, seq: int) -> PodInfo:
    doc = orjson.loads(orjson.dumps(body))
    doc["metadata"]["name"] = name
    doc["metadata"]["namespace"] = NAMESPACE
    doc["metadata"]["uid"] = f"uid-{name}-{seq}"
    doc["metadata"]["creationTimestamp"] = None
    kind = doc["metadata"]["labels"]["kind"]
    doc["spec"]["priority"] = PRIORITY[kind]
    doc["status"] = {"phase": "Pending"}
    return PodInfo(doc)


def build(topo: topology.Topology) -> Scheduler:
    """A scheduler holding the topology's nodes, an agent pod on each, and its RTTs."""
    cfg = settings_mod.parse({"latency": {"ttlSeconds": 86_400}})
    sched = Scheduler(cast(KubeClient, _NoClient()), cfg)
    for n in topo.nodes:
        sched.cache.add_node(Node(_node_json(n, topo)))
        agent = {
            "metadata": {"name": f"agent-{n.name}", "namespace": "kube-system", "uid": n.name},
            "spec": {"nodeName": n.name, "containers": [{"name": "agent"}]},
            "status": {"phase": "Running"},
        }
        sched.cache.add_pod(PodInfo(agent))
    for src, row in topo.matrix().items():
        for dst, ms in row.items():
            sched.latency.observe(src, dst, median_ms=ms, samples=5)
    return sched


class _Demand:
    """The pods still to place, as the scheduler's plan sees them: ``pending``, the pods
    that arrived and are not placed (bare pods); ``forecast``, every class's pods not
    placed yet, arrived or not (what a ReplicaSet's replica count says)."""

    def __init__(self, sim: _Sim, mode: str) -> None:
        self._sim = sim
        self._mode = mode

    def key(self, pod: PodInfo) -> Hashable | None:
        owner = pod.labels.get("class", "") if self._mode == "forecast" else ""
        return plan_mod.population_key(pod, owner)

    def populations(self) -> Mapping[Hashable, tuple[PodInfo, int]]:
        out: dict[Hashable, tuple[PodInfo, int]] = {}
        sim = self._sim
        if self._mode == "forecast":
            unplaced = [
                (name, body) for body, name in sim.latest.items() if not sim.out.node_of[body]
            ]
        else:
            unplaced = [
                (name, body)
                for name, body in sim.body_of.items()
                if sim.latest[body] == name and not sim.out.node_of[body]
            ]
        for name, body in unplaced:
            pod = sim.pods.get(name) or _pod_info(sim.bodies[body], name, 0)
            key = self.key(pod)
            if key is not None:
                n = out.get(key, (pod, 0))[1]
                out[key] = (pod, n + 1)
        return out


class _Sim:
    """One seed's run: the queue (priority, then arrival), pods that fit nowhere, evictions."""

    def __init__(self, topo: topology.Topology, optimum: milp.Optimum, plan: str = "none") -> None:
        self.sched = build(topo)
        self.fw = self.sched.profiles["lasched"].framework
        self.pods: dict[str, PodInfo] = {}
        self.planner: plan_mod.Planner | None = None
        if plan != "none":
            score = next(p for p, _ in self.fw._scores if isinstance(p, LatencyScore))
            latency = self.sched.latency
            self.planner = plan_mod.Planner(
                _Demand(self, plan),
                nodes=lambda: self.nodes,
                rtt=lambda place, node: (
                    r.ms if (r := between(latency, place, node)) is not None else None
                ),
                version=lambda: latency.version,
            )
            score.planner = self.planner
        self.fw._rng = random.Random(topo.seed)  # the tie-break: seeded so decisions repeat
        self.nodes = self.sched.cycle.nodes()
        pods = scenario.pod_bodies(topo, "lasched", "lasched")
        self.bodies = {b["metadata"]["name"]: b for b in pods}
        self.out = Outcome(topo.seed, topo, optimum, dict.fromkeys(self.bodies, ""))
        self.latest = {name: name for name in self.bodies}  # body name -> current pod name
        self.body_of: dict[str, str] = {}
        self.seq = itertools.count()
        self.arrivals: list[tuple[str, str]] = [(n, n) for n in self.bodies]  # (body, pod)
        self.active: list[tuple[int, int, PodInfo, str]] = []  # (-priority, seq, pod, body)
        self.waiting: list[tuple[PodInfo, str]] = []  # fitted nowhere: retried on a change
        self.placed: dict[str, PodInfo] = {}  # pod name -> assumed pod
        self.placements = 0  # cycles that placed their pod, all along

    def push(self, pod: PodInfo, body: str) -> None:
        heapq.heappush(self.active, (-pod.priority, next(self.seq), pod, body))

    def arrive(self) -> None:
        body, name = self.arrivals.pop(0)
        pod = _pod_info(self.bodies[body], name, next(self.seq))
        self.pods[name] = pod
        self.body_of[name] = body
        self.sched.gang.pod_added(pod)  # what the pod informer's handler tells the gang plugin
        self.push(pod, body)

    def retry_waiting(self) -> None:
        while self.waiting:
            self.push(*self.waiting.pop())

    def drain(self) -> None:
        while self.active:
            _, _, pod, body = heapq.heappop(self.active)
            if self.latest[body] == pod.name:
                self.cycle(pod, body)

    def cycle(self, pod: PodInfo, body: str) -> None:
        state = CycleState()
        result = self.fw.schedule(state, pod, self.nodes)
        if isinstance(result, FitError):
            nominated = self.fw.run_post_filters(state, pod, result)
            if nominated is None or not nominated.victims:
                self.waiting.append((pod, body))
                return
            for victim in nominated.victims:
                self.evict(victim)
            self.push(pod, body)  # nominated: tried again at once
            self.retry_waiting()
            return
        assumed = self.sched.cache.assume(pod, result.node)
        st = self.fw.run_reserve(state, assumed, result.node)
        if st.ok:
            permit, _ = self.fw.run_permit(state, assumed, result.node)
            assert permit.ok or permit.code is Code.WAIT, permit
        self.placed[pod.name] = assumed
        self.placements += 1
        self.out.node_of[body] = result.node
        if self.planner is not None:
            self.planner.placed(pod, result.node)

    def settle(self, rounds: int = 20) -> None:
        """After the last arrival, time passes: gangs' backoffs end and the pods still
        waiting are tried again (with the replacements of pods evicted meanwhile) until a
        round places none."""
        for _ in range(rounds):
            before = self.placements
            for g in self.sched.gang.groups.values():
                g.backoff_until = 0.0
            while self.arrivals:
                self.arrive()
            self.retry_waiting()
            self.drain()
            if self.placements == before:
                return

    def evict(self, victim: PodInfo) -> None:
        """Delete a victim and create it again at the end of the arrivals, as its
        ReplicaSet would."""
        self.sched.cache.remove_pod(victim.key)
        gone = self.placed.pop(victim.name)
        self.sched.gang.pod_deleted(gone)
        self.out.evictions += 1
        body = self.body_of[gone.name]
        self.out.node_of[body] = ""
        replacement = f"{body}-r{self.out.evictions}"
        self.latest[body] = replacement
        self.arrivals.append((body, replacement))


def simulate(
    topo: topology.Topology, optimum: milp.Optimum, *, arrival: str, plan: str = "none"
) -> Outcome:
    """Schedule the scenario's pods in process; see the module docstring."""
    sim = _Sim(topo, optimum, plan)
    if arrival == "burst":
        while sim.arrivals:
            sim.arrive()
        sim.drain()
    while sim.arrivals:
        sim.arrive()
        sim.retry_waiting()  # a gang's earlier members were waiting for this one, perhaps
        sim.drain()
    sim.settle()
    sim.out.drop_partial_gangs()
    return sim.out


def _run(seeds: Iterable[int], regions: int, arrival: str, plan: str) -> list[Outcome]:
    outs = []
    for seed in seeds:
        # Seed 0: the scenario's earlier fixed topology.
        topo = (
            topology.fixed()
            if seed == 0
            else topology.generate(seed, topology.Sizes(regions=regions))
        )
        opt = milp.optimum(topo)
        out = simulate(topo, opt, arrival=arrival, plan=plan)
        print(orjson.dumps(out.summary()).decode(), file=sys.stderr)
        outs.append(out)
    return outs


def main() -> None:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--regions", type=int, default=3)
    ap.add_argument("--arrival", choices=("fifo", "burst"), default="fifo")
    ap.add_argument(
        "--plan", choices=("none", "pending", "forecast"), default="none",
        help="plan the latency pods together, knowing the pending pods or every class's",
    )  # fmt: skip
    ap.add_argument("--json", help="write every seed's figures here")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s]
    outs = _run(seeds, args.regions, args.arrival, args.plan)
    ratios = [o.ratio for o in outs]
    gangs = [g for o in outs if not math.isnan(g := o.gang_ratio())] or [math.nan]
    print(
        f"mean RTT over the optimum: median {statistics.median(ratios):.3f}x "
        f"({min(ratios):.3f}x to {max(ratios):.3f}x) over {len(outs)} seeds; "
        f"violations {sum(o.violations + o.gang_violations for o in outs)}, "
        f"pending {sum(o.pending for o in outs)} "
        f"(optimum {sum(o.topo.pods() - o.optimum.pods for o in outs)}), "
        f"evictions {sum(o.evictions for o in outs)}; gangs over the optimum: median "
        f"{statistics.median(gangs):.3f}x ({min(gangs):.3f}x to {max(gangs):.3f}x)"
    )
    if args.json:
        Path(args.json).write_bytes(
            orjson.dumps([o.summary() for o in outs], option=orjson.OPT_INDENT_2)
        )


if __name__ == "__main__":
    main()
