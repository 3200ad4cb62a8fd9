"""NUMA placement: NodeResourceTopology parsing, the KubeNexus annotations, zone fit per
policy and scope, the holds of lasched's own placements, and the plugin that joins them."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lasched.cache.cache import NodeInfo
from lasched.cache.topology import Topologies
from lasched.eventhandlers import TopologyEvents
from lasched.framework.events import NRT_UPDATE, QUEUE, SKIP
from lasched.framework.interface import Code, CycleState
from lasched.model.numa import NodeTopology, PodPolicy, Policy, Scope, TopologyError
from lasched.plugins.noderesourcetopology import NO_TOPOLOGY, NodeResourceTopologyMatch
from lasched.queue.queue import SchedulingQueue
from tests.unit.factories import make_node, make_pod
from tests.unit.numa_factories import GPU, container, nrt_json, numa_pod

TWO_ZONES: list[dict[str, str | int]] = [
    {"cpu": "6", "memory": "32Gi", GPU: 2},
    {"cpu": "16", "memory": "32Gi", GPU: 0},
]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def plugin_with(*nrts: dict[str, Any], clock: Clock | None = None) -> NodeResourceTopologyMatch:
    topologies = Topologies(clock=clock or Clock())
    for raw in nrts:
        topologies.set(NodeTopology(raw))
    return NodeResourceTopologyMatch(topologies)


def cpus(t: Topologies, name: str = "a") -> list[int]:
    """The millicores each zone of ``name`` has free."""
    topo = t.get(name)
    assert topo is not None
    return [f["cpu"] for f in t.free(topo)]


def node(name: str) -> NodeInfo:
    return NodeInfo(make_node(name, cpu="64", memory="256Gi", extended={GPU: "8"}))


# ---- parsing ----------------------------------------------------------------------------


def test_a_topology_reads_zones_policy_and_scope() -> None:
    """Node zones by NUMA id, CPU in millicores, the Topology Manager from the attributes."""
    t = NodeTopology(nrt_json("n", TWO_ZONES, policy="restricted", scope="container"))
    assert (t.name, t.policy, t.scope) == ("n", Policy.RESTRICTED, Scope.CONTAINER)
    assert [z.numa_id for z in t.zones] == [0, 1]
    assert t.zones[0].available == {"memory": 32 << 30, "cpu": 6000, GPU: 2}


def test_the_legacy_policy_list_is_read_when_attributes_are_absent() -> None:
    """topologyPolicies: [SingleNUMANodePodLevel] means single-numa-node in pod scope."""
    raw = nrt_json("n", TWO_ZONES)
    del raw["attributes"]
    raw["topologyPolicies"] = ["SingleNUMANodePodLevel"]
    t = NodeTopology(raw)
    assert (t.policy, t.scope) == (Policy.SINGLE_NUMA_NODE, Scope.POD)


def test_zones_that_are_not_numa_nodes_are_not_kept() -> None:
    """A socket or core zone is read for its shape and left out."""
    raw = nrt_json("n", TWO_ZONES)
    raw["zones"].append({"name": "socket-0", "type": "Socket", "resources": []})
    assert len(NodeTopology(raw).zones) == 2


def _bad(path: list[Any], value: Any) -> dict[str, Any]:
    raw = nrt_json("n", TWO_ZONES)
    target: Any = raw
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_bad(["zones", 0, "resources", 0, "available"], "lots"),
         "zones[0].resources[0].available: 'lots' is not a Kubernetes quantity"),
        (_bad(["zones", 1, "resources", 2, "allocatable"], -1),
         "zones[1].resources[2].allocatable must not be negative"),
        (_bad(["zones", 0, "name"], "numa-zero"),
         "zones[0].name must be node-<NUMA id> for a Node zone"),
        (_bad(["zones"], {"node-0": {}}), "zones must be a list, not dict"),
        (_bad(["attributes", 0, "value"], "single-numa"),
         "attributes[0] (topologyManagerPolicy) must be one of none, best-effort"),
        (_bad(["zones", 1, "name"], "node-0"), "zones names a NUMA node twice"),
        (_bad(["metadata", "name"], ""), "metadata.name must be a non-empty string"),
    ],
    ids=["quantity", "negative", "zone-name", "zones-type", "policy", "twice", "no-name"],
)  # fmt: skip
def test_a_malformed_topology_names_the_field(raw: dict[str, Any], message: str) -> None:
    """Every refusal says which field, by its path, and what was wrong."""
    with pytest.raises(TopologyError) as err:
        NodeTopology(raw)
    assert message in str(err.value)


# ---- the pod side -----------------------------------------------------------------------


def test_an_ordinary_pod_asks_nothing() -> None:
    """No annotation, not Guaranteed, no device: nothing to align (PodInfo.numa is None)."""
    assert make_pod("web", cpu="500m", memory="1Gi").numa is None


def test_kubenexus_annotations_are_read_in_their_spelling() -> None:
    """policy single-numa and resources cpu,memory,nvidia.com/gpu, on a Guaranteed pod."""
    p = numa_pod("t", policy="single-numa", resources=f"cpu,memory,{GPU}", cpu=8, gpu=2)
    assert p.numa is not None
    assert p.numa.policy is PodPolicy.SINGLE_NUMA
    assert p.numa.listed == frozenset({"cpu", "memory", GPU})
    assert p.numa.guaranteed and p.numa.error is None
    assert p.numa.pod == {"cpu": 8000, "memory": 1 << 30, GPU: 2}


def test_a_burstable_pod_aligns_its_devices_only() -> None:
    """As the kubelet does: CPU and memory are aligned only for Guaranteed pods; the pod is
    told so when its annotation lists them."""
    p = numa_pod(
        "b", policy="single-numa", resources=f"cpu,{GPU}",
        containers=[container("c", guaranteed=False, cpu=8, gpu=2)],
    )  # fmt: skip
    assert p.numa is not None and not p.numa.guaranteed
    assert p.numa.pod == {GPU: 2}
    assert p.numa.note is not None and "not Guaranteed QoS" in p.numa.note


@pytest.mark.parametrize(
    ("policy", "resources", "message"),
    [
        ("single-numa-node", None, 'numa.scheduling.kubenexus.io/policy="single-numa-node"'),
        ("single-numa", "cpu,,memory", "comma-separated list"),
        ("single-numa", "hugepages-2Mi", "names hugepages-2Mi"),
        (None, "cpu", "needs numa.scheduling.kubenexus.io/policy beside it"),
    ],
    ids=["policy", "empty-name", "hugepages", "resources-alone"],
)
def test_a_bad_annotation_is_an_error_naming_it(
    policy: str | None, resources: str | None, message: str
) -> None:
    """Decoding never fails: the error text names the annotation and shows the value."""
    p = numa_pod("x", policy=policy, resources=resources, cpu=1)
    assert p.numa is not None and p.numa.error is not None
    assert message in p.numa.error


# ---- fit per policy and scope -----------------------------------------------------------


def test_single_numa_node_admits_only_where_one_zone_fits() -> None:
    """8 CPUs and 2 GPUs: zone 0 has the GPUs but 6 CPUs, zone 1 the CPUs but no GPU."""
    plugin = plugin_with(nrt_json("a", TWO_ZONES), nrt_json("b", [{"cpu": "8", GPU: 2}] * 2))
    p = numa_pod("t", cpu=8, gpu=2)
    st_a = plugin.filter(CycleState(), p, node("a"))
    assert st_a.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert st_a.message == (
        "node a: no NUMA zone has 8 cpu, 1Gi memory, 2 nvidia.com/gpu free "
        "(node-0: 6 cpu, 32Gi memory, 2 nvidia.com/gpu; "
        "node-1: 16 cpu, 32Gi memory, 0 nvidia.com/gpu)"
    )
    assert plugin.filter(CycleState(), p, node("b")).ok


def test_container_scope_fits_each_container_and_takes_from_its_zone() -> None:
    """Two containers of 4 CPUs fit zone 0 (6 CPUs) one after the other only if the second
    goes to zone 1; a third of 3 then finds no room left anywhere."""
    plugin = plugin_with(nrt_json("a", [{"cpu": "6"}, {"cpu": "4"}], scope="container"))
    two = numa_pod("two", containers=[container("x", cpu=4), container("y", cpu=4)])
    verdict = plugin.fit(two, "a")
    assert verdict is not None and verdict.ok
    gib = 1 << 30
    assert verdict.taken == {0: {"cpu": 4000, "memory": gib}, 1: {"cpu": 4000, "memory": gib}}
    three = numa_pod(
        "three", containers=[container("x", cpu=4), container("y", cpu=4), container("z", cpu=3)]
    )
    verdict = plugin.fit(three, "a")
    assert verdict is not None and verdict.shortfall is not None
    assert verdict.shortfall.startswith("container z: no NUMA zone has 3 cpu, 1Gi memory free")


def test_pod_scope_counts_the_pod_whole() -> None:
    """The same two containers in pod scope need 8 CPUs in one zone: none has them."""
    plugin = plugin_with(nrt_json("a", [{"cpu": "6"}, {"cpu": "4"}], scope="pod"))
    two = numa_pod("two", containers=[container("x", cpu=4), container("y", cpu=4)])
    assert not plugin.filter(CycleState(), two, node("a")).ok


def test_init_containers_are_checked_but_give_their_room_back() -> None:
    """An init container of 6 CPUs fits zone 0 and then the app container takes it."""
    plugin = plugin_with(nrt_json("a", [{"cpu": "6"}, {"cpu": "2"}], scope="container"))
    p = numa_pod("p", init=[container("setup", cpu=6)], containers=[container("app", cpu=6)])
    verdict = plugin.fit(p, "a")
    assert verdict is not None and verdict.taken == {0: {"cpu": 6000, "memory": 1 << 30}}


def test_restricted_allows_the_fewest_zones_that_could_hold_it() -> None:
    """20 CPUs on 16-CPU zones need two zones: two with 10 free each admit it; a node whose
    free CPUs are spread over three zones does not."""
    alloc = [{"cpu": "16"}] * 3
    ok = nrt_json("ok", [{"cpu": "10"}, {"cpu": "10"}, {"cpu": "0"}],
                  policy="restricted", allocatable=alloc)  # fmt: skip
    spread = nrt_json("spread", [{"cpu": "7"}, {"cpu": "7"}, {"cpu": "7"}],
                      policy="restricted", allocatable=alloc)  # fmt: skip
    plugin = plugin_with(ok, spread)
    p = numa_pod("big", cpu=20)
    assert plugin.filter(CycleState(), p, node("ok")).ok
    rejected = plugin.filter(CycleState(), p, node("spread"))
    assert "no 2 NUMA zone(s) together have 20 cpu, 1Gi memory free" in rejected.message


@pytest.mark.parametrize("policy", ["none", "best-effort"])
def test_lenient_node_policies_admit_anything(policy: str) -> None:
    """The kubelet admits every pod under none and best-effort: so does the filter."""
    plugin = plugin_with(nrt_json("a", TWO_ZONES, policy=policy))
    assert plugin.filter(CycleState(), numa_pod("t", cpu=8, gpu=2), node("a")).ok


def test_a_pods_single_numa_applies_on_a_lenient_node() -> None:
    """The pod's own annotation holds even where the kubelet would not refuse it."""
    plugin = plugin_with(nrt_json("a", TWO_ZONES, policy="none"))
    p = numa_pod("t", policy="single-numa", resources=f"cpu,{GPU}", cpu=8, gpu=2)
    assert not plugin.filter(CycleState(), p, node("a")).ok


