"""PodTopologySpread, held to kube-scheduler's own test tables and to a recount from scratch.

Cases named ``k8s: ...`` are ported from kube-scheduler's
``podtopologyspread/filtering_test.go`` (TestSingleConstraint,
TestMultipleConstraints, TestPreFilterState, TestPreFilterStateAddPod,
TestPreFilterStateRemovePod) and ``scoring_test.go``
(TestPodTopologySpreadScore), with their names. kube-scheduler's
"system defaulting ... pods match service" case is ported with a
ReplicaSet ownerReference in place of the Service (lasched's departure).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import Code, CycleState, FilterPlugin, Status
from lasched.model.affinity import SpreadConstraint
from lasched.model.pod import PodInfo
from lasched.plugins.nodeaffinity import NodeAffinity, pod_matches_node
from lasched.plugins.podtopologyspread import (
    REASON,
    REASON_MISSING_LABEL,
    PodTopologySpread,
    SpreadFilterState,
)
from lasched.plugins.tainttoleration import TaintToleration, untolerated
from tests.unit.factories import make_node, make_pod

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
OK, FAIL, MISSING = "ok", "fail", "missing"
TAINTED = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
FOO = {"foo": ""}


# ---- builders -------------------------------------------------------------------------


def exists(key: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": "Exists"}]}


def spread(
    skew: int,
    key: str,
    selector: dict[str, Any] | None = None,
    *,
    hard: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    c: dict[str, Any] = {
        "maxSkew": skew,
        "topologyKey": key,
        "whenUnsatisfiable": "DoNotSchedule" if hard else "ScheduleAnyway",
        **extra,
    }
    if selector is not None:
        c["labelSelector"] = selector
    return c


_seq = iter(range(1_000_000))


def pod(
    labels: Mapping[str, str] | None = None,
    *constraints: dict[str, Any],
    node: str = "",
    name: str | None = None,
    **kwargs: Any,
) -> PodInfo:
    if constraints:
        kwargs["topologySpreadConstraints"] = list(constraints)
    return make_pod(name or f"p{next(_seq)}", node=node, labels=dict(labels or {}), **kwargs)


def node(name: str, *, taints: bool = False, **labels: Any) -> tuple[str, dict[str, Any]]:
    return name, {"labels": labels, "taints": TAINTED if taints else None}


def four_nodes() -> list[tuple[str, dict[str, Any]]]:
    return [
        node("node-a", zone="zone1", node="node-a"),
        node("node-b", zone="zone1", node="node-b"),
        node("node-x", zone="zone2", node="node-x"),
        node("node-y", zone="zone2", node="node-y"),
    ]


def on(*placements: str, labels: Mapping[str, str] = FOO, **kwargs: Any) -> list[PodInfo]:
    return [pod(labels, node=n, **kwargs) for n in placements]


def cluster(nodes: Sequence[tuple[str, dict[str, Any]]], pods: Sequence[PodInfo]) -> SchedulerCache:
    cache = SchedulerCache()
    for name, spec in nodes:
        cache.add_node(make_node(name, **spec))
    for p in pods:
        cache.add_pod(p)
    return cache


def verdict(s: Status) -> str:
    if s.ok:
        return OK
    if s.reasons == (REASON_MISSING_LABEL,):
        assert s.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        return MISSING
    assert s.code is Code.UNSCHEDULABLE
    assert s.reasons[0].startswith(REASON)
    return FAIL


def run_filter(
    cache: SchedulerCache, incoming: PodInfo, plugin: PodTopologySpread | None = None
) -> tuple[Status, dict[str, str]]:
    p = plugin or PodTopologySpread(cache)
    state = CycleState()
    pre = p.pre_filter(state, incoming)
    nodes = list(cache.node_infos())
    one_by_one = [p.filter(state, incoming, ni) for ni in nodes]
    assert one_by_one == p.filter_all(state, incoming, nodes)
    return pre, {ni.name: verdict(s) for ni, s in zip(nodes, one_by_one, strict=True)}


def filter_state(cache: SchedulerCache, incoming: PodInfo) -> tuple[PodTopologySpread, CycleState]:
    p = PodTopologySpread(cache)
    state = CycleState()
    assert p.pre_filter(state, incoming).code is Code.SUCCESS
    return p, state


def counts_of(state: CycleState) -> list[dict[str, int]]:
    st_: SpreadFilterState = state.data["PodTopologySpread/PreFilter"][1]
    return st_.counts


# ---- Filter: kube-scheduler's TestSingleConstraint / TestMultipleConstraints -------------

C1_ZONE = spread(1, "zone", exists("foo"))
C1_NODE = spread(1, "node", exists("foo"))

FILTER: list[tuple[str, PodInfo, list[tuple[str, dict[str, Any]]], list[PodInfo], list[str]]] = [
    ("no existing pods", pod(FOO, C1_ZONE), four_nodes(), [], [OK] * 4),
    (
        "no existing pods, incoming pod doesn't match itself",
        pod(FOO, spread(1, "zone", exists("bar"))), four_nodes(), [], [OK] * 4,
    ),
    (
        "existing pods in a different namespace do not count",
        pod(FOO, C1_ZONE), four_nodes(),
        [*on("node-a", namespace="ns1"), *on("node-a", namespace="ns2"), *on("node-x", "node-y")],
        [OK, OK, FAIL, FAIL],
    ),
    (
        "pods spread across zones as 3/3, all nodes fit",
        pod(FOO, C1_ZONE), four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", "node-y"), [OK] * 4,
    ),
    (
        "pods spread across zones as 1/2 due to absence of label 'zone' on node-b",
        pod(FOO, C1_ZONE),
        [node("node-a", zone="zone1", node="node-a"), node("node-b", zon="zone1", node="node-b"),
         node("node-x", zone="zone2", node="node-x"), node("node-y", zone="zone2", node="node-y")],
        on("node-a", "node-b", "node-x", "node-y"), [OK, MISSING, FAIL, FAIL],
    ),
    (
        "pod cannot be scheduled as all nodes don't have label 'rack'",
        pod(FOO, spread(1, "rack", exists("foo"))),
        [node("node-a", zone="zone1", node="node-a"), node("node-x", zone="zone2", node="node-x")],
        [], [MISSING, MISSING],
    ),
    (
        "pods spread across nodes as 2/1/0/3, only node-x fits",
        pod(FOO, C1_NODE), four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", "node-y"), [FAIL, FAIL, OK, FAIL],
    ),
    (
        "pods spread across nodes as 2/1/0/3, maxSkew is 2, node-b and node-x fit",
        pod(FOO, spread(2, "node", exists("foo"))), four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", "node-y"), [FAIL, OK, OK, FAIL],
    ),
    (
        "pods spread across nodes as 2/1/0/3, but pod doesn't match itself",
        pod({"bar": ""}, C1_NODE), four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", "node-y"), [FAIL, OK, OK, FAIL],
    ),
    (
        "incoming pod has nodeAffinity, pods spread as 2/~1~/~0~/3, hence node-a fits",
        pod(FOO, C1_NODE, affinity={"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": "node", "operator": "In", "values": ["node-a", "node-y"]}]}]}}}),
        four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", "node-y"), [OK, OK, OK, FAIL],
    ),
    (
        "terminating Pods should be excluded",
        pod(FOO, C1_NODE), [node("node-a", node="node-a"), node("node-b", node="node-b")],
        [*on("node-a", deleting=True), *on("node-b")], [OK, FAIL],
    ),
    (
        "two Constraints on zone and node, spreads = [3/3, 2/1/0/3]",
        pod(FOO, C1_ZONE, C1_NODE), four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", "node-y"), [FAIL, FAIL, OK, FAIL],
    ),
    (
        "two Constraints on zone and node, spreads = [3/4, 2/1/0/4]",
        pod(FOO, C1_ZONE, C1_NODE), four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", "node-y", "node-y"),
        [FAIL, FAIL, FAIL, FAIL],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "nodes", "existing", "want"),
    [case[1:] for case in FILTER],
    ids=[f"k8s: {case[0]}" for case in FILTER],
)
def test_filter(
    incoming: PodInfo,
    nodes: list[tuple[str, dict[str, Any]]],
    existing: list[PodInfo],
    want: list[str],
) -> None:
    """kube-scheduler's verdicts and status codes for DoNotSchedule constraints."""
    pre, got = run_filter(cluster(nodes, existing), incoming)
    assert pre.code is Code.SUCCESS
    assert list(got.values()) == want


