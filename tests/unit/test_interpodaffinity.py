"""InterPodAffinity, held to kube-scheduler's own test tables and to a recount from scratch.

Cases named ``k8s: ...`` are ported from kube-scheduler's
``interpodaffinity/filtering_test.go`` (TestRequiredAffinitySingleNode,
TestRequiredAffinityMultipleNodes) and ``scoring_test.go``
(TestPreferredAffinity), with their names. Where a kube-scheduler case left
``topologyKey`` empty (the apiserver refuses that), it is ``region``, which
gives the same verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import Code, CycleState, Status
from lasched.model.affinity import AffinityTerm
from lasched.model.pod import PodInfo
from lasched.plugins.interpodaffinity import (
    REASON_AFFINITY,
    REASON_ANTI_AFFINITY,
    REASON_EXISTING_ANTI_AFFINITY,
    InterPodAffinity,
)
from tests.unit import columns_gen
from tests.unit.factories import make_node, make_pod

OK = "ok"
AFF = REASON_AFFINITY
ANTI = REASON_ANTI_AFFINITY
EXISTING = REASON_EXISTING_ANTI_AFFINITY
SKIPPED = "skip"

NAMESPACE_LABELS = {
    "subteam1.team1": {"team": "team1"},
    "subteam2.team1": {"team": "team1"},
    "subteam1.team2": {"team": "team2"},
    "subteam2.team2": {"team": "team2"},
}

S1 = {"security": "S1"}
S2 = {"security": "S2"}
SECURITYSCAN = {"service": "securityscan"}


# ---- builders -------------------------------------------------------------------------


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    e: dict[str, Any] = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return e


def term(key: str, *exprs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A PodAffinityTerm on topology ``key`` whose selector ANDs ``exprs``."""
    return {"labelSelector": {"matchExpressions": list(exprs)}, "topologyKey": key, **extra}


def weighted(weight: int, t: dict[str, Any]) -> dict[str, Any]:
    return {"weight": weight, "podAffinityTerm": t}