def test_a_node_without_topology_fails_only_pods_asking_a_strict_policy() -> None:
    """No NRT: a Guaranteed pod passes; a pod annotated single-numa is told why not."""
    plugin = plugin_with(nrt_json("other", TWO_ZONES))
    assert plugin.filter(CycleState(), numa_pod("g", cpu=2), node("bare")).ok
    st_ = plugin.filter(CycleState(), numa_pod("s", policy="single-numa", cpu=2), node("bare"))
    assert st_.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE and NO_TOPOLOGY in st_.message


def test_cpu_that_no_zone_reports_cannot_be_aligned() -> None:
    """A device without NUMA affinity is left to NodeResourcesFit; CPU never is."""
    plugin = plugin_with(nrt_json("a", [{GPU: 2}]))
    gpu_only = numa_pod("gpu-only", containers=[container("c", guaranteed=False, gpu=1)])
    assert plugin.filter(CycleState(), gpu_only, node("a")).ok
    assert (
        "no NUMA zone reports cpu"
        in plugin.filter(CycleState(), numa_pod("cpu", cpu=1), node("a")).message
    )


# ---- what the plugin skips ---------------------------------------------------------------


def test_pods_that_ask_nothing_skip_the_plugin_and_still_batch() -> None:
    """PreFilter skips an ordinary pod, and a Guaranteed one while no node has a topology."""
    empty = NodeResourceTopologyMatch(Topologies())
    ordinary, guaranteed = make_pod("o", cpu="1"), numa_pod("g", cpu=2)
    assert empty.pre_filter(CycleState(), ordinary).code is Code.SKIP
    assert empty.pre_filter(CycleState(), guaranteed).code is Code.SKIP
    assert empty.sign_pod(ordinary) == () and empty.sign_pod(guaranteed) == ()
    some = plugin_with(nrt_json("a", TWO_ZONES))
    assert some.pre_filter(CycleState(), guaranteed).ok
    assert some.sign_pod(guaranteed) is None


