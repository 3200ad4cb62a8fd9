"""Node selectors and node affinity, matched as kube-scheduler matches them."""

from __future__ import annotations

from typing import Any

import pytest

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import Code, CycleState
from lasched.plugins.nodeaffinity import NodeAffinity, match_expression
from lasched.plugins.nodeports import NodePorts
from lasched.plugins.noderesources import BalancedAllocation
from tests.unit.factories import make_node, make_pod

LABELS = {"zone": "a", "gpu": "true", "cores": "16"}


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        ({"key": "zone", "operator": "In", "values": ["a", "b"]}, True),
        ({"key": "zone", "operator": "In", "values": ["c"]}, False),
        ({"key": "zone", "operator": "NotIn", "values": ["c"]}, True),
        ({"key": "missing", "operator": "NotIn", "values": ["c"]}, True),
        ({"key": "gpu", "operator": "Exists"}, True),
        ({"key": "gpu", "operator": "DoesNotExist"}, False),
        ({"key": "cores", "operator": "Gt", "values": ["8"]}, True),
        ({"key": "cores", "operator": "Lt", "values": ["8"]}, False),
        ({"key": "zone", "operator": "Gt", "values": ["1"]}, False),
        ({"key": "missing", "operator": "Lt", "values": ["1"]}, False),
    ],
    ids=[
        "in", "in-miss", "notin", "notin-absent", "exists", "doesnotexist",
        "gt", "lt", "gt-non-integer-label", "lt-absent",
    ],
)  # fmt: skip
def test_requirement_operators(req: dict[str, Any], expected: bool) -> None:
    """Each operator of NodeSelectorRequirement."""
    assert match_expression(req, LABELS) is expected


def affinity(*terms: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
        }
    }


def check(pod_kwargs: dict[str, Any], name: str = "n1", **labels: str) -> bool:
    ni = NodeInfo(make_node(name, labels=labels))
    return NodeAffinity().filter(CycleState(), make_pod("p", **pod_kwargs), ni).ok


def test_node_selector_must_match_all() -> None:
    """nodeSelector is an AND of exact label matches."""
    assert check({"nodeSelector": {"zone": "a"}}, zone="a", disk="ssd")
    assert not check({"nodeSelector": {"zone": "a", "disk": "hdd"}}, zone="a", disk="ssd")


def test_terms_are_ored() -> None:
    """Any one matching term admits the node."""
    terms = affinity(
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["x"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
    )
    assert check({"affinity": terms}, zone="a")


def test_empty_term_matches_nothing() -> None:
    """A term with no requirements selects no node."""
    assert not check({"affinity": affinity({})}, zone="a")


def test_match_fields_on_node_name() -> None:
    """matchFields supports metadata.name."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    assert check({"affinity": affinity(term)}, name="n1")
    assert not check({"affinity": affinity(term)}, name="n2")


def test_rejection_reason_and_code() -> None:
    """The reason is kube-scheduler's and preemption cannot help."""
    st = NodeAffinity().filter(
        CycleState(), make_pod("p", nodeSelector={"zone": "b"}), NodeInfo(make_node("n"))
    )
    assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert st.reasons == ("node(s) didn't match Pod's node affinity/selector",)


def test_preferred_terms_score_by_weight() -> None:
    """Preferred terms add their weights; the best node normalises to 100."""
    pod = make_pod(
        "p",
        affinity={
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 80,
                        "preference": {
                            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]
                        },
                    },
                    {
                        "weight": 20,
                        "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
                    },
                ]
            }
        },
    )
    plugin = NodeAffinity()
    nodes = [
        NodeInfo(make_node("both", labels={"zone": "a", "gpu": "1"})),
        NodeInfo(make_node("zone", labels={"zone": "a"})),
        NodeInfo(make_node("none")),
    ]
    scores = [plugin.score(CycleState(), pod, n) for n in nodes]
    plugin.normalize(CycleState(), pod, scores)
    assert scores == [100, 80, 0]


def port_pod(name: str, port: int, ip: str = "", proto: str = "TCP", node: str = "") -> Any:
    p: dict[str, Any] = {"containerPort": port, "hostPort": port, "protocol": proto}
    if ip:
        p["hostIP"] = ip
    return make_pod(name, node=node, containers=[{"name": "c", "ports": [p]}])


@pytest.mark.parametrize(
    ("used", "wanted", "conflict"),
    [
        (("", "TCP", 80), ("", "TCP", 80), True),
        (("", "TCP", 80), ("", "UDP", 80), False),
        (("10.0.0.1", "TCP", 80), ("10.0.0.2", "TCP", 80), False),
        (("10.0.0.1", "TCP", 80), ("", "TCP", 80), True),
        (("", "TCP", 80), ("10.0.0.2", "TCP", 80), True),
    ],
    ids=["same", "other-protocol", "other-ips", "wildcard-wanted", "wildcard-used"],
)
def test_host_port_conflicts(
    used: tuple[str, str, int], wanted: tuple[str, str, int], conflict: bool
) -> None:
    """A host port is taken per protocol and IP; 0.0.0.0 overlaps every IP."""
    ni = NodeInfo(make_node("n"))
    ni.add_pod(port_pod("old", used[2], used[0], used[1], node="n"))
    st = NodePorts().filter(CycleState(), port_pod("new", wanted[2], wanted[0], wanted[1]), ni)
    assert st.ok is not conflict


def test_balanced_allocation_prefers_proportional_use() -> None:
    """A pod that evens out CPU and memory use scores higher than one that skews it."""
    ni = NodeInfo(make_node("n", cpu="10", memory="10Gi"))
    ni.add_pod(make_pod("cpu-heavy", cpu="5", memory="1Gi", node="n"))
    plugin = BalancedAllocation()
    evens = plugin.score(CycleState(), make_pod("mem", cpu="100m", memory="4Gi"), ni)
    skews = plugin.score(CycleState(), make_pod("cpu", cpu="4", memory="100Mi"), ni)
    assert evens > skews
