"""bench.drift without a cluster: which routes degrade, how recoveries are matched, the report."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from bench import drift
from bench.drift import Placed, Route
from bench.topology import Node, PodClass, Site, Topology, Users


def _topo() -> Topology:
    """Site a (users-a's own, two small nodes), site b near enough (8 ms), cloud c too far."""
    sites = (
        Site("a", "r1", "edge", 0, 0, 1.0),
        Site("b", "r1", "edge", 100, 0, 1.0),
        Site("c", "r1", "cloud", 900, 0, 5.0),
    )
    nodes = (
        Node("a-0", "a", 1000, 2048),
        Node("a-1", "a", 1000, 2048),
        Node("b-0", "b", 1000, 2048),
        Node("c-0", "c", 16000, 65536),
    )
    names = [s.name for s in sites]
    site_rtt = {(x, y): (0.3 if x == y else 10.0) for x in names for y in names}
    users_rtt = {("users-a", "a"): 3.0, ("users-a", "b"): 8.0, ("users-a", "c"): 30.0}
    classes = (
        PodClass("a-hard", "users-a", "hard", 3, 500, 512, max_rtt_ms=10.0),
        PodClass("a-soft", "users-a", "soft", 1, 250, 256),
        PodClass("a-gang", "users-a", "gang", 3, 250, 256, budget_ms=2.0),
    )
    return Topology(7, sites, nodes, (Users("users-a", "a", 1.0),), classes, site_rtt, users_rtt)


def test_a_route_is_chosen_only_when_its_pods_have_room_within_their_limit() -> None:
    """Whichever route is drawn first takes the room within reach (a-1's and b-0's); the
    other then has none, or is a node planned to take a moved pod, and stays."""
    placed = [
        Placed("h-0", "a-hard", "a-0"),
        Placed("h-1", "a-hard", "a-0"),
        Placed("h-2", "a-hard", "a-1"),
    ]
    routes = drift.choose_routes(_topo(), placed, count=2, degrade_ms=20.0, rng=random.Random(1))
    assert len(routes) == 1
    (route,) = routes
    assert route.limit_ms == 10.0 and route.after_ms == 30.0 and route.before_ms == 3.0
    assert route.pods in {("h-0", "h-1"), ("h-2",)}


def test_soft_pods_take_room_but_never_make_a_route() -> None:
    """Soft pods filling a-1 and b-0 leave the hard pod nowhere to go: no route is chosen."""
    soft = [Placed(f"s-{n}-{i}", "a-soft", n) for n in ("a-1", "b-0") for i in range(4)]
    placed = [Placed("h-0", "a-hard", "a-0"), *soft]
    assert drift.choose_routes(_topo(), placed, count=3, degrade_ms=20, rng=random.Random(1)) == []


def test_drifted_changes_only_the_routes() -> None:
    """The degraded route measures its new RTT; every other entry is the topology's."""
    topo = _topo()
    route = Route("a-0", "users-a", 10.0, 3.0, 30.0, ("h-0",))
    matrix = drift.drifted(topo, [route])
    assert matrix["a-0"]["users-a"] == 30.0
    assert matrix["a-1"]["users-a"] == 3.0 == topo.matrix()["a-0"]["users-a"]


def test_the_kth_binding_within_the_limit_recovers_the_kth_pod_deleted() -> None:
    """New pods of the class, bound within the limit, recover the affected pods in deletion
    order; a new pod beyond the limit and a pod of another class recover nothing."""
    routes = [Route("a-0", "users-a", 10.0, 3.0, 30.0, ("h-0", "h-1"))]
    class_of = {"h-0": "a-hard", "h-1": "a-hard", "n-0": "a-hard", "n-1": "a-hard"}
    class_of |= {"n-far": "a-hard", "s-new": "a-soft"}
    found = drift.recoveries(
        routes,
        class_of=class_of,
        within={"n-0": True, "n-1": True, "n-far": False, "s-new": True},
        before={"h-0", "h-1"},
        bound={"h-0": 1.0, "h-1": 1.0, "n-0": 106.0, "n-1": 117.0, "n-far": 105.0, "s-new": 104.0},
        deleted={"h-1": 105.5, "h-0": 116.0},
        changed=100.0,
    )
    assert found == {"h-1": 6.0, "h-0": 17.0}


def test_an_affected_pod_without_a_replacement_is_not_recovered() -> None:
    """No new pod bound within the limit: None."""
    routes = [Route("a-0", "users-a", 10.0, 3.0, 30.0, ("h-0",))]
    found = drift.recoveries(
        routes,
        class_of={"h-0": "a-hard"},
        within={},
        before={"h-0"},
        bound={"h-0": 1.0},
        deleted={},
        changed=100.0,
    )
    assert found == {"h-0": None}


def test_workload_is_replica_sets_and_budgets_for_hard_classes() -> None:
    """Hard and soft classes become ReplicaSets (gangs are left out); a hard class of two or
    more pods gets a maxUnavailable 1 budget selecting its pods."""
    topo = _topo()
    sets = drift.replica_sets(topo, "lasched")
    assert [rs["metadata"]["name"] for rs in sets] == ["a-hard", "a-soft"]
    hard = sets[0]["spec"]
    labels = hard["template"]["metadata"]["labels"]
    assert hard["selector"]["matchLabels"].items() <= labels.items()
    assert hard["template"]["metadata"]["annotations"]["lasched.io/max-rtt"] == "users-a=10ms"
    assert hard["template"]["spec"]["schedulerName"] == "lasched"
    (pdb,) = drift.budgets(topo)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"] == hard["selector"]


def _sample(**over: Any) -> drift.Sample:
    base = drift.Sample(
        seed=1, nodes=4, pods=4, bound=4, budgets=1,
        routes=[Route("a-0", "users-a", 10.0, 3.0, 30.0, ("h-0", "h-1"))],
        affected=2, recovered=2, recovery_s=[6.0], deferred_s=[17.0], evicted_s=[5.9, 16.9],
        evictions=2, unneeded_evictions=0, pdb_refused=1, pdb_violations=0, beyond_limit=0,
    )  # fmt: skip
    return dataclasses.replace(base, **over)


def test_failures_hold_first_tries_to_the_target_and_budgets_to_zero_violations() -> None:
    """A deferred pod's longer recovery is no failure; a late first try, an unrecovered pod,
    a violated budget and an unneeded eviction each are."""
    cfg = drift.Config(grace_seconds=5)
    assert drift.failures(_sample(), cfg) == []
    bad = _sample(recovery_s=[11.0], recovered=1, pdb_violations=1, unneeded_evictions=2)
    text = " | ".join(drift.failures(bad, cfg))
    assert "1 of 2 affected pods not recovered" in text
    assert "later than grace + 5 s (longest 11.0 s)" in text
    assert "1 PodDisruptionBudget(s) violated" in text
    assert "2 pod(s) evicted that no route affected" in text


def test_markdown_has_a_row_per_seed_and_names_the_routes() -> None:
    """The table's row, the totals and the routes, from the JSON result."""
    result = drift.to_json(drift.Config(), [_sample()], {"machine": "m", "command": "c"})
    text = drift.markdown(result)
    assert "| 1 | 4 | 4 | 1 | 2 | 2 | 6.0 | 1, 17.0 | 2 (0) | 1 | 0 | 0 |" in text
    assert "deferred by a budget: 1 in 17.0 s" in text
    assert "- seed 1: a-0 -> users-a: 3 -> 30 ms (limit 10 ms), 2 pod(s)" in text
    assert result["failed"] == []