def test_a_bad_annotation_rejects_in_pre_filter() -> None:
    """The annotation's error is the unresolvable reason, before any node is tried."""
    st_ = NodeResourceTopologyMatch(Topologies()).pre_filter(
        CycleState(), numa_pod("x", policy="sometimes", cpu=1)
    )
    assert st_.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE and "sometimes" in st_.message


# ---- reserve accounting -----------------------------------------------------------------


def test_two_pods_before_the_topology_updates_take_one_zone_once() -> None:
    """The NRT still shows zone 0 with 8 CPUs after the first pod reserved 6 there: the
    second pod of 6 is refused until the publisher catches up."""
    plugin = plugin_with(nrt_json("a", [{"cpu": "8"}, {"cpu": "2"}]))
    first, second = numa_pod("first", cpu=6), numa_pod("second", cpu=6)
    assert plugin.filter(CycleState(), first, node("a")).ok
    assert plugin.reserve(CycleState(), first, "a").ok
    rejected = plugin.filter(CycleState(), second, node("a"))
    assert "node-0: 2 cpu" in rejected.message


def test_unreserve_gives_the_zone_back() -> None:
    """A reserve undone (the bind failed) releases its hold at once."""
    plugin = plugin_with(nrt_json("a", [{"cpu": "8"}]))
    first, second = numa_pod("first", cpu=6), numa_pod("second", cpu=6)
    plugin.reserve(CycleState(), first, "a")
    plugin.unreserve(CycleState(), first, "a")
    assert plugin.filter(CycleState(), second, node("a")).ok