MIN_DOMAINS: list[tuple[str, PodInfo, list[PodInfo], list[str]]] = [
    (
        "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains < "
        "minDomains, then the third node fits",
        pod(FOO, spread(2, "node", exists("foo"), minDomains=4)),
        on("node-a", "node-a", "node-b", "node-b", "node-x"), [FAIL, FAIL, OK],
    ),
    (
        "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains > "
        "minDomains, then the all nodes fit",
        pod(FOO, spread(2, "node", exists("foo"), minDomains=2)),
        on("node-a", "node-a", "node-b", "node-b", "node-x"), [OK, OK, OK],
    ),
    (
        "pods spread across zone as 2/1, maxSkew is 2 and the number of domains < minDomains, "
        "then the third node fits",
        pod(FOO, spread(2, "zone", exists("foo"), minDomains=3)),
        on("node-a", "node-b", "node-x"), [FAIL, FAIL, OK],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "existing", "want"),
    [case[1:] for case in MIN_DOMAINS],
    ids=[case[0] for case in MIN_DOMAINS],
)
def test_min_domains_makes_the_global_minimum_zero(
    incoming: PodInfo, existing: list[PodInfo], want: list[str]
) -> None:
    """Fewer eligible domains than minDomains: the global minimum counts as 0."""
    nodes = [
        node("node-a", zone="zone1", node="node-a"),
        node("node-b", zone="zone1", node="node-b"),
        node("node-x", zone="zone2", node="node-x"),
    ]
    _, got = run_filter(cluster(nodes, existing), incoming)
    assert list(got.values()) == want


def test_reason_names_the_domain_unless_it_is_the_node() -> None:
    """A zone is named so `lasched explain` shows it; a hostname domain is the node itself."""
    zone_a: dict[str, Any] = {ZONE: "zone-a", HOST: "a"}
    zone_b: dict[str, Any] = {ZONE: "zone-b", HOST: "b"}
    nodes = [node("a", **zone_a), node("b", **zone_b)]
    cache = cluster(nodes, on("a"))
    by_zone = pod(FOO, spread(1, ZONE, exists("foo")))
    p, state = filter_state(cache, by_zone)
    a = cache.node_info("a")
    assert a is not None
    assert p.filter(state, by_zone, a).reasons == (f"{REASON} ({ZONE}=zone-a)",)
    by_host = pod(FOO, spread(1, HOST, exists("foo")))
    p, state = filter_state(cache, by_host)
    assert p.filter(state, by_host, a).reasons == (REASON,)


def test_an_empty_selector_counts_no_pods() -> None:
    """labelSelector {} counts no placed pod, as kube-scheduler's countPodsMatchSelector:
    every node passes however the pods lie, and every node scores alike."""
    existing = on("node-a", "node-a", "node-b")
    _, got = run_filter(cluster(four_nodes(), existing), pod(FOO, spread(1, "zone", {})))
    assert list(got.values()) == [OK] * 4
    # The pod still matches itself: with minDomains above the domains, the skew is 0 + 1 - 0.
    _, got = run_filter(
        cluster(four_nodes(), existing), pod(FOO, spread(1, "zone", {}, minDomains=3))
    )
    assert list(got.values()) == [OK] * 4
    # matchLabelKeys for a label the pod lacks leaves the selector empty.
    lacking = pod(FOO, spread(1, "zone", {}, matchLabelKeys=["app"]))
    _, got = run_filter(cluster(four_nodes(), existing), lacking)
    assert list(got.values()) == [OK] * 4
    # One it has makes a selector that counts.
    having = pod({"app": "x"}, spread(1, "zone", {}, matchLabelKeys=["app"]))
    _, got = run_filter(cluster(four_nodes(), on("node-a", labels={"app": "x"})), having)
    assert list(got.values()) == [FAIL, FAIL, OK, OK]

    cache = cluster(four_nodes(), existing)
    p = PodTopologySpread(cache)
    state = CycleState()
    soft = pod(FOO, spread(1, "zone", {}, hard=False))
    candidates = list(cache.node_infos())
    assert p.pre_score(state, soft, candidates).code is Code.SUCCESS
    raw = p.score_all(state, soft, candidates)
    p.normalize(state, soft, raw)
    assert raw == [100] * 4


