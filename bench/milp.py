"""The exact optimum of a latency workload: a mixed-integer program solved by HiGHS.

Each pod goes to one node (or stays pending); a node holds no more pods than
its cpu, memory and pod count allow; a hard pod only goes to a node within its
``max-rtt`` of its users. Pods of one class (same users, kind and size) are
interchangeable, so the variables are integers ``x[class, node]`` (how many
of the class the node holds), which is exact and keeps the program small.

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
    pairs: list[tuple[int, int]]  # variable -> (class index, node index)
    cost: np.ndarray  # RTT per variable
    hard: np.ndarray  # 1 where the variable's class is hard
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
    nv = len(pairs)
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
    return _Program(
        pairs=pairs,
        cost=np.array(cost, dtype=float),
        hard=np.array([1.0 if classes[ci].kind == "hard" else 0.0 for ci, _ in pairs]),
        upper=np.array([classes[ci].count for ci, _ in pairs], dtype=float),
        constraints=cons,
    )


def _solve(
    p: _Program, objective: np.ndarray, extra: list[LinearConstraint]
) -> tuple[np.ndarray, str, float]:
    if len(p.pairs) == 0:
        return np.zeros(0), "no variables", 0.0
    res = milp(
        objective,
        integrality=np.ones(len(p.pairs)),
        bounds=Bounds(np.zeros(len(p.pairs)), p.upper),
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
    ones = np.ones(len(p.pairs))
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
