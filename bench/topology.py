"""Edge topologies generated from a seed, for the latency scenario.

A topology is regions on a map, each with a few edge sites around its centre
and one cloud site; every site has nodes of varied capacity (edge nodes small
and mixed, cloud nodes large). User populations live at edge sites. RTTs
come from geography: between two sites, the fibre distance (straight line
times a per-pair route stretch of 1.2 to 1.9, at 200 km per ms each way) plus
each end's access latency (an edge site's 0.3 to 2 ms, a cloud site's 4 to
12 ms of ingress and backbone hops), plus noise; users add their own last
mile (1 to 5 ms).

The workload is per user population: **hard** pods (``lasched.io/max-rtt``,
a limit a few ms above the best RTT their users can get, so the own site and
sometimes a neighbour qualify; PriorityClass ``latency-critical``) and
**soft** pods (``lasched.io/prefer-low-rtt``), each class with its own cpu and
memory; for about half the populations also one **gang** of 3 to 6 members
that prefer low RTT to their users and must lie within a ``group-max-rtt``
of 1 to 12 ms of each other, all or nothing. Demand at a site is drawn
between 60 and 110 % of its capacity, so sites overflow into their
neighbours and the cloud. Hard demand is trimmed until every hard pod has
a placement within its limit (checked with the exact optimiser,
:mod:`bench.milp`), so a hard pod left pending is always a scheduler's
doing.

Everything is a pure function of the seed and the sizes: the same seed gives
the same topology, workload and optimum on any machine.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import cached_property

FIBRE_KM_PER_MS = 200.0  # one way; an RTT covers the distance twice
SAME_SITE_MS = 0.3
REGION_NAMES = ("r1", "r2", "r3", "r4", "r5", "r6")
EDGE_SHAPES: tuple[tuple[int, int], ...] = (
    (2000, 4096),
    (4000, 8192),
    (4000, 16384),
    (8000, 16384),
    (8000, 32768),
)
CLOUD_SHAPES: tuple[tuple[int, int], ...] = ((16000, 65536), (32000, 131072))
POD_CPU = (250, 500, 1000)
POD_MEMORY = (256, 512, 1024, 2048)
NODE_PODS = 110


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    region: str
    tier: str  # "edge" or "cloud"
    x_km: float
    y_km: float
    access_ms: float


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    site: str
    cpu_milli: int
    memory_mi: int
    pods: int = NODE_PODS


@dataclass(frozen=True, slots=True)
class Users:
    name: str  # the lasched endpoint: users-<site>
    site: str
    last_mile_ms: float


@dataclass(frozen=True, slots=True)
class PodClass:
    name: str  # <site>-hard, <site>-soft, <site>-gang
    users: str
    kind: str  # "hard", "soft" or "gang"
    count: int  # a gang class is one gang of this many members
    cpu_milli: int
    memory_mi: int
    max_rtt_ms: float | None = None  # hard pods only
    budget_ms: float | None = None  # gangs only: the most RTT between any two members


@dataclass(frozen=True, slots=True)
class Sizes:
    regions: int = 3
    edge_sites: tuple[int, int] = (2, 4)  # per region, min and max
    edge_nodes: tuple[int, int] = (2, 6)  # per edge site
    cloud_nodes: tuple[int, int] = (4, 8)  # per region
    users_share: float = 0.75  # of edge sites with a user population (at least one a region)
    demand: tuple[float, float] = (0.6, 1.1)  # pods' cpu at a user site over its capacity
    hard_share: tuple[float, float] = (0.3, 0.6)  # of that demand, hard pods
    slack_ms: tuple[float, float] = (3.0, 12.0)  # hard limit above the users' best RTT
    gang_share: float = 0.5  # of user populations with a gang (drawn apart: see _gangs)
    gang_members: tuple[int, int] = (3, 6)
    gang_budget_ms: tuple[float, float] = (1.0, 12.0)  # group-max-rtt


@dataclass(frozen=True)
class Topology:
    seed: int
    sites: tuple[Site, ...]
    nodes: tuple[Node, ...]
    users: tuple[Users, ...]
    classes: tuple[PodClass, ...]
    # (site, site) -> RTT in ms, both orders; a site with itself: SAME_SITE_MS
    site_rtt: dict[tuple[str, str], float] = field(repr=False)
    # (users, site) -> RTT from the users to a node of that site, in ms
    users_rtt: dict[tuple[str, str], float] = field(repr=False)

    @cached_property
    def site_of(self) -> dict[str, str]:
        return {n.name: n.site for n in self.nodes}

    @cached_property
    def region_of(self) -> dict[str, str]:
        return {s.name: s.region for s in self.sites}

    def rtt(self, node: str, place: str) -> float | None:
        """RTT from ``node`` to a users endpoint or another node, or None if unknown."""
        site = self.site_of.get(node)
        if site is None:
            return None
        if place in self.site_of:
            return self.site_rtt[(site, self.site_of[place])]
        return self.users_rtt.get((place, site))

    def matrix(self) -> dict[str, dict[str, float]]:
        """node -> target (every other node, every users endpoint) -> RTT in ms."""
        out: dict[str, dict[str, float]] = {}
        for n in self.nodes:
            row = {u.name: self.users_rtt[(u.name, n.site)] for u in self.users}
            for m in self.nodes:
                if m.name != n.name:
                    row[m.name] = self.site_rtt[(n.site, m.site)]
            out[n.name] = row
        return out

    def pods(self) -> int:
        return sum(c.count for c in self.classes)

    def describe(self) -> str:
        edge = sum(1 for s in self.sites if s.tier == "edge")
        return (
            f"{len({s.region for s in self.sites})} regions, {edge} edge sites, "
            f"{len(self.sites) - edge} cloud sites, {len(self.nodes)} nodes, "
            f"{len(self.users)} user populations, {self.pods()} pods"
        )


def _round(ms: float) -> float:
    return round(ms, 1)


def fixed() -> Topology:
    """The one topology the latency scenario used before it generated them (seed 0 here;
    docs/benchmarks.md, Earlier results): regions eu, us and ap, each with ``edge-1``
    (6 nodes of 4 CPU / 16 GiB, 3 ms from the region's users), ``edge-2`` (6 such nodes,
    9 ms) and ``cloud`` (8 nodes of 16 CPU / 64 GiB, 28 ms); 80, 110 and 150 ms between
    eu-us, us-ap and eu-ap; per region 60 pods with a 10 ms limit to their users and 60
    that prefer them, each 500m / 1 GiB."""
    regions = ("eu", "us", "ap")
    apart = {("eu", "us"): 80.0, ("us", "ap"): 110.0, ("eu", "ap"): 150.0}

    def between(a: str, b: str) -> float:
        return 0.0 if a == b else apart.get((a, b), apart.get((b, a), 0.0))

    access = {"edge-1": 3.0, "edge-2": 9.0, "cloud": 28.0}
    shapes = {"edge-1": (6, 4000, 16384), "edge-2": (6, 4000, 16384), "cloud": (8, 16000, 65536)}
    sites, nodes, users, classes = [], [], [], []
    for r in regions:
        for kind, (count, cpu, mem) in shapes.items():
            name = f"{r}-{kind}"
            tier = "cloud" if kind == "cloud" else "edge"
            sites.append(Site(name, r, tier, 0.0, 0.0, access[kind]))
            nodes += [Node(f"{name}-{i}", name, cpu, mem) for i in range(count)]
        users.append(Users(f"users-{r}", f"{r}-edge-1", 0.0))
        classes.append(PodClass(f"{r}-hard", f"users-{r}", "hard", 60, 500, 1024, max_rtt_ms=10.0))
        classes.append(PodClass(f"{r}-soft", f"users-{r}", "soft", 60, 500, 1024))
    site_rtt: dict[tuple[str, str], float] = {}
    users_rtt: dict[tuple[str, str], float] = {}
    for a in sites:
        for b in sites:
            same_region = abs(a.access_ms - b.access_ms) + 3.0
            site_rtt[(a.name, b.name)] = (
                SAME_SITE_MS if a is b else between(a.region, b.region) or same_region
            )
        for u in users:
            region = u.site.split("-")[0]
            users_rtt[(u.name, a.name)] = a.access_ms + between(region, a.region)
    return Topology(
        0, tuple(sites), tuple(nodes), tuple(users), tuple(classes), site_rtt, users_rtt
    )


def generate(seed: int, sizes: Sizes = Sizes(), *, prefix: str | None = None) -> Topology:
    """The topology of ``seed``; node names start with ``prefix`` (default ``s<seed>``)."""
    rng = random.Random(seed)
    pre = prefix if prefix is not None else f"s{seed}"
    centres: list[tuple[float, float]] = []
    while len(centres) < sizes.regions:
        c = (rng.uniform(0, 9000), rng.uniform(0, 4500))
        if all(math.dist(c, o) > 1500 for o in centres) or rng.random() < 0.02:
            centres.append(c)
    sites: list[Site] = []
    for r, (cx, cy) in enumerate(centres):
        region = REGION_NAMES[r]
        for e in range(rng.randint(*sizes.edge_sites)):
            angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(40, 450)
            sites.append(
                Site(
                    f"{region}-e{e + 1}",
                    region,
                    "edge",
                    cx + dist * math.cos(angle),
                    cy + dist * math.sin(angle),
                    _round(rng.uniform(0.3, 2.0)),
                )
            )
        angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(100, 350)
        sites.append(
            Site(
                f"{region}-cloud",
                region,
                "cloud",
                cx + dist * math.cos(angle),
                cy + dist * math.sin(angle),
                _round(rng.uniform(4.0, 12.0)),
            )
        )

    site_rtt: dict[tuple[str, str], float] = {}
    for i, a in enumerate(sites):
        site_rtt[(a.name, a.name)] = SAME_SITE_MS
        for b in sites[i + 1 :]:
            stretch = rng.uniform(1.2, 1.9)
            prop = 2 * math.dist((a.x_km, a.y_km), (b.x_km, b.y_km)) * stretch / FIBRE_KM_PER_MS
            ms = _round(prop + a.access_ms + b.access_ms + rng.lognormvariate(-1.0, 0.6))
            site_rtt[(a.name, b.name)] = site_rtt[(b.name, a.name)] = ms

    nodes: list[Node] = []
    for s in sites:
        if s.tier == "edge":
            count, shapes = rng.randint(*sizes.edge_nodes), EDGE_SHAPES
        else:
            count, shapes = rng.randint(*sizes.cloud_nodes), CLOUD_SHAPES
        for k in range(count):
            cpu, mem = rng.choice(shapes)
            nodes.append(Node(f"{pre}-{s.name}-{k}", s.name, cpu, mem))

    edge = [s for s in sites if s.tier == "edge"]
    users: list[Users] = []
    for region in dict.fromkeys(s.region for s in edge):
        here = [s for s in edge if s.region == region]
        chosen = [s for s in here if rng.random() < sizes.users_share] or [rng.choice(here)]
        users += [Users(f"users-{s.name}", s.name, _round(rng.uniform(1.0, 5.0))) for s in chosen]
    users_rtt: dict[tuple[str, str], float] = {}
    for u in users:
        for s in sites:
            noise = rng.lognormvariate(-1.5, 0.5)
            if s.name == u.site:
                ms = u.last_mile_ms + s.access_ms + noise
            else:
                home = next(x for x in sites if x.name == u.site)
                ms = u.last_mile_ms + site_rtt[(u.site, s.name)] - home.access_ms + noise
            users_rtt[(u.name, s.name)] = _round(max(ms, 0.1))

    capacity = {s.name: sum(n.cpu_milli for n in nodes if n.site == s.name) for s in sites}
    classes: list[PodClass] = []
    for u in users:
        demand = capacity[u.site] * rng.uniform(*sizes.demand)
        hard_cpu_ms = demand * rng.uniform(*sizes.hard_share)
        cpu_h, cpu_s = rng.choice(POD_CPU), rng.choice(POD_CPU)
        best = min(users_rtt[(u.name, s.name)] for s in sites)
        limit = float(math.ceil(best + rng.uniform(*sizes.slack_ms)))
        classes.append(
            PodClass(
                f"{u.site}-hard",
                u.name,
                "hard",
                max(1, round(hard_cpu_ms / cpu_h)),
                cpu_h,
                rng.choice(POD_MEMORY),
                limit,
            )
        )
        classes.append(
            PodClass(
                f"{u.site}-soft",
                u.name,
                "soft",
                max(1, round((demand - hard_cpu_ms) / cpu_s)),
                cpu_s,
                rng.choice(POD_MEMORY),
            )
        )
    gangs = _gangs(seed, sizes, users)
    return _feasible(
        Topology(
            seed, tuple(sites), tuple(nodes), tuple(users), (*classes, *gangs), site_rtt,
            users_rtt,
        )
    )  # fmt: skip


def _gangs(seed: int, sizes: Sizes, users: list[Users]) -> list[PodClass]:
    """One gang for about ``gang_share`` of the user populations: members that prefer low RTT
    to their users and must lie within ``group-max-rtt`` of each other.

    Drawn from a generator of their own, so the rest of a seed's topology and
    workload is what it was before gangs joined the scenario.
    """
    rng = random.Random(f"{seed}-gangs")
    out = []
    for u in users:
        if rng.random() >= sizes.gang_share:
            continue
        out.append(
            PodClass(
                f"{u.site}-gang",
                u.name,
                "gang",
                rng.randint(*sizes.gang_members),
                rng.choice(POD_CPU),
                rng.choice(POD_MEMORY),
                budget_ms=float(math.ceil(rng.uniform(*sizes.gang_budget_ms))),
            )
        )
    return out


def _feasible(topo: Topology) -> Topology:
    """Trim hard classes (largest first, a tenth at a time) until every hard pod has a
    placement within its limit."""
    from bench import milp

    classes = list(topo.classes)
    for _ in range(100):
        cur = Topology(
            topo.seed,
            topo.sites,
            topo.nodes,
            topo.users,
            tuple(classes),
            topo.site_rtt,
            topo.users_rtt,
        )
        placed = milp.max_hard_placed(cur)
        short = {c.name: c.count - placed.get(c.name, 0) for c in classes if c.kind == "hard"}
        if not any(short.values()):
            return cur
        worst = max(short, key=lambda k: short[k])
        classes = [
            PodClass(
                c.name,
                c.users,
                c.kind,
                max(0, c.count - max(1, c.count // 10)),
                c.cpu_milli,
                c.memory_mi,
                c.max_rtt_ms,
                c.budget_ms,
            )
            if c.name == worst
            else c
            for c in classes
        ]
    raise RuntimeError(f"seed {topo.seed}: no feasible hard workload found")