# ---- PreFilter state: kube-scheduler's TestPreFilterState ----------------------------

INCLUSION: list[tuple[str, PodInfo, list[tuple[str, dict[str, Any]]], list[PodInfo],
                      list[dict[str, int]]]] = [
    (
        "two node inclusion Constraints, zone: honor/honor, node: honor/ignore",
        pod(FOO, spread(1, "zone", exists("foo"), nodeTaintsPolicy="Honor"), C1_NODE),
        [node("node-a", zone="zone1", node="node-a", foo=""),
         node("node-b", zone="zone1", node="node-b", taints=True),
         node("node-x", zone="zone2", node="node-x", foo="")],
        on("node-b", "node-b", "node-x"),
        [{"zone1": 0, "zone2": 1}, {"node-a": 0, "node-b": 2, "node-x": 1}],
    ),
    (
        "two node inclusion Constraints, zone: honor/ignore, node: honor/ignore",
        pod(FOO, C1_ZONE, C1_NODE, nodeSelector={"foo": ""}),
        [node("node-a", zone="zone1", node="node-a"),
         node("node-b", zone="zone1", node="node-b", foo="", taints=True),
         node("node-x", zone="zone2", node="node-x", foo=""),
         node("node-y", zone="zone2", node="node-y")],
        on("node-a", "node-a", "node-x", "node-y"),
        [{"zone1": 0, "zone2": 1}, {"node-b": 0, "node-x": 1}],
    ),
    (
        "two node inclusion Constraints, zone: ignore/ignore, node: honor/honor",
        pod(FOO, spread(1, "zone", exists("foo"), nodeAffinityPolicy="Ignore"),
            spread(1, "node", exists("foo"), nodeTaintsPolicy="Honor"), nodeSelector={"foo": ""}),
        [node("node-a", zone="zone1", node="node-a"),
         node("node-b", zone="zone1", node="node-b", foo="", taints=True),
         node("node-x", zone="zone2", node="node-x", foo=""),
         node("node-y", zone="zone2", node="node-y", foo="")],
        on("node-a", "node-a", "node-x", "node-x", "node-y"),
        [{"zone1": 2, "zone2": 3}, {"node-x": 2, "node-y": 1}],
    ),
    (
        "matchLabelKeys ANDed with LabelSelector when LabelSelector isn't empty",
        pod({"foo": "", "bar": "a"}, spread(1, "zone", exists("foo"), matchLabelKeys=["bar"])),
        four_nodes(),
        [*on("node-a"), *on("node-a", labels={"foo": "", "bar": "a"}), *on("node-b"),
         *on("node-y", labels={"foo": "", "bar": "a"}), *on("node-y", labels={"bar": ""})],
        [{"zone1": 1, "zone2": 1}],
    ),
    (
        "matchLabelKeys ANDed with LabelSelector when LabelSelector is empty",
        pod({"foo": "a"}, spread(1, "zone", {}, matchLabelKeys=["foo"])), four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", labels={"foo": "a"}),
        [{"zone1": 3, "zone2": 2}],
    ),
    (
        "key in matchLabelKeys is ignored when LabelSelector is nil when feature gate enabled",
        pod(FOO, spread(1, "zone", None, matchLabelKeys=["bar"])), four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", labels={"foo": "a"}),
        [{"zone1": 0, "zone2": 0}],
    ),
    (
        "key in matchLabelKeys is ignored when it isn't exist in pod.labels",
        pod(FOO, spread(1, "zone", exists("foo"), matchLabelKeys=["bar"])), four_nodes(),
        on("node-a", "node-a", "node-b", "node-y", "node-y", labels={"foo": "a"}),
        [{"zone1": 3, "zone2": 2}],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "nodes", "existing", "want"),
    [case[1:] for case in INCLUSION],
    ids=[f"k8s: {case[0]}" for case in INCLUSION],
)
def test_prefilter_state(
    incoming: PodInfo,
    nodes: list[tuple[str, dict[str, Any]]],
    existing: list[PodInfo],
    want: list[dict[str, int]],
) -> None:
    """kube-scheduler's TpValueToMatchNum, per constraint, for its node inclusion policies."""
    _, state = filter_state(cluster(nodes, existing), incoming)
    assert counts_of(state) == want


# ---- AddPod / RemovePod, and the same through trimmed NodeInfos ------------------------

ZONE_ONLY = four_nodes()

REMOVE: list[tuple[str, PodInfo, list[tuple[str, dict[str, Any]]], list[PodInfo], int,
                   list[dict[str, int]]]] = [
    (
        "one spreadConstraint on zone, topologyKeyToMinPodsMap unchanged",
        pod(FOO, C1_ZONE), ZONE_ONLY[:3], on("node-a", "node-b", "node-x"), 0,
        [{"zone1": 1, "zone2": 1}],
    ),
    (
        "one spreadConstraint on node, topologyKeyToMinPodsMap changed",
        pod(FOO, C1_ZONE), ZONE_ONLY, on("node-a", "node-b", "node-x", "node-y"), 0,
        [{"zone1": 1, "zone2": 2}],
    ),
    (
        "delete an irrelevant pod won't help",
        pod(FOO, C1_ZONE), ZONE_ONLY,
        [*on("node-a", labels={"bar": ""}), *on("node-a", "node-b", "node-x", "node-y")], 0,
        [{"zone1": 2, "zone2": 2}],
    ),
    (
        "two spreadConstraints",
        pod(FOO, C1_ZONE, C1_NODE), ZONE_ONLY[:3],
        on("node-a", "node-a", "node-b", "node-x", "node-x"), 3,
        [{"zone1": 3, "zone2": 1}, {"node-a": 2, "node-b": 1, "node-x": 1}],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "nodes", "existing", "victim", "want"),
    [case[1:] for case in REMOVE],
    ids=[f"k8s: {case[0]}" for case in REMOVE],
)
def test_remove_pod(
    incoming: PodInfo,
    nodes: list[tuple[str, dict[str, Any]]],
    existing: list[PodInfo],
    victim: int,
    want: list[dict[str, int]],
) -> None:
    """kube-scheduler's TestPreFilterStateRemovePod; a trimmed NodeInfo judges its node alike."""
    cache = cluster(nodes, existing)
    gone = existing[victim]
    p, state = filter_state(cache, incoming)
    real = cache.node_info(gone.node_name)
    assert real is not None and real.node is not None
    trimmed = NodeInfo(real.node)
    for q in real.pods.values():
        if q.key != gone.key:
            trimmed.add_pod(q)
    # Preemption filters the node it trims: both ways give that node the same verdict.
    by_copy = verdict(p.filter(state, incoming, trimmed))
    p.remove_pod(state, incoming, gone, real)
    assert counts_of(state) == want
    assert verdict(p.filter(state, incoming, trimmed)) == by_copy


