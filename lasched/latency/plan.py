"""A plan for the latency pods still to place, so that one pod at a time comes out near
what placing them all together would.

Greedy placement gives each pod its nearest node with room. When near room
is scarce, that is not the best for the pods together: a pod of 2 GiB that
takes a site's last memory from eight pods of 256 MiB saves its users a
little and costs theirs a lot. The plan sees every *population* with pods
still to place (pods a plan may swap: same requests, priority and latency
requirements, and the same owner when the demand comes from one), and
splits the free room among them by a linear program solved by HiGHS:

- variables ``x[p, g]``: how many pods of population ``p`` go to node group
  ``g``, where a group is the nodes with the same RTTs to every place the
  populations name (an edge site, typically), and only groups within every
  hard limit of ``p``;
- ``x[p, g]`` at most the pods of ``p``'s shape that ``g``'s nodes have room
  for one by one (so room split across nodes is not counted as one pod's); a
  gang with a pairwise RTT budget (``group-max-rtt``) is planned whole or not
  at all, in groups no two of which are farther apart than its budget;
  the populations together within each group's free cpu, memory and pod
  slots; ``p`` no more than its demand;
- the objective: as many pods as possible, higher priority first, then the
  least total weighted RTT; ``x`` whole numbers (a mixed-integer program, its
  time bounded by :data:`TIME_LIMIT_S`).

LatencyScore then scores a pod's planned groups above the others (every
filter still runs); placing a pod takes one from its population's quota in
that group. A plan is made again when a population appears or grows beyond
what it planned for, when a pod is placed off its plan, or when the nodes or
the RTTs change. ``highspy`` is imported when the first plan is made: a
scheduler whose pods state no latency requirement never loads it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lasched import metrics
from lasched.cache.cache import NodeInfo
from lasched.latency.cache import LatencyCache
from lasched.model.latencyreq import LatencyRequirements, Preference, RttLimit
from lasched.model.pod import PodInfo

log = logging.getLogger(__name__)

PLACE_AS_MANY_MS = 100_000.0
"""Worth of one more pod placed, in ms of RTT: far above any RTT, so the program
places as many pods as it can before it weighs their RTTs."""
RTT_GRAIN_MS = 0.1
"""Nodes whose RTTs to every place agree to this grain are one group."""
TIME_LIMIT_S = 0.5
"""The most one plan may take; its best answer by then is used."""
MAX_GANG_GROUPS = 32
"""A gang allowed in more groups than this is planned in one of them, whole (the pairs
of groups farther apart than its budget would be too many to bound)."""
MAX_VARIABLES = 50_000
"""Beyond this many (population, group) pairs no plan is made: greedy placement decides."""

Rtt = Callable[[str, str], float | None]
"""(place, node) -> RTT in ms, or None when unknown."""


def planned_rtt(cache: LatencyCache, place: str, node: str) -> float | None:
    """The RTT a preference (and so a plan) counts between a place and a node: measured
    and fresh in either direction (as LatencyFilter reads it), else the coordinates'
    estimate; None when neither exists."""
    rtt = cache.get(place, node)
    if rtt is None or rtt.stale:
        back = cache.get(node, place)
        if back is not None and not back.stale:
            rtt = back
    if rtt is not None and not rtt.stale:
        return rtt.ms
    estimate = cache.estimate(place, node)
    return estimate.ms if estimate is not None else None


@dataclass(frozen=True, slots=True)
class Population:
    """Pods a plan may swap, with how many are still to place."""

    key: Hashable
    places: tuple[Preference, ...]
    limits: tuple[RttLimit, ...]
    milli_cpu: int
    memory: int
    priority: int
    demand: int
    budget_ms: float | None = None  # a gang's group-max-rtt: its rest whole, within it


def scored_places(req: LatencyRequirements) -> tuple[Preference, ...]:
    """The places a pod's RTT counts against: its preferences, else the places it limits."""
    if req.preferences:
        return req.preferences
    return tuple(Preference(place, 1) for place in dict.fromkeys(lim.place for lim in req.limits))


