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
  gang with a pairwise RTT budget (``group-max-rtt``) goes to one group whole
  or to none, so the plan never splits it across places farther apart than
  its budget;
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

import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
MAX_VARIABLES = 50_000
"""Beyond this many (population, group) pairs no plan is made: greedy placement decides."""

Rtt = Callable[[str, str], float | None]
"""(place, node) -> RTT in ms, or None when unknown."""


def planned_rtt(cache: LatencyCache, place: str, node: str) -> float | None:
    """The RTT a plan counts between a place and a node: measured and fresh in either
    direction (as LatencyFilter reads it), else the estimate; None when neither exists."""
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
    whole: bool = False  # a gang with a pairwise RTT budget: planned in one group or none


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
    whole = pod.group is not None and req.group_max_ms is not None
    return Population(
        key, scored_places(req), req.limits, r.milli_cpu, r.memory, pod.priority, demand, whole
    )


@dataclass
class Plan:
    """How many pods of each population go to each group of nodes."""

    group_of: dict[str, int]  # node -> group
    quota: dict[Hashable, dict[int, int]]  # population -> group -> pods still planned there
    demand: dict[Hashable, int]  # population -> the demand planned for
    solve_ms: float = 0.0
    stale: set[Hashable] = field(default_factory=set)  # placed off plan: plan again

    def nodes(self, key: Hashable) -> frozenset[str]:
        """The nodes where population ``key`` has pods still planned."""
        groups = {g for g, k in self.quota.get(key, {}).items() if k > 0}
        return frozenset(n for n, g in self.group_of.items() if g in groups)

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


def make_plan(pops: Sequence[Population], nodes: Iterable[NodeInfo], rtt: Rtt) -> Plan | None:
    """The plan for ``pops`` over ``nodes``; None when there is nothing to plan or the
    program is too large or fails (greedy placement then decides alone)."""
    started = time.perf_counter()
    places = sorted({p.place for pop in pops for p in pop.places} | {
        lim.place for pop in pops for lim in pop.limits
    })  # fmt: skip
    group_of: dict[str, int] = {}
    signature: list[tuple[float | None, ...]] = []
    free: list[list[tuple[int, int, int]]] = []  # group -> its nodes' free room
    index: dict[tuple[float | None, ...], int] = {}
    for ni in nodes:
        room = _free(ni)
        if room is None:
            continue
        sig = tuple(
            None if (ms := rtt(place, ni.name)) is None else round(ms / RTT_GRAIN_MS)
            for place in places
        )
        g = index.setdefault(sig, len(index))
        if g == len(free):
            signature.append(tuple(None if s is None else s * RTT_GRAIN_MS for s in sig))
            free.append([])
        free[g].append(room)
        group_of[ni.name] = g
    at = {place: i for i, place in enumerate(places)}
    # Variables: (population, group, upper bound, cost, pods each counts).
    pairs: list[tuple[int, int, int, float, int]] = []
    ranks = {prio: r for r, prio in enumerate(sorted({pop.priority for pop in pops}))}
    for pi, pop in enumerate(pops):
        if pop.demand <= 0:
            continue
        for g, rtts in enumerate(signature):
            if any(
                (ms := rtts[at[lim.place]]) is None or ms > lim.max_ms + RTT_GRAIN_MS / 2
                for lim in pop.limits
            ):
                continue
            cost = 0.0
            for pref in pop.places:
                ms = rtts[at[pref.place]]
                if ms is None:
                    break
                cost += pref.weight * ms
            else:
                fit = sum(_fits(f, pop.milli_cpu, pop.memory) for f in free[g])
                worth = PLACE_AS_MANY_MS * (1 + ranks[pop.priority])
                if pop.whole:  # one variable: the whole rest of the gang here, or not
                    if fit >= pop.demand:
                        pairs.append((pi, g, 1, (cost - worth) * pop.demand, pop.demand))
                elif (upper := min(pop.demand, fit)) > 0:
                    pairs.append((pi, g, upper, cost - worth, 1))
    if not pairs or len(pairs) > MAX_VARIABLES:
        return None
    x = _solve(pops, free, pairs)
    if x is None:
        return None
    quota: dict[Hashable, dict[int, int]] = {pop.key: {} for pop in pops}
    for (pi, g, _, _, unit), v in zip(pairs, x, strict=True):
        k = int(v) * unit
        if k > 0:
            quota[pops[pi].key][g] = k
    solve_ms = (time.perf_counter() - started) * 1000
    return Plan(group_of, quota, {pop.key: pop.demand for pop in pops}, solve_ms)


def _solve(
    pops: Sequence[Population],
    free: Sequence[Sequence[tuple[int, int, int]]],
    pairs: Sequence[tuple[int, int, int, float, int]],
) -> list[int] | None:
    # Loaded with the first plan (see the module docstring).
    import highspy
    import numpy as np

    n = len(pairs)
    groups = len(free)
    # Rows: one per population (demand), then cpu, memory and pods per group.
    rows_of_pop = {pi: r for r, pi in enumerate(sorted({p[0] for p in pairs}))}
    base = len(rows_of_pop)
    starts, index, value = [0], [], []
    for pi, g, _, _, unit in pairs:
        pop = pops[pi]
        entries = [(rows_of_pop[pi], float(unit))]
        if pop.milli_cpu:
            entries.append((base + 3 * g, float(pop.milli_cpu * unit)))
        if pop.memory:
            entries.append((base + 3 * g + 1, float(pop.memory * unit)))
        entries.append((base + 3 * g + 2, float(unit)))
        for r, v in entries:
            index.append(r)
            value.append(v)
        starts.append(len(index))
    upper_rows = [0.0] * (base + 3 * groups)
    for pi, r in rows_of_pop.items():
        upper_rows[r] = float(pops[pi].demand)
    for g, rooms in enumerate(free):
        upper_rows[base + 3 * g] = float(sum(max(f[0], 0) for f in rooms))
        upper_rows[base + 3 * g + 1] = float(sum(max(f[1], 0) for f in rooms))
        upper_rows[base + 3 * g + 2] = float(sum(max(f[2], 0) for f in rooms))
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = len(upper_rows)
    lp.col_cost_ = np.array([p[3] for p in pairs], dtype=np.float64)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.array([float(u) for _, _, u, _, _ in pairs])
    lp.row_lower_ = np.full(len(upper_rows), -highspy.kHighsInf)
    lp.row_upper_ = np.array(upper_rows)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(value, dtype=np.float64)
    # Whole pods: a fractional split, rounded, would promise a group more than its room.
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", TIME_LIMIT_S)
    h.setOptionValue("mip_rel_gap", 1e-3)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    solved = status == highspy.HighsModelStatus.kOptimal or (
        status == highspy.HighsModelStatus.kTimeLimit and h.getInfo().primal_solution_status == 2
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
        pops = [population(pod, key, n) for key, (pod, n) in self._demand.populations().items()]
        self._plan = make_plan(pops, self._nodes(), self._rtt) if pops else None
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


def describe(plan: Plan) -> Mapping[str, Any]:
    """The plan in a form for logs and tests."""
    return {"groups": len(set(plan.group_of.values())), "solve_ms": round(plan.solve_ms, 2)}