def test_a_hold_ends_when_the_topology_shows_it() -> None:
    """A newer NRT whose zone fell by what was held ends the hold (not counted twice)."""
    t = Topologies(clock=Clock())
    t.set(NodeTopology(nrt_json("a", [{"cpu": "8"}], rv="1")))
    t.hold("p", "a", {"node-0": {"cpu": 6000}})
    t.set(NodeTopology(nrt_json("a", [{"cpu": "8"}], rv="2")))  # not shown yet
    assert cpus(t) == [2000]
    t.set(NodeTopology(nrt_json("a", [{"cpu": "2"}], rv="3")))  # shown
    assert t.holds("a") == []
    assert cpus(t) == [2000]


def test_one_pods_drop_does_not_end_two_holds() -> None:
    """Two holds of 3 CPUs on the same numbers: a drop of 3 shows the first only."""
    t = Topologies(clock=Clock())
    t.set(NodeTopology(nrt_json("a", [{"cpu": "8"}], rv="1")))
    t.hold("p", "a", {"node-0": {"cpu": 3000}})
    t.hold("q", "a", {"node-0": {"cpu": 3000}})
    t.set(NodeTopology(nrt_json("a", [{"cpu": "5"}], rv="2")))
    assert [h.pod for h in t.holds("a")] == ["q"]


def test_a_hold_expires_after_its_time_to_live() -> None:
    """A publisher that never shows the pod (it was deleted) cannot keep room forever."""
    clock = Clock()
    t = Topologies(ttl=60, clock=clock)
    t.set(NodeTopology(nrt_json("a", [{"cpu": "8"}])))
    t.hold("p", "a", {"node-0": {"cpu": 6000}})
    clock.t += 61
    assert cpus(t) == [8000]


# ---- scores and hints ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "better"),
    [("LeastAllocated", "roomy"), ("MostAllocated", "tight"), ("LeastNUMANodes", "tight")],
)
def test_score_strategies_prefer_as_upstream(strategy: str, better: str) -> None:
    """Least allocated prefers room left in the zone, most allocated a tight fit."""
    t = Topologies(clock=Clock())
    t.set(NodeTopology(nrt_json("roomy", [{"cpu": "32"}])))
    t.set(NodeTopology(nrt_json("tight", [{"cpu": "8"}])))
    plugin = NodeResourceTopologyMatch(t, strategy=strategy)
    p = numa_pod("p", cpu=8)
    scores = {n: plugin.score(CycleState(), p, node(n)) for n in ("roomy", "tight")}
    other = "tight" if better == "roomy" else "roomy"
    assert scores[better] >= scores[other]
    assert all(0 <= s <= 100 for s in scores.values())