def population_key(pod: PodInfo, owner: str = "") -> Hashable | None:
    """What makes pods interchangeable for a plan; None for a pod no plan covers (no
    latency requirement, or peer rules, which place a pod by other pods)."""
    req = pod.latency
    if req is None or req.peers is not None:
        return None
    places = scored_places(req)
    if not places:
        return None
    if pod.group is not None:
        owner = pod.group.key  # a group's members are planned together
    r = pod.requests
    return (pod.namespace, owner, places, req.limits, r.milli_cpu, r.memory, pod.priority)


def population(pod: PodInfo, key: Hashable, demand: int) -> Population:
    req = pod.latency
    assert req is not None
    r = pod.requests
    budget = req.group_max_ms if pod.group is not None else None
    return Population(
        key, scored_places(req), req.limits, r.milli_cpu, r.memory, pod.priority, demand, budget
    )


@dataclass
class Plan:
    """How many pods of each population go to each group of nodes."""

    group_of: dict[str, int]  # node -> group
    members: list[list[str]]  # group -> its nodes
    quota: dict[Hashable, dict[int, int]]  # population -> group -> pods still planned there
    demand: dict[Hashable, int]  # population -> the demand planned for
    solve_ms: float = 0.0
    stale: set[Hashable] = field(default_factory=set)  # placed off plan: plan again

    def nodes(self, key: Hashable) -> frozenset[str]:
        """The nodes where population ``key`` has pods still planned."""
        return frozenset(
            n for g, k in self.quota.get(key, {}).items() if k > 0 for n in self.members[g]
        )

    def planned(self, key: Hashable) -> int:
        return sum(self.quota.get(key, {}).values())

    def take(self, key: Hashable, node: str) -> None:
        """A pod of ``key`` was placed on ``node``: one fewer planned there, or, if it had
        none planned there, the population is planned again on its next pod."""
        groups = self.quota.get(key)
        g = self.group_of.get(node)
        if groups is not None and g is not None and groups.get(g, 0) > 0:
            groups[g] -= 1
            self.demand[key] -= 1
        else:
            self.stale.add(key)


def _free(node: NodeInfo) -> tuple[int, int, int] | None:
    """Free (milli-cpu, memory, pod slots) of a node, None for one without its object."""
    if node.node is None:
        return None
    alloc, used = node.node.allocatable, node.requested
    return (
        alloc.milli_cpu - used.milli_cpu,
        alloc.memory - used.memory,
        alloc.pods - len(node.pods),
    )