def affinity(
    *,
    req: Sequence[dict[str, Any]] = (),
    anti: Sequence[dict[str, Any]] = (),
    pref: Sequence[dict[str, Any]] = (),
    pref_anti: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req or pref:
        out["podAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": list(req),
            "preferredDuringSchedulingIgnoredDuringExecution": list(pref),
        }
    if anti or pref_anti:
        out["podAntiAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": list(anti),
            "preferredDuringSchedulingIgnoredDuringExecution": list(pref_anti),
        }
    return out


_seq = iter(range(1_000_000))


def pod(
    labels: Mapping[str, str] | None = None,
    *,
    node: str = "",
    ns: str = "default",
    name: str | None = None,
    **aff: Any,
) -> PodInfo:
    spec: dict[str, Any] = {"affinity": affinity(**aff)} if aff else {}
    return make_pod(
        name or f"p{next(_seq)}", namespace=ns, node=node, labels=dict(labels or {}), **spec
    )


def cluster(nodes: Mapping[str, Mapping[str, str]], pods: Sequence[PodInfo]) -> SchedulerCache:
    cache = SchedulerCache()
    for name, labels in nodes.items():
        cache.add_node(make_node(name, labels=dict(labels)))
    for p in pods:
        cache.add_pod(p)
    return cache


def plugin(cache: SchedulerCache, **kwargs: Any) -> InterPodAffinity:
    return InterPodAffinity(cache, namespace_labels=NAMESPACE_LABELS.get, **kwargs)


def verdict(st: Status) -> str:
    if st.ok:
        return OK
    return st.reasons[0].split(" (")[0]


def run_filter(
    cache: SchedulerCache, incoming: PodInfo, **kwargs: Any
) -> tuple[Status, dict[str, Status]]:
    p = plugin(cache, **kwargs)
    state = CycleState()
    pre = p.pre_filter(state, incoming)
    nodes = list(cache.node_infos())
    if pre.code is not Code.SUCCESS:
        return pre, {}
    one_by_one = {ni.name: p.filter(state, incoming, ni) for ni in nodes}
    all_at_once = dict(
        zip((ni.name for ni in nodes), p.filter_all(state, incoming, nodes), strict=True)
    )
    assert one_by_one == all_at_once
    return pre, one_by_one


# ---- Filter: kube-scheduler's TestRequiredAffinitySingleNode ---------------------------

NODE1 = {"node1": {"region": "r1", "zone": "z11"}}
EXISTING_ON_NODE1 = pod(SECURITYSCAN, node="node1", name="existing")

SINGLE_NODE: list[tuple[str, PodInfo, list[PodInfo], str]] = [
    (
        "A pod that has no required pod affinity scheduling rules can schedule onto a node "
        "with no existing pods",
        pod(), [], SKIPPED,
    ),
    (
        "satisfies with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity using "
        "In operator that matches the existing pod",
        pod(S1, req=[term("region", expr("service", "In", "securityscan", "value2"))]),
        [EXISTING_ON_NODE1], OK,
    ),
    (
        "satisfies the pod with requiredDuringSchedulingIgnoredDuringExecution in PodAffinity "
        "using not in operator in labelSelector that matches the existing pod",
        pod(S1, req=[term("region", expr("service", "NotIn", "securityscan3", "value3"))]),
        [EXISTING_ON_NODE1], OK,
    ),
    (
        "Does not satisfy the PodAffinity with labelSelector because of diff Namespace",
        pod(S1, req=[term("region", expr("service", "In", "securityscan", "value2"),
                          namespaces=["DiffNameSpace"])]),
        [pod(SECURITYSCAN, node="node1", ns="ns")], AFF,
    ),
    (
        "Doesn't satisfy the PodAffinity because of unmatching labelSelector with the "
        "existing pod",
        pod(SECURITYSCAN, req=[term("region", expr("service", "In", "antivirusscan", "value2"))]),
        [EXISTING_ON_NODE1], AFF,
    ),
    (
        "satisfies the PodAffinity with different label Operators in multiple "
        "RequiredDuringSchedulingIgnoredDuringExecution",
        pod(S1, req=[
            term("region", expr("service", "Exists"), expr("wrongkey", "DoesNotExist")),
            term("region", expr("service", "In", "securityscan"),
                 expr("service", "NotIn", "WrongValue")),
        ]),
        [EXISTING_ON_NODE1], OK,
    ),
    (
        "The labelSelector requirements(items of matchExpressions) are ANDed, the pod cannot "
        "schedule onto the node because one of the matchExpression item don't match.",
        pod(S1, req=[
            term("region", expr("service", "Exists"), expr("wrongkey", "DoesNotExist")),
            term("region", expr("service", "In", "securityscan2"),
                 expr("service", "NotIn", "WrongValue")),
        ]),
        [EXISTING_ON_NODE1], AFF,
    ),
    (
        "satisfies the PodAffinity and PodAntiAffinity with the existing pod",
        pod(S1, req=[term("region", expr("service", "In", "securityscan", "value2"))],
            anti=[term("node", expr("service", "In", "antivirusscan", "value2"))]),
        [EXISTING_ON_NODE1], OK,
    ),
    (
        "satisfies the PodAffinity and PodAntiAffinity and PodAntiAffinity symmetry with the "
        "existing pod",
        pod(S1, req=[term("region", expr("service", "In", "securityscan", "value2"))],
            anti=[term("node", expr("service", "In", "antivirusscan", "value2"))]),
        [pod(SECURITYSCAN, node="node1",
             anti=[term("node", expr("service", "In", "antivirusscan", "value2"))])],
        OK,
    ),
    (
        "satisfies the PodAffinity but doesn't satisfy the PodAntiAffinity with the existing pod",
        pod(S1, req=[term("region", expr("service", "In", "securityscan", "value2"))],
            anti=[term("zone", expr("service", "In", "securityscan", "value2"))]),
        [EXISTING_ON_NODE1], ANTI,
    ),
    (
        "satisfies the PodAffinity and PodAntiAffinity but doesn't satisfy PodAntiAffinity "
        "symmetry with the existing pod",
        pod(SECURITYSCAN, req=[term("region", expr("service", "In", "securityscan", "value2"))],
            anti=[term("node", expr("service", "In", "antivirusscan", "value2"))]),
        [pod(SECURITYSCAN, node="node1",
             anti=[term("zone", expr("service", "In", "securityscan", "value2"))])],
        EXISTING,
    ),
    (
        "pod matches its own Label in PodAffinity and that matches the existing pod Labels",
        pod(SECURITYSCAN, req=[term("region", expr("service", "NotIn", "securityscan", "value2"))]),
        [pod(SECURITYSCAN, node="node2")], AFF,
    ),
    (
        "verify that PodAntiAffinity from existing pod is respected when pod has no "
        "AntiAffinity constraints. doesn't satisfy PodAntiAffinity symmetry with the existing pod",
        pod(SECURITYSCAN),
        [pod(SECURITYSCAN, node="node1",
             anti=[term("zone", expr("service", "In", "securityscan", "value2"))])],
        EXISTING,
    ),
    (
        "verify that PodAntiAffinity from existing pod is respected when pod has no "
        "AntiAffinity constraints. satisfy PodAntiAffinity symmetry with the existing pod",
        pod(SECURITYSCAN),
        [pod(SECURITYSCAN, node="node1",
             anti=[term("zone", expr("service", "NotIn", "securityscan", "value2"))])],
        SKIPPED,
    ),
    (
        "satisfies the PodAntiAffinity with existing pod but doesn't satisfy PodAntiAffinity "
        "symmetry with incoming pod",
        pod(SECURITYSCAN, anti=[term("region", expr("service", "Exists")),
                                term("region", expr("security", "Exists"))]),
        [pod(S1, node="node1", anti=[term("zone", expr("security", "Exists"))])],
        ANTI,
    ),
    (
        "PodAntiAffinity symmetry check a1: incoming pod and existing pod partially match each "
        "other on AffinityTerms",
        pod(SECURITYSCAN, anti=[term("zone", expr("service", "Exists")),
                                term("zone", expr("security", "Exists"))]),
        [pod(S1, node="node1", anti=[term("zone", expr("security", "Exists"))])],
        ANTI,
    ),
    (
        "PodAntiAffinity symmetry check a2: incoming pod and existing pod partially match each "
        "other on AffinityTerms",
        pod(S1, anti=[term("zone", expr("security", "Exists"))]),
        [pod(SECURITYSCAN, node="node1", anti=[term("zone", expr("service", "Exists")),
                                               term("zone", expr("security", "Exists"))])],
        EXISTING,
    ),
    (
        "PodAntiAffinity symmetry check b1: incoming pod and existing pod partially match each "
        "other on AffinityTerms",
        pod({"abc": "", "xyz": ""}, anti=[term("zone", expr("abc", "Exists")),
                                          term("zone", expr("def", "Exists"))]),
        [pod({"def": "", "xyz": ""}, node="node1",
             anti=[term("zone", expr("abc", "Exists")), term("zone", expr("def", "Exists"))])],
        ANTI,
    ),
    (
        "PodAntiAffinity symmetry check b2: incoming pod and existing pod partially match each "
        "other on AffinityTerms",
        pod({"def": "", "xyz": ""}, anti=[term("zone", expr("abc", "Exists")),
                                          term("zone", expr("def", "Exists"))]),
        [pod({"abc": "", "xyz": ""}, node="node1",
             anti=[term("zone", expr("abc", "Exists")), term("zone", expr("def", "Exists"))])],
        ANTI,
    ),
    (
        "affinity with NamespaceSelector",
        pod(S1, req=[term("region", expr("service", "In", "securityscan", "value2"),
                          namespaceSelector={"matchExpressions": [expr("team", "In", "team1")]})]),
        [pod(SECURITYSCAN, node="node1", ns="subteam1.team1")], OK,
    ),
    (
        "affinity with non-matching NamespaceSelector",
        pod(S1, req=[term("region", expr("service", "In", "securityscan", "value2"),
                          namespaceSelector={"matchExpressions": [expr("team", "In", "team1")]})]),
        [pod(SECURITYSCAN, node="node1", ns="subteam1.team2")], AFF,
    ),
    (
        "anti-affinity with matching NamespaceSelector",
        pod(S1, ns="subteam1.team1",
            anti=[term("zone", expr("service", "In", "securityscan", "value2"),
                       namespaceSelector={"matchExpressions": [expr("team", "In", "team1")]})]),
        [pod(SECURITYSCAN, node="node1", ns="subteam2.team1")], ANTI,
    ),
    (
        "anti-affinity with matching all NamespaceSelector",
        pod(S1, ns="subteam1.team1",
            anti=[term("zone", expr("service", "In", "securityscan", "value2"),
                       namespaceSelector={})]),
        [pod(SECURITYSCAN, node="node1", ns="subteam2.team1")], ANTI,
    ),
    (
        "anti-affinity with non-matching NamespaceSelector",
        pod(S1, ns="subteam1.team1",
            anti=[term("zone", expr("service", "In", "securityscan", "value2"),
                       namespaceSelector={"matchExpressions": [expr("team", "In", "team1")]})]),
        [pod(SECURITYSCAN, node="node1", ns="subteam1.team2")], OK,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "existing", "want"),
    [case[1:] for case in SINGLE_NODE],
    ids=[f"k8s: {case[0]}" for case in SINGLE_NODE],
)
def test_required_affinity_single_node(
    incoming: PodInfo, existing: list[PodInfo], want: str
) -> None:
    """kube-scheduler's verdicts for one node, its reasons word for word."""
    pre, statuses = run_filter(cluster(NODE1, existing), incoming)
    if want == SKIPPED:
        assert pre.code is Code.SKIP
        return
    assert pre.code is Code.SUCCESS
    st = statuses["node1"]
    assert verdict(st) == want
    if want == AFF:
        assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    elif want in (ANTI, EXISTING):
        assert st.code is Code.UNSCHEDULABLE


# ---- Filter: kube-scheduler's TestRequiredAffinityMultipleNodes ------------------------

CHINA = {"region": "China"}
CHINA_AZ1 = {"region": "China", "az": "az1"}
INDIA = {"region": "India"}
R1Z1 = {"region": "r1", "zone": "z1"}

MULTI_NODE: list[tuple[str, PodInfo, list[PodInfo], dict[str, dict[str, str]], list[str]]] = [
    (
        "A pod can be scheduled onto all the nodes that have the same topology key & label "
        "value with one of them has an existing pod that matches the affinity rules",
        pod(req=[term("region", expr("foo", "In", "bar"))]),
        [pod({"foo": "bar"}, node="node1")],
        {"node1": CHINA, "node2": CHINA_AZ1, "node3": INDIA}, [OK, OK, AFF],
    ),
    (
        "The affinity rule is to schedule all of the pods of this collection to the same zone. "
        "The first pod of the collection should not be blocked from being scheduled onto any "
        "node, even there's no existing pod that matches the rule anywhere.",
        pod({"foo": "bar", "service": "securityscan"},
            req=[term("zone", expr("foo", "In", "bar")),
                 term("zone", expr("service", "In", "securityscan"))]),
        [pod({"foo": "bar"}, node="nodeA")],
        {"nodeA": {"zone": "az1", "hostname": "h1"}, "nodeB": {"zone": "az2", "hostname": "h2"}},
        [OK, OK],
    ),
    (
        "The first pod of the collection can only be scheduled on nodes labelled with the "
        "requested topology keys",
        pod({"foo": "bar", "service": "securityscan"},
            req=[term("zone", expr("foo", "In", "bar")),
                 term("zone", expr("service", "In", "securityscan"))]),
        [pod({"foo": "bar"}, node="nodeA")],
        {"nodeA": {"zoneLabel": "az1", "hostname": "h1"},
         "nodeB": {"zoneLabel": "az2", "hostname": "h2"}},
        [AFF, AFF],
    ),
    (
        "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that "
        "matches the inter pod affinity rule. The pod can not be scheduled onto nodeA and nodeB.",
        pod(anti=[term("region", expr("foo", "In", "abc"))]),
        [pod({"foo": "abc"}, node="nodeA")],
        {"nodeA": {"region": "r1", "hostname": "nodeA"},
         "nodeB": {"region": "r1", "hostname": "nodeB"}},
        [ANTI, ANTI],
    ),
    (
        "This test ensures that anti-affinity matches a pod when any term of the anti-affinity "
        "rule matches a pod.",
        pod(anti=[term("region", expr("foo", "In", "abc")),
                  term("zone", expr("service", "In", "securityscan"))]),
        [pod({"foo": "abc", "service": "securityscan"}, node="nodeA")],
        {"nodeA": {**R1Z1, "hostname": "nodeA"},
         "nodeB": {"region": "r1", "zone": "z2", "hostname": "nodeB"}},
        [ANTI, ANTI],
    ),
    (
        "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that "
        "matches the inter pod affinity rule. The pod can not be scheduled onto nodeA and nodeB "
        "but can be scheduled onto nodeC",
        pod(anti=[term("region", expr("foo", "In", "abc"))]),
        [pod({"foo": "abc"}, node="nodeA")],
        {"nodeA": CHINA, "nodeB": CHINA_AZ1, "nodeC": INDIA}, [ANTI, ANTI, OK],
    ),
    (
        "NodeA and nodeB have same topologyKey and label value. NodeA has an existing pod that "
        "matches the inter pod affinity rule. The pod can not be scheduled onto nodeA, nodeB, "
        "but can be scheduled onto nodeC (NodeC has an existing pod that match the inter pod "
        "affinity rule but in different namespace)",
        pod({"foo": "123"}, ns="NS1", anti=[term("region", expr("foo", "In", "bar"))]),
        [pod({"foo": "bar"}, node="nodeA", ns="NS1"),
         pod(node="nodeC", ns="NS2", anti=[term("region", expr("foo", "In", "123"))])],
        {"nodeA": CHINA, "nodeB": CHINA_AZ1, "nodeC": INDIA}, [ANTI, ANTI, OK],
    ),
    (
        "Test existing pod's anti-affinity: if an existing pod has a term with invalid "
        "topologyKey, labelSelector of the term is firstly checked, and then topologyKey of the "
        "term is also checked",
        pod({"foo": ""}),
        [pod(node="nodeA", anti=[term("invalid-node-label", expr("foo", "Exists"))])],
        {"nodeA": {**R1Z1, "hostname": "nodeA"}, "nodeB": {**R1Z1, "hostname": "nodeB"}},
        [SKIPPED],
    ),
    (
        "Test incoming pod's anti-affinity: even if labelSelector matches, we still check if "
        "topologyKey matches",
        pod(anti=[term("invalid-node-label", expr("foo", "Exists"))]),
        [pod({"foo": ""}, node="nodeA")],
        {"nodeA": {**R1Z1, "hostname": "nodeA"}, "nodeB": {**R1Z1, "hostname": "nodeB"}},
        [OK, OK],
    ),
    (
        "Test existing pod's anti-affinity: incoming pod wouldn't considered as a fit as it "
        "violates each existingPod's terms on all nodes",
        pod({"foo": "", "bar": ""}),
        [pod(node="nodeA", anti=[term("zone", expr("foo", "Exists"))]),
         pod(node="nodeB", anti=[term("region", expr("bar", "Exists"))])],
        {"nodeA": {**R1Z1, "hostname": "nodeA"},
         "nodeB": {"region": "r1", "zone": "z2", "hostname": "nodeB"}},
        [EXISTING, EXISTING],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "existing", "nodes", "want"),
    [case[1:] for case in MULTI_NODE],
    ids=[f"k8s: {case[0]}" for case in MULTI_NODE],
)
def test_required_affinity_multiple_nodes(
    incoming: PodInfo,
    existing: list[PodInfo],
    nodes: dict[str, dict[str, str]],
    want: list[str],
) -> None:
    """kube-scheduler's verdicts across nodes and topology domains."""
    pre, statuses = run_filter(cluster(nodes, existing), incoming)
    if want == [SKIPPED]:
        assert pre.code is Code.SKIP
        return
    assert [verdict(statuses[n]) for n in nodes] == want


def test_reason_names_the_domain_unless_it_is_the_node() -> None:
    """Zone domains are named in the reason; a hostname domain is the node itself."""
    nodes = {
        "a": {"topology.kubernetes.io/zone": "zone-a", "kubernetes.io/hostname": "a"},
        "b": {"topology.kubernetes.io/zone": "zone-b", "kubernetes.io/hostname": "b"},
    }
    web = {"app": "web"}
    existing = [pod(web, node="a")]
    by_zone = pod(web, anti=[term("topology.kubernetes.io/zone", expr("app", "In", "web"))])
    _, got = run_filter(cluster(nodes, existing), by_zone)
    assert got["a"].reasons == (f"{ANTI} (topology.kubernetes.io/zone=zone-a)",)
    assert got["b"].ok
    by_host = pod(web, anti=[term("kubernetes.io/hostname", expr("app", "In", "web"))])
    _, got = run_filter(cluster(nodes, existing), by_host)
    assert got["a"].reasons == (ANTI,)


def test_invalid_term_is_unschedulable_at_prefilter_naming_the_field() -> None:
    """kube-scheduler's 'PodAffinity fails PreFilter with an invalid affinity label syntax'."""
    bad = pod(SECURITYSCAN, req=[term("region", expr("service", "In", "{{.bad-value.}}"))])
    assert bad.pod_affinity is None
    assert bad.affinity_error is not None
    assert bad.affinity_error.startswith(
        "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
        ".labelSelector.matchExpressions[0].values[0]: invalid label value"
    )
    pre, _ = run_filter(cluster(NODE1, []), bad)
    assert pre.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert pre.reasons == (bad.affinity_error,)


@pytest.mark.parametrize(
    ("aff", "field"),
    [
        ({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term("zone", expr("a", "Gt", "1"))]}}, "operator"),
        ({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term("zone", expr("a", "In"))]}}, "values"),
        ({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term("zone", expr("a", "Exists", "x"))]}}, "values"),
        ({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {}, "topologyKey": ""}]}}, "topologyKey"),
        ({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            weighted(0, term("zone"))]}}, "weight"),
        ({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            weighted(101, term("zone"))]}}, "weight"),
        ({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": "x"}},
         "requiredDuringSchedulingIgnoredDuringExecution"),
        ({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"bad key!": "v"}}, "topologyKey": "zone"}]}},
         "matchLabels"),
        ({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term("zone", namespaces="ns")]}}, "namespaces"),
    ],
    ids=["unknown-operator", "in-without-values", "exists-with-values", "empty-topology-key",
         "weight-zero", "weight-over-100", "terms-not-a-list", "bad-label-key",
         "namespaces-not-a-list"],
)  # fmt: skip
def test_malformed_affinity_never_raises(aff: dict[str, Any], field: str) -> None:
    """Bad input becomes an error text naming the field, never an exception."""
    p = make_pod("bad", affinity=aff)
    assert p.pod_affinity is None
    assert p.affinity_error is not None and field in p.affinity_error


