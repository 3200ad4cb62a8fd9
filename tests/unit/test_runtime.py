"""The framework runtime filters, scores, selects and summarises failures."""

from __future__ import annotations

import random
from collections.abc import Sequence

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import (
    SUCCESS,
    Batchable,
    CycleState,
    FilterAllPlugin,
    ScoreAllPlugin,
    ScoreReadsNodePods,
    Status,
    unschedulable,
)
from lasched.framework.runtime import FitError, Framework, PluginError, ScheduleResult
from lasched.model.pod import PodInfo
from lasched.plugins.noderesources import BalancedAllocation, NodeResourcesFit
from lasched.plugins.tainttoleration import TaintToleration
from tests.unit.factories import make_node, make_pod


def infos(*nodes: NodeInfo) -> list[NodeInfo]:
    return list(nodes)


def test_summary_in_kube_scheduler_style() -> None:
    """Reasons are counted and sorted: '0/3 nodes are available: 2 Insufficient cpu, 1 ...'."""
    fw = Framework(pre_filters=[], filters=[TaintToleration(), NodeResourcesFit()], scores=[])
    nodes = [
        NodeInfo(make_node("a", cpu="1")),
        NodeInfo(make_node("b", cpu="1")),
        NodeInfo(make_node("c", taints=[{"key": "edge", "value": "true", "effect": "NoSchedule"}])),
    ]
    result = fw.schedule(CycleState(), make_pod("p", cpu="2"), nodes)
    assert isinstance(result, FitError)
    assert result.summary() == (
        "0/3 nodes are available: 2 Insufficient cpu, 1 node(s) had untolerated taint {edge: true}."
    )


def test_best_score_wins() -> None:
    """The emptiest node wins under LeastAllocated."""
    fit = NodeResourcesFit()
    fw = Framework(pre_filters=[], filters=[fit], scores=[(fit, 1)])
    busy = NodeInfo(make_node("busy"))
    busy.add_pod(make_pod("x", cpu="6", memory="20Gi", node="busy"))
    result = fw.schedule(CycleState(), make_pod("p", cpu="1"), [busy, NodeInfo(make_node("idle"))])
    assert isinstance(result, ScheduleResult)
    assert result.node == "idle"


def test_ties_are_broken_at_random() -> None:
    """Equal nodes share the load instead of the first one taking everything."""
    fit = NodeResourcesFit()
    fw = Framework(pre_filters=[], filters=[fit], scores=[(fit, 1)], rng=random.Random(7))
    nodes = [NodeInfo(make_node(f"n{i}")) for i in range(4)]
    chosen = set()
    for _ in range(50):
        r = fw.schedule(CycleState(), make_pod("p"), nodes)
        assert isinstance(r, ScheduleResult)
        chosen.add(r.node)
    assert chosen == {"n0", "n1", "n2", "n3"}


def test_adaptive_number_of_nodes_to_find() -> None:
    """kube-scheduler's formula: all below 100 nodes, 50 % minus n/125, at least 5 %."""
    fw = Framework(pre_filters=[], filters=[], scores=[])
    assert fw.num_feasible_nodes_to_find(50) == 50
    assert fw.num_feasible_nodes_to_find(1000) == 420
    assert fw.num_feasible_nodes_to_find(5000) == 500
    assert fw.num_feasible_nodes_to_find(100_000) == 5000


class Exploding:
    name = "Exploding"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        raise KeyError("boom")


class Rejecting:
    name = "Rejecting"

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        return unschedulable("pod group incomplete")


def test_plugin_exception_is_an_error_naming_the_plugin() -> None:
    """A plugin that raises is a bug: reported as PluginError with the plugin's name."""
    fw = Framework(pre_filters=[], filters=[Exploding()], scores=[])
    try:
        fw.schedule(CycleState(), make_pod("p"), [NodeInfo(make_node("n"))])
    except PluginError as e:
        assert e.status.plugin == "Exploding"
        assert "KeyError" in str(e)
    else:
        raise AssertionError("PluginError not raised")


def test_pre_filter_rejection_is_summarised() -> None:
    """A PreFilter rejection applies to all nodes at once."""
    fw = Framework(pre_filters=[Rejecting()], filters=[], scores=[])
    result = fw.schedule(CycleState(), make_pod("p"), [NodeInfo(make_node("n"))])
    assert isinstance(result, FitError)
    assert result.summary() == "0/1 nodes are available: pod group incomplete."


class Counting:
    """A filter that counts its calls, and rejects one node by name."""

    name = "Counting"

    def __init__(self, reject: str = "") -> None:
        self.calls: list[str] = []
        self.reject = reject

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        self.calls.append("filter")
        return unschedulable("rejected") if node.name == self.reject else SUCCESS


class CountingAll(Counting):
    """The same, with the declared fast form (FilterAllPlugin)."""

    name = "CountingAll"

    def filter_all(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[Status]:
        self.calls.append("filter_all")
        return [unschedulable("rejected") if ni.name == self.reject else SUCCESS for ni in nodes]


def test_a_filter_all_plugin_checks_many_nodes_per_call() -> None:
    """A FilterAllPlugin is called once per chunk, a plain Filter once per node."""
    plain, fast = Counting(reject="n1"), CountingAll(reject="n2")
    assert isinstance(fast, FilterAllPlugin) and not isinstance(plain, FilterAllPlugin)
    fw = Framework(pre_filters=[], filters=[plain, fast], scores=[])
    nodes = [NodeInfo(make_node(f"n{i}")) for i in range(4)]
    result = fw.schedule(CycleState(), make_pod("p"), nodes)
    assert isinstance(result, ScheduleResult) and result.feasible == 2
    assert plain.calls == ["filter"] * 4
    assert fast.calls == ["filter_all"]


def test_setting_a_points_plugins_declares_them_anew() -> None:
    """A filter set after build runs, with its fast form; an undeclared one ends batching."""
    fit = NodeResourcesFit()
    fw = Framework(pre_filters=[], filters=[fit], scores=[(fit, 1)], batching=True)
    assert fw.batching
    fast = CountingAll(reject="n0")
    fw.filters = (*fw.filters, fast)
    nodes = [NodeInfo(make_node(f"n{i}")) for i in range(3)]
    result = fw.schedule(CycleState(), make_pod("p"), nodes)
    assert isinstance(result, ScheduleResult) and result.feasible == 2
    assert fast.calls == ["filter_all"]
    assert not fw.batching  # CountingAll is not Batchable


def test_capabilities_are_declared_by_the_plugins() -> None:
    """The resource plugins offer the fast forms, and say their scores read a node's pods."""
    fit, balanced = NodeResourcesFit(), BalancedAllocation()
    assert isinstance(fit, FilterAllPlugin) and isinstance(fit, ScoreAllPlugin)
    assert isinstance(balanced, ScoreAllPlugin) and not isinstance(balanced, FilterAllPlugin)
    assert isinstance(fit, ScoreReadsNodePods) and isinstance(balanced, ScoreReadsNodePods)
    assert not isinstance(TaintToleration(), ScoreReadsNodePods | ScoreAllPlugin)
    assert all(isinstance(p, Batchable) for p in (fit, balanced, TaintToleration()))
