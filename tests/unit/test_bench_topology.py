"""bench.topology and bench.milp: generated edge topologies and their exact optimum, and
the pieces of the benchmarks that need no cluster (workload interpretation, rotation)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import milp, topology, verify, workloads
from bench.throughput import rotation
from bench.topology import Node, PodClass, Site, Topology, Users

SMALL = topology.Sizes(regions=2, edge_sites=(1, 2), edge_nodes=(1, 3), cloud_nodes=(1, 2))


def test_a_seed_gives_the_same_topology() -> None:
    a, b = topology.generate(7), topology.generate(7)
    assert a.nodes == b.nodes and a.classes == b.classes and a.site_rtt == b.site_rtt
    assert topology.generate(8).nodes != a.nodes


@pytest.mark.parametrize("seed", range(1, 6))
def test_generated_topologies_are_sane(seed: int) -> None:
    topo = topology.generate(seed)
    sites = {s.name: s for s in topo.sites}
    assert {s.tier for s in topo.sites} == {"edge", "cloud"}
    assert len({s.region for s in topo.sites}) == 3
    assert all(sites[u.site].tier == "edge" for u in topo.users)
    # Symmetric, positive, and a site is nearest to itself.
    for (a, b), ms in topo.site_rtt.items():
        assert ms == topo.site_rtt[(b, a)] and ms > 0
        assert topo.site_rtt[(a, a)] <= ms
    # Nodes vary in capacity; every hard class has a limit at or above its best RTT.
    assert len({(n.cpu_milli, n.memory_mi) for n in topo.nodes}) > 1
    for c in topo.classes:
        best = min(topo.users_rtt[(c.users, s)] for s in sites)
        if c.kind == "hard":
            assert c.max_rtt_ms is not None and c.max_rtt_ms >= best
    # The matrix lasched's agents report covers every node pair and user population.
    m = topo.matrix()
    assert set(m) == {n.name for n in topo.nodes}
    n0 = topo.nodes[0].name
    assert len(m[n0]) == len(topo.nodes) - 1 + len(topo.users)
    assert topo.rtt(n0, topo.users[0].name) == m[n0][topo.users[0].name]
    assert topo.rtt("no-such-node", topo.users[0].name) is None


@pytest.mark.parametrize("seed", range(1, 6))
def test_the_optimum_places_every_hard_pod_and_passes_the_verifier(seed: int) -> None:
    topo = topology.generate(seed)
    best = milp.optimum(topo)
    assert best.gap == 0.0
    for c in topo.classes:
        if c.kind == "hard":
            assert best.placed.get(c.name, 0) == c.count
    # The optimum's placement, as pods on nodes, breaks no capacity or max-rtt rule.
    classes = {c.name: c for c in topo.classes}
    pods = []
    for (cname, node), k in best.assignment.items():
        c = classes[cname]
        ann = {verify.MAX_RTT_ANNOTATION: f"{c.users}={c.max_rtt_ms:g}ms"} if c.max_rtt_ms else {}
        for i in range(k):
            pods.append(
                verify.Pod(
                    "ns",
                    f"{cname}-{node}-{i}",
                    node,
                    annotations=ann,
                    cpu_milli=c.cpu_milli,
                    memory=c.memory_mi * 2**20,
                )
            )
    state = verify.State(
        nodes={
            n.name: verify.Node(
                n.name,
                cpu_milli=n.cpu_milli,
                memory=n.memory_mi * 2**20,
                pods=n.pods - milp.RESERVED_PODS,
            )
            for n in topo.nodes
        },
        pods=pods,
    )
    verdict = verify.verify(state, rules=[verify.CAPACITY, verify.MAX_RTT], rtt=topo.rtt)
    assert verdict.ok, verdict.summary()
    assert len(best.rtts_ms) == best.pods
    assert math.isclose(best.mean_rtt_ms, sum(best.rtts_ms) / best.pods)


def _tiny(classes: list[PodClass], nodes: list[Node]) -> Topology:
    sites = tuple(Site(s, "r1", "edge", 0, 0, 1.0) for s in sorted({n.site for n in nodes}))
    users = (Users("users-a", "a", 1.0), Users("users-b", "b", 1.0))
    users_rtt = {
        ("users-a", "a"): 2.0,
        ("users-a", "b"): 10.0,
        ("users-b", "a"): 9.0,
        ("users-b", "b"): 3.0,
    }
    site_rtt = {(x.name, y.name): 5.0 for x in sites for y in sites}
    return Topology(1, sites, tuple(nodes), users, tuple(classes), site_rtt, users_rtt)


def test_the_optimum_against_brute_force() -> None:
    """Two one-slot-ish nodes, three pods: every assignment tried by hand."""
    nodes = [Node("na", "a", 1000, 4096), Node("nb", "b", 1000, 4096)]
    classes = [
        PodClass("a-soft", "users-a", "soft", 2, 500, 512),
        PodClass("b-hard", "users-b", "hard", 1, 1000, 512, max_rtt_ms=5.0),
    ]
    best = milp.optimum(_tiny(classes, nodes))
    # b-hard must take nb whole (3 ms); both a-soft pods go to na (2 ms each).
    assert best.placed == {"a-soft": 2, "b-hard": 1}
    assert best.assignment == {("a-soft", "na"): 2, ("b-hard", "nb"): 1}
    assert best.rtts_ms == [2.0, 2.0, 3.0]


def test_hard_pods_first_then_count_then_rtt() -> None:
    """One node's room: the hard pod wins it over two soft pods that would fit."""
    nodes = [Node("nb", "b", 1000, 4096)]
    classes = [
        PodClass("a-soft", "users-a", "soft", 2, 500, 512),
        PodClass("b-hard", "users-b", "hard", 1, 1000, 512, max_rtt_ms=5.0),
    ]
    best = milp.optimum(_tiny(classes, nodes))
    assert best.placed == {"b-hard": 1}
    # A hard limit no node meets leaves the hard pod out; then the soft pods get the room.
    classes[1] = PodClass("b-hard", "users-b", "hard", 1, 1000, 512, max_rtt_ms=1.0)
    assert milp.optimum(_tiny(classes, nodes)).placed == {"a-soft": 2}


