"""NodeResourcesFit's RequestedToCapacityRatio: kube-scheduler's scores and shape checks."""

from __future__ import annotations

from typing import Any

import pytest

from lasched.cache.cache import SchedulerCache
from lasched.framework.interface import CycleState
from lasched.model.pod import PodInfo
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.plugins.requestedtocapacity import ShapeError, broken_linear, validate_shape
from tests.unit.factories import make_node, make_pod

RTCR = "RequestedToCapacityRatio"
SPREAD_SHAPE = ((0, 10), (100, 0))


def bare_pod(name: str, *requests: dict[str, str], node: str = "") -> PodInfo:
    """A pod with one container per request map, none without (as kube-scheduler's
    ``st.MakePod().Req(...)``: a pod without containers requests nothing, not even the
    non-zero defaults)."""
    containers = [{"name": f"c{i}", "resources": {"requests": r}} for i, r in enumerate(requests)]
    return make_pod(name, containers=containers, node=node)


def scores(
    fit: NodeResourcesFit, pod: PodInfo, nodes: list[dict[str, Any]], existing: list[PodInfo]
) -> dict[str, int]:
    """Each node's score, by score() and by score_all(), which must agree."""
    cache = SchedulerCache()
    for i, node in enumerate(nodes, 1):
        cache.add_node(make_node(f"node{i}", **node))
    for p in existing:
        cache.add_pod(p)
    infos = list(cache.node_infos())
    one = {ni.name: fit.score(CycleState(), pod, ni) for ni in infos}
    assert fit.score_all(CycleState(), pod, infos) == list(one.values())
    return one


# kube-scheduler's TestRequestedToCapacityRatioScoringStrategy (pkg/scheduler/framework/plugins/
# noderesources/requested_to_capacity_ratio_test.go): cpu "4000" is 4000 cores, memory bytes.
@pytest.mark.parametrize(
    ("pod", "nodes", "existing", "expected"),
    [
        (bare_pod("p"),
         [{"cpu": "4000", "memory": "10000"}, {"cpu": "4000", "memory": "10000"}],
         [bare_pod("e1", node="node1"), bare_pod("e2", node="node1")],
         {"node1": 100, "node2": 100}),
        (bare_pod("p", {"cpu": "1000", "memory": "2000"}, {"cpu": "2000", "memory": "3000"}),
         [{"cpu": "4000", "memory": "10000"}, {"cpu": "6000", "memory": "10000"}],
         [bare_pod("e1", node="node1"), bare_pod("e2", node="node1")],
         {"node1": 38, "node2": 50}),
        (bare_pod("p"),
         [{"cpu": "4000", "memory": "10000"}, {"cpu": "6000", "memory": "10000"}],
         [bare_pod("e1", {"cpu": "3000", "memory": "5000"}, node="node1"),
          bare_pod("e2", {"cpu": "3000", "memory": "5000"}, node="node2")],
         {"node1": 38, "node2": 50}),
    ],
    ids=[
        "nothing scheduled, nothing requested (default - least requested nodes have priority)",
        "nothing scheduled, resources requested, differently sized nodes (default - least "
        "requested nodes have priority)",
        "no resources requested, pods scheduled with resources (default - least requested "
        "nodes have priority)",
    ],
)  # fmt: skip
def test_kube_schedulers_scoring_strategy_table(
    pod: PodInfo, nodes: list[dict[str, Any]], existing: list[PodInfo], expected: dict[str, int]
) -> None:
    """Each node scores what kube-scheduler's table expects (shape 0 -> 10, 100 -> 0)."""
    fit = NodeResourcesFit(RTCR, shape=SPREAD_SHAPE)
    assert scores(fit, pod, nodes, existing) == expected


