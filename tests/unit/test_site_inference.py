"""lasched.latency.inference: stable names, tiers, hysteresis; the benchmark's topologies."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import numpy as np
import pytest

from bench import topology
from lasched.latency.inference import (
    CLOUD,
    EDGE,
    TIER_LABEL,
    Place,
    TopologyInference,
    label_patch,
)
from lasched.latency.sites import RttMatrix
from lasched.settings import DEFAULT_TOPOLOGY_LAYERS, TopologyLayer

SITE = "topology.lasched.io/site"
REGION = "topology.lasched.io/region"


def adjusted_rand_index(a: list[str], b: list[str]) -> float:
    """Hubert and Arabie's adjusted Rand index of two labelings of the same items."""
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1))
    np.add.at(table, (ai, bi), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    index, rows, cols = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / (len(a) * (len(a) - 1) / 2)
    best = (rows + cols) / 2
    return 1.0 if best == expected else (index - expected) / (best - expected)


def test_adjusted_rand_index() -> None:
    """Equal partitions score 1 whatever the names; a random split scores near 0."""
    assert adjusted_rand_index(["x", "x", "y"], ["b", "b", "a"]) == 1.0
    rng = random.Random(1)
    a = [rng.choice("ab") for _ in range(400)]
    b = [rng.choice("ab") for _ in range(400)]
    assert abs(adjusted_rand_index(a, b)) < 0.05


def rtts(pairs: Mapping[str, Mapping[str, float]], nodes: Iterable[str] | None = None) -> RttMatrix:
    m = RttMatrix(nodes if nodes is not None else pairs)
    m.add_all((src, dst, ms) for src, row in pairs.items() for dst, ms in row.items())
    return m


def sites_matrix(
    members: Mapping[str, str], within: float = 0.3, across: float = 10.0
) -> RttMatrix:
    """Every node to every other: ``within`` ms in one site, ``across`` between sites."""
    return rtts(
        {
            a: {b: within if members[a] == members[b] else across for b in members if b != a}
            for a in members
        }
    )


def inference(hold: float = 60.0) -> TopologyInference:
    return TopologyInference(layers=DEFAULT_TOPOLOGY_LAYERS, hold_seconds=hold)


def no_cloud(_: str) -> bool:
    return False


def test_first_proposal_is_taken_at_once() -> None:
    """Nodes seen for the first time are placed at once, sites named site-0, site-1."""
    inf = inference()
    moved = inf.update(sites_matrix({"a1": "A", "a2": "A", "b1": "B"}), cloud=no_cloud, now=0.0)
    assert sorted(moved) == ["a1", "a2", "b1"]
    assert inf.place("a1") == inf.place("a2") == Place(("site-0", "region-0"), EDGE)
    assert inf.place("b1") == Place(("site-1", "region-0"), EDGE)
    assert inf.labels("b1") == {SITE: "site-1", REGION: "region-0", TIER_LABEL: EDGE}


def test_names_survive_a_new_node_with_a_smaller_name() -> None:
    """A node joining a site keeps everyone's names: groups are matched to the last ones."""
    inf = inference()
    inf.update(sites_matrix({"b1": "B", "c1": "C"}), cloud=no_cloud, now=0.0)
    before = {n: inf.place(n) for n in ("b1", "c1")}
    moved = inf.update(sites_matrix({"a0": "C", "b1": "B", "c1": "C"}), cloud=no_cloud, now=1.0)
    assert moved == ["a0"]
    assert {n: inf.place(n) for n in ("b1", "c1")} == before
    assert inf.place("a0") == before["c1"]


def test_a_move_waits_for_the_hold() -> None:
    """A node proposed elsewhere moves only once the same proposal held for holdSeconds."""
    inf = inference(hold=60.0)
    inf.update(sites_matrix({"a1": "A", "a2": "A", "b1": "B", "b2": "B"}), cloud=no_cloud, now=0)
    old = inf.place("a2")
    moved_map = {"a1": "A", "a2": "B", "b1": "B", "b2": "B"}
    assert inf.update(sites_matrix(moved_map), cloud=no_cloud, now=10.0) == []
    pending = inf.pending("a2")
    assert pending is not None and pending.place.site == inf.place("b1").site  # type: ignore[union-attr]
    assert inf.next_due() == 70.0
    assert inf.update(sites_matrix(moved_map), cloud=no_cloud, now=69.0) == []
    assert inf.place("a2") == old
    assert inf.update(sites_matrix(moved_map), cloud=no_cloud, now=70.0) == ["a2"]
    assert inf.place("a2") == inf.place("b1")
    assert inf.pending("a2") is None and inf.next_due() is None


def test_a_broken_hold_starts_again() -> None:
    """A proposal interrupted by the old place must hold afresh."""
    inf = inference(hold=60.0)
    home = {"a1": "A", "a2": "A", "b1": "B"}
    away = {"a1": "A", "a2": "B", "b1": "B"}
    inf.update(sites_matrix(home), cloud=no_cloud, now=0.0)
    inf.update(sites_matrix(away), cloud=no_cloud, now=10.0)
    inf.update(sites_matrix(home), cloud=no_cloud, now=40.0)
    assert inf.pending("a2") is None
    inf.update(sites_matrix(away), cloud=no_cloud, now=50.0)
    assert inf.update(sites_matrix(away), cloud=no_cloud, now=100.0) == []
    assert inf.update(sites_matrix(away), cloud=no_cloud, now=110.0) == ["a2"]


def test_unmeasured_node_keeps_its_place() -> None:
    """With no fresh pair, a placed node stays where it was, and an unknown one has no place."""
    inf = inference()
    inf.update(sites_matrix({"a1": "A", "a2": "A", "b1": "B"}), cloud=no_cloud, now=0.0)
    was = inf.place("b1")
    only_a = rtts({"a1": {"a2": 0.3}, "a2": {"a1": 0.3}}, nodes=["a1", "a2", "b1", "new"])
    assert inf.update(only_a, cloud=no_cloud, now=500.0) == []
    assert inf.place("b1") == was
    assert inf.place("new") is None and inf.labels("new") is None


def test_split_site_keeps_the_name_for_the_larger_part() -> None:
    """A site that splits: the larger part keeps its name, the rest waits under a new one."""
    inf = inference(hold=30.0)
    inf.update(sites_matrix({"a1": "A", "a2": "A", "a3": "A"}), cloud=no_cloud, now=0.0)
    split = {"a1": "A", "a2": "A", "a3": "X"}
    for t in (10.0, 20.0, 40.0):
        inf.update(sites_matrix(split), cloud=no_cloud, now=t)
    assert inf.place("a1").site == inf.place("a2").site == "site-0"  # type: ignore[union-attr]
    assert inf.place("a3").site == "site-1"  # type: ignore[union-attr]


def test_tier_is_cloud_when_half_the_site_says_so() -> None:
    """A site is cloud when at least half its nodes carry kubernetes.io/role=cloud."""
    inf = inference()
    members = {"c1": "C", "c2": "C", "e1": "E", "e2": "E", "e3": "E"}
    declared = {"c1", "e1"}
    inf.update(sites_matrix(members), cloud=declared.__contains__, now=0.0)
    assert inf.place("c2").tier == CLOUD  # type: ignore[union-attr]
    assert inf.place("e1").tier == EDGE  # type: ignore[union-attr]


def test_seed_takes_complete_labels_only() -> None:
    """A new leader keeps the names the labels hold; a partial set is recomputed."""
    inf = inference()
    assert inf.seed("a1", {SITE: "site-7", REGION: "region-2", TIER_LABEL: EDGE})
    assert not inf.seed("b1", {SITE: "site-3", TIER_LABEL: EDGE})
    inf.update(sites_matrix({"a1": "A", "a2": "A", "b1": "B"}), cloud=no_cloud, now=0.0)
    assert inf.place("a2") == Place(("site-7", "region-2"), EDGE)
    assert inf.place("b1").site not in ("site-7",)  # type: ignore[union-attr]


def test_label_patch_touches_only_lasched_labels() -> None:
    """Wanted values are set, stale topology.lasched.io keys removed, other labels untouched."""
    current = {"kubernetes.io/hostname": "a", SITE: "site-0", "topology.lasched.io/zone": "z"}
    wanted = {SITE: "site-0", TIER_LABEL: EDGE}
    assert label_patch(current, wanted) == {"topology.lasched.io/zone": None, TIER_LABEL: EDGE}
    assert label_patch({**wanted}, wanted) == {}


def test_invalid_arguments_are_named() -> None:
    """Errors name the argument."""
    with pytest.raises(ValueError, match="hold_seconds"):
        TopologyInference(layers=[TopologyLayer("site", 1.0)], hold_seconds=-1)
    with pytest.raises(ValueError, match="layers"):
        TopologyInference(layers=[], hold_seconds=1)


# ---- the benchmark's seeded topologies -------------------------------------------

SEEDS = list(range(1, 11))


def bench_matrix(topo: topology.Topology, rng: random.Random | None = None) -> RttMatrix:
    """Every node's measured row of the generator's matrix, each RTT times U(0.9, 1.1)."""
    rows = topo.matrix()

    def jitter() -> float:
        return rng.uniform(0.9, 1.1) if rng is not None else 1.0

    return rtts({n: {m: ms * jitter() for m, ms in row.items()} for n, row in rows.items()})


def cloud_nodes(topo: topology.Topology) -> set[str]:
    tiers = {s.name: s.tier for s in topo.sites}
    return {n.name for n in topo.nodes if tiers[n.site] == "cloud"}


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed-{s}" for s in SEEDS])
def test_inferred_sites_match_the_generator(seed: int) -> None:
    """Adjusted Rand index >= 0.95 against the generator's sites (and regions, and tiers)."""
    topo = topology.generate(seed)
    inf = inference()
    inf.update(bench_matrix(topo), cloud=cloud_nodes(topo).__contains__, now=0.0)
    nodes = sorted(topo.site_of)
    places = [inf.place(n) for n in nodes]
    assert all(p is not None for p in places)
    sites = [p.site for p in places if p is not None]
    assert adjusted_rand_index(sites, [topo.site_of[n] for n in nodes]) >= 0.95
    regions = [p.groups[1] for p in places if p is not None]
    truth = [topo.region_of[topo.site_of[n]] for n in nodes]
    assert adjusted_rand_index(regions, truth) >= 0.95
    cloud = cloud_nodes(topo)
    assert [p.tier == CLOUD for p in places if p is not None] == [n in cloud for n in nodes]


@pytest.mark.parametrize("seed", SEEDS[:5], ids=[f"seed-{s}" for s in SEEDS[:5]])
def test_no_node_flaps_under_ten_percent_jitter(seed: int) -> None:
    """Fifty recomputes, every RTT times U(0.9, 1.1) each time: no node ever changes place."""
    topo = topology.generate(seed)
    rng = random.Random(seed)
    cloud = cloud_nodes(topo).__contains__
    inf = inference(hold=60.0)
    inf.update(bench_matrix(topo, rng), cloud=cloud, now=0.0)
    first = inf.places()
    for step in range(1, 51):
        assert inf.update(bench_matrix(topo, rng), cloud=cloud, now=step * 10.0) == []
    assert inf.places() == first
    assert inf.next_due() is None  # not even a move proposed


def test_jitter_across_the_limit_does_not_move_a_node() -> None:
    """Pairs jittering around maxRttMs propose moves now and then; the hold keeps nodes put."""
    rng = random.Random(3)
    members = {f"a{i}": "A" for i in range(4)} | {f"b{i}": "B" for i in range(4)}
    inf = inference(hold=60.0)
    inf.update(sites_matrix(members), cloud=no_cloud, now=0.0)
    first = inf.places()
    proposed_moves = 0
    for step in range(1, 200):
        noisy = {
            a: {
                b: (0.3 if members[a] == members[b] else 10.0) * rng.uniform(0.9, 1.1)
                for b in members
                if b != a
            }
            for a in members
        }
        # One pair inside site A spikes past 1 ms for a single recompute every so often.
        if step % 7 == 0:
            noisy["a0"]["a1"] = noisy["a1"]["a0"] = 1.5
        assert inf.update(rtts(noisy), cloud=no_cloud, now=step * 10.0) == []
        proposed_moves += inf.next_due() is not None
    assert proposed_moves > 0
    assert inf.places() == first
