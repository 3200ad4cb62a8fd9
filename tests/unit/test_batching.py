"""Opportunistic batching gives the node a full cycle would, and only when it can know it."""

from __future__ import annotations

import random

from lasched.cache.cache import NodeInfo
from lasched.framework import batching
from lasched.framework.interface import SUCCESS, CycleState, Status
from lasched.framework.runtime import Framework, ScheduleResult
from lasched.model.pod import PodInfo
from lasched.plugins.nodeaffinity import NodeAffinity
from lasched.plugins.noderesources import BalancedAllocation, NodeResourcesFit
from lasched.plugins.nodeunschedulable import NodeUnschedulable
from lasched.plugins.tainttoleration import TaintToleration
from tests.unit.factories import make_node, make_pod, pod_json

SOFT_TAINT = [{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]


def framework(*, batching_on: bool, seed: int = 1) -> Framework:
    """The default profile's resource, taint and affinity plugins, weighted as by default."""
    fit, balanced, taints, affinity = (
        NodeResourcesFit(), BalancedAllocation(), TaintToleration(), NodeAffinity(),
    )  # fmt: skip
    return Framework(
        pre_filters=[affinity],
        filters=[NodeUnschedulable(), taints, affinity, fit],
        pre_scores=[affinity],
        scores=[(fit, 1), (balanced, 1), (affinity, 2), (taints, 3)],
        rng=random.Random(seed),
        batching=batching_on,
    )


def cluster() -> list[NodeInfo]:
    """Nodes of different sizes, some with a soft taint, so that scores differ."""
    sizes = [("4", "16Gi"), ("6", "12Gi"), ("8", "32Gi"), ("3", "24Gi"), ("12", "20Gi")]
    nodes = []
    for i, (cpu, mem) in enumerate(sizes * 2):
        taints = SOFT_TAINT if i % 3 == 0 else None
        nodes.append(NodeInfo(make_node(f"n{i}", cpu=cpu, memory=mem, taints=taints)))
    return nodes


def place(nodes: list[NodeInfo], pod: PodInfo, node: str) -> None:
    body = pod_json(pod.name, cpu="300m", memory="700Mi", node=node)
    next(n for n in nodes if n.name == node).add_pod(PodInfo(body))


def test_every_hint_is_a_best_node_of_a_full_cycle() -> None:
    """Pod after pod, the hinted node has the highest total a full cycle computes."""
    nodes = cluster()
    fw, reference = framework(batching_on=True), framework(batching_on=False)
    hinted = 0
    for i in range(80):
        pod = make_pod(f"p{i}", cpu="300m", memory="700Mi")
        result = fw.schedule(CycleState(), pod, nodes, cycle=i + 1)
        assert isinstance(result, ScheduleResult)
        full = reference.schedule(CycleState(), pod, nodes)
        assert isinstance(full, ScheduleResult)
        assert full.scores[result.node] == max(full.scores.values()), f"pod {i}"
        hinted += result.evaluated == 1  # a hint filters one node; a full cycle all ten
        place(nodes, pod, result.node)
    assert hinted >= 70  # the batch was used, not bypassed


def test_a_changed_node_or_a_skipped_cycle_means_a_full_cycle() -> None:
    """An informer's change to a listed node, or another pod's cycle between, ends the batch."""
    nodes = cluster()
    fw = framework(batching_on=True)

    def schedule(i: int, cycle: int) -> ScheduleResult:
        pod = make_pod(f"p{i}", cpu="300m", memory="700Mi")
        r = fw.schedule(CycleState(), pod, nodes, cycle=cycle)
        assert isinstance(r, ScheduleResult)
        place(nodes, pod, r.node)
        return r

    assert schedule(0, 1).evaluated == len(nodes)
    assert schedule(1, 2).evaluated == len(nodes)  # follows one alike: builds the batch
    assert schedule(2, 3).evaluated == 1
    for ni in nodes:
        ni.set_node(ni.node)  # a node update: every generation moves
    assert schedule(3, 4).evaluated == len(nodes)
    assert schedule(4, 5).evaluated == 1
    assert schedule(5, 7).evaluated == len(nodes)  # cycle 6 went to another pod


def test_a_batch_is_built_only_after_a_pod_that_follows_one_alike() -> None:
    """In a mix of shapes the next pod is rarely alike: no heap over every node per cycle."""
    nodes = cluster()
    fw = framework(batching_on=True)
    shapes = [("300m", "700Mi"), ("1", "700Mi"), ("1", "700Mi"), ("1", "700Mi")]
    built = []
    for i, (cpu, mem) in enumerate(shapes):
        r = fw.schedule(CycleState(), make_pod(f"p{i}", cpu=cpu, memory=mem), nodes, cycle=i + 1)
        assert isinstance(r, ScheduleResult)
        built.append(fw._batch is not None)
        place(nodes, make_pod(f"p{i}", cpu=cpu, memory=mem), r.node)
    assert built == [False, False, True, True]


def test_pods_unlike_the_last_get_a_full_cycle() -> None:
    """Another shape, or a pod with latency requirements, never takes a hint."""
    nodes = cluster()
    fw = framework(batching_on=True)
    first = fw.schedule(CycleState(), make_pod("a", cpu="300m", memory="700Mi"), nodes, cycle=1)
    assert isinstance(first, ScheduleResult)
    bigger = fw.schedule(CycleState(), make_pod("b", cpu="1", memory="700Mi"), nodes, cycle=2)
    assert isinstance(bigger, ScheduleResult) and bigger.evaluated == len(nodes)
    near = PodInfo(pod_json("c", cpu="1", memory="700Mi"))
    near.latency, near.latency_error = None, "malformed"
    assert batching.signature(near) is None


def test_signature_is_what_filters_and_scores_read() -> None:
    """Names differ, shapes agree: same signature; tolerations or priority differ: not."""
    a = make_pod("a", cpu="300m", memory="700Mi")
    assert batching.signature(a) == batching.signature(make_pod("b", cpu="300m", memory="700Mi"))
    tolerant = make_pod(
        "c", cpu="300m", memory="700Mi", tolerations=[{"key": "spot", "operator": "Exists"}]
    )
    assert batching.signature(a) != batching.signature(tolerant)
    urgent = make_pod("d", cpu="300m", memory="700Mi", priority=100)
    assert batching.signature(a) != batching.signature(urgent)
    body = pod_json("e", cpu="300m", memory="700Mi")
    body["metadata"]["labels"] = {"lasched.io/pod-group": "g", "lasched.io/min-available": "2"}
    grouped = PodInfo(body)
    assert grouped.group is not None and batching.signature(grouped) is None


def test_a_plugin_that_does_not_declare_itself_batchable_turns_batching_off() -> None:
    """An unknown filter may read anything: no pod of that profile is batched."""

    class Opaque:
        name = "Opaque"

        def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
            return SUCCESS

    fit = NodeResourcesFit()
    fw = Framework(pre_filters=[], filters=[Opaque(), fit], scores=[(fit, 1)], batching=True)
    assert not fw.batching
    assert framework(batching_on=True).batching


def test_a_batch_expires_after_500_ms() -> None:
    """kube-scheduler's maxBatchAge: later pods get a full cycle."""
    nodes = cluster()
    b = batching.Batch(
        signature=("s",), cycle=1, skip=frozenset(), chosen=nodes[0], feasible=nodes,
        totals=[1] * len(nodes), static=[0] * len(nodes),
        rng=random.Random(1), now=100.0,
    )  # fmt: skip
    assert b.usable(("s",), 2, now=100.4)
    assert not b.usable(("s",), 2, now=100.6)
    assert not b.usable(("t",), 2, now=100.1)
    assert not b.usable(("s",), 3, now=100.1)