def _gang_on_one_site(
    topo: topology.Topology, c: PodClass, room: dict[str, list[int]]
) -> list[float]:
    """Place gang ``c`` on the nearest site that holds all its members; their RTTs, or []."""
    for rtt, site in sorted(
        (rtt, site) for (u, site), rtt in topo.users_rtt.items() if u == c.users
    ):
        trial = {n.name: list(room[n.name]) for n in topo.nodes if n.site == site}
        left = c.count
        for r in trial.values():
            while left and r[0] >= c.cpu_milli and r[1] >= c.memory_mi and r[2] >= 1:
                r[0], r[1], r[2], left = r[0] - c.cpu_milli, r[1] - c.memory_mi, r[2] - 1, left - 1
        if not left:
            room.update(trial)
            return [rtt] * c.count
    return []


def test_a_gang_is_placed_whole_and_within_its_budget_or_not_at_all() -> None:
    """Sites a and b are 5 ms apart; a gang of 3 (one member per node) needs both."""
    nodes = [
        Node("na", "a", 1000, 4096),
        Node("nb0", "b", 1000, 4096),
        Node("nb1", "b", 1000, 4096),
    ]
    gang = PodClass("a-gang", "users-a", "gang", 3, 1000, 512, budget_ms=4.0)
    assert milp.optimum(_tiny([gang], nodes)).placed == {}  # 5 ms > 4 ms: not even two of them
    wide = PodClass("a-gang", "users-a", "gang", 3, 1000, 512, budget_ms=5.0)
    best = milp.optimum(_tiny([wide], nodes))
    assert best.placed == {"a-gang": 3}
    assert best.rtts_ms == [2.0, 10.0, 10.0]


@settings(max_examples=25)
@given(st.integers(0, 10_000))
def test_generated_optimum_beats_a_greedy_placement(seed: int) -> None:
    """On small generated topologies the optimum does at least as well as a greedy one."""
    topo = topology.generate(seed, SMALL)
    best = milp.optimum(topo)
    # A greedy placement (hard pods first, each to its nearest node with room) is feasible:
    # the optimum places at least as many pods, and with as many, no more total RTT.
    room = {n.name: [n.cpu_milli, n.memory_mi, n.pods - milp.RESERVED_PODS] for n in topo.nodes}
    placed, total = 0, 0.0
    for c in sorted(topo.classes, key=lambda c: c.kind != "hard"):
        if c.budget_ms is not None:  # a gang: whole, on one site (within any budget), or not
            got = _gang_on_one_site(topo, c, room)
            placed += len(got)
            total += sum(got)
            continue
        for _ in range(c.count):
            options = sorted(
                (topo.users_rtt[(c.users, n.site)], n.name)
                for n in topo.nodes
                if room[n.name][0] >= c.cpu_milli
                and room[n.name][1] >= c.memory_mi
                and room[n.name][2] >= 1
                and (c.max_rtt_ms is None or topo.users_rtt[(c.users, n.site)] <= c.max_rtt_ms)
            )
            if not options:
                continue
            rtt, name = options[0]
            room[name][0] -= c.cpu_milli
            room[name][1] -= c.memory_mi
            room[name][2] -= 1
            placed += 1
            total += rtt
    assert best.pods >= placed
    if best.pods == placed:
        assert sum(best.rtts_ms) <= total + 1e-6