def test_an_unknown_strategy_is_refused_by_name() -> None:
    """The error names the field and the strategies lasched has."""
    with pytest.raises(ValueError, match=r"scoringStrategy\.type must be one of LeastAllocated"):
        NodeResourceTopologyMatch(Topologies(), strategy="Random")


def test_a_topology_that_frees_a_zone_requeues_and_a_heartbeat_does_not() -> None:
    """More available in a zone: worth another try; the same numbers again: not."""
    (reg, _) = NodeResourceTopologyMatch(Topologies()).events_to_register()
    assert reg.event.match(NRT_UPDATE) and reg.hint is not None
    old = NodeTopology(nrt_json("a", [{"cpu": "2"}], rv="1"))
    same = NodeTopology(nrt_json("a", [{"cpu": "2"}], rv="2"))
    more = NodeTopology(nrt_json("a", [{"cpu": "8"}], rv="3"))
    p = numa_pod("p", cpu=4)
    assert reg.hint(p, old, same) is SKIP
    assert reg.hint(p, old, more) is QUEUE


# ---- the property -----------------------------------------------------------------------

_zone = st.fixed_dictionaries({"cpu": st.integers(0, 64), GPU: st.integers(0, 8)})


@given(
    zones=st.lists(_zone, min_size=1, max_size=4),
    held=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 16), st.integers(0, 4)), max_size=4),
    cpu=st.integers(1, 32),
    gpu=st.integers(0, 4),
)
def test_an_admitted_pod_fits_one_zones_available_less_the_holds(
    zones: list[dict[str, int]], held: list[tuple[int, int, int]], cpu: int, gpu: int
) -> None:
    """Whatever the zones and holds, single-numa-node admits a pod only when one zone's
    published available less every hold on it covers the whole request."""
    t = Topologies(clock=Clock())
    t.set(NodeTopology(nrt_json("a", [{k: str(v) for k, v in z.items()} for z in zones])))
    for i, (z, c, g) in enumerate(held):
        if z < len(zones):
            t.hold(f"h{i}", "a", {f"node-{z}": {"cpu": c * 1000, GPU: g}})
    requests: dict[str, int] = {"cpu": cpu, "gpu": gpu} if gpu else {"cpu": cpu}
    pod = numa_pod("p", **requests)  # type: ignore[arg-type]
    admitted = NodeResourceTopologyMatch(t).filter(CycleState(), pod, node("a")).ok
    free = list(zones)
    for z, c, g in held:
        if z < len(zones):
            free[z] = {"cpu": free[z]["cpu"] - c, GPU: free[z][GPU] - g}
    fits_one = any(f["cpu"] >= cpu and (gpu == 0 or f[GPU] >= gpu) for f in free)
    assert admitted == fits_one


def test_a_burstable_pod_asking_cpu_alone_asks_nothing_of_a_node() -> None:
    """KubeNexus's example without limits: nothing the kubelet aligns, so no node, with or
    without a topology, is refused for it (the Warning Event says why)."""
    p = numa_pod(
        "ml", policy="single-numa", resources="cpu,memory",
        containers=[container("c", guaranteed=False, cpu=4, memory="8Gi")],
    )  # fmt: skip
    plugin = plugin_with(nrt_json("a", [{"cpu": "2"}]))
    assert plugin.filter(CycleState(), p, node("a")).ok
    assert plugin.filter(CycleState(), p, node("bare")).ok


def test_an_unreadable_topology_withdraws_the_nodes_old_one() -> None:
    """A node whose new NRT cannot be read is judged as publishing nothing, not on its old
    numbers, and the pods it may help are told."""
    told: list[object] = []

    class Queue:
        def on_event(self, event: object, old: object, new: object) -> None:
            told.append(event)

    t = Topologies(clock=Clock())
    handler = TopologyEvents(t, cast(SchedulingQueue, Queue()))
    handler.on_add(NodeTopology(nrt_json("a", [{"cpu": "8"}])))
    handler.unreadable({"metadata": {"name": "a"}}, TopologyError("zones[0].name ..."))
    assert t.get("a") is None
    assert [getattr(e, "label", "") for e in told] == [
        "NodeResourceTopologyAdd",
        "NodeResourceTopologyDelete",
    ]