def test_remove_a_pod_that_does_not_exist_changes_nothing() -> None:
    """k8s: delete a non-existing pod won't help."""
    cache = cluster(ZONE_ONLY, on("node-a", "node-b", "node-x", "node-y"))
    incoming = pod(FOO, C1_ZONE)
    p, state = filter_state(cache, incoming)
    real = cache.node_info("node-a")
    assert real is not None
    p.remove_pod(state, incoming, pod({"bar": ""}, node="node-a"), real)
    assert counts_of(state) == [{"zone1": 2, "zone2": 2}]


NOT_BAR = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "foo", "operator": "NotIn", "values": ["bar"]}]}]}}}  # fmt: skip
ADD: list[tuple[str, PodInfo, list[tuple[str, dict[str, Any]]], str, PodInfo, list[PodInfo],
                list[dict[str, int]]]] = [
    (
        "add a pod when scheduling node affinity unmatched pod with NodeInclusionPolicy enabled",
        pod(FOO, C1_ZONE, affinity=NOT_BAR),
        [node("node-a", zone="zone1", node="node-a", foo="bar"),
         node("node-b", zone="zone2", node="node-b", foo="")],
        "node-a", pod(FOO, node="node-a"), [*on("node-a"), *on("node-b")], [{"zone2": 1}],
    ),
    (
        "add a pod when scheduling node affinity matched pod with NodeInclusionPolicy enabled",
        pod(FOO, C1_ZONE),
        [node("node-a", zone="zone1", node="node-a", foo="bar"),
         node("node-b", zone="zone2", node="node-b", foo="")],
        "node-b", pod(FOO, node="node-b"), [*on("node-a"), *on("node-b")],
        [{"zone1": 1, "zone2": 2}],
    ),
    (
        "add a label selector not matched pod when with NodeInclusionPolicy enabled",
        pod(FOO, C1_ZONE),
        [node("node-a", zone="zone1", node="node-a", foo="bar"),
         node("node-b", zone="zone2", node="node-b", foo="")],
        "node-b", pod(node="node-b"), [*on("node-a"), *on("node-b")],
        [{"zone1": 1, "zone2": 1}],
    ),
    (
        "add a pod when scheduling taint tolerated pod with NodeInclusionPolicy enabled",
        pod(FOO, C1_ZONE, tolerations=[{"key": "node.kubernetes.io/unschedulable",
                                        "operator": "Exists"}]),
        [node("node-a", zone="zone1", node="node-a", taints=True),
         node("node-b", zone="zone2", node="node-b")],
        "node-b", pod(FOO, node="node-b"), [*on("node-a"), *on("node-b")],
        [{"zone1": 1, "zone2": 2}],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "nodes", "target", "added", "existing", "want"),
    [case[1:] for case in ADD],
    ids=[f"k8s: {case[0]}" for case in ADD],
)
def test_add_pod(  # noqa: PLR0917 - one parameter per column of the table
    incoming: PodInfo,
    nodes: list[tuple[str, dict[str, Any]]],
    target: str,
    added: PodInfo,
    existing: list[PodInfo],
    want: list[dict[str, int]],
) -> None:
    """kube-scheduler's TestPreFilterStateAddPod: the counts after AddPod."""
    cache = cluster(nodes, existing)
    p, state = filter_state(cache, incoming)
    ni = cache.node_info(target)
    assert ni is not None
    p.add_pod(state, incoming, added, ni)
    assert counts_of(state) == want


def test_a_victim_removed_on_a_node_copy_makes_room() -> None:
    """Preemption's trimmed copy of a node: the skew is judged without the victim."""
    nodes = [node("a", node="a"), node("b", node="b")]
    cache = cluster(nodes, on("a", "a"))
    incoming = pod(FOO, C1_NODE)
    p, state = filter_state(cache, incoming)
    a = cache.node_info("a")
    assert a is not None and a.node is not None
    assert verdict(p.filter(state, incoming, a)) == FAIL
    trimmed = NodeInfo(a.node)
    trimmed.add_pod(next(iter(a.pods.values())))
    assert verdict(p.filter(state, incoming, trimmed)) == FAIL  # 1 + 1 - 0 > 1
    assert verdict(p.filter(state, incoming, NodeInfo(a.node))) == OK


def test_nominated_pods_count_on_their_node() -> None:
    """A pod nominated to a node (of at least this priority) counts in its domain."""
    cache = cluster([node("a", node="a"), node("b", node="b")], [])
    cache.nominate(pod(FOO, name="preemptor"), "a")
    _, got = run_filter(cache, pod(FOO, C1_NODE))
    assert got == {"a": FAIL, "b": OK}


# ---- Score: kube-scheduler's TestPodTopologySpreadScore --------------------------------

S_HOST = spread(1, HOST, exists("foo"), hard=False)


def hosts(*names: str, key: str = HOST) -> list[tuple[str, dict[str, Any]]]:
    labels: list[dict[str, Any]] = [{key: n} for n in names]
    return [node(n, **lab) for n, lab in zip(names, labels, strict=True)]