def test_rotation_is_a_latin_square() -> None:
    peers = ["a", "b", "c"]
    square = [rotation(peers, r) for r in range(3)]
    assert square == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    for column in zip(*square, strict=True):
        assert sorted(column) == peers
    assert rotation(peers, 4) == square[1]
    assert rotation([], 2) == []


@pytest.mark.parametrize("name", workloads.WORKLOADS)
def test_every_workload_interprets(name: str) -> None:
    wl = workloads.build(name, 50, seed=3, node_prefix="w0")
    assert len(wl.nodes) == 50
    steps = wl.steps("lasched", "p0r0")
    ops = [s for s in steps if isinstance(s, workloads.PodOp)]
    assert sum(1 for s in ops if s.measured) == 1
    names = [n for s in ops for n in s.names]
    assert len(names) == len(set(names))
    for s in ops:
        for body in s.bodies:
            assert body["spec"]["schedulerName"] == "lasched"
            assert "priority" not in body["spec"]
            assert body["metadata"]["name"].count("p0r0") == 1
    # Another phase gets other names: no Event of one phase is taken for another's.
    other = [
        n for s in wl.steps("lasched", "p1r0") if isinstance(s, workloads.PodOp) for n in s.names
    ]
    assert not set(other) & set(names)


def test_workload_params_are_scaled_from_the_reference_variant() -> None:
    cases = workloads.load_cases()
    how, params = workloads.choose_params(cases["SchedulingBasic"], 500)
    assert (how, params) == ("500Nodes", {"initNodes": 500, "initPods": 500, "measurePods": 1000})
    how, params = workloads.choose_params(cases["PreemptionBasic"], 100)
    assert how == "1000Nodes scaled by 0.1"
    assert params == {"initNodes": 100, "initPods": 400, "measurePods": 100}


def test_topology_spreading_nodes_get_zones_round_robin() -> None:
    wl = workloads.build("TopologySpreading", 6, seed=1, node_prefix="w")
    zones = [n.labels["topology.kubernetes.io/zone"] for n in wl.nodes]
    assert zones == ["moon-1", "moon-2", "moon-3"] * 2


def test_preemption_priority_becomes_a_class() -> None:
    wl = workloads.build("PreemptionBasic", 10, seed=1, node_prefix="w")
    assert wl.priority_classes == {"scheduler-perf-10": 10}
    measured = next(s for s in wl.steps("x", "t") if isinstance(s, workloads.PodOp) and s.measured)
    assert measured.bodies[0]["spec"]["priorityClassName"] == "scheduler-perf-10"


def test_unsupported_ops_are_refused_by_name() -> None:
    case = {
        "name": "X",
        "workloadTemplate": [{"opcode": "churn"}],
        "workloads": [{"name": "500Nodes", "params": {"initNodes": 500}}],
    }
    with pytest.raises(workloads.UnsupportedOp, match="churn"):
        workloads.from_case(case, 10, node_prefix="w")


def test_mixed_shapes_are_mixed() -> None:
    wl = workloads.build(workloads.MIXED_SHAPES, 200, seed=5, node_prefix="m")
    bodies = [
        b for s in wl.steps("lasched", "t") if isinstance(s, workloads.PodOp) for b in s.bodies
    ]
    shapes = {b["metadata"]["labels"]["shape"] for b in bodies}
    affinity = sum(1 for b in bodies if "affinity" in b["spec"]) / len(bodies)
    tolerant = sum(1 for b in bodies if "tolerations" in b["spec"]) / len(bodies)
    classes = {b["spec"].get("priorityClassName") for b in bodies}
    assert len(shapes) >= 15
    assert 0.10 < affinity < 0.20
    assert 0.05 < tolerant < 0.15
    assert classes == {None, "bench-mixed-100", "bench-mixed-1000"}
    assert any(n.taints for n in wl.nodes)
    # Consecutive pods differ most of the time.
    same = sum(
        1
        for a, b in itertools.pairwise(bodies)
        if a["metadata"]["labels"]["shape"] == b["metadata"]["labels"]["shape"]
    )
    assert same / len(bodies) < 0.2


def test_the_fixed_topology_is_the_earlier_scenarios() -> None:
    """60 nodes, 360 pods, and the exact optimum's mean RTT the earlier results state
    (10.4 ms: docs/benchmarks.md, Earlier results, latency)."""
    from bench import milp

    topo = topology.fixed()
    assert len(topo.nodes) == 60
    assert topo.pods() == 360
    assert round(milp.optimum(topo).mean_rtt_ms, 1) == 10.4
