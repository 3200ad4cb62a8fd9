"""The column forms of Filter and Score give exactly what the per-node forms give.

Property tests on generated clusters and pods (tests/unit/columns_gen.py):
each plugin's ``filter_columns`` against ``filter`` node by node (verdicts
and statuses), its ``score_columns`` against ``score`` then ``normalize``;
and the whole framework, judging from the columns or node by node, over a
run of pods that are assumed as they are placed: the same decisions, nodes
evaluated, rejections in the same order, scores, round-robin start and
random numbers drawn.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import (
    SUCCESS,
    ColumnVerdicts,
    CycleState,
    FilterColumnsPlugin,
    ScoreColumnsPlugin,
    Status,
    unschedulable,
)
from lasched.framework.runtime import FitError, Framework, PluginError, ScheduleResult
from lasched.model.pod import PodInfo
from lasched.plugins.nodeaffinity import NodeAffinity
from lasched.plugins.nodeports import NodePorts
from lasched.plugins.noderesources import BalancedAllocation, NodeResourcesFit
from lasched.plugins.nodeunschedulable import NodeUnschedulable
from lasched.plugins.tainttoleration import TaintToleration
from tests.unit import columns_gen
from tests.unit.factories import make_node, make_pod

FILTERS: list[FilterColumnsPlugin] = [
    NodeUnschedulable(),
    TaintToleration(),
    NodeAffinity(),
    NodeResourcesFit(),
    NodeResourcesFit("MostAllocated"),
]
SCORES: list[ScoreColumnsPlugin] = [
    TaintToleration(),
    NodeAffinity(),
    NodeResourcesFit(),
    NodeResourcesFit("MostAllocated"),
    NodeResourcesFit(resources={"cpu": 3, "memory": 1}),
    NodeResourcesFit("RequestedToCapacityRatio", shape=((0, 0), (100, 10))),
    NodeResourcesFit("RequestedToCapacityRatio", shape=((0, 10), (30, 0))),  # truncating steps
    NodeResourcesFit(
        "RequestedToCapacityRatio",
        resources={"cpu": 3, "memory": 2},
        shape=((7, 2), (37, 10), (83, 1)),
    ),
    BalancedAllocation(),
]


rows_of = columns_gen.rows_of
column_statuses = columns_gen.column_statuses


@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 60))
def test_filter_columns_give_the_per_node_verdicts(seed: int, size: int) -> None:
    rng = random.Random(seed)
    cache = columns_gen.cluster(rng, size)
    nodes = list(cache.node_infos())
    rng.shuffle(nodes)
    for i in range(4):
        pod = columns_gen.pod(rng, f"p{i}", priority=rng.randrange(3))
        for plugin in FILTERS:
            got = column_statuses(plugin, pod, cache, nodes)
            want = [plugin.filter(CycleState(), pod, ni) for ni in nodes]
            if got is None:  # only for what the column forms leave to filter()
                assert isinstance(plugin, NodeResourcesFit) and pod.requests.scalar
                continue
            assert got == want, plugin.name


@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 60))
def test_score_columns_give_the_per_node_scores(seed: int, size: int) -> None:
    rng = random.Random(seed)
    cache = columns_gen.cluster(rng, size)
    nodes = [ni for ni in cache.node_infos() if rng.random() < 0.8] or list(cache.node_infos())
    for i in range(4):
        pod = columns_gen.pod(rng, f"p{i}")
        for plugin in SCORES:
            state = CycleState()
            got = plugin.score_columns(state, pod, cache.columns, rows_of(nodes))
            raw = [plugin.score(state, pod, ni) for ni in nodes]
            plugin.normalize(state, pod, raw)
            assert got is not None, plugin.name
            assert got.tolist() == raw, plugin.name


def test_the_resource_scores_share_their_loads_only_while_nothing_changes() -> None:
    """BalancedAllocation reuses NodeResourcesFit's gathered loads in a cycle, never stale."""
    cache = SchedulerCache()
    for i in range(3):
        cache.add_node(make_node(f"n{i}", cpu="4", memory="8Gi"))
    nodes = list(cache.node_infos())
    state, pod = CycleState(), make_pod("p", cpu="1", memory="1Gi")
    rows = rows_of(nodes)
    fit, balanced = NodeResourcesFit(), BalancedAllocation()
    assert fit.score_columns(state, pod, cache.columns, rows) is not None
    cache.add_pod(make_pod("x", cpu="3", node="n1"))
    got = balanced.score_columns(state, pod, cache.columns, rows)
    assert got is not None
    assert got.tolist() == [balanced.score(state, pod, ni) for ni in nodes]


