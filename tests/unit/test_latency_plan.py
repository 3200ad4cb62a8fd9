"""The latency plan: the pending (and expected) latency pods split over groups of like
nodes by a linear program, and LatencyScore putting a pod's planned nodes first."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Hashable, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import CycleState
from lasched.latency.cache import LatencyCache
from lasched.latency.demand import LatencyDemand
from lasched.latency.plan import Planner, Population, make_plan, planned_rtt, population_key
from lasched.model.latencyreq import Preference, RttLimit
from lasched.model.pod import PodInfo
from lasched.model.podgroup import OwnerRef, OwnerSize
from lasched.plugins.latency import LatencyScore
from tests.unit.factories import make_node, pod_json

GIB = 1024**3
MIB = 1024**2


def pod(
    name: str,
    annotations: dict[str, str],
    *,
    memory: str = "256Mi",
    owner: str | None = None,
    node: str = "",
    priority: int | None = None,
) -> PodInfo:
    body: dict[str, Any] = pod_json(
        name, cpu="100m", memory=memory, node=node, priority=priority,
        controller=("ReplicaSet", owner) if owner else None,
    )  # fmt: skip
    body["metadata"]["annotations"] = annotations
    return PodInfo(body)


def nodes_and_rtts(
    sites: Mapping[str, tuple[int, str]], rtts: Mapping[tuple[str, str], float]
) -> tuple[list[NodeInfo], LatencyCache]:
    """``sites``: site -> (nodes, memory each); ``rtts``: (place, site) -> ms."""
    cache = LatencyCache(ttl_seconds=3600)
    nodes = []
    for site, (count, memory) in sites.items():
        for i in range(count):
            name = f"{site}-{i}"
            nodes.append(NodeInfo(make_node(name, memory=memory)))
            for (place, s), ms in rtts.items():
                if s == site:
                    cache.observe(place, name, median_ms=ms, samples=5)
    return nodes, cache


def rtt_of(cache: LatencyCache) -> Any:
    return lambda place, node: planned_rtt(cache, place, node)


def test_near_room_goes_to_the_pods_that_lose_most_without_it() -> None:
    # Site a holds 2 GiB. Big pods' users are 1 ms from a and 2 ms from b; small pods'
    # users are 1 ms from a and 20 ms from everywhere else. Greedy would give a to whoever
    # came first; the plan gives it to the small pods.
    nodes, cache = nodes_and_rtts(
        {"a": (1, "2Gi"), "b": (1, "8Gi"), "c": (1, "8Gi")},
        {("big", "a"): 1, ("big", "b"): 2, ("big", "c"): 30,
         ("small", "a"): 1, ("small", "b"): 20, ("small", "c"): 20},
    )  # fmt: skip
    big = Population("big", (Preference("big", 1),), (), 100, GIB, 0, 2)
    small = Population("small", (Preference("small", 1),), (), 100, 256 * MIB, 0, 8)
    plan = make_plan([big, small], nodes, rtt_of(cache))
    assert plan is not None
    assert plan.nodes("small") == frozenset({"a-0"})
    assert plan.nodes("big") == frozenset({"b-0"})
    assert plan.planned("small") == 8 and plan.planned("big") == 2


def test_a_hard_limit_keeps_a_population_out_of_far_groups_and_priority_goes_first() -> None:
    nodes, cache = nodes_and_rtts(
        {"a": (1, "1Gi"), "b": (1, "8Gi")},
        {("u", "a"): 1, ("u", "b"): 40},
    )
    limit = (RttLimit("u", 10, "lasched.io/max-rtt"),)
    low = Population("low", (Preference("u", 1),), limit, 100, GIB, 0, 1)
    high = Population("high", (Preference("u", 1),), limit, 100, GIB, 1000, 1)
    plan = make_plan([low, high], nodes, rtt_of(cache))
    assert plan is not None
    assert plan.nodes("high") == frozenset({"a-0"})
    assert plan.nodes("low") == frozenset()  # b is beyond its limit and a is taken


def test_a_gang_is_planned_whole_within_its_budget() -> None:
    # Three members; a holds two, 1 ms from the users; b one more, 2 ms, but 10 ms from a;
    # c three, 5 ms, 1.5 ms from a. Within a 2 ms budget: two on a and one on c.
    cache = LatencyCache(ttl_seconds=3600)
    nodes = [NodeInfo(make_node(n, pods=p)) for n, p in (("a-0", "2"), ("b-0", "1"), ("c-0", "3"))]
    for place, node, ms in (
        ("users", "a-0", 1), ("users", "b-0", 2), ("users", "c-0", 5),
        ("a-0", "b-0", 10), ("a-0", "c-0", 1.5), ("b-0", "c-0", 10),
    ):  # fmt: skip
        cache.observe(place, node, median_ms=ms, samples=5)
    gang = Population("gang", (Preference("users", 1),), (), 100, MIB, 0, 3, budget_ms=2)
    plan = make_plan([gang], nodes, rtt_of(cache))
    assert plan is not None
    groups = {n: plan.group_of[n] for n in ("a-0", "b-0", "c-0")}
    assert plan.quota["gang"] == {groups["a-0"]: 2, groups["c-0"]: 1}
    loose = Population("loose", (Preference("users", 1),), (), 100, MIB, 0, 3)
    plan = make_plan([loose], nodes, rtt_of(cache))
    assert plan is not None
    assert plan.quota["loose"] == {groups["a-0"]: 2, groups["b-0"]: 1}
    # Within 0.5 ms no two groups may be used together: all three on c, which holds them.
    tight = Population("tight", (Preference("users", 1),), (), 100, MIB, 0, 3, budget_ms=0.5)
    plan = make_plan([tight], nodes, rtt_of(cache))
    assert plan is not None
    assert plan.quota["tight"] == {groups["c-0"]: 3}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 12),  # demand
            st.sampled_from([128, 256, 512, 1024, 2048]),  # MiB
            st.sampled_from([0, 1000]),  # priority
            st.sampled_from(["u1", "u2"]),  # users
            st.one_of(st.none(), st.floats(2, 30)),  # hard limit, ms
        ),
        min_size=1,
        max_size=6,
    ),
    st.lists(st.integers(1, 8), min_size=3, max_size=3),  # GiB per node, per site
)
def test_a_plan_never_exceeds_demand_room_or_a_limit(
    pops_spec: list[tuple[int, int, int, str, float | None]], gib: list[int]
) -> None:
    rtts = {("u1", "s0"): 1.0, ("u1", "s1"): 8.0, ("u1", "s2"): 25.0,
            ("u2", "s0"): 6.0, ("u2", "s1"): 2.0, ("u2", "s2"): 25.0}  # fmt: skip
    nodes, cache = nodes_and_rtts({f"s{i}": (2, f"{g}Gi") for i, g in enumerate(gib)}, rtts)
    pops = [
        Population(
            i,
            (Preference(users, 1),),
            (RttLimit(users, limit, "max-rtt"),) if limit is not None else (),
            100,
            mib * MIB,
            prio,
            demand,
        )
        for i, (demand, mib, prio, users, limit) in enumerate(pops_spec)
    ]
    plan = make_plan(pops, nodes, rtt_of(cache))
    if plan is None:
        return
    used = dict.fromkeys(set(plan.group_of.values()), 0)
    for p in pops:
        assert plan.planned(p.key) <= p.demand
        for g, k in plan.quota[p.key].items():
            used[g] += k * p.memory
            for lim in p.limits:
                site = next(n for n, gg in plan.group_of.items() if gg == g).split("-")[0]
                assert rtts[(lim.place, site)] <= lim.max_ms + 0.05
    for g, mem in used.items():
        room = sum(
            ni.node.allocatable.memory for ni in nodes
            if ni.node is not None and plan.group_of[ni.name] == g
        )  # fmt: skip
        assert mem <= room


class _Demand:
    def __init__(self, pops: dict[Hashable, tuple[PodInfo, int]]) -> None:
        self.pops = pops

    def key(self, pod: PodInfo) -> Hashable | None:
        return population_key(pod)

    def populations(self) -> Mapping[Hashable, tuple[PodInfo, int]]:
        return self.pops


def test_the_planner_plans_again_when_a_pod_lands_off_its_plan_or_the_rtts_change() -> None:
    nodes, cache = nodes_and_rtts(
        {"a": (1, "4Gi"), "b": (1, "4Gi")}, {("u", "a"): 1, ("u", "b"): 5}
    )
    p = pod("p", {"lasched.io/prefer-low-rtt": "u"})
    key = population_key(p)
    demand = _Demand({key: (p, 2)})
    planner = Planner(demand, nodes=lambda: nodes, rtt=rtt_of(cache), version=lambda: cache.version)
    assert planner.nodes_for(p) == frozenset({"a-0"})
    assert planner.plans == 1
    planner.placed(p, "a-0")
    demand.pops = {key: (p, 1)}
    assert planner.nodes_for(p) == frozenset({"a-0"})  # one left on a's quota: no new plan
    assert planner.plans == 1
    planner.placed(p, "b-0")  # off the plan
    assert planner.nodes_for(p) == frozenset({"a-0"})
    assert planner.plans == 2
    for _ in range(30):  # the cache smooths: many reports to move it
        cache.observe("u", "b-0", median_ms=0.5, samples=5)
    assert planner.nodes_for(p) == frozenset({"b-0"})
    assert planner.plans == 3


def test_nodes_are_grouped_again_only_when_the_rtts_or_the_nodes_change() -> None:
    nodes, cache = nodes_and_rtts(
        {"a": (3, "4Gi"), "b": (3, "4Gi")}, {("u", "a"): 1, ("u", "b"): 5}
    )
    calls = 0

    def rtt(place: str, node: str) -> float | None:
        nonlocal calls
        calls += 1
        return planned_rtt(cache, place, node)

    p = pod("p", {"lasched.io/prefer-low-rtt": "u"})
    demand = _Demand({population_key(p): (p, 2)})
    version = 0
    planner = Planner(demand, nodes=lambda: nodes, rtt=rtt, version=lambda: version)
    planner.nodes_for(p)
    assert calls == 6  # one lookup per node and place
    planner.placed(p, "b-0")  # off the plan: plan again, with the same groups
    planner.nodes_for(p)
    assert (planner.plans, calls) == (2, 6)
    version = 1
    planner.nodes_for(p)
    assert (planner.plans, calls) == (3, 12)


def test_latency_score_puts_the_planned_nodes_first_and_keeps_such_pods_out_of_batches() -> None:
    nodes, cache = nodes_and_rtts(
        {"a": (1, "1Gi"), "b": (1, "8Gi")},
        {("big", "a"): 1, ("big", "b"): 2, ("small", "a"): 1, ("small", "b"): 20},
    )
    big = pod("big-0", {"lasched.io/prefer-low-rtt": "big"}, memory="1Gi")
    small = pod("small-0", {"lasched.io/prefer-low-rtt": "small"})
    demand = _Demand({population_key(big): (big, 1), population_key(small): (small, 4)})
    planner = Planner(demand, nodes=lambda: nodes, rtt=rtt_of(cache), version=lambda: 0)
    score = LatencyScore(cache, planner=planner)
    state = CycleState()
    assert score.pre_score(state, big, nodes).ok
    scores = [score.score(state, big, n) for n in nodes]
    score.normalize(state, big, scores)
    assert scores[1] == 100 and scores[0] < 10  # b, though a is nearer: a is the small pods'
    assert score.sign_pod(big) is None
    assert LatencyScore(cache).sign_pod(big) == ()
    assert score.unplanned().planner is None and score.unplanned().sign_pod(big) == ()


def test_demand_counts_pending_pods_and_what_their_controller_will_still_create() -> None:
    sizes = {"rs-1": 5}
    demand = LatencyDemand(
        owner_size=lambda ns, ref: OwnerSize(sizes.get(ref.uid), f"{ref.kind} {ref.name}")
    )
    ann = {"lasched.io/prefer-low-rtt": "u"}
    first, second = pod("p1", ann, owner="rs-1"), pod("p2", ann, owner="rs-1")
    bare = pod("bare", ann)
    demand.seen(first, pending=True)
    demand.seen(second, pending=True)
    demand.seen(bare, pending=True)
    demand.seen(pod("plain", {}), pending=True)  # no latency requirement: not demand
    pops = demand.populations()
    assert pops[demand.key(first)][1] == 5  # 2 pending + 3 the ReplicaSet will create
    assert pops[demand.key(bare)][1] == 1
    demand.placed(first)
    assert demand.populations()[demand.key(first)][1] == 4  # 1 pending + 3 to come
    demand.seen(pod("p1", ann, owner="rs-1", node="n1"), pending=False)
    demand.placed(second)
    assert demand.populations()[demand.key(first)][1] == 3  # none pending, 3 to come
    demand.gone(first)  # deleted: its ReplicaSet will make one more
    assert demand.populations()[demand.key(first)][1] == 4
    demand.gone(second)
    demand.gone(bare)
    assert demand.populations() == {}


def test_an_owner_being_read_adds_nothing_yet() -> None:
    demand = LatencyDemand(owner_size=lambda ns, ref: None)
    p = pod("p1", {"lasched.io/prefer-low-rtt": "u"}, owner="rs-1")
    demand.seen(p, pending=True)
    assert demand.populations()[demand.key(p)][1] == 1
    assert isinstance(p.owner, OwnerRef)


def test_a_plan_prints_nothing_on_standard_output() -> None:
    """HiGHS prints its banner when a process makes its first solver; lasched's output
    stays its log lines. (The control: a bare first solver does print it.)"""
    bare = subprocess.run(
        [sys.executable, "-c", "import highspy; highspy.Highs()"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "HiGHS" in bare.stdout
    ours = subprocess.run(
        [
            sys.executable, "-c",
            "import highspy; from lasched.latency.plan import _solver; "
            "_solver(highspy); _solver(highspy); print('after')",
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert ours.stdout == "after\n"