def test_match_label_keys_are_merged_from_the_owning_pods_labels() -> None:
    """matchLabelKeys adds key in (value) and mismatchLabelKeys key notin (value)."""
    t = term("zone", expr("app", "In", "web"), matchLabelKeys=["rev"], mismatchLabelKeys=["team"])
    p = pod({"app": "web", "rev": "2", "team": "red"}, anti=[t])
    assert p.pod_affinity is not None
    (parsed,) = p.pod_affinity.required_anti_affinity
    assert parsed.selector.matches({"app": "web", "rev": "2", "team": "blue"})
    assert not parsed.selector.matches({"app": "web", "rev": "1", "team": "blue"})
    assert not parsed.selector.matches({"app": "web", "rev": "2", "team": "red"})


def test_namespace_defaults() -> None:
    """No namespaces and no selector: the pod's own namespace; {} selects every namespace."""
    own = pod(ns="team-a", anti=[term("zone", expr("app", "Exists"))])
    every = pod(ns="team-a", anti=[term("zone", expr("app", "Exists"), namespaceSelector={})])
    assert own.pod_affinity is not None and every.pod_affinity is not None
    t_own: AffinityTerm = own.pod_affinity.required_anti_affinity[0]
    t_all: AffinityTerm = every.pod_affinity.required_anti_affinity[0]
    assert t_own.matches("team-a", {"app": "x"}, {})
    assert not t_own.matches("team-b", {"app": "x"}, {})
    assert t_all.matches("team-b", {"app": "x"}, {})