SCORE: list[tuple[str, PodInfo, list[tuple[str, dict[str, Any]]], list[str], list[PodInfo],
                  list[int]]] = [
    (
        "one constraint on node, no existing pods",
        pod(FOO, S_HOST), hosts("node-a", "node-b"), [], [], [100, 100],
    ),
    (
        "one constraint on node, only one node is candidate",
        pod(FOO, S_HOST), hosts("node-a", "node-b"), ["node-b"],
        on("node-a", "node-a", "node-b"), [100],
    ),
    (
        "one constraint on node, all nodes have the same number of matching pods",
        pod(FOO, S_HOST), hosts("node-a", "node-b"), [], on("node-a", "node-b"), [100, 100],
    ),
    (
        "one constraint on node, all 4 nodes are candidates",
        pod(FOO, S_HOST), hosts("node-a", "node-b", "node-c", "node-d"), [],
        on("node-a", "node-a", "node-b", "node-d", "node-d", "node-d"), [20, 60, 100, 0],
    ),
    (
        "one constraint on node, null selector",
        pod(FOO, spread(1, HOST, None, hard=False)), hosts("node-a", "node-b", "node-c", "node-d"),
        [], on("node-a", "node-a", "node-b", "node-d", "node-d", "node-d"), [100, 100, 100, 100],
    ),
    (
        "one constraint on node, all 4 nodes are candidates, maxSkew=2",
        pod(FOO, spread(2, HOST, exists("foo"), hard=False)),
        hosts("node-a", "node-b", "node-c", "node-d"), [],
        on("node-a", "node-a", "node-b", "node-d", "node-d", "node-d"), [33, 66, 100, 16],
    ),
    (
        "one constraint on node, all 4 nodes are candidates, maxSkew=3",
        pod(FOO, spread(3, HOST, exists("foo"), hard=False)),
        hosts("node-a", "node-b", "node-c", "node-d"), [],
        on(*["node-a"] * 4, *["node-b"] * 3, *["node-c"] * 2, "node-d"), [44, 66, 77, 100],
    ),
    (
        "system defaulting, nodes don't have zone, pods match service",
        pod(FOO, controller=("ReplicaSet", "rs-1")), hosts("node-a", "node-b", "node-c", "node-d"),
        [], on(*["node-a"] * 4, *["node-b"] * 3, *["node-c"] * 2, "node-d",
               controller=("ReplicaSet", "rs-1")),
        [44, 66, 77, 100],
    ),
    (
        "one constraint on node, 3 out of 4 nodes are candidates",
        pod(FOO, S_HOST), hosts("node-a", "node-b", "node-x", "node-y"), ["node-y"],
        on(*["node-a"] * 4, *["node-b"] * 2, "node-x", *["node-y"] * 3), [33, 83, 100],
    ),
    (
        "one constraint on node, 3 out of 4 nodes are candidates, one node doesn't match "
        "topology key",
        pod(FOO, S_HOST),
        [*hosts("node-a"), node("node-b", n="node-b"), *hosts("node-x", "node-y")],
        ["node-y"], on(*["node-a"] * 4, *["node-b"] * 2, "node-x", *["node-y"] * 3),
        [16, 0, 100],
    ),
    (
        "one constraint on zone, 3 out of 4 nodes are candidates",
        pod(FOO, spread(1, "zone", exists("foo"), hard=False)), four_nodes(), ["node-y"],
        on(*["node-a"] * 4, *["node-b"] * 2, "node-x", *["node-y"] * 3), [75, 75, 100],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "nodes", "failed", "existing", "want"),
    [case[1:] for case in SCORE],
    ids=[f"k8s: {case[0]}" for case in SCORE],
)
def test_score(
    incoming: PodInfo,
    nodes: list[tuple[str, dict[str, Any]]],
    failed: list[str],
    existing: list[PodInfo],
    want: list[int],
) -> None:
    """kube-scheduler's normalized scores for ScheduleAnyway constraints."""
    cache = cluster(nodes, existing)
    p = PodTopologySpread(cache)
    state = CycleState()
    candidates = [ni for ni in cache.node_infos() if ni.name not in failed]
    assert p.pre_score(state, incoming, candidates).code is Code.SUCCESS
    raw = p.score_all(state, incoming, candidates)
    assert raw == [p.score(state, incoming, ni) for ni in candidates]
    p.normalize(state, incoming, raw)
    assert raw == want


# ---- default constraints -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "applies"),
    [("ReplicaSet", True), ("StatefulSet", True), ("ReplicationController", True),
     ("Job", False), ("DaemonSet", False)],
)  # fmt: skip
def test_system_defaults_apply_to_replicated_controllers(kind: str, applies: bool) -> None:
    """The system defaults (ScheduleAnyway) apply to pods of RS / StatefulSet / RC only."""
    cache = cluster(hosts("a", "b"), [])
    p = PodTopologySpread(cache)
    owned = pod(FOO, controller=(kind, "uid-1"))
    assert p.pre_filter(CycleState(), owned).code is Code.SKIP  # no DoNotSchedule default
    got = p.pre_score(CycleState(), owned, list(cache.node_infos())).code
    assert got is (Code.SUCCESS if applies else Code.SKIP)
    assert (p.sign_pod(owned) is None) is applies
    keys = sorted(c.topology_key for c in p.constraints(owned, hard=False))
    assert keys == ([HOST, ZONE] if applies else [])


def test_defaults_count_the_pods_of_the_same_controller() -> None:
    """Default spreading counts the pods of the same controller, not of another one."""
    cache = cluster(
        hosts("a", "b"),
        [*on("a", "a", controller=("ReplicaSet", "mine")),
         *on("b", "b", "b", controller=("ReplicaSet", "other"))],
    )  # fmt: skip
    p = PodTopologySpread(cache)
    incoming = pod(FOO, controller=("ReplicaSet", "mine"))
    state = CycleState()
    nodes = list(cache.node_infos())
    p.pre_score(state, incoming, nodes)
    raw = p.score_all(state, incoming, nodes)
    p.normalize(state, incoming, raw)
    assert raw[1] > raw[0]


def test_own_constraints_replace_the_defaults() -> None:
    """A pod with constraints of its own gets no default ones."""
    p = PodTopologySpread(SchedulerCache())
    owned = pod(FOO, C1_ZONE, controller=("ReplicaSet", "x"))
    assert [c.topology_key for c in p.constraints(owned, hard=True)] == ["zone"]
    assert p.constraints(owned, hard=False) == ()


