"""bench.verify: each rule caught on small hand-made states, and on generated ones
against a brute-force reading of the same rule."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import verify as v
from bench.verify import Node, Pod, State, Taint

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
GI = 2**30


def node(name: str, zone: str = "z1", **kw: Any) -> Node:
    labels = {HOST: name, ZONE: zone, **kw.pop("labels", {})}
    return Node(name=name, labels=labels, **{"cpu_milli": 4000, "memory": 16 * GI, **kw})


def pod(name: str, at: str | None = None, **kw: Any) -> Pod:
    return Pod(namespace=kw.pop("namespace", "ns"), name=name, node=at, **kw)


def state(nodes: list[Node], pods: list[Pod]) -> State:
    return State(nodes={n.name: n for n in nodes}, pods=pods)


def rules_of(verdict: v.Verdict) -> Counter[str]:
    return Counter(x.rule for x in verdict.violations)


# ---- hand-made states, one per rule ---------------------------------------------------------


def test_a_clean_state_passes() -> None:
    s = state([node("a"), node("b")], [pod("p", "a", cpu_milli=1000), pod("q", "b")])
    verdict = v.verify(s, expected=["ns/p", "ns/q"])
    assert verdict.ok, verdict.summary()
    assert verdict.pods_checked == 2


@pytest.mark.parametrize(
    ("pods", "what"),
    [
        ([pod(f"p{i}", "a", cpu_milli=1500) for i in range(3)], "cpu 4500m of 4000m"),
        ([pod(f"p{i}", "a", memory=6 * GI) for i in range(3)], "memory 18432Mi of 16384Mi"),
        ([pod(f"p{i}", "a") for i in range(4)], "4 pods of 3"),
    ],
)
def test_capacity(pods: list[Pod], what: str) -> None:
    s = state([node("a", pods=3), node("b")], pods)
    verdict = v.verify(s)
    assert rules_of(verdict) == {v.CAPACITY: 1}
    bad = verdict.violations[0]
    assert bad.node == "a" and what in bad.detail and bad.pod is not None


def test_capacity_names_the_last_bound_pod_and_counts_other_namespaces() -> None:
    pods = [
        pod("old", "a", namespace="base", cpu_milli=3000, bound_at=1.0),
        pod("new", "a", cpu_milli=1500, bound_at=2.0),
    ]
    verdict = v.verify(state([node("a")], pods), subject=lambda p: p.namespace == "ns")
    assert [(x.rule, x.pod) for x in verdict.violations] == [(v.CAPACITY, "ns/new")]


def test_finished_pods_hold_nothing() -> None:
    pods = [pod("done", "a", cpu_milli=4000, finished=True), pod("p", "a", cpu_milli=4000)]
    assert v.verify(state([node("a")], pods)).ok


def test_bound() -> None:
    s = state([node("a")], [pod("p"), pod("q", "gone-node")])
    verdict = v.verify(s, expected=["ns/p", "ns/q", "ns/missing"])
    assert rules_of(verdict) == {v.BOUND: 3}
    details = {x.pod: x.detail for x in verdict.violations}
    assert "pending" in details["ns/p"]
    assert "does not exist" in details["ns/q"]
    assert "gone" in details["ns/missing"]


def test_bound_once() -> None:
    s = state([node("a"), node("b")], [pod("p", "a"), pod("q", "a")])
    verdict = v.verify(s, rebound={"ns/p": ["a", "b"], "ns/q": ["a", "a"]})
    assert [(x.rule, x.pod) for x in verdict.violations] == [(v.BOUND_ONCE, "ns/p")]


def test_node_selector() -> None:
    s = state(
        [node("a", labels={"disk": "hdd"}), node("b", labels={"disk": "ssd"})],
        [
            pod("p", "a", node_selector={"disk": "ssd"}),
            pod("q", "b", node_selector={"disk": "ssd"}),
        ],
    )
    verdict = v.verify(s)
    assert [(x.rule, x.pod, x.node) for x in verdict.violations] == [(v.NODE_SELECTOR, "ns/p", "a")]


def _in(key: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": "In", "values": list(values)}]}


def test_node_affinity_terms_or_expressions_and() -> None:
    terms = (
        {
            "matchExpressions": [
                {"key": ZONE, "operator": "In", "values": ["z1"]},
                {"key": "gpu", "operator": "Exists"},
            ]
        },
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]},
    )
    nodes = [node("a", "z1", labels={"gpu": "1"}), node("b", "z1"), node("c", "z9")]
    pods = [pod("ok-a", "a", node_terms=terms), pod("bad-b", "b", node_terms=terms)]
    pods.append(pod("ok-c", "c", node_terms=terms))
    verdict = v.verify(state(nodes, pods))
    assert [(x.rule, x.pod) for x in verdict.violations] == [(v.NODE_AFFINITY, "ns/bad-b")]


@pytest.mark.parametrize(
    ("op", "values", "label", "ok"),
    [
        ("NotIn", ["x"], None, True),
        ("NotIn", ["x"], "x", False),
        ("DoesNotExist", [], None, True),
        ("DoesNotExist", [], "1", False),
        ("Gt", ["5"], "6", True),
        ("Gt", ["5"], "5", False),
        ("Lt", ["5"], "4", True),
        ("Lt", ["5"], "junk", False),
    ],
)
def test_node_affinity_operators(op: str, values: list[str], label: str | None, ok: bool) -> None:
    term = {"matchExpressions": [{"key": "k", "operator": op, "values": values}]}
    n = node("a", labels={} if label is None else {"k": label})
    assert v.node_term_matches(term, n) is ok


def test_an_empty_node_selector_term_matches_nothing() -> None:
    verdict = v.verify(state([node("a")], [pod("p", "a", node_terms=({},))]))
    assert rules_of(verdict) == {v.NODE_AFFINITY: 1}


def test_taints_and_unschedulable() -> None:
    nodes = [
        node("t", taints=(Taint("dedicated", "db", "NoSchedule"),)),
        node("soft", taints=(Taint("x", "", "PreferNoSchedule"),)),
        node("cordoned", unschedulable=True),
    ]
    tol = ({"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"},)
    pods = [
        pod("untolerated", "t"),
        pod("tolerated", "t", tolerations=tol),
        pod("wrong-value", "t", tolerations=({"key": "dedicated", "value": "web"},)),
        pod("everything", "t", tolerations=({"operator": "Exists"},)),
        pod("prefer", "soft"),
        pod("on-cordoned", "cordoned"),
        pod(
            "cordon-ok",
            "cordoned",
            tolerations=({"key": v.UNSCHEDULABLE_TAINT, "operator": "Exists"},),
        ),
    ]
    verdict = v.verify(state(nodes, pods))
    assert sorted(x.pod or "" for x in verdict.violations) == [
        "ns/on-cordoned",
        "ns/untolerated",
        "ns/wrong-value",
    ]
    assert set(rules_of(verdict)) == {v.TAINTS}


def _term(key: str, **labels: str) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key}


def test_pod_anti_affinity_per_hostname_and_zone() -> None:
    host = (_term(HOST, color="green"),)
    zone = (_term(ZONE, app="db"),)
    nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")]
    pods = [
        pod("g1", "a", labels={"color": "green"}, anti_affinity=host),
        pod("g2", "b", labels={"color": "green"}, anti_affinity=host),
        pod("d1", "a", labels={"app": "db"}, anti_affinity=zone),
        pod("d2", "b", labels={"app": "db"}),  # no term of its own: d1's term catches it
    ]
    verdict = v.verify(state(nodes, pods))
    assert [(x.rule, x.pod) for x in verdict.violations] == [(v.POD_ANTI_AFFINITY, "ns/d1")]
    assert "ns/d2" in verdict.violations[0].detail
    pods.append(pod("g3", "b", labels={"color": "green"}, anti_affinity=host))
    verdict = v.verify(state(nodes, pods))
    assert Counter(x.pod for x in verdict.violations) == {"ns/d1": 1, "ns/g2": 1, "ns/g3": 1}


def test_pod_anti_affinity_namespaces() -> None:
    term = {**_term(HOST, color="green"), "namespaces": ["other"]}
    pods = [
        pod("p", "a", labels={"color": "green"}, anti_affinity=(term,)),
        pod("same-ns", "a", labels={"color": "green"}),  # not in the term's namespaces
    ]
    assert v.verify(state([node("a")], pods)).ok
    pods.append(pod("there", "a", namespace="other", labels={"color": "green"}))
    assert rules_of(v.verify(state([node("a")], pods))) == {v.POD_ANTI_AFFINITY: 1}


def test_pod_affinity() -> None:
    term = (_term(ZONE, color="blue"),)
    nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")]
    blue = {"color": "blue"}
    first = pod("first", "a", labels=blue, affinity=term, bound_at=1.0)
    follow = pod("follow", "b", labels=blue, affinity=term, bound_at=2.0)
    astray = pod("astray", "c", labels=blue, affinity=term, bound_at=3.0)
    assert v.verify(state(nodes, [first, follow])).ok
    verdict = v.verify(state(nodes, [first, follow, astray]))
    assert [(x.rule, x.pod, x.node) for x in verdict.violations] == [
        (v.POD_AFFINITY, "ns/astray", "c")
    ]
    # A pod that does not match its own term cannot be the first.
    loner = pod("loner", "c", labels={}, affinity=term)
    assert rules_of(v.verify(state(nodes, [loner]))) == {v.POD_AFFINITY: 1}
    # A node without the topology key never satisfies a term.
    bare = Node(name="bare", cpu_milli=1000, memory=GI)
    verdict = v.verify(state([bare], [pod("p", "bare", labels=blue, affinity=term)]))
    assert "no label" in verdict.violations[0].detail


def _spread(skew: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "maxSkew": skew,
        "topologyKey": ZONE,
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}},
        **extra,
    }


def test_topology_spread() -> None:
    nodes = [node("a", "z1"), node("b", "z2"), node("c", "z3")]
    web = {"app": "web"}
    c = (_spread(1),)
    even = [pod(f"p{i}", "abc"[i % 3], labels=web, spread=c) for i in range(6)]
    assert v.verify(state(nodes, even)).ok
    skewed = [
        *even,
        pod("extra1", "a", labels=web, spread=c),
        pod("extra2", "a", labels=web, spread=c),
    ]
    verdict = v.verify(state(nodes, skewed))
    assert set(rules_of(verdict)) == {v.TOPOLOGY_SPREAD}
    assert {x.node for x in verdict.violations} == {"a"}
    assert "maxSkew 1" in verdict.violations[0].detail
    # ScheduleAnyway is a preference only.
    soft = (dict(_spread(1), whenUnsatisfiable="ScheduleAnyway"),)
    assert v.verify(state(nodes, [pod(f"s{i}", "a", labels=web, spread=soft) for i in range(5)])).ok


def test_topology_spread_honours_node_affinity_and_min_domains() -> None:
    nodes = [node("a", "z1"), node("b", "z2"), node("c", "z3")]
    web = {"app": "web"}
    only_12 = ({"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["z1", "z2"]}]},)
    c = (_spread(1),)
    pods = [pod(f"p{i}", "ab"[i % 2], labels=web, spread=c, node_terms=only_12) for i in range(4)]
    # z3 is not eligible for these pods: 2 and 2 is even.
    assert v.verify(state(nodes, pods)).ok
    # minDomains 3 with two eligible domains: the least counts as 0, so 2 - 0 > 1.
    c3 = (_spread(1, minDomains=3),)
    pods = [pod(f"p{i}", "ab"[i % 2], labels=web, spread=c3, node_terms=only_12) for i in range(4)]
    assert set(rules_of(v.verify(state(nodes, pods)))) == {v.TOPOLOGY_SPREAD}


def test_max_rtt() -> None:
    table = {("a", "users-eu"): 3.0, ("b", "users-eu"): 40.0}

    def rtt(n: str, place: str) -> float | None:
        return table.get((n, place))

    ann = {v.MAX_RTT_ANNOTATION: "users-eu=10ms"}
    pods = [pod("near", "a", annotations=ann), pod("far", "b", annotations=ann)]
    pods.append(pod("unknown", "c", annotations={v.MAX_RTT_ANNOTATION: "users-us=10"}))
    nodes = [node("a"), node("b"), node("c")]
    verdict = v.verify(state(nodes, pods), rules=v.RULES, rtt=rtt)
    assert [(x.rule, x.pod) for x in verdict.violations] == [
        (v.MAX_RTT, "ns/far"),
        (v.MAX_RTT, "ns/unknown"),
    ]
    assert "40 ms, limit 10 ms" in verdict.violations[0].detail
    # Not asked for: not checked.
    assert v.verify(state(nodes, pods), rtt=rtt).ok


def _gang(name: str, at: str | None = None, **kw: Any) -> Pod:
    labels = {v.GROUP_LABEL: "g", v.GROUP_MIN_LABEL: "2"}
    ann = {v.GROUP_MAX_RTT_ANNOTATION: "5ms"}
    return pod(name, at, labels=labels, annotations=ann, **kw)


def _site_rtt(n: str, place: str) -> float | None:
    """Nodes a1, a2 at one site (1 ms apart), b1 at another (20 ms away)."""
    site = {"a1": "a", "a2": "a", "b1": "b"}
    if site.get(n) is None or site.get(place) is None:
        return None
    return 0.3 if n == place else 1.0 if site[n] == site[place] else 20.0


def test_group_max_rtt_between_bound_members() -> None:
    nodes = [node("a1"), node("a2"), node("b1")]
    near = [_gang("m0", "a1"), _gang("m1", "a2")]
    assert v.verify(state(nodes, near), rules=v.RULES, rtt=_site_rtt).ok
    far = [_gang("m0", "a1"), _gang("m1", "b1")]
    verdict = v.verify(state(nodes, far), rules=v.RULES, rtt=_site_rtt)
    assert [(x.rule, x.pod) for x in verdict.violations] == [
        (v.MAX_RTT, "ns/m0"),
        (v.MAX_RTT, "ns/m1"),
    ]
    assert "group-max-rtt 5 ms" in verdict.violations[0].detail


def test_room_for_a_member_is_within_its_groups_budget() -> None:
    """A pending member whose sibling is bound has room only near that sibling."""
    nodes = [node("a1", cpu_milli=1000), node("a2", cpu_milli=1000), node("b1")]
    full = [pod("x", "a2", cpu_milli=1000)]
    pods = [*full, _gang("m0", "a1", cpu_milli=1000), _gang("m1", None, cpu_milli=500)]
    # b1 has room, but 20 ms from m0: no room within the budget.
    assert v.verify(state(nodes, pods), rules=v.RULES, rtt=_site_rtt).ok
    pods = [_gang("m0", "a1", cpu_milli=500), _gang("m1", None, cpu_milli=500)]
    verdict = v.verify(state(nodes, pods), rules=v.RULES, rtt=_site_rtt)
    assert [(x.rule, x.pod, x.node) for x in verdict.violations] == [(v.ROOM, "ns/m1", "a1")]


def test_room_for_a_wholly_pending_group_is_judged_together() -> None:
    """Each member alone fits somewhere, but the group has room only where min-available
    members fit within the budget together."""
    nodes = [node("a1", cpu_milli=1000), node("a2", cpu_milli=1000), node("b1")]
    taken = [pod("x", "a2", cpu_milli=1000)]
    members = [_gang(f"m{i}", None, cpu_milli=800) for i in range(2)]
    # a1 takes one member, a2 none, b1 (4 cpu) both.
    verdict = v.verify(state(nodes, [*taken, *members]), rules=v.RULES, rtt=_site_rtt)
    assert {(x.rule, x.node) for x in verdict.violations} == {(v.ROOM, "b1")}
    assert "2 members fit together" in verdict.violations[0].detail
    # b1 too small for two: one member on a1 and one on b1 would break the budget.
    nodes[2] = node("b1", cpu_milli=1000)
    assert v.verify(state(nodes, [*taken, *members]), rules=v.RULES, rtt=_site_rtt).ok
    # Without the RTT rule the members are judged one by one, as any pods.
    assert not v.verify(state(nodes, [*taken, *members]), rules=v.KUBERNETES_RULES).ok


def test_parse_max_rtt() -> None:
    assert v.parse_max_rtt("users-eu=10ms, edge-1=2.5,x=1s ,") == [
        ("users-eu", 10.0),
        ("edge-1", 2.5),
        ("x", 1000.0),
    ]


def test_room() -> None:
    nodes = [node("a", cpu_milli=1000), node("b", cpu_milli=1000)]
    full = [pod("x", "a", cpu_milli=1000), pod("y", "b", cpu_milli=600)]
    small = pod("small", None, cpu_milli=300)
    big = pod("big", None, cpu_milli=500)
    verdict = v.verify(state(nodes, [*full, small, big]))
    assert [(x.rule, x.pod, x.node) for x in verdict.violations] == [(v.ROOM, "ns/small", "b")]
    # An expected pod that is pending is a "bound" violation, not a "room" one.
    verdict = v.verify(state(nodes, [*full, small]), expected=["ns/small"])
    assert rules_of(verdict) == {v.BOUND: 1}


def test_room_respects_anti_affinity_both_ways() -> None:
    term = (_term(HOST, color="green"),)
    green = {"color": "green"}
    nodes = [node("a")]
    # The pending pod's own term, then an existing pod's term toward it.
    assert v.verify(
        state(nodes, [pod("p", "a", labels=green), pod("q", labels=green, anti_affinity=term)])
    ).ok
    assert v.verify(
        state(nodes, [pod("p", "a", labels=green, anti_affinity=term), pod("q", labels=green)])
    ).ok
    assert not v.verify(state(nodes, [pod("p", "a"), pod("q", labels=green)])).ok


def test_state_from_api() -> None:
    nodes = [
        {
            "metadata": {"name": "n1", "labels": {ZONE: "z1"}},
            "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
        }
    ]
    pods = [
        {
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
            "spec": {
                "nodeName": "n1",
                "containers": [
                    {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                    {"resources": {"requests": {"cpu": "0.5", "memory": "1e6"}}},
                ],
                "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
                "affinity": {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [_term(HOST, a="b")]
                    }
                },
            },
            "status": {"phase": "Running"},
        }
    ]
    s = v.state_from_api(nodes, pods, bound_at={"ns/p": 5.0})
    n, p = s.nodes["n1"], s.pods[0]
    assert (n.cpu_milli, n.memory, n.pods, n.taints[0].key) == (4000, 8 * GI, 110, "k")
    assert (p.cpu_milli, p.memory, p.bound_at, p.node) == (2000, 64 * 2**20 + 10**6, 5.0, "n1")
    assert len(p.anti_affinity) == 1


def test_quantities() -> None:
    assert v.milli("100m") == 100
    assert v.milli("1.5") == 1500
    assert v.whole("1Ki") == 1024
    assert v.whole("1k") == 1000
    assert v.whole("2e3") == 2000
    assert v.milli(2) == 2000
    with pytest.raises(ValueError):
        v.quantity("ten")


def test_unknown_rule() -> None:
    with pytest.raises(ValueError, match="unknown rule"):
        v.verify(state([], []), rules=["capacity", "bogus"])


# ---- generated states, against brute force ----------------------------------------------------

ZONES = ("z1", "z2", "z3")


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[Node], list[Pod]]:
    n = draw(st.integers(1, 5))
    nodes = [
        node(
            f"n{i}",
            draw(st.sampled_from(ZONES)),
            cpu_milli=draw(st.integers(500, 4000)),
            memory=draw(st.integers(1, 8)) * GI,
            pods=draw(st.integers(1, 6)),
        )
        for i in range(n)
    ]
    pods = []
    for i in range(draw(st.integers(0, 12))):
        at = draw(st.sampled_from([None, *(x.name for x in nodes)]))
        pods.append(
            pod(
                f"p{i}",
                at,
                cpu_milli=draw(st.integers(0, 2000)),
                memory=draw(st.integers(0, 3)) * GI // 2,
                labels={"color": draw(st.sampled_from(["green", "blue"]))},
            )
        )
    return nodes, pods


@given(clusters())
def test_generated_capacity(cluster: tuple[list[Node], list[Pod]]) -> None:
    nodes, pods = cluster
    over = set()
    for n in nodes:
        on = [p for p in pods if p.node == n.name]
        if (
            sum(p.cpu_milli for p in on) > n.cpu_milli
            or sum(p.memory for p in on) > n.memory
            or len(on) > n.pods
        ):
            over.add(n.name)
    verdict = v.verify(state(nodes, pods), rules=[v.CAPACITY])
    assert {x.node for x in verdict.violations} == over
    assert len(verdict.violations) == len(over)


@given(clusters())
def test_generated_anti_affinity(cluster: tuple[list[Node], list[Pod]]) -> None:
    nodes, pods = cluster
    term = (_term(ZONE, color="green"),)
    pods = [
        Pod(**{**_fields(p), "anti_affinity": term if p.labels["color"] == "green" else ()})
        for p in pods
    ]
    zone = {n.name: n.labels[ZONE] for n in nodes}
    greens = [p for p in pods if p.node and p.labels["color"] == "green"]
    guilty = {
        p.key
        for p in greens
        if any(q is not p and zone[q.node or ""] == zone[p.node or ""] for q in greens)
    }
    verdict = v.verify(state(nodes, pods), rules=[v.POD_ANTI_AFFINITY])
    assert {x.pod for x in verdict.violations} == guilty


@given(clusters(), st.integers(1, 3))
def test_generated_spread(cluster: tuple[list[Node], list[Pod]], skew: int) -> None:
    nodes, pods = cluster
    c = (dict(_spread(skew), labelSelector={"matchLabels": {"color": "blue"}}),)
    pods = [Pod(**{**_fields(p), "spread": c if p.labels["color"] == "blue" else ()}) for p in pods]
    zone = {n.name: n.labels[ZONE] for n in nodes}
    counts = dict.fromkeys(zone.values(), 0)
    for p in pods:
        if p.node and p.labels["color"] == "blue":
            counts[zone[p.node]] += 1
    least = min(counts.values())
    guilty = {
        p.key
        for p in pods
        if p.node and p.labels["color"] == "blue" and counts[zone[p.node]] - least > skew
    }
    verdict = v.verify(state(nodes, pods), rules=[v.TOPOLOGY_SPREAD])
    assert {x.pod for x in verdict.violations} == guilty


@given(clusters(), st.data())
def test_generated_taints(cluster: tuple[list[Node], list[Pod]], data: st.DataObject) -> None:
    nodes, pods = cluster
    keys = ("k1", "k2")
    nodes = [
        Node(
            **{
                **_fields(n),
                "taints": tuple(
                    Taint(
                        k,
                        data.draw(st.sampled_from(["a", "b"])),
                        data.draw(st.sampled_from(["NoSchedule", "NoExecute", "PreferNoSchedule"])),
                    )
                    for k in data.draw(st.lists(st.sampled_from(keys), unique=True))
                ),
            }
        )
        for n in nodes
    ]
    tolerations = st.fixed_dictionaries(
        {
            "key": st.sampled_from(keys),
            "operator": st.sampled_from(["Equal", "Exists"]),
            "value": st.sampled_from(["a", "b"]),
        },
        optional={"effect": st.sampled_from(["NoSchedule", "NoExecute"])},
    )
    pods = [
        Pod(**{**_fields(p), "tolerations": tuple(data.draw(st.lists(tolerations, max_size=2)))})
        for p in pods
    ]
    by_name = {n.name: n for n in nodes}

    def ok(t: dict[str, Any], taint: Taint) -> bool:
        if t["key"] != taint.key or t.get("effect", taint.effect) != taint.effect:
            return False
        return bool(t["operator"] == "Exists" or t["value"] == taint.value)

    guilty = {
        p.key
        for p in pods
        if p.node
        and any(
            taint.effect != "PreferNoSchedule"
            and not any(ok(dict(t), taint) for t in p.tolerations)
            for taint in by_name[p.node].taints
        )
    }
    verdict = v.verify(state(nodes, pods), rules=[v.TAINTS])
    assert {x.pod for x in verdict.violations} == guilty


@given(clusters())
def test_generated_greedy_placement_passes(cluster: tuple[list[Node], list[Pod]]) -> None:
    """Pods placed one by one on the first node that `fits` leave nothing to report."""
    nodes, pods = cluster
    term = (_term(HOST, color="green"),)
    c = (dict(_spread(1), labelSelector={"matchLabels": {"color": "blue"}}),)
    pending = [
        Pod(
            **{
                **_fields(p),
                "node": None,
                "anti_affinity": term if p.labels["color"] == "green" else (),
                "spread": c if p.labels["color"] == "blue" else (),
            }
        )
        for p in pods
    ]
    s = state(nodes, [])
    placed = 0
    while pending:  # passes until nothing more fits, as a scheduler retries its queue
        left = []
        for p in pending:
            where = next(iter(v.feasible_nodes(p, s, rules=v.KUBERNETES_RULES)), None)
            if where is None:
                left.append(p)
            else:
                s.pods.append(Pod(**{**_fields(p), "node": where, "bound_at": float(placed)}))
                placed += 1
        if len(left) == len(pending):
            break
        pending = left
    s.pods += pending
    verdict = v.verify(s, rules=v.KUBERNETES_RULES)
    assert verdict.ok, verdict.summary()


def _fields(obj: Any) -> dict[str, Any]:
    return {f: getattr(obj, f) for f in type(obj).__dataclass_fields__}


# ---- the timeline's reading of pods and Events (no cluster: its handlers fed directly) ----


def _pod_obj(name: str, uid: str, node: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": uid}, "spec": {"nodeName": node} if node else {}}


def _event(uid: str, pod: str, pod_uid: str, node: str, *, core: bool = True) -> dict[str, Any]:
    ref = {"kind": "Pod", "name": pod, "uid": pod_uid}
    text = f"Successfully assigned ns/{pod} to {node}"
    if core:
        return {
            "metadata": {"uid": uid},
            "reason": "Scheduled",
            "involvedObject": ref,
            "message": text,
        }
    return {"metadata": {"uid": uid}, "reason": "Scheduled", "regarding": ref, "note": text}


def test_timeline_done_needs_binding_and_event() -> None:
    from bench.timeline import Timeline

    t = Timeline(None, "ns", events=True)  # type: ignore[arg-type]
    t._pod_event("ADDED", _pod_obj("p", "u1"))
    assert t.done("p") is None
    t._pod_event("MODIFIED", _pod_obj("p", "u1", "n1"))
    assert t.done("p") is None and "p" in t.bound
    t._event_event("ADDED", _event("e1", "p", "u1", "n1"))
    done = t.done("p")
    assert done is not None and done >= t.bound["p"]
    # The same Event again (a series update) is not a second report.
    t._event_event("MODIFIED", _event("e1", "p", "u1", "n1"))
    assert t.duplicate_events() == 0 and t.conflicts() == {}
    # The events.k8s.io shape is read too.
    t._pod_event("ADDED", _pod_obj("q", "u2", "n2"))
    t._event_event("ADDED", _event("e2", "q", "u2", "n2", core=False))
    assert t.done("q") is not None


def test_timeline_ignores_events_about_an_earlier_pod_of_the_name() -> None:
    from bench.timeline import Timeline

    t = Timeline(None, "ns", events=True)  # type: ignore[arg-type]
    t._pod_event("ADDED", _pod_obj("p", "new", "n1"))
    t._event_event("ADDED", _event("e-old", "p", "old", "n9"))
    assert "p" not in t.scheduled and t.conflicts() == {}


def test_timeline_conflicts() -> None:
    from bench.timeline import Timeline

    t = Timeline(None, "ns", events=True)  # type: ignore[arg-type]
    t._pod_event("ADDED", _pod_obj("p", "u1", "n1"))
    t._event_event("ADDED", _event("e1", "p", "u1", "n2"))  # reported to another node
    t._pod_event("ADDED", _pod_obj("q", "u2", "n1"))
    t._pod_event("MODIFIED", _pod_obj("q", "u2", "n3"))  # seen on a second node
    t._pod_event("ADDED", _pod_obj("r", "u3", "n1"))
    t._event_event("ADDED", _event("e3", "r", "u3", "n1"))
    t._event_event("ADDED", _event("e4", "r", "u3", "n1"))  # a duplicate, same node
    assert t.conflicts() == {"p": ["n1", "n2"], "q": ["n1", "n3"]}
    assert t.duplicate_events() == 1