# ---- Score: kube-scheduler's TestPreferredAffinity -------------------------------------

STAY_S1_REGION: dict[str, Any] = {
    "pref": [weighted(5, term("region", expr("security", "In", "S1")))]
}
STAY_S2_REGION: dict[str, Any] = {
    "pref": [weighted(6, term("region", expr("security", "In", "S2")))]
}
AFFINITY3: dict[str, Any] = {"pref": [
    weighted(8, term("region", expr("security", "NotIn", "S1"), expr("security", "In", "S2"))),
    weighted(2, term("region", expr("security", "Exists"), expr("wrongkey", "DoesNotExist"))),
]}  # fmt: skip
HARD: dict[str, Any] = {"req": [
    term("region", expr("security", "In", "S1", "value2")),
    term("region", expr("security", "Exists"), expr("wrongkey", "DoesNotExist")),
]}  # fmt: skip
AWAY_S1_AZ: dict[str, Any] = {"pref_anti": [weighted(5, term("az", expr("security", "In", "S1")))]}
AWAY_S2_AZ: dict[str, Any] = {"pref_anti": [weighted(5, term("az", expr("security", "In", "S2")))]}
STAY_S1_AWAY_S2: dict[str, Any] = {
    "pref": [weighted(8, term("region", expr("security", "In", "S1")))],
    "pref_anti": [weighted(5, term("az", expr("security", "In", "S2")))],
}
NS_SELECTOR: dict[str, Any] = {
    "namespaces": ["subteam2.team2"],
    "namespaceSelector": {"matchExpressions": [expr("team", "In", "team1")]},
}
AFFINITY_NS: dict[str, Any] = {
    "pref": [weighted(5, term("region", expr("security", "In", "S1"), **NS_SELECTOR))]
}
ANTI_NS: dict[str, Any] = {
    "pref_anti": [weighted(5, term("region", expr("security", "In", "S1"), **NS_SELECTOR))]
}
AZ1, AZ2 = {"az": "az1"}, {"az": "az2"}