# kube-scheduler's TestBrokenLinearFunction, same file.
@pytest.mark.parametrize(
    ("shape", "assertions"),
    [
        (((10, 1), (90, 9)),
         [(-10, 1), (0, 1), (9, 1), (10, 1), (15, 1), (19, 1), (20, 2), (89, 8), (90, 9),
          (99, 9), (100, 9), (110, 9)]),
        (((0, 2), (40, 10), (100, 0)),
         [(-10, 2), (0, 2), (20, 6), (30, 8), (40, 10), (70, 5), (100, 0), (110, 0)]),
        (((0, 2), (40, 2), (100, 2)),
         [(-10, 2), (0, 2), (20, 2), (30, 2), (40, 2), (70, 2), (100, 2), (110, 2)]),
    ],
    ids=["case_0", "case_1", "case_2"],
)  # fmt: skip
def test_kube_schedulers_broken_linear_function(
    shape: tuple[tuple[int, int], ...], assertions: list[tuple[int, int]]
) -> None:
    """Flat beyond the ends, linear between points, truncated as Go's integer division."""
    for p, expected in assertions:
        assert broken_linear(shape, p) == expected, p


def test_a_falling_segment_truncates_toward_zero() -> None:
    """Go's division truncates a negative step toward zero; a floor would give one less."""
    assert broken_linear(((0, 100), (30, 0)), 10) == 100 - 33


FOO, BAR = "intel.com/foo", "intel.com/bar"
GIB10 = str(10000 * 1024 * 1024)


def ext_node(**extended: int) -> dict[str, Any]:
    return {"cpu": "4", "memory": GIB10, "extended": {k: str(v) for k, v in extended.items()}}


# kube-scheduler's TestResourceBinPackingSingleExtended, same file: intel.com/foo weighs 1,
# shape 0 -> 0, 100 -> 1.
@pytest.mark.parametrize(
    ("pod", "existing", "expected"),
    [
        (bare_pod("p"), [bare_pod("e")], {"node1": 0, "node2": 0}),
        (bare_pod("p", {FOO: "2"}), [bare_pod("e")], {"node1": 2, "node2": 5}),
        (bare_pod("p", {FOO: "2"}), [bare_pod("e", {FOO: "2"}, node="node2")],
         {"node1": 2, "node2": 10}),
        (bare_pod("p", {FOO: "4"}), [bare_pod("e")], {"node1": 5, "node2": 10}),
    ],
    ids=[
        "nothing scheduled, nothing requested",
        "resources requested, pods scheduled with less resources",
        "resources requested, pods scheduled with resources, on node with existing pod running",
        "resources requested, pods scheduled with more resources",
    ],
)  # fmt: skip
def test_kube_schedulers_single_extended_table(
    pod: PodInfo, existing: list[PodInfo], expected: dict[str, int]
) -> None:
    """Bin-packing one extended resource scores as kube-scheduler's table expects."""
    fit = NodeResourcesFit(RTCR, resources={FOO: 1}, shape=((0, 0), (100, 1)))
    nodes = [ext_node(**{FOO: 8}), ext_node(**{FOO: 4})]
    bound = [p for p in existing if p.node_name]
    assert scores(fit, pod, nodes, bound) == expected


# kube-scheduler's TestResourceBinPackingMultipleExtended, same file: foo weighs 3, bar 5.
@pytest.mark.parametrize(
    ("pod", "existing", "expected"),
    [
        (bare_pod("p"), [], {"node1": 0, "node2": 0}),
        (bare_pod("p", {FOO: "2", BAR: "2"}), [], {"node1": 4, "node2": 3}),
        (bare_pod("p", {FOO: "2", BAR: "2"}), [bare_pod("e", {FOO: "4", BAR: "2"}, node="node2")],
         {"node1": 4, "node2": 7}),
        (bare_pod("p", {FOO: "4", BAR: "2"}), [], {"node1": 5, "node2": 5}),
    ],
    ids=[
        "nothing scheduled, nothing requested",
        "resources requested, pods scheduled with less resources",
        "resources requested, pods scheduled with resources, on node with existing pod running",
        "resources requested, pods scheduled with more resources",
    ],
)  # fmt: skip
def test_kube_schedulers_multiple_extended_table(
    pod: PodInfo, existing: list[PodInfo], expected: dict[str, int]
) -> None:
    """Weighted extended resources average as kube-scheduler's table expects (rounded)."""
    fit = NodeResourcesFit(RTCR, resources={FOO: 3, BAR: 5}, shape=((0, 0), (100, 1)))
    nodes = [ext_node(**{FOO: 8, BAR: 4}), ext_node(**{FOO: 4, BAR: 8})]
    assert scores(fit, pod, nodes, existing) == expected


