"""Filters and scores against kube-scheduler's documented behaviour."""

from __future__ import annotations

from typing import Any

import pytest

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import Code, CycleState
from lasched.model.node import Taint
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.plugins.nodeunschedulable import NodeUnschedulable
from lasched.plugins.schedulinggates import SchedulingGates
from lasched.plugins.tainttoleration import TaintToleration, tolerates
from tests.unit.factories import make_node, make_pod


def info(**node: Any) -> NodeInfo:
    return NodeInfo(make_node("n", **node))


def test_fit_passes_when_everything_fits() -> None:
    """A pod within free CPU and memory fits."""
    st = NodeResourcesFit().filter(CycleState(), make_pod("p", cpu="1", memory="1Gi"), info())
    assert st.ok


def test_fit_lists_every_insufficient_resource() -> None:
    """Each short resource is named, as in 'Insufficient cpu, Insufficient memory'."""
    st = NodeResourcesFit().filter(
        CycleState(), make_pod("p", cpu="9", memory="64Gi"), info(cpu="8", memory="32Gi")
    )
    assert st.code is Code.UNSCHEDULABLE
    assert st.reasons == ("Insufficient cpu", "Insufficient memory")


def test_fit_counts_existing_pods() -> None:
    """Already placed pods reduce what is free."""
    ni = info(cpu="4")
    ni.add_pod(make_pod("old", cpu="3", node="n"))
    st = NodeResourcesFit().filter(CycleState(), make_pod("p", cpu="2"), ni)
    assert st.reasons == ("Insufficient cpu",)


def test_fit_pod_count_limit() -> None:
    """A node at its pod limit reports 'Too many pods'."""
    ni = info(pods="1")
    ni.add_pod(make_pod("old", node="n"))
    st = NodeResourcesFit().filter(CycleState(), make_pod("p"), ni)
    assert st.reasons == ("Too many pods",)


def test_fit_extended_resource_missing_on_node() -> None:
    """A GPU request on a node without GPUs is insufficient."""
    pod = make_pod("p")
    pod.requests.scalar["nvidia.com/gpu"] = 1
    st = NodeResourcesFit().filter(CycleState(), pod, info())
    assert st.reasons == ("Insufficient nvidia.com/gpu",)


def test_least_allocated_prefers_emptier_node() -> None:
    """LeastAllocated scores the idle node higher."""
    fit = NodeResourcesFit("LeastAllocated")
    busy = info()
    busy.add_pod(make_pod("old", cpu="6", memory="24Gi", node="n"))
    pod = make_pod("p", cpu="1", memory="1Gi")
    assert fit.score(CycleState(), pod, info()) > fit.score(CycleState(), pod, busy)


def test_most_allocated_prefers_fuller_node() -> None:
    """MostAllocated (bin-packing) scores the busy node higher."""
    fit = NodeResourcesFit("MostAllocated")
    busy = info()
    busy.add_pod(make_pod("old", cpu="6", memory="24Gi", node="n"))
    pod = make_pod("p", cpu="1", memory="1Gi")
    assert fit.score(CycleState(), pod, busy) > fit.score(CycleState(), pod, info())


def test_resource_weights_weigh_cpu_and_memory_scores() -> None:
    """kube-scheduler's weighted mean of each resource's score, rounded down."""
    busy = info()
    busy.add_pod(make_pod("old", cpu="6", memory="8Gi", node="n"))  # CPU 75 %, memory 25 %
    pod = make_pod("p", cpu="1", memory="1Gi")
    equal = NodeResourcesFit("MostAllocated").score(CycleState(), pod, busy)
    cpu_heavy = NodeResourcesFit("MostAllocated", resources={"cpu": 3, "memory": 1})
    cpu_only = NodeResourcesFit("MostAllocated", resources={"cpu": 1})
    cpu, mem = 87, 28  # (6+1)/8 and (8+1)/32 of the node, in points
    assert equal == (cpu + mem) // 2
    assert cpu_heavy.score(CycleState(), pod, busy) == (3 * cpu + mem) // 4
    assert cpu_only.score(CycleState(), pod, busy) == cpu


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"nvidia.com/gpu": 1}, "cpu and memory only with LeastAllocated, not 'nvidia.com/gpu'"),
        ({"cpu": 0}, r"resources\['cpu'\] must be a positive integer, not 0"),
        ({}, "resources must name at least one resource"),
    ],
    ids=["other-resource", "zero-weight", "none"],
)
def test_resource_weights_are_checked(resources: dict[str, int], message: str) -> None:
    """LeastAllocated scores only cpu and memory, each with a positive weight."""
    with pytest.raises(ValueError, match=message):
        NodeResourcesFit(resources=resources)