def test_irregular_values_go_node_by_node() -> None:
    """Values beyond exact arithmetic, and extended resources, leave the columns unused."""
    cache = SchedulerCache()
    cache.add_node(make_node("a", memory="100Pi"))
    rows = rows_of(list(cache.node_infos()))
    fit, balanced = NodeResourcesFit(), BalancedAllocation()
    pod = make_pod("p", cpu="1")
    assert fit.filter_columns(CycleState(), pod, cache.columns, rows) is None
    assert fit.score_columns(CycleState(), pod, cache.columns, rows) is None
    assert balanced.score_columns(CycleState(), pod, cache.columns, rows) is None


class ByName:
    """A Filter without a column form (and one Status for many nodes): rejects some names."""

    name = "ByName"

    def __init__(self, modulo: int) -> None:
        self.modulo = modulo
        self.seen: list[str] = []

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        self.seen.append(node.name)
        if self.modulo and int(node.name[1:]) % self.modulo == 0:
            return _BY_NAME
        return SUCCESS


_BY_NAME = unschedulable("rejected by name")


def framework(
    *, columns: bool, seed: int, percentage: int, extra: ByName | None, batching: bool
) -> Framework:
    unsched, taints, affinity, ports = (
        NodeUnschedulable(), TaintToleration(), NodeAffinity(), NodePorts()
    )  # fmt: skip
    fit, balanced = NodeResourcesFit(), BalancedAllocation()
    filters: list[Any] = [unsched, taints, affinity, ports]
    if extra is not None:
        filters.append(extra)
    filters.append(fit)
    fw = Framework(
        pre_filters=[affinity, ports],
        filters=filters,
        pre_scores=[affinity],
        scores=[(taints, 3), (affinity, 2), (fit, 1), (balanced, 1)],
        percentage_of_nodes_to_score=percentage,
        rng=random.Random(seed),
        batching=batching,
    )
    fw.columns_min_nodes = 0 if columns else 10**9
    return fw


def outcome(result: ScheduleResult | FitError) -> tuple[Any, ...]:
    if isinstance(result, FitError):
        return ("fit", result.summary(), list(result.node_statuses.items()))
    return ("ok", result.node, result.evaluated, result.feasible, dict(result.scores))


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.sampled_from([40, 99, 100, 150, 230, 400]),
    roomy=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
    percentage=st.sampled_from([0, 5, 30, 100]),
    modulo=st.sampled_from([0, 0, 2, 7]),
    batching=st.booleans(),
)
def test_the_framework_decides_alike_from_columns_or_node_by_node(
    *, seed: int, size: int, roomy: float, percentage: int, modulo: int, batching: bool
) -> None:
    """Two identical clusters, one framework each: every outcome, start and draw agree.

    Roomy clusters reach the wanted number of feasible nodes before the end
    (the round-robin start moves); tight ones reject most nodes.
    """
    caches = [columns_gen.cluster(random.Random(seed), size, roomy=roomy) for _ in range(2)]
    extras = [ByName(modulo) if modulo else None for _ in range(2)]
    fws = [
        framework(columns=c, seed=seed, percentage=percentage, extra=e, batching=batching)
        for c, e in zip((True, False), extras, strict=True)
    ]
    rng = random.Random(seed + 1)
    pods = [columns_gen.pod(rng, f"p{i}", priority=rng.randrange(3)) for i in range(12)]
    lists = [list(c.node_infos()) for c in caches]
    for cycle, pod in enumerate(pods, start=1):
        results = []
        for fw, cache, nodes in zip(fws, caches, lists, strict=True):
            result = fw.schedule(CycleState(), pod, nodes, cycle=cycle)
            results.append(outcome(result))
            if isinstance(result, ScheduleResult):
                cache.assume(pod, result.node)
        assert results[0] == results[1], f"cycle {cycle}"
        assert fws[0]._next_start == fws[1]._next_start
        assert fws[0]._rng.getstate() == fws[1]._rng.getstate()
    if extras[0] is not None and extras[1] is not None:
        assert extras[0].seen == extras[1].seen  # the same nodes, in the same order