def _fits(free: tuple[int, int, int], cpu: int, memory: int) -> int:
    room = free[2]
    if cpu > 0:
        room = min(room, free[0] // cpu)
    if memory > 0:
        room = min(room, free[1] // memory)
    return max(room, 0)


@dataclass(frozen=True, slots=True)
class Grouping:
    """Nodes grouped by their RTTs to the places: the plan's unit of room."""

    places: tuple[str, ...]
    group_of: dict[str, int]  # node -> group
    members: list[list[str]]  # group -> its nodes
    rtts: list[tuple[float | None, ...]]  # group -> its RTT to each place (None: unknown)


def group_nodes(places: Sequence[str], nodes: Iterable[NodeInfo], rtt: Rtt) -> Grouping:
    """Nodes whose RTTs to every place agree to :data:`RTT_GRAIN_MS` are one group."""
    group_of: dict[str, int] = {}
    members: list[list[str]] = []
    rtts: list[tuple[float | None, ...]] = []
    index: dict[tuple[int | None, ...], int] = {}
    for ni in nodes:
        if ni.node is None:
            continue
        sig = tuple(
            None if (ms := rtt(place, ni.name)) is None else round(ms / RTT_GRAIN_MS)
            for place in places
        )
        g = index.setdefault(sig, len(index))
        if g == len(rtts):
            rtts.append(tuple(None if v is None else v * RTT_GRAIN_MS for v in sig))
            members.append([])
        group_of[ni.name] = g
        members[g].append(ni.name)
    return Grouping(tuple(places), group_of, members, rtts)


def places_of(pops: Iterable[Population]) -> tuple[str, ...]:
    return tuple(
        sorted({p.place for pop in pops for p in pop.places} | {
            lim.place for pop in pops for lim in pop.limits
        })
    )  # fmt: skip


def make_plan(
    pops: Sequence[Population],
    nodes: Iterable[NodeInfo],
    rtt: Rtt,
    grouping: Grouping | None = None,
) -> Plan | None:
    """The plan for ``pops`` over ``nodes``; None when there is nothing to plan or the
    program is too large or fails (greedy placement then decides alone). ``grouping``:
    the nodes already grouped by RTT to :func:`places_of` ``pops`` (kept while the RTTs
    and the nodes stay the same), else grouped here."""
    started = time.perf_counter()
    nodes = list(nodes)
    places = places_of(pops)
    if grouping is None or grouping.places != places:
        grouping = group_nodes(places, nodes, rtt)
    group_of, signature = grouping.group_of, grouping.rtts
    free: list[list[tuple[int, int, int]]] = [[] for _ in signature]  # group -> nodes' room
    for ni in nodes:
        room = _free(ni)
        g = group_of.get(ni.name)
        if room is not None and g is not None:
            free[g].append(room)
    at = {place: i for i, place in enumerate(places)}
    model = _Model()
    # Rows: each population's demand; each group's free cpu, memory and pod slots.
    demand_row = {pi: model.row(0, pop.demand) for pi, pop in enumerate(pops)}
    room_rows = [
        tuple(model.row(0, sum(max(f[k], 0) for f in rooms)) for k in range(3)) for rooms in free
    ]
    ranks = {prio: r for r, prio in enumerate(sorted({pop.priority for pop in pops}))}
    xs: list[tuple[int, int, int]] = []  # (column, population, group)
    for pi, pop in enumerate(pops):
        if pop.demand <= 0:
            continue
        worth = PLACE_AS_MANY_MS * (1 + ranks[pop.priority])
        mine: list[tuple[int, int]] = []  # (column, group)
        for g, rtts in enumerate(signature):
            cost = _cost(pop, rtts, at)
            fit = sum(_fits(f, pop.milli_cpu, pop.memory) for f in free[g])
            if cost is None or fit <= 0:
                continue
            cpu_row, mem_row, pods_row = room_rows[g]
            col = model.col(
                cost - worth, min(pop.demand, fit),
                {demand_row[pi]: 1.0, cpu_row: pop.milli_cpu, mem_row: pop.memory, pods_row: 1.0},
            )  # fmt: skip
            mine.append((col, g))
            xs.append((col, pi, g))
        if pop.budget_ms is not None and mine:
            _whole_within_budget(model, pop, mine, grouping.members, rtt)
        if len(model.cost) > MAX_VARIABLES:
            return None
    if not xs:
        return None
    x = model.solve()
    if x is None:
        return None
    quota: dict[Hashable, dict[int, int]] = {pop.key: {} for pop in pops}
    for col, pi, g in xs:
        if (k := x[col]) > 0:
            quota[pops[pi].key][g] = k
    solve_ms = (time.perf_counter() - started) * 1000
    demand = {pop.key: pop.demand for pop in pops}
    return Plan(group_of, grouping.members, quota, demand, solve_ms)


def _cost(pop: Population, rtts: Sequence[float | None], at: Mapping[str, int]) -> float | None:
    """Weighted RTT of a pod of ``pop`` in a group with these RTTs; None if the group is
    beyond a hard limit or an RTT it weighs is unknown."""
    for lim in pop.limits:
        ms = rtts[at[lim.place]]
        if ms is None or ms > lim.max_ms + RTT_GRAIN_MS / 2:
            return None
    cost = 0.0
    for pref in pop.places:
        ms = rtts[at[pref.place]]
        if ms is None:
            return None
        cost += pref.weight * ms
    return cost


def _whole_within_budget(
    model: _Model,
    pop: Population,
    mine: Sequence[tuple[int, int]],
    members: Sequence[Sequence[str]],
    rtt: Rtt,
) -> None:
    """A gang's rest is placed whole or not at all (binary ``z``), in groups no two of
    which are farther apart than its budget (binary ``y`` per group it uses), as the
    exact optimum of the benchmark models it."""
    budget = pop.budget_ms
    assert budget is not None
    n = float(pop.demand)
    whole = model.row(0, 0)  # sum of x - n * z = 0
    model.col(0.0, 1, {whole: -n})
    for col, _ in mine:
        model.add(col, whole, 1.0)
    if len(mine) > MAX_GANG_GROUPS:  # too many pairs to bound: one group, whole
        uses = model.row(-math.inf, 1)
        for col, _ in mine:
            y = model.col(0.0, 1, {uses: 1.0})
            link = model.row(-math.inf, 0)
            model.add(col, link, 1.0)
            model.add(y, link, -n)
        return
    ys: dict[int, int] = {}
    for col, g in mine:
        link = model.row(-math.inf, 0)  # x - n * y <= 0
        ys[g] = model.col(0.0, 1, {link: -n})
        model.add(col, link, 1.0)
    groups = sorted(ys)
    for i, a in enumerate(groups):
        for b in groups[i + 1 :]:
            ms = rtt(members[a][0], members[b][0])  # like nodes: any one of each will do
            if ms is None or ms > budget:
                apart = model.row(-math.inf, 1)
                model.add(ys[a], apart, 1.0)
                model.add(ys[b], apart, 1.0)


class _Model:
    """A mixed-integer program, built column by column, every variable an integer."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.upper: list[float] = []
        self.cols: list[dict[int, float]] = []  # column -> row -> coefficient
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []

    def row(self, lo: float, hi: float) -> int:
        self.row_lo.append(lo)
        self.row_hi.append(hi)
        return len(self.row_lo) - 1

    def col(self, cost: float, upper: float, entries: Mapping[int, float]) -> int:
        self.cost.append(cost)
        self.upper.append(upper)
        self.cols.append({r: float(v) for r, v in entries.items() if v})
        return len(self.cost) - 1

    def add(self, col: int, row: int, coef: float) -> None:
        self.cols[col][row] = coef

    def solve(self) -> list[int] | None:
        # Loaded with the first plan (see the module docstring).
        import highspy
        import numpy as np

        inf = highspy.kHighsInf
        starts, index, value = [0], [], []
        for entries in self.cols:
            for r in sorted(entries):
                index.append(r)
                value.append(entries[r])
            starts.append(len(index))
        n = len(self.cost)
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = len(self.row_lo)
        lp.col_cost_ = np.array(self.cost, dtype=np.float64)
        lp.col_lower_ = np.zeros(n)
        lp.col_upper_ = np.array(self.upper, dtype=np.float64)
        lp.row_lower_ = np.array([max(v, -inf) for v in self.row_lo], dtype=np.float64)
        lp.row_upper_ = np.array([min(v, inf) for v in self.row_hi], dtype=np.float64)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
        lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
        lp.a_matrix_.value_ = np.array(value, dtype=np.float64)
        # Whole pods: a fractional split, rounded, would promise a group more than its room.
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n
        h = _solver(highspy)
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", TIME_LIMIT_S)
        h.setOptionValue("mip_rel_gap", 1e-3)
        h.passModel(lp)
        h.run()
        status = h.getModelStatus()
        solved = status == highspy.HighsModelStatus.kOptimal or (
            status == highspy.HighsModelStatus.kTimeLimit
            and h.getInfo().primal_solution_status == 2
        )  # out of time with a feasible answer: good enough to steer by
        if not solved:
            log.warning("latency plan not made: HiGHS says %s", h.modelStatusToString(status))
            return None
        return [round(v) for v in h.getSolution().col_value]


class Demand(Protocol):
    """Where the pods still to place are: the scheduler's pending pods and their owners'
    forecasts, or a simulation's arrivals."""

    def key(self, pod: PodInfo) -> Hashable | None:
        """The pod's population (:func:`population_key`), None if no plan covers it."""

    def populations(self) -> Mapping[Hashable, tuple[PodInfo, int]]:
        """Every population with pods still to place: one of its pods and how many."""


class Planner:
    """Keeps one plan and says where each pod's population is planned."""

    def __init__(
        self,
        demand: Demand,
        nodes: Callable[[], Iterable[NodeInfo]],
        rtt: Rtt,
        version: Callable[[], Hashable],
    ) -> None:
        """``version``: changes when the nodes or the RTTs do (a new plan is made)."""
        self._demand = demand
        self._nodes = nodes
        self._rtt = rtt
        self._version = version
        self._plan: Plan | None = None
        self._plan_version: Hashable = None
        self._grouping: Grouping | None = None  # for _plan_version
        self.plans = 0

    def covers(self, pod: PodInfo) -> bool:
        return self._demand.key(pod) is not None

    def nodes_for(self, pod: PodInfo) -> frozenset[str] | None:
        """The nodes planned for ``pod`` (empty: none has room in the plan), None when no
        plan covers it."""
        key = self._demand.key(pod)
        if key is None:
            return None
        plan = self._plan
        version = self._version()
        if (
            plan is None
            or version != self._plan_version
            or key in plan.stale
            or key not in plan.quota
            or self._demand.populations().get(key, (pod, 1))[1] > plan.demand.get(key, 0)
        ):
            plan = self._replan(version)
            if plan is None or key not in plan.quota:
                return None
        return plan.nodes(key)

    def invalidate(self) -> None:
        """Something the demand depends on changed (a controller's size): plan again."""
        self._plan = None

    def placed(self, pod: PodInfo, node: str) -> None:
        """``pod`` was placed on ``node`` (Reserve)."""
        if self._plan is not None and (key := self._demand.key(pod)) is not None:
            self._plan.take(key, node)

    def _replan(self, version: Hashable) -> Plan | None:
        started = time.perf_counter()
        pops = [population(pod, key, n) for key, (pod, n) in self._demand.populations().items()]
        if version != self._plan_version:
            self._grouping = None  # the RTTs or the nodes changed: group again
        nodes = list(self._nodes())
        grouping = self._grouping
        if pops and (grouping is None or grouping.places != places_of(pops)):
            grouping = self._grouping = group_nodes(places_of(pops), nodes, self._rtt)
        self._plan = make_plan(pops, nodes, self._rtt, grouping) if pops else None
        outcome = "made" if self._plan is not None else "none"
        metrics.latency_plans.labels(outcome).observe(time.perf_counter() - started)
        if self._plan is not None and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "latency plan: %d populations, %d pods, %.1f ms: %s",
                len(pops), sum(p.demand for p in pops), self._plan.solve_ms,
                {str(k): v for k, v in self._plan.quota.items()},
            )  # fmt: skip
        self._plan_version = version
        self.plans += 1
        return self._plan

    @property
    def plan(self) -> Plan | None:
        return self._plan


def _solver(highspy: Any) -> Any:
    """A HiGHS instance, without HiGHS's banner on lasched's standard output."""
    _swallow_banner(highspy)
    return highspy.Highs()


@functools.cache
def _swallow_banner(highspy: Any) -> None:
    """The first HiGHS instance of a process prints HiGHS's banner on its standard output,
    from C++ and whatever the options (they can only be set after): a line that is not a
    log line, amid lasched's. That first one is made, once, with the descriptor pointed at
    /dev/null (the event loop's thread is the only one that writes output)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with Path(os.devnull).open("wb") as null:
            os.dup2(null.fileno(), 1)
            try:
                highspy.Highs()
            finally:
                os.dup2(saved, 1)
    finally:
        os.close(saved)