def test_a_resource_scoring_zero_does_not_count() -> None:
    """Only resources scoring above 0 enter the weighted mean (upstream's ``resourceScore > 0``)."""
    fit = NodeResourcesFit(RTCR, shape=((0, 0), (100, 10)))
    # CPU 50 % -> 50; memory 0 % -> 0, left out: the mean is 50, not 25.
    got = scores(fit, bare_pod("p", {"cpu": "2", "memory": "0"}), [{"cpu": "4"}], [])
    assert got == {"node1": 50}


def test_ephemeral_storage_is_scored_by_its_requests() -> None:
    """Ephemeral storage counts the pods' requests (no non-zero default)."""
    fit = NodeResourcesFit(RTCR, resources={"ephemeral-storage": 1}, shape=((0, 0), (100, 10)))
    cache = SchedulerCache()
    node = make_node("n", extended={"ephemeral-storage": "100Gi"})
    cache.add_node(node)
    pod = bare_pod("p", {"ephemeral-storage": "25Gi"})
    (ni,) = cache.node_infos()
    assert fit.score(CycleState(), pod, ni) == 25


# kube-scheduler's validateFunctionShape cases (pkg/scheduler/apis/config/validation/
# validation_pluginargs_test.go, NodeResourcesFitArgs with RequestedToCapacityRatio).
@pytest.mark.parametrize(
    ("shape", "field", "message"),
    [
        ((), "", "Required value: at least one point must be specified"),
        (((10, 1), (10, 2)), "[1].utilization",
         "Invalid value: 10: utilization values must be sorted in increasing order"),
        (((60, 1), (30, 2)), "[1].utilization",
         "Invalid value: 30: utilization values must be sorted in increasing order"),
        (((-10, 1), (30, 2)), "[0].utilization", "Invalid value: -10: not in valid range [0, 100]"),
        (((10, 1), (110, 2)), "[1].utilization", "Invalid value: 110: not in valid range [0, 100]"),
        (((10, -1), (30, 2)), "[0].score", "Invalid value: -1: not in valid range [0, 10]"),
        (((10, 1), (30, 11)), "[1].score", "Invalid value: 11: not in valid range [0, 10]"),
    ],
    ids=[
        "empty", "duplicated utilization", "decreasing utilization", "utilization below 0",
        "utilization above 100", "score below 0", "score above 10",
    ],
)  # fmt: skip
def test_shapes_are_checked_as_kube_scheduler_checks_them(
    shape: tuple[tuple[int, int], ...], field: str, message: str
) -> None:
    """A shape kube-scheduler refuses is refused with its field and its words."""
    with pytest.raises(ShapeError) as info:
        validate_shape(shape)
    assert (info.value.field, info.value.message) == (field, message)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": RTCR}, "needs one"),
        ({"strategy": "MostAllocated", "shape": SPREAD_SHAPE}, "not MostAllocated"),
    ],
    ids=["missing", "unwanted"],
)
def test_a_shape_goes_with_requested_to_capacity_ratio_only(
    kwargs: dict[str, Any], message: str
) -> None:
    """RequestedToCapacityRatio needs a shape; the other strategies take none."""
    with pytest.raises(ValueError, match=message):
        NodeResourcesFit(**kwargs)