def test_list_defaulting_with_a_hard_default_filters() -> None:
    """defaultingType List: the given defaultConstraints, DoNotSchedule ones filter."""
    cache = cluster([node("a", node="a"), node("b", node="b")],
                    on("a", controller=("StatefulSet", "ss")))  # fmt: skip
    p = PodTopologySpread.from_args(
        cache,
        {"defaultingType": "List",
         "defaultConstraints": [{"maxSkew": 1, "topologyKey": "node",
                                 "whenUnsatisfiable": "DoNotSchedule"}]},
    )  # fmt: skip
    _, got = run_filter(cache, pod(FOO, controller=("StatefulSet", "ss")), p)
    assert got == {"a": FAIL, "b": OK}
    _, got = run_filter(cache, pod(FOO), p)  # no controller: no defaults
    assert got == {"a": OK, "b": OK}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"defaultingType": "Sometimes"}, "defaultingType"),
        ({"defaultConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                  "whenUnsatisfiable": "ScheduleAnyway"}]}, "System"),
        ({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {}}]}, "labelSelector"),
        ({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"},
            {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]},
         "duplicate"),
        ({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]},
         r"defaultConstraints\[0\]\.maxSkew"),
        ({"defaultConstraint": []}, "unknown"),
    ],
    ids=["bad-defaulting-type", "system-with-constraints", "default-with-selector",
         "duplicate-default", "default-skew-zero", "misspelt-argument"],
)  # fmt: skip
def test_args_are_validated_by_name(args: dict[str, Any], message: str) -> None:
    """kube-scheduler's ValidatePodTopologySpreadArgs rules, errors naming the argument."""
    with pytest.raises(ValueError, match=message):
        PodTopologySpread.from_args(SchedulerCache(), args)


# ---- bad input, cheap path -------------------------------------------------------------


