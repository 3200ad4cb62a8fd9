"""The exact optimum of a latency workload: a mixed-integer program solved by HiGHS.

Each pod goes to one node (or stays pending); a node holds no more pods than
its cpu, memory and pod count allow; a hard pod only goes to a node within its
``max-rtt`` of its users. Pods of one class (same users, kind and size) are
interchangeable, so the variables are integers ``x[class, node]`` (how many
of the class the node holds), which is exact and keeps the program small.
A gang is all or nothing within its budget: a binary ``z[gang]`` (placed)
with ``sum x[gang, *] = members * z[gang]``, and a binary ``y[gang, site]``
(a member on that site) with ``x[gang, node] <= members * y[gang, site]``
and ``y[gang, s] + y[gang, t] <= 1`` for every two sites farther apart than
the budget (RTTs are per site pair, so nodes need no pairs of their own).

The objective is lexicographic, solved in three rounds, each fixing the
previous round's optimum as a constraint:

1. place as many hard pods as possible (the schedulers give them priority);
2. then as many pods as possible;
3. then the least total RTT from each pod to its users.

Round 3's optimum is the figure a scheduler's mean RTT is set against.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp  # type: ignore[import-untyped]
from scipy.sparse import lil_matrix  # type: ignore[import-untyped]

from bench.topology import Topology

RESERVED_PODS = 1  # the agent pod the benchmark binds on every node
TIME_LIMIT_S = 120.0


@dataclass(frozen=True, slots=True)
class Optimum:
    placed: dict[str, int]  # class -> pods placed
    assignment: dict[tuple[str, str], int]  # (class, node) -> pods
    rtts_ms: list[float] = field(repr=False)  # every placed pod's RTT to its users, sorted
    status: str = ""  # HiGHS' word on the last round
    gap: float = 0.0  # relative MIP gap of the last round (0: proven optimal)

    @property
    def mean_rtt_ms(self) -> float:
        return sum(self.rtts_ms) / len(self.rtts_ms) if self.rtts_ms else math.nan

    @property
    def pods(self) -> int:
        return sum(self.placed.values())


@dataclass(frozen=True, slots=True)
class _Program:
    pairs: list[tuple[int, int]]  # x variable -> (class index, node index); x come first
    cost: np.ndarray  # RTT per variable (0 for a gang's z and y)
    hard: np.ndarray  # 1 where the variable is an x of a hard class
    count: np.ndarray  # 1 where the variable is an x (a pod placed)
    upper: np.ndarray
    constraints: list[LinearConstraint]


def _program(topo: Topology) -> _Program:
    nodes, classes = topo.nodes, topo.classes
    pairs, cost = [], []
    for ci, c in enumerate(classes):
        for ni, n in enumerate(nodes):
            rtt = topo.users_rtt[(c.users, n.site)]
            if c.kind == "hard" and c.max_rtt_ms is not None and rtt > c.max_rtt_ms:
                continue
            if c.cpu_milli > n.cpu_milli or c.memory_mi > n.memory_mi:
                continue
            pairs.append((ci, ni))
            cost.append(rtt)
    nx = len(pairs)
    gangs = [ci for ci, c in enumerate(classes) if c.budget_ms is not None]
    sites = sorted({n.site for n in nodes})
    z_of = {ci: nx + k for k, ci in enumerate(gangs)}
    y_of = {
        (ci, site): nx + len(gangs) + k * len(sites) + j
        for k, ci in enumerate(gangs)
        for j, site in enumerate(sites)
    }
    nv = nx + len(gangs) + len(gangs) * len(sites)
    per_class = lil_matrix((len(classes), nv))
    cpu, mem, count = (lil_matrix((len(nodes), nv)) for _ in range(3))
    for v, (ci, ni) in enumerate(pairs):
        per_class[ci, v] = 1
        cpu[ni, v] = classes[ci].cpu_milli
        mem[ni, v] = classes[ci].memory_mi
        count[ni, v] = 1
    cons = [
        LinearConstraint(per_class.tocsr(), 0, [c.count for c in classes]),
        LinearConstraint(cpu.tocsr(), 0, [n.cpu_milli for n in nodes]),
        LinearConstraint(mem.tocsr(), 0, [n.memory_mi for n in nodes]),
        LinearConstraint(count.tocsr(), 0, [n.pods - RESERVED_PODS for n in nodes]),
    ]
    if gangs:
        rows: list[tuple[dict[int, float], float, float]] = []
        for ci in gangs:
            c = classes[ci]
            budget = c.budget_ms or 0.0
            members = {v: 1.0 for v, (cj, _) in enumerate(pairs) if cj == ci}
            rows.append(({**members, z_of[ci]: -float(c.count)}, 0.0, 0.0))  # all or nothing
            for v, (cj, ni) in enumerate(pairs):
                if cj == ci:  # a member only on a site the gang uses
                    rows.append(
                        ({v: 1.0, y_of[(ci, nodes[ni].site)]: -float(c.count)}, -np.inf, 0.0)
                    )
            for i, a in enumerate(sites):
                for b in sites[i + 1 :]:
                    if topo.site_rtt[(a, b)] > budget:
                        rows.append(({y_of[(ci, a)]: 1.0, y_of[(ci, b)]: 1.0}, -np.inf, 1.0))
        m = lil_matrix((len(rows), nv))
        for r, (coef, _, _) in enumerate(rows):
            for v, weight in coef.items():
                m[r, v] = weight
        cons.append(LinearConstraint(m.tocsr(), [lo for _, lo, _ in rows], [hi for *_, hi in rows]))
    upper = np.ones(nv)
    upper[:nx] = [classes[ci].count for ci, _ in pairs]
    return _Program(
        pairs=pairs,
        cost=np.concatenate([np.array(cost, dtype=float), np.zeros(nv - nx)]),
        hard=np.array(
            [1.0 if classes[ci].kind == "hard" else 0.0 for ci, _ in pairs] + [0.0] * (nv - nx)
        ),
        count=np.concatenate([np.ones(nx), np.zeros(nv - nx)]),
        upper=upper,
        constraints=cons,
    )


def _solve(
    p: _Program, objective: np.ndarray, extra: list[LinearConstraint]
) -> tuple[np.ndarray, str, float]:
    if len(p.upper) == 0:
        return np.zeros(0), "no variables", 0.0
    res = milp(
        objective,
        integrality=np.ones(len(p.upper)),
        bounds=Bounds(np.zeros(len(p.upper)), p.upper),
        constraints=[*p.constraints, *extra],
        options={"time_limit": TIME_LIMIT_S, "disp": False, "mip_rel_gap": 0.0},
    )
    if res.x is None:
        raise RuntimeError(f"the placement program has no solution: {res.message}")
    gap = float(getattr(res, "mip_gap", 0.0) or 0.0)
    return np.round(res.x), str(res.message), gap


def max_hard_placed(topo: Topology) -> dict[str, int]:
    """Round 1 alone: class -> hard pods placed when as many as possible are."""
    p = _program(topo)
    x, _, _ = _solve(p, -p.hard, [])
    out: dict[str, int] = {}
    for v, (ci, _) in enumerate(p.pairs):
        name = topo.classes[ci].name
        out[name] = out.get(name, 0) + int(x[v])
    return out


def optimum(topo: Topology) -> Optimum:
    p = _program(topo)
    if not p.pairs:
        return Optimum({}, {}, [], "no variables")
    ones = p.count
    x, _, _ = _solve(p, -p.hard, [])
    hard_best = float(p.hard @ x)
    keep_hard = LinearConstraint(p.hard, hard_best - 0.5, np.inf)
    x, _, _ = _solve(p, -ones, [keep_hard])
    all_best = float(ones @ x)
    keep_all = LinearConstraint(ones, all_best - 0.5, np.inf)
    x, status, gap = _solve(p, p.cost, [keep_hard, keep_all])
    placed: dict[str, int] = {}
    assignment: dict[tuple[str, str], int] = {}
    rtts: list[float] = []
    for v, (ci, ni) in enumerate(p.pairs):
        k = int(x[v])
        if not k:
            continue
        c, n = topo.classes[ci], topo.nodes[ni]
        placed[c.name] = placed.get(c.name, 0) + k
        assignment[(c.name, n.name)] = k
        rtts += [float(p.cost[v])] * k
    return Optimum(placed, assignment, sorted(rtts), status, gap)