def test_unknown_strategy_is_rejected() -> None:
    """A typo in the strategy is an error naming it."""
    with pytest.raises(ValueError, match="Spread"):
        NodeResourcesFit("Spread")


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        pytest.param({"ready": False}, "node(s) were not ready", id="not-ready"),
        pytest.param({"unschedulable": True}, "node(s) were unschedulable", id="cordoned"),
    ],
)
def test_unschedulable_nodes_are_filtered(node: dict[str, Any], reason: str) -> None:
    """Cordoned and NotReady nodes are skipped, and preemption would not help."""
    st = NodeUnschedulable().filter(CycleState(), make_pod("p"), info(**node))
    assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert st.reasons == (reason,)


def test_cordon_can_be_tolerated() -> None:
    """A pod tolerating node.kubernetes.io/unschedulable may use a cordoned node."""
    pod = make_pod(
        "p", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]
    )
    assert NodeUnschedulable().filter(CycleState(), pod, info(unschedulable=True)).ok


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"key": "k", "value": "v", "effect": "NoSchedule"}, Taint("k", "v", "NoSchedule"), True),
        ({"key": "k", "value": "x", "effect": "NoSchedule"}, Taint("k", "v", "NoSchedule"), False),
        ({"key": "k", "operator": "Exists"}, Taint("k", "v", "NoExecute"), True),
        ({"operator": "Exists"}, Taint("any", "v", "NoSchedule"), True),
        (
            {"key": "k", "operator": "Exists", "effect": "NoExecute"},
            Taint("k", "", "NoSchedule"),
            False,
        ),
        ({"key": "other", "operator": "Exists"}, Taint("k", "", "NoSchedule"), False),
    ],
    ids=[
        "equal",
        "value-differs",
        "exists-any-effect",
        "wildcard",
        "effect-differs",
        "key-differs",
    ],
)
def test_toleration_matching(toleration: dict[str, str], taint: Taint, expected: bool) -> None:
    """Toleration matching follows v1.Toleration.ToleratesTaint."""
    assert tolerates(toleration, taint) is expected


def test_untolerated_taint_is_named() -> None:
    """The reason quotes the taint, e.g. 'node(s) had untolerated taint {edge: true}'."""
    ni = info(taints=[{"key": "edge", "value": "true", "effect": "NoSchedule"}])
    st = TaintToleration().filter(CycleState(), make_pod("p"), ni)
    assert st.reasons == ("node(s) had untolerated taint {edge: true}",)


def test_prefer_no_schedule_only_lowers_the_score() -> None:
    """PreferNoSchedule taints never filter; nodes with fewer of them score higher."""
    tt = TaintToleration()
    soft = info(taints=[{"key": "soft", "value": "", "effect": "PreferNoSchedule"}])
    pod = make_pod("p")
    assert tt.filter(CycleState(), pod, soft).ok
    scores = [tt.score(CycleState(), pod, soft), tt.score(CycleState(), pod, info())]
    tt.normalize(CycleState(), pod, scores)
    assert scores == [0, 100]


def test_scheduling_gates_hold_a_pod_until_removed() -> None:
    """A pod with schedulingGates is gated with their names; without them it may go."""
    gated = make_pod("g", schedulingGates=[{"name": "example.com/quota"}])
    st = SchedulingGates().pre_enqueue(gated)
    assert not st.ok
    assert st.message == "waiting for scheduling gates: example.com/quota"
    assert SchedulingGates().pre_enqueue(make_pod("free")).ok