@pytest.mark.parametrize(
    ("constraint", "field"),
    [
        ({"maxSkew": -1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}, "maxSkew"),
        ({"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}, "maxSkew"),
        ({"maxSkew": "x", "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}, "maxSkew"),
        ({"maxSkew": 1, "topologyKey": "", "whenUnsatisfiable": "DoNotSchedule"}, "topologyKey"),
        ({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Maybe"},
         "whenUnsatisfiable"),
        ({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
          "minDomains": 2}, "minDomains"),
        ({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
          "minDomains": 0}, "minDomains"),
        ({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
          "nodeTaintsPolicy": "Sometimes"}, "nodeTaintsPolicy"),
        ({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
          "labelSelector": {"matchExpressions": [{"key": "a", "operator": "Gt",
                                                  "values": ["1"]}]}}, "operator"),
        ("not-an-object", "[0]"),
    ],
    ids=["negative-skew", "zero-skew", "text-skew", "empty-key", "unknown-when",
         "min-domains-when-soft", "min-domains-zero", "unknown-taints-policy",
         "unknown-operator", "not-an-object"],
)  # fmt: skip
def test_malformed_constraints_make_the_pod_unschedulable(constraint: Any, field: str) -> None:
    """Bad input never raises: PreFilter rejects the pod with a reason naming the field."""
    bad = make_pod("bad", topologySpreadConstraints=[constraint])
    assert bad.spread_constraints == ()
    assert bad.spread_error is not None and field in bad.spread_error
    assert bad.spread_error.startswith("spec.topologySpreadConstraints[0]")
    p = PodTopologySpread(SchedulerCache())
    got = p.pre_filter(CycleState(), bad)
    assert got.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert got.reasons == (bad.spread_error,)
    assert p.pre_score(CycleState(), bad, []).code is Code.SKIP


def test_a_pod_without_constraints_is_skipped() -> None:
    """No constraints and no defaults: PreFilter and PreScore SKIP."""
    cache = cluster(hosts("a"), on("a"))
    p = PodTopologySpread(cache)
    assert p.pre_filter(CycleState(), pod(FOO)).code is Code.SKIP
    assert p.pre_score(CycleState(), pod(FOO), list(cache.node_infos())).code is Code.SKIP
    assert p.sign_pod(pod(FOO)) == ()


def test_counts_follow_the_node_generation() -> None:
    """A pod added between cycles is counted in the next one (the memo is per generation)."""
    cache = cluster([node("a", node="a"), node("b", node="b")], [])
    incoming = pod(FOO, C1_NODE)
    p = PodTopologySpread(cache)
    _, got = run_filter(cache, incoming, p)
    assert got == {"a": OK, "b": OK}
    cache.add_pod(pod(FOO, node="a"))
    _, got = run_filter(cache, incoming, p)
    assert got == {"a": FAIL, "b": OK}


# ---- properties -----------------------------------------------------------------------

APPS = ("a", "b")


@st.composite
def topologies(draw: st.DrawFn) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for i in range(draw(st.integers(1, 7))):
        labels = {HOST: f"n{i}"}
        if draw(st.integers(0, 5)) > 0:
            labels[ZONE] = draw(st.sampled_from(["z1", "z2", "z3"]))
        if draw(st.booleans()):
            labels["disk"] = "ssd"
        out.append(node(f"n{i}", taints=draw(st.integers(0, 5)) == 0, **labels))
    return out


@st.composite
def constraints(draw: st.DrawFn) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if draw(st.integers(0, 3)) == 0:
        extra["minDomains"] = draw(st.integers(1, 4))
    if draw(st.booleans()):
        extra["nodeAffinityPolicy"] = draw(st.sampled_from(["Honor", "Ignore"]))
    if draw(st.booleans()):
        extra["nodeTaintsPolicy"] = draw(st.sampled_from(["Honor", "Ignore"]))
    selector = {"matchLabels": {"app": draw(st.sampled_from(APPS))}}
    return spread(draw(st.integers(1, 3)), draw(st.sampled_from([HOST, ZONE])), selector, **extra)


def _eligible(c: SpreadConstraint, incoming: PodInfo, labels_node: Any) -> bool:
    if c.honor_node_affinity and not pod_matches_node(incoming, labels_node):
        return False
    return not (
        c.honor_node_taints
        and untolerated(labels_node.taints, incoming.tolerations, ("NoSchedule", "NoExecute"))
    )


def reference(cache: SchedulerCache, incoming: PodInfo) -> dict[str, str]:
    """Each node's verdict, every domain recounted from scratch by the API's definition."""
    cs = [c for c in incoming.spread_constraints if c.hard]
    nodes = list(cache.node_infos())
    keys = [c.topology_key for c in cs]
    out = {}
    for ni in nodes:
        assert ni.node is not None
        got = OK
        for c in cs:
            v = ni.node.labels.get(c.topology_key)
            if v is None:
                got = MISSING
                break
            counts: dict[str, int] = {}
            for other in nodes:
                assert other.node is not None
                if not all(k in other.node.labels for k in keys):
                    continue
                if not _eligible(c, incoming, other.node):
                    continue
                dom = other.node.labels[c.topology_key]
                counts[dom] = counts.get(dom, 0) + sum(
                    1
                    for q in other.pods.values()
                    if q.namespace == incoming.namespace
                    and not q.deleting
                    and c.selector.matches(q.labels)
                )
            low = 0 if len(counts) < c.min_domains else min(counts.values(), default=0)
            me = int(c.selector.matches(incoming.labels))
            if counts.get(v, 0) + me - low > c.max_skew:
                got = FAIL
                break
        out[ni.name] = got
    return out


@st.composite
def scenes(draw: st.DrawFn) -> tuple[SchedulerCache, PodInfo]:
    nodes = draw(topologies())
    existing = []
    for i in range(draw(st.integers(0, 12))):
        existing.append(
            pod(
                {"app": draw(st.sampled_from(APPS))},
                node=draw(st.sampled_from([n for n, _ in nodes])),
                name=f"e{i}",
                namespace=draw(st.sampled_from(["default", "default", "other"])),
                deleting=draw(st.integers(0, 6)) == 0,
            )
        )
    extra: dict[str, Any] = {}
    if draw(st.booleans()):
        extra["nodeSelector"] = {"disk": "ssd"}
    if draw(st.booleans()):
        extra["tolerations"] = [{"operator": "Exists"}]
    incoming = pod(
        {"app": draw(st.sampled_from(APPS))},
        *draw(st.lists(constraints(), min_size=1, max_size=2)),
        name="incoming",
        **extra,
    )
    return cluster(nodes, existing), incoming


@given(scenes())
def test_filter_agrees_with_a_recount_from_scratch(scene: tuple[SchedulerCache, PodInfo]) -> None:
    """PreFilter's counts and critical paths give what recounting every domain gives."""
    cache, incoming = scene
    _, got = run_filter(cache, incoming)
    assert got == reference(cache, incoming)


@given(scenes(), st.data())
def test_trimmed_nodes_agree_with_a_recount_from_scratch(
    scene: tuple[SchedulerCache, PodInfo], data: st.DataObject
) -> None:
    """Filter on a copy of a node without some pods equals a recount on a cluster without them."""
    cache, incoming = scene
    p = PodTopologySpread(cache)
    state = CycleState()
    p.pre_filter(state, incoming)
    target = data.draw(st.sampled_from([ni.name for ni in cache.node_infos()]))
    real = cache.node_info(target)
    assert real is not None and real.node is not None
    gone = [q for q in real.pods.values() if data.draw(st.booleans())]
    trimmed = NodeInfo(real.node)
    for q in real.pods.values():
        if q not in gone:
            trimmed.add_pod(q)
    got = verdict(p.filter(state, incoming, trimmed))
    for q in gone:
        cache.remove_pod(q.key)
    assert got == reference(cache, incoming)[target]


def _skews(cache: SchedulerCache, incoming: PodInfo) -> list[tuple[int, int]]:
    """(max - min over eligible domains, maxSkew) of each DoNotSchedule constraint."""
    out = []
    cs = [c for c in incoming.spread_constraints if c.hard]
    keys = [c.topology_key for c in cs]
    for c in cs:
        counts: dict[str, int] = {}
        for ni in cache.node_infos():
            assert ni.node is not None
            labels = ni.node.labels
            if all(k in labels for k in keys) and _eligible(c, incoming, ni.node):
                n = sum(1 for q in ni.pods.values() if c.selector.matches(q.labels))
                counts[labels[c.topology_key]] = counts.get(labels[c.topology_key], 0) + n
        if counts:
            out.append((max(counts.values()) - min(counts.values()), c.max_skew))
    return out


@given(topologies(), st.lists(constraints(), min_size=1, max_size=2), st.integers(1, 20), st.data())
def test_placing_pods_where_filter_admits_keeps_every_skew_within_max_skew(
    nodes: list[tuple[str, dict[str, Any]]],
    cs: list[dict[str, Any]],
    replicas: int,
    data: st.DataObject,
) -> None:
    """A Deployment placed pod by pod, each on any node the filters admit: skew <= maxSkew."""
    cache = cluster(nodes, [])
    spread = PodTopologySpread(cache)
    plugins: list[FilterPlugin] = [spread, NodeAffinity(), TaintToleration()]
    apps = {c["labelSelector"]["matchLabels"]["app"] for c in cs}
    labels = {"app": next(iter(apps))} if len(apps) == 1 else {"app": "a"}
    for i in range(replicas):
        incoming = pod(labels, *cs, name=f"r{i}")
        state = CycleState()
        statuses = [spread.pre_filter(state, incoming)]
        fits = [
            ni.name
            for ni in cache.node_infos()
            if all(pl.filter(state, incoming, ni).ok for pl in plugins)
        ]
        if not fits or statuses[0].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
            break
        cache.assume(incoming, data.draw(st.sampled_from(fits)))
        for skew, max_skew in _skews(cache, incoming):
            assert skew <= max_skew


# ---- tallies kept by the cache's change journal ----------------------------------------


@st.composite
def changes(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Random informer events: pods added, deleted; nodes relabelled, deleted."""
    ops: list[tuple[str, Any]] = []
    for i in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["add", "add", "add", "delete", "relabel", "node-gone"]))
        n = f"n{draw(st.integers(0, 4))}"
        if kind == "add":
            labels = {"app": draw(st.sampled_from(APPS))}
            owner = ("ReplicaSet", "rs") if draw(st.booleans()) else None
            ops.append(("add", pod(labels, node=n, name=f"c{i}", controller=owner,
                                   deleting=draw(st.integers(0, 5)) == 0)))  # fmt: skip
        elif kind == "delete":
            ops.append(("delete", f"c{draw(st.integers(0, i))}"))
        elif kind == "relabel":
            labels = {HOST: n, ZONE: draw(st.sampled_from(["z1", "z2", "z3"]))}
            if draw(st.booleans()):
                labels["disk"] = "ssd"
            ops.append(("relabel", (n, labels, draw(st.booleans()))))
        else:
            ops.append(("node-gone", n))
    return ops


def apply(cache: SchedulerCache, op: tuple[str, Any]) -> None:
    kind, arg = op
    if kind == "add":
        if cache.node_info(arg.node_name) is not None:
            cache.add_pod(arg)
    elif kind == "delete":
        cache.remove_pod(pod(name=arg).key)
    elif kind == "relabel":
        name, labels, taints = arg
        cache.update_node(make_node(name, labels=labels, taints=TAINTED if taints else None))
    else:
        cache.remove_node(arg)


@given(changes(), st.lists(constraints(), min_size=1, max_size=2), st.integers(1, 8), st.data())
def test_tallies_follow_the_cache_through_any_changes(
    ops: list[tuple[str, Any]],
    cs: list[dict[str, Any]],
    journal: int,
    data: st.DataObject,
) -> None:
    """One plugin across a run of changes filters and scores as a fresh one recounting all."""
    cache = SchedulerCache(journal_length=journal)
    for i in range(5):
        cache.add_node(make_node(f"n{i}", labels={HOST: f"n{i}", ZONE: f"z{i % 2}"}))
    soft = [{**c, "whenUnsatisfiable": "ScheduleAnyway"} for c in cs if "minDomains" not in c]
    extra: dict[str, Any] = {"nodeSelector": {"disk": "ssd"}} if data.draw(st.booleans()) else {}
    incoming = [
        pod({"app": "a"}, *cs, name="hard", **extra),
        pod({"app": "a"}, *soft, name="soft", **extra),
        pod({"app": "b"}, name="defaulted", controller=("ReplicaSet", "rs")),
    ]
    kept = PodTopologySpread(cache)
    for op in ops:
        apply(cache, op)
        nodes = list(cache.node_infos())
        for p in incoming:
            fresh = PodTopologySpread(cache)
            got, want = CycleState(), CycleState()
            assert kept.pre_filter(got, p).code is fresh.pre_filter(want, p).code
            assert kept.filter_all(got, p, nodes) == fresh.filter_all(want, p, nodes)
            if nodes:
                assert kept.pre_score(got, p, nodes).code is fresh.pre_score(want, p, nodes).code
                assert kept.score_all(got, p, nodes) == fresh.score_all(want, p, nodes)
                assert column_scores(kept, got, p, cache, nodes) == normalized(
                    fresh, want, p, nodes
                )


def normalized(
    plugin: PodTopologySpread, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]
) -> list[int]:
    raw = plugin.score_all(state, pod, nodes)
    plugin.normalize(state, pod, raw)
    return raw


def column_scores(
    plugin: PodTopologySpread,
    state: CycleState,
    pod: PodInfo,
    cache: SchedulerCache,
    nodes: list[NodeInfo],
) -> list[int]:
    rows = np.array([ni.row for ni in nodes], dtype=np.intp)
    scores = plugin.score_columns(state, pod, cache.columns, rows)
    assert scores is not None
    return list(scores.tolist())


@given(scenes(), st.data())
def test_score_columns_give_the_per_node_scores(
    scene: tuple[SchedulerCache, PodInfo], data: st.DataObject
) -> None:
    """score_columns equals score then normalize node by node, on any candidate subset, for
    the pod's own constraints made soft and for the system defaults (a node without a
    zone label, or with an empty one, is in the domain "")."""
    cache, _ = scene
    if data.draw(st.booleans()):
        name = data.draw(st.sampled_from([ni.name for ni in cache.node_infos()]))
        ni = cache.node_info(name)
        assert ni is not None and ni.node is not None
        cache.update_node(make_node(name, labels={**ni.node.labels, ZONE: ""}))
    cs = data.draw(st.lists(constraints(), min_size=1, max_size=2))
    soft = [{**c, "whenUnsatisfiable": "ScheduleAnyway"} for c in cs if "minDomains" not in c]
    extra: dict[str, Any] = {"nodeSelector": {"disk": "ssd"}} if data.draw(st.booleans()) else {}
    infos = [ni for ni in cache.node_infos() if data.draw(st.booleans())]
    infos = infos or list(cache.node_infos())
    for p in (
        pod({"app": data.draw(st.sampled_from(APPS))}, *soft, name="soft", **extra),
        pod({"app": "b"}, name="defaulted", controller=("ReplicaSet", "rs")),
    ):
        plugin = PodTopologySpread(cache)
        state = CycleState()
        if plugin.pre_score(state, p, infos).code is Code.SKIP:
            continue
        assert column_scores(plugin, state, p, cache, infos) == normalized(plugin, state, p, infos)


def test_add_pod_counts_in_the_state_of_the_pod_named() -> None:
    """add_pod for another pod of the cycle (a gang member's plan) is seen in its domain."""
    nodes = [node("a", zone="z1"), node("b", zone="z1"), node("c", zone="z2")]
    cache = cluster(nodes, [])
    p = PodTopologySpread(cache)
    state = CycleState()
    assert p.pre_filter(state, pod(FOO, name="first")).code is Code.SKIP
    member = pod(FOO, C1_ZONE, name="member")
    a = cache.node_info("a")
    assert a is not None
    p.add_pod(state, member, pod(FOO, name="planned"), a)
    got = {ni.name: verdict(p.filter(state, member, ni)) for ni in cache.node_infos()}
    # a is judged by its own NodeInfo, which does not hold the planned pod.
    assert got == {"a": OK, "b": FAIL, "c": OK}


def test_score_columns_put_a_node_without_the_zone_label_in_the_empty_domain() -> None:
    """System defaults: a node without a zone label and one labelled zone="" are one
    domain, "", for the weight (2 domains here, not 3) and the count."""
    rs = ("ReplicaSet", "rs")
    nodes: list[tuple[str, dict[str, Any]]] = [
        (name, {"labels": labels})
        for name, labels in (
            ("n0", {HOST: "n0"}),
            ("n1", {HOST: "n1", ZONE: ""}),
            ("n2", {HOST: "n2", ZONE: "z1"}),
        )
    ]
    existing = [
        *on("n0", labels={"app": "b"}, controller=rs),
        *on("n1", "n1", labels={"app": "b"}, controller=rs),
    ]
    cache = cluster(nodes, existing)
    incoming = pod({"app": "b"}, name="defaulted", controller=rs)
    plugin = PodTopologySpread(cache)
    state = CycleState()
    infos = list(cache.node_infos())
    assert plugin.pre_score(state, incoming, infos).code is Code.SUCCESS
    want = normalized(plugin, state, incoming, infos)
    assert want == [100, 30, 84]  # n1: 2 own pods, 3 in the domain "" (n0's and its own)
    assert column_scores(plugin, state, incoming, cache, infos) == want