PREFERRED: list[tuple[str, PodInfo, list[PodInfo], dict[str, dict[str, str]], list[int] | None]] = [
    (
        "all nodes are same priority as Affinity is nil",
        pod(S1), [], {"node1": CHINA, "node2": INDIA, "node3": AZ1}, None,
    ),
    (
        "Affinity: pod that matches topology key & pods in nodes will get high score comparing "
        "to otherswhich doesn't match either pods in nodes or in topology key",
        pod(S1, **STAY_S1_REGION),
        [pod(S1, node="node1"), pod(S2, node="node2"), pod(S1, node="node3")],
        {"node1": CHINA, "node2": INDIA, "node3": AZ1}, [100, 0, 0],
    ),
    (
        "All the nodes that have the same topology key & label value with one of them has an "
        "existing pod that match the affinity rules, have the same score",
        pod(**STAY_S1_REGION), [pod(S1, node="node1")],
        {"node1": CHINA, "node2": CHINA_AZ1, "node3": INDIA}, [100, 100, 0],
    ),
    (
        "Affinity: nodes in one region has more matching pods comparing to other region, so the "
        "region which has more matches will get high score",
        pod(S1, **STAY_S2_REGION),
        [pod(S2, node=n) for n in ("node1", "node1", "node2", "node3", "node4", "node5")],
        {"node1": CHINA, "node2": INDIA, "node3": CHINA, "node4": CHINA, "node5": INDIA},
        [100, 0, 100, 100, 0],
    ),
    (
        "Affinity: different Label operators and values for pod affinity scheduling preference, "
        "including some match failures",
        pod(S1, **AFFINITY3),
        [pod(S1, node="node1"), pod(S2, node="node2"), pod(S1, node="node3")],
        {"node1": CHINA, "node2": INDIA, "node3": AZ1}, [20, 100, 0],
    ),
    (
        "Affinity symmetry: considered only the preferredDuringSchedulingIgnoredDuringExecution "
        "in pod affinity symmetry",
        pod(S2), [pod(S1, node="node1", **STAY_S1_REGION), pod(S2, node="node2", **STAY_S2_REGION)],
        {"node1": CHINA, "node2": INDIA, "node3": AZ1}, [0, 100, 0],
    ),
    (
        "Affinity symmetry with namespace selector",
        pod(S1, ns="subteam1.team1"),
        [pod(S1, node="node1", **AFFINITY_NS), pod(S2, node="node2", **STAY_S2_REGION)],
        {"node1": CHINA, "node2": INDIA, "node3": AZ1}, [100, 0, 0],
    ),
    (
        "AntiAffinity symmetry with namespace selector",
        pod(S1, ns="subteam1.team1"),
        [pod(S1, node="node1", **ANTI_NS), pod(S2, node="node2", **STAY_S2_REGION)],
        {"node1": CHINA, "node2": INDIA, "node3": AZ1}, [0, 100, 100],
    ),
    (
        "Affinity symmetry: considered RequiredDuringSchedulingIgnoredDuringExecution in pod "
        "affinity symmetry",
        pod(S1), [pod(S1, node="node1", **HARD), pod(S2, node="node2", **HARD)],
        {"node1": CHINA, "node2": INDIA, "node3": AZ1}, [100, 100, 0],
    ),
    (
        "Anti Affinity: pod that does not match existing pods in node will get high score",
        pod(S1, **AWAY_S1_AZ), [pod(S1, node="node1"), pod(S2, node="node2")],
        {"node1": AZ1, "node2": CHINA}, [0, 100],
    ),
    (
        "Anti Affinity: pod that does not match topology key & match the pods in nodes will get "
        "higher score comparing to others",
        pod(S1, **AWAY_S1_AZ), [pod(S1, node="node1"), pod(S1, node="node2")],
        {"node1": AZ1, "node2": CHINA}, [0, 100],
    ),
    (
        "Anti Affinity: one node has more matching pods comparing to other node, so the node "
        "which has more unmatches will get high score",
        pod(S1, **AWAY_S1_AZ),
        [pod(S1, node="node1"), pod(S1, node="node1"), pod(S2, node="node2")],
        {"node1": AZ1, "node2": INDIA}, [0, 100],
    ),
    (
        "Anti Affinity symmetry: the existing pods in node which has anti affinity match will "
        "get high score",
        pod(S2), [pod(S1, node="node1", **AWAY_S2_AZ), pod(S2, node="node2", **AWAY_S1_AZ)],
        {"node1": AZ1, "node2": AZ2}, [0, 100],
    ),
    (
        "Affinity and Anti Affinity: considered only "
        "preferredDuringSchedulingIgnoredDuringExecution in both pod affinity & anti affinity",
        pod(S1, **STAY_S1_AWAY_S2), [pod(S1, node="node1"), pod(S1, node="node2")],
        {"node1": CHINA, "node2": AZ1}, [100, 0],
    ),
    (
        "Affinity and Anti Affinity: considering both affinity and anti-affinity, the pod to "
        "schedule and existing pods have the same labels",
        pod(S1, **STAY_S1_AWAY_S2),
        [pod(S1, node=n) for n in ("node1", "node1", "node2", "node3", "node3", "node4", "node5")],
        {"node1": CHINA_AZ1, "node2": INDIA, "node3": CHINA, "node4": CHINA, "node5": INDIA},
        [100, 0, 100, 100, 0],
    ),
    (
        "Affinity and Anti Affinity and symmetry: considered only "
        "preferredDuringSchedulingIgnoredDuringExecution in both pod affinity & anti affinity & "
        "symmetry",
        pod(S1, **STAY_S1_AWAY_S2),
        [pod(S1, node="node1"), pod(S2, node="node2"), pod(node="node3", **STAY_S1_AWAY_S2),
         pod(node="node4", **AWAY_S1_AZ)],
        {"node1": CHINA, "node2": AZ1, "node3": INDIA, "node4": AZ2}, [100, 0, 100, 0],
    ),
    (
        "Avoid panic when partial nodes in a topology don't have pods with affinity",
        pod(S1), [pod(S1, node="node1"), pod(node="node2", **STAY_S1_AWAY_S2)],
        {"node1": CHINA, "node2": CHINA}, [0, 0],
    ),
    (
        "Affinity with pods matching NamespaceSelector",
        pod(S1, ns="subteam1.team1", **AFFINITY_NS),
        [pod(S1, node="node1", ns="subteam1.team1"), pod(S1, node="node1", ns="subteam1.team1"),
         pod(S1, node="node1", ns="subteam1.team2"), pod(S1, node="node2", ns="subteam2.team1")],
        {"node1": CHINA, "node2": INDIA}, [100, 0],
    ),
    (
        "Affinity with pods matching both NamespaceSelector and Namespaces fields",
        pod(S1, ns="subteam1.team1", **AFFINITY_NS),
        [pod(S1, node="node1", ns="subteam1.team1"), pod(S1, node="node1", ns="subteam1.team1"),
         pod(S1, node="node1", ns="subteam2.team2"), pod(S1, node="node2", ns="subteam2.team1")],
        {"node1": CHINA, "node2": INDIA}, [100, 0],
    ),
    (
        "Affinity with pods matching NamespaceSelector (anti-affinity)",
        pod(S1, ns="subteam1.team1", **ANTI_NS),
        [pod(S1, node="node1", ns="subteam1.team1"), pod(S1, node="node1", ns="subteam1.team1"),
         pod(S1, node="node1", ns="subteam1.team2"), pod(S1, node="node2", ns="subteam2.team1")],
        {"node1": CHINA, "node2": INDIA}, [0, 100],
    ),
    (
        "Affinity with pods matching both NamespaceSelector and Namespaces fields "
        "(anti-affinity)",
        pod(S1, ns="subteam1.team1", **ANTI_NS),
        [pod(S1, node="node1", ns="subteam1.team1"), pod(S1, node="node1", ns="subteam1.team1"),
         pod(S1, node="node1", ns="subteam2.team2"), pod(S1, node="node2", ns="subteam2.team1")],
        {"node1": CHINA, "node2": INDIA}, [0, 100],
    ),
    (
        "Do not ignore preferred terms of existing pods",
        pod(S2),
        [pod(S1, node="node1", **STAY_S1_AWAY_S2), pod(S2, node="node2", **STAY_S2_REGION)],
        {"node1": CHINA, "node2": INDIA}, [0, 100],
    ),
    ("No nodes to score", pod(S2), [], {}, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("incoming", "existing", "nodes", "want"),
    [case[1:] for case in PREFERRED],
    ids=[f"k8s: {case[0]}" for case in PREFERRED],
)
def test_preferred_affinity(
    incoming: PodInfo,
    existing: list[PodInfo],
    nodes: dict[str, dict[str, str]],
    want: list[int] | None,
) -> None:
    """kube-scheduler's normalized scores (None: PreScore skips)."""
    cache = cluster(nodes, existing)
    p = plugin(cache)
    state = CycleState()
    infos = list(cache.node_infos())
    pre = p.pre_score(state, incoming, infos)
    if want is None:
        assert pre.code is Code.SKIP
        return
    assert pre.code is Code.SUCCESS
    raw = p.score_all(state, incoming, infos)
    assert raw == [p.score(state, incoming, ni) for ni in infos]
    p.normalize(state, incoming, raw)
    assert raw == want


def test_ignore_preferred_terms_of_existing_pods() -> None:
    """k8s: Ignore preferred terms of existing pods (PreScore skips)."""
    nodes = {"node1": CHINA, "node2": INDIA}
    existing = [pod(S1, node="node1", **STAY_S1_AWAY_S2), pod(S2, node="node2", **STAY_S2_REGION)]
    cache = cluster(nodes, existing)
    p = plugin(cache, ignore_preferred_terms_of_existing_pods=True)
    assert p.pre_score(CycleState(), pod(S2), list(cache.node_infos())).code is Code.SKIP


SERVICE_S1 = {"service": "S1"}
HARD_NS: dict[str, Any] = {
    "req": [
        term(
            "region",
            expr("service", "In", "S1"),
            namespaces=["", "subteam2.team2"],
            namespaceSelector={"matchExpressions": [expr("team", "In", "team1")]},
        )
    ]
}
SYMMETRIC_WEIGHT = [
    ("with default weight", "", 1, [100, 100, 0]),
    ("with zero weight", "", 0, None),
    ("with no matching namespace", "subteam1.team2", 1, None),
    ("with matching NamespaceSelector", "subteam1.team1", 1, [100, 100, 0]),
    ("with matching Namespaces", "subteam2.team2", 1, [100, 100, 0]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ns", "weight", "want"),
    [case[1:] for case in SYMMETRIC_WEIGHT],
    ids=[f"k8s: {case[0]}" for case in SYMMETRIC_WEIGHT],
)
def test_preferred_affinity_with_hard_pod_affinity_symmetric_weight(
    ns: str, weight: int, want: list[int] | None
) -> None:
    """kube-scheduler's TestPreferredAffinityWithHardPodAffinitySymmetricWeight."""
    nodes = {"node1": CHINA, "node2": INDIA, "node3": AZ1}
    existing = [pod(node="node1", ns="", **HARD_NS), pod(node="node2", ns="", **HARD_NS)]
    cache = cluster(nodes, existing)
    p = plugin(cache, hard_pod_affinity_weight=weight)
    state = CycleState()
    incoming = pod(SERVICE_S1, ns=ns)
    infos = list(cache.node_infos())
    pre = p.pre_score(state, incoming, infos)
    if want is None:
        assert pre.code is Code.SKIP
        return
    raw = p.score_all(state, incoming, infos)
    p.normalize(state, incoming, raw)
    assert raw == want


def test_from_args_names_the_bad_argument() -> None:
    """Plugin args are kube-scheduler's InterPodAffinityArgs, checked by name."""
    cache = SchedulerCache()
    assert InterPodAffinity.from_args(cache, {"hardPodAffinityWeight": 5})._hard_weight == 5
    with pytest.raises(ValueError, match="hardPodAffinityWeight"):
        InterPodAffinity.from_args(cache, {"hardPodAffinityWeight": 101})
    with pytest.raises(ValueError, match="unknown"):
        InterPodAffinity.from_args(cache, {"hardPodAffinityWieght": 1})


# ---- the cheap path, the index, preemption's what-if -----------------------------------


def test_a_pod_without_affinity_costs_nothing_without_anti_affinity_pods() -> None:
    """No terms and no existing required anti-affinity: SKIP before reading any pod."""
    cache = cluster({"n1": CHINA}, [pod(S1, node="n1", **STAY_S1_REGION)])
    state = CycleState()
    p = plugin(cache)
    assert p.pre_filter(state, pod(S1)).code is Code.SKIP
    assert p.filter(state, pod(S1), next(cache.node_infos())).ok


def test_the_cache_keeps_the_affinity_index() -> None:
    """Pods with terms are indexed by node through add, assume, update, forget and delete."""
    cache = cluster({"n1": CHINA, "n2": INDIA}, [])
    anti = pod(S1, node="n1", name="anti", anti=[term("region", expr("security", "Exists"))])
    soft = pod(S1, node="n2", name="soft", **STAY_S1_REGION)
    cache.add_pod(anti)
    cache.add_pod(soft)
    assert [ni.name for ni in cache.nodes_with_required_anti_affinity()] == ["n1"]
    assert sorted(ni.name for ni in cache.nodes_with_pod_affinity()) == ["n1", "n2"]
    cache.update_pod(pod(S1, node="n1", name="anti"))  # its terms removed
    assert not cache.has_required_anti_affinity()
    pending = pod(S1, name="late", anti=[term("region", expr("security", "Exists"))])
    assumed = cache.assume(pending, "n2")
    assert [ni.name for ni in cache.nodes_with_required_anti_affinity()] == ["n2"]
    cache.forget(assumed)
    cache.remove_pod(soft.key)
    assert not cache.has_pod_affinity()


def test_filter_recounts_a_trimmed_copy_of_a_node_as_preemption_makes() -> None:
    """A victim removed on a copy of its node no longer blocks the pod there."""
    nodes = {"n1": {"kubernetes.io/hostname": "n1"}, "n2": {"kubernetes.io/hostname": "n2"}}
    victim = pod({"app": "db"}, node="n1", name="victim")
    cache = cluster(nodes, [victim])
    incoming = pod(anti=[term("kubernetes.io/hostname", expr("app", "In", "db"))])
    p = plugin(cache)
    state = CycleState()
    assert p.pre_filter(state, incoming).code is Code.SUCCESS
    real = cache.node_info("n1")
    assert real is not None
    assert not p.filter(state, incoming, real).ok
    trimmed = NodeInfo(real.node)
    assert p.filter(state, incoming, trimmed).ok
    # The kube-scheduler way: RemovePod on the state, the node given as it is.
    p.remove_pod(state, incoming, victim, real)
    assert p.filter(state, incoming, trimmed).ok
    p.add_pod(state, incoming, victim, real)
    assert not p.filter(state, incoming, real).ok


def test_existing_anti_affinity_removed_by_preemption() -> None:
    """The symmetric check is recounted on the trimmed node too."""
    nodes = {"n1": {"zone": "a"}, "n2": {"zone": "a"}}
    blocker = pod(node="n1", name="blocker", anti=[term("zone", expr("app", "In", "web"))])
    cache = cluster(nodes, [blocker])
    incoming = pod({"app": "web"})
    p = plugin(cache)
    state = CycleState()
    assert p.pre_filter(state, incoming).code is Code.SUCCESS
    real = cache.node_info("n1")
    assert real is not None and real.node is not None
    assert verdict(p.filter(state, incoming, real)) == EXISTING
    assert p.filter(state, incoming, NodeInfo(real.node)).ok


def test_nominated_pods_count_on_their_node() -> None:
    """A pod nominated to a node (of at least this priority) is counted there."""
    nodes = {"n1": {"kubernetes.io/hostname": "n1"}, "n2": {"kubernetes.io/hostname": "n2"}}
    cache = cluster(nodes, [])
    cache.nominate(pod({"app": "db"}, name="preemptor"), "n1")
    incoming = pod(anti=[term("kubernetes.io/hostname", expr("app", "In", "db"))])
    _, got = run_filter(cache, incoming)
    assert verdict(got["n1"]) == ANTI
    assert got["n2"].ok


def test_other_pods_get_their_own_state_in_the_cycle() -> None:
    """Filtering another pod with this cycle's state (gang preemption) judges that pod."""
    nodes = {"n1": {"kubernetes.io/hostname": "n1"}}
    cache = cluster(nodes, [pod({"app": "db"}, node="n1")])
    p = plugin(cache)
    state = CycleState()
    assert p.pre_filter(state, pod()).code is Code.SKIP
    other = pod(anti=[term("kubernetes.io/hostname", expr("app", "In", "db"))])
    ni = cache.node_info("n1")
    assert ni is not None
    assert verdict(p.filter(state, other, ni)) == ANTI


def test_memo_follows_the_node_generation() -> None:
    """A pod added after a cycle is seen by the next one (the memo is per generation)."""
    nodes = {"n1": {"kubernetes.io/hostname": "n1"}}
    cache = cluster(nodes, [])
    p = plugin(cache)
    incoming = pod(anti=[term("kubernetes.io/hostname", expr("app", "In", "db"))])
    _, got = run_filter(cache, incoming)
    assert got["n1"].ok
    cache.add_pod(pod({"app": "db"}, node="n1"))
    state = CycleState()
    p.pre_filter(state, incoming)
    ni = cache.node_info("n1")
    assert ni is not None
    assert verdict(p.filter(state, incoming, ni)) == ANTI


# ---- properties -----------------------------------------------------------------------

KEYS = ("kubernetes.io/hostname", "zone", "region")
APPS = ("a", "b", "c")


@st.composite
def node_sets(draw: st.DrawFn) -> dict[str, dict[str, str]]:
    n = draw(st.integers(1, 6))
    nodes = {}
    for i in range(n):
        labels = {"kubernetes.io/hostname": f"n{i}"}
        if draw(st.booleans()) or i == 0:
            labels["zone"] = draw(st.sampled_from(["z1", "z2", "z3"]))
        if draw(st.booleans()):
            labels["region"] = draw(st.sampled_from(["r1", "r2"]))
        nodes[f"n{i}"] = labels
    return nodes


@st.composite
def terms(draw: st.DrawFn) -> dict[str, Any]:
    key = draw(st.sampled_from(KEYS))
    op = draw(st.sampled_from(["In", "NotIn", "Exists"]))
    e = expr("app", op, *draw(st.sets(st.sampled_from(APPS), min_size=1))) if op != "Exists" else (
        expr("app", "Exists")
    )  # fmt: skip
    extra: dict[str, Any] = {}
    if draw(st.integers(0, 4)) == 0:
        extra["namespaces"] = ["other"]
    return term(key, e, **extra)


@st.composite
def pods(draw: st.DrawFn, node: str = "", name: str = "") -> PodInfo:
    labels = {"app": draw(st.sampled_from(APPS))} if draw(st.booleans()) else {}
    aff: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        aff["req"] = draw(st.lists(terms(), min_size=1, max_size=2))
    if draw(st.integers(0, 2)) == 0:
        aff["anti"] = draw(st.lists(terms(), min_size=1, max_size=2))
    ns = draw(st.sampled_from(["default", "default", "other"]))
    return pod(labels, node=node, ns=ns, name=name or None, **aff)


@st.composite
def scored_pods(draw: st.DrawFn, node: str = "", name: str = "") -> PodInfo:
    """Pods as :func:`pods` draws them, with preferred terms too."""
    labels = {"app": draw(st.sampled_from(APPS))} if draw(st.booleans()) else {}
    aff: dict[str, Any] = {}
    for kind in ("req", "anti"):
        if draw(st.integers(0, 2)) == 0:
            aff[kind] = draw(st.lists(terms(), min_size=1, max_size=2))
    for kind in ("pref", "pref_anti"):
        if draw(st.booleans()):
            aff[kind] = [
                weighted(draw(st.integers(1, 100)), t)
                for t in draw(st.lists(terms(), min_size=1, max_size=2))
            ]
    ns = draw(st.sampled_from(["default", "default", "other"]))
    return pod(labels, node=node, ns=ns, name=name or None, **aff)


def _matches(t: AffinityTerm, p: PodInfo) -> bool:
    return t.matches(p.namespace, p.labels, {})


def reference(
    nodes: dict[str, dict[str, str]], placed: dict[str, list[PodInfo]], incoming: PodInfo
) -> dict[str, str]:
    """Each node's verdict, recounted from scratch by the API's definition."""
    pa = incoming.pod_affinity
    req = pa.required_affinity if pa else ()
    anti = pa.required_anti_affinity if pa else ()
    everyone = [(n, p) for n, ps in placed.items() for p in ps]
    matching_all = [(n, p) for n, p in everyone if req and all(_matches(t, p) for t in req)]
    # kube-scheduler counts a pod matching every term once per term whose key its node has.
    any_counted = any(t.topology_key in nodes[n] for n, _ in matching_all for t in req)
    self_match = bool(req) and all(_matches(t, incoming) for t in req)
    out = {}
    for name, labels in nodes.items():

        def same(other: str, key: str, labels: dict[str, str] = labels) -> bool:
            return key in labels and nodes[other].get(key) == labels[key]

        got = OK
        missing_key = any(t.topology_key not in labels for t in req)
        lonely = not all(any(same(n, t.topology_key) for n, _ in matching_all) for t in req)
        # kube-scheduler's exception: no pod matches anywhere, and the pod matches itself.
        if missing_key or (lonely and (any_counted or not self_match)):
            got = AFF
        if got == OK and any(
            same(n, t.topology_key) and _matches(t, p) for t in anti for n, p in everyone
        ):
            got = ANTI
        if got == OK and any(
            same(n, t.topology_key) and _matches(t, incoming)
            for n, p in everyone
            if p.pod_affinity is not None
            for t in p.pod_affinity.required_anti_affinity
        ):
            got = EXISTING
        out[name] = got
    return out


@st.composite
def states(
    draw: st.DrawFn,
) -> tuple[dict[str, dict[str, str]], dict[str, list[PodInfo]], PodInfo]:
    nodes = draw(node_sets())
    placed: dict[str, list[PodInfo]] = {n: [] for n in nodes}
    for i in range(draw(st.integers(0, 10))):
        n = draw(st.sampled_from(sorted(nodes)))
        placed[n].append(draw(pods(node=n, name=f"e{i}")))
    return nodes, placed, draw(pods(name="incoming"))


@given(states())
def test_prefilter_counts_agree_with_a_recount_from_scratch(
    case: tuple[dict[str, dict[str, str]], dict[str, list[PodInfo]], PodInfo],
) -> None:
    """Filter's verdict from PreFilter's counts equals recounting every pod per node."""
    nodes, placed, incoming = case
    cache = cluster(nodes, [p for ps in placed.values() for p in ps])
    pre, got = run_filter(cache, incoming)
    want = reference(nodes, placed, incoming)
    if pre.code is Code.SKIP:
        assert set(want.values()) == {OK}
        return
    assert {n: verdict(s) for n, s in got.items()} == want


@given(states(), st.data())
def test_trimmed_nodes_agree_with_a_recount_from_scratch(
    case: tuple[dict[str, dict[str, str]], dict[str, list[PodInfo]], PodInfo],
    data: st.DataObject,
) -> None:
    """Filter on a node copy without some pods (preemption) equals a recount without them."""
    nodes, placed, incoming = case
    cache = cluster(nodes, [p for ps in placed.values() for p in ps])
    target = data.draw(st.sampled_from(sorted(nodes)))
    keep = data.draw(st.lists(st.booleans(), min_size=len(placed[target]),
                              max_size=len(placed[target])))  # fmt: skip
    kept = [p for p, k in zip(placed[target], keep, strict=True) if k]
    p = plugin(cache)
    state = CycleState()
    pre = p.pre_filter(state, incoming)
    real = cache.node_info(target)
    assert real is not None and real.node is not None
    trimmed = NodeInfo(real.node)
    for q in kept:
        trimmed.add_pod(q)
    got = verdict(p.filter(state, incoming, trimmed)) if pre.code is Code.SUCCESS else OK
    assert got == reference(nodes, {**placed, target: kept}, incoming)[target]


@given(node_sets(), st.lists(st.sampled_from(APPS), min_size=1, max_size=12), st.data())
def test_required_hostname_anti_affinity_never_shares_a_node(
    nodes: dict[str, dict[str, str]], apps: list[str], data: st.DataObject
) -> None:
    """Placing pods one by one on any node Filter admits: no two of an app share a node."""
    cache = cluster(nodes, [])
    p = plugin(cache)
    for i, app in enumerate(apps):
        spread = data.draw(st.booleans())
        incoming = pod(
            {"app": app},
            name=f"p{i}",
            **cast(
                "dict[str, Any]",
                {"anti": [term("kubernetes.io/hostname", expr("app", "In", app))]}
                if spread
                else {},
            ),
        )
        state = CycleState()
        if p.pre_filter(state, incoming).code is not Code.SUCCESS:
            fits = [ni.name for ni in cache.node_infos()]
        else:
            fits = [ni.name for ni in cache.node_infos() if p.filter(state, incoming, ni).ok]
        if not fits:
            continue
        cache.assume(incoming, data.draw(st.sampled_from(fits)))
    for ni in cache.node_infos():
        for q in ni.pods.values():
            if q.pod_affinity is None:
                continue
            (t,) = q.pod_affinity.required_anti_affinity
            same_app = [r for r in ni.pods.values() if r is not q and _matches(t, r)]
            assert not same_app, f"{q.key} shares {ni.name} with {[r.key for r in same_app]}"


# ---- the cache's change journal, and tallies kept by it --------------------------------


def test_changed_since_lists_the_nodes_changed_after_a_version() -> None:
    """Pod and node changes are journaled by node; a version sees only later ones."""
    cache = cluster({"n1": CHINA, "n2": INDIA, "n3": CHINA}, [])
    v0 = cache.version
    p = pod(S1, node="n1", name="a")
    cache.add_pod(p)
    v1 = cache.version
    cache.update_pod(pod(S1, node="n2", name="a"))  # moved: both nodes changed
    cache.update_node(make_node("n3", labels={"region": "India"}))
    assert cache.changed_since(v0) == {"n1", "n2", "n3"}
    assert cache.changed_since(v1) == {"n1", "n2", "n3"}
    assert cache.changed_since(cache.version) == set()


def test_a_journal_that_no_longer_reaches_back_means_everything_changed() -> None:
    """Past its length, or across a rebuild, changed_since answers None (recount all)."""
    cache = SchedulerCache(journal_length=2)
    for n in ("n1", "n2", "n3"):
        cache.add_node(make_node(n, labels=CHINA))
    assert cache.changed_since(0) is None
    v = cache.version
    assert cache.changed_since(v - 2) == {"n2", "n3"}
    cache.rebuild([make_node("n1", labels=CHINA)], [])
    assert cache.changed_since(v) is None
    with pytest.raises(ValueError, match="journal_length"):
        SchedulerCache(journal_length=0)


@st.composite
def changes(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Random informer events: pods added, moved, deleted; nodes relabelled, deleted, re-added."""
    ops: list[tuple[str, Any]] = []
    for i in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["add", "add", "add", "delete", "relabel", "node-gone"]))
        if kind == "add":
            ops.append(("add", draw(scored_pods(node=f"n{draw(st.integers(0, 4))}", name=f"c{i}"))))
        elif kind == "delete":
            ops.append(("delete", f"c{draw(st.integers(0, i))}"))
        elif kind == "relabel":
            labels = {"kubernetes.io/hostname": f"n{draw(st.integers(0, 4))}",
                      "zone": draw(st.sampled_from(["z1", "z2"]))}  # fmt: skip
            ops.append(("relabel", (f"n{draw(st.integers(0, 4))}", labels)))
        else:
            ops.append(("node-gone", f"n{draw(st.integers(0, 4))}"))
    return ops


def apply(cache: SchedulerCache, op: tuple[str, Any]) -> None:
    kind, arg = op
    if kind == "add":
        if cache.node_info(arg.node_name) is not None:
            cache.add_pod(arg)
    elif kind == "delete":
        cache.remove_pod(pod(name=arg).key)
    elif kind == "relabel":
        name, labels = arg
        cache.update_node(make_node(name, labels={**labels, "kubernetes.io/hostname": name}))
    else:
        cache.remove_node(arg)


@given(changes(), st.lists(scored_pods(name="incoming"), min_size=1, max_size=3),
       st.integers(1, 8))  # fmt: skip
def test_tallies_follow_the_cache_through_any_changes(
    ops: list[tuple[str, Any]], incoming: list[PodInfo], journal: int
) -> None:
    """One plugin across a run of changes judges and scores as a fresh one recounting all."""
    cache = SchedulerCache(journal_length=journal)
    for i in range(5):
        cache.add_node(make_node(f"n{i}", labels={"kubernetes.io/hostname": f"n{i}",
                                                  "zone": f"z{i % 2}"}))  # fmt: skip
    kept = plugin(cache)
    for op in ops:
        apply(cache, op)
        for p in incoming:
            fresh = plugin(cache)
            nodes = list(cache.node_infos())
            got, want = CycleState(), CycleState()
            assert kept.pre_filter(got, p).code is fresh.pre_filter(want, p).code
            assert kept.filter_all(got, p, nodes) == fresh.filter_all(want, p, nodes)
            assert column_verdicts(kept, got, p, cache, nodes) == fresh.filter_all(want, p, nodes)
            if nodes:
                assert kept.pre_score(got, p, nodes).code is fresh.pre_score(want, p, nodes).code
                assert kept.score_all(got, p, nodes) == fresh.score_all(want, p, nodes)
                raw = fresh.score_all(want, p, nodes)
                fresh.normalize(want, p, raw)
                rows = np.array([ni.row for ni in nodes], dtype=np.intp)
                scores = kept.score_columns(got, p, cache.columns, rows)
                assert scores is not None and scores.tolist() == raw


def column_verdicts(
    plugin: InterPodAffinity,
    state: CycleState,
    pod: PodInfo,
    cache: SchedulerCache,
    nodes: list[NodeInfo],
) -> list[Status]:
    got = columns_gen.column_statuses(plugin, pod, cache, nodes, state)
    assert got is not None
    return got


def test_add_pod_counts_in_the_state_of_the_pod_named() -> None:
    """add_pod for another pod of the cycle (a gang member's plan) is seen in its domain."""
    cache = cluster({"n1": {"zone": "a"}, "n2": {"zone": "a"}, "n3": {"zone": "b"}}, [])
    p = plugin(cache)
    state = CycleState()
    assert p.pre_filter(state, pod(name="first")).code is Code.SKIP
    member = pod(name="member", anti=[term("zone", expr("app", "In", "db"))])
    n1 = cache.node_info("n1")
    assert n1 is not None
    p.add_pod(state, member, pod({"app": "db"}, name="planned"), n1)
    got = {ni.name: verdict(p.filter(state, member, ni)) for ni in cache.node_infos()}
    # n1 is judged by its own NodeInfo, which does not hold the planned pod.
    assert got == {"n1": OK, "n2": ANTI, "n3": OK}


@given(node_sets(), st.data())
def test_the_column_forms_judge_and_score_as_node_by_node(
    nodes: dict[str, dict[str, str]], data: st.DataObject
) -> None:
    """filter_columns and score_columns give exactly filter's verdicts (texts and all) and
    score's normalized scores, nominated pods included, on any subset of the nodes."""
    placed = [
        data.draw(scored_pods(node=data.draw(st.sampled_from(sorted(nodes))), name=f"e{i}"))
        for i in range(data.draw(st.integers(0, 10)))
    ]
    cache = cluster(nodes, placed)
    if data.draw(st.booleans()):
        cache.nominate(
            data.draw(scored_pods(name="nominee")), data.draw(st.sampled_from(sorted(nodes)))
        )
    weight = data.draw(st.sampled_from([0, 1, 7]))
    incoming = data.draw(scored_pods(name="incoming"))
    infos = [ni for ni in cache.node_infos() if data.draw(st.booleans())] or list(
        cache.node_infos()
    )
    rows = np.array([ni.row for ni in infos], dtype=np.intp)
    p = plugin(cache, hard_pod_affinity_weight=weight)
    state = CycleState()
    p.pre_filter(state, incoming)
    got = column_verdicts(p, state, incoming, cache, infos)
    assert got == [p.filter(state, incoming, ni) for ni in infos]
    p.pre_score(state, incoming, infos)
    scores = p.score_columns(state, incoming, cache.columns, rows)
    raw = [p.score(state, incoming, ni) for ni in infos]
    p.normalize(state, incoming, raw)
    assert scores is not None and scores.tolist() == raw