def test_columns_are_used_for_the_caches_own_nodes_only() -> None:
    """A list of NodeInfos the cache does not hold is judged node by node."""
    cache = SchedulerCache()
    for i in range(40):
        cache.add_node(make_node(f"n{i}"))
    fw = framework(columns=True, seed=1, percentage=0, extra=None, batching=False)
    own = list(cache.node_infos())
    assert fw._node_view(own) is not None
    assert fw._node_view(own) is fw._node_view(own)  # kept while nothing moves
    copies = [NodeInfo(ni.node) for ni in own]
    assert fw._node_view(copies) is None
    cache.add_node(make_node("n99"))
    assert fw._node_view(own) is not fw._node_view(list(cache.node_infos()))
    cache.add_pod(make_pod("x", node="n3"))
    cache.remove_node("n3")  # n3 keeps its pod: a row without a node, in the old list
    assert fw._node_view(own) is None
    result = fw.schedule(CycleState(), make_pod("p"), own[:3])  # below the threshold
    assert isinstance(result, ScheduleResult)


def test_a_column_plugin_that_errs_names_itself() -> None:
    """An exception in filter_columns or score_columns is the plugin's error, as per node."""

    class Broken(NodeResourcesFit):
        def filter_columns(self, *args: Any) -> Any:
            raise ValueError("boom")

    cache = SchedulerCache()
    for i in range(40):
        cache.add_node(make_node(f"n{i}"))
    fw = Framework(pre_filters=[], filters=[Broken()], scores=[])
    fw.columns_min_nodes = 0
    with pytest.raises(PluginError) as info:
        fw.schedule(CycleState(), make_pod("p"), list(cache.node_infos()))
    assert info.value.status.plugin == "NodeResourcesFit"

    class Short(NodeUnschedulable):
        def filter_columns(self, *args: Any) -> Any:
            return ColumnVerdicts(np.zeros(3, dtype=np.int64))

    fw = Framework(pre_filters=[], filters=[Short()], scores=[])
    fw.columns_min_nodes = 0
    with pytest.raises(PluginError, match="codes for 40 nodes") as info:
        fw.schedule(CycleState(), make_pod("p"), list(cache.node_infos()))
    assert info.value.status.plugin == "NodeUnschedulable"

    class OutOfRange(BalancedAllocation):
        def score_columns(self, *args: Any) -> Any:
            return np.array([101] * 40, dtype=np.int64)

    fw = Framework(pre_filters=[], filters=[], scores=[(OutOfRange(), 1)])
    fw.columns_min_nodes = 0
    with pytest.raises(PluginError, match=r"scored 101, outside 0\.\.100"):
        fw.schedule(CycleState(), make_pod("p"), list(cache.node_infos()))


@pytest.mark.parametrize(
    "affinity",
    [
        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "tier", "operator": "In",
                                                      "values": "15"}]}]},
        {"nodeSelectorTerms": [{"matchExpressions": [{"key": 7, "operator": "Exists"}]}]},
        {"nodeSelectorTerms": ["not a term"]},
        {"nodeSelectorTerms": [{"matchFields": {"key": "metadata.name"}}]},
    ],
    ids=["values-a-string", "key-not-a-string", "term-not-an-object", "fields-not-a-list"],
)  # fmt: skip
def test_selectors_the_api_would_refuse_go_node_by_node(affinity: dict[str, Any]) -> None:
    """No column verdict for a shape the per-node form reads its own way (or fails on):
    the framework then asks NodeAffinity node by node and gets its answer or its error."""
    cache = SchedulerCache()
    for i in range(40):
        cache.add_node(make_node(f"n{i}", labels={"tier": str(i % 20)}))
    nodes = list(cache.node_infos())
    pod = make_pod("p", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": affinity}})  # fmt: skip
    assert NodeAffinity().filter_columns(CycleState(), pod, cache.columns, rows_of(nodes)) is None
    outcomes = []
    for columns in (True, False):
        fw = framework(columns=columns, seed=3, percentage=0, extra=None, batching=False)
        try:
            outcomes.append(outcome(fw.schedule(CycleState(), pod, nodes)))
        except PluginError as e:
            outcomes.append(("error", e.status.plugin, e.status.message))
    assert outcomes[0] == outcomes[1]
