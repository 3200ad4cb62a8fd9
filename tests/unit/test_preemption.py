"""Preemption picks the node and victims by kube-scheduler's rules."""

from __future__ import annotations

from lasched.cache.cache import SchedulerCache
from lasched.framework.interface import CycleState, PostFilterResult, Status
from lasched.framework.runtime import Framework
from lasched.model.pdb import PDB
from lasched.model.pod import PodInfo
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.plugins.preemption import DefaultPreemption
from tests.unit.factories import make_node, make_pod


class World:
    def __init__(self, **nodes: str) -> None:
        self.cache = SchedulerCache()
        for name, cpu in nodes.items():
            self.cache.add_node(make_node(name, cpu=cpu))
        self.fw = Framework(pre_filters=[], filters=[NodeResourcesFit()], scores=[])
        self.pdbs: list[PDB] = []
        self.plugin = DefaultPreemption(
            node_info=self.cache.node_info, filter_node=self.fw.filter_node, pdbs=lambda: self.pdbs
        )

    def place(
        self, name: str, node: str, *, cpu: str, priority: int, labels: dict[str, str] | None = None
    ) -> PodInfo:
        p = make_pod(name, cpu=cpu, node=node, priority=priority)
        p.labels.update(labels or {})
        self.cache.add_pod(p)
        return p

    def preempt(self, pod: PodInfo) -> tuple[PostFilterResult | None, Status]:
        nodes = list(self.cache.node_infos())
        result = self.fw.schedule(CycleState(), pod, nodes)
        statuses = getattr(result, "node_statuses", {})
        return self.plugin.post_filter(CycleState(), pod, statuses)


def test_evicts_only_what_is_needed() -> None:
    """Of three low pods, only enough are evicted; the most important are reprieved."""
    w = World(n1="4")
    w.place("low-a", "n1", cpu="1", priority=1)
    w.place("low-b", "n1", cpu="1", priority=2)
    w.place("low-c", "n1", cpu="2", priority=3)
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert result.nominated_node == "n1"
    assert sorted(v.name for v in result.victims) == ["low-a", "low-b"]


def test_never_equal_or_higher_priority() -> None:
    """Pods of equal priority are never victims."""
    w = World(n1="2")
    w.place("peer", "n1", cpu="2", priority=100)
    result, st = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is None
    assert st.message == (
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    )


def test_prefers_the_node_with_lower_victims() -> None:
    """The candidate whose highest victim has the lowest priority wins."""
    w = World(n1="2", n2="2")
    w.place("mid", "n1", cpu="2", priority=50)
    w.place("low", "n2", cpu="2", priority=10)
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert (result.nominated_node, [v.name for v in result.victims]) == ("n2", ["low"])


def test_prefers_fewer_victims_at_equal_priority() -> None:
    """Then the fewest victims."""
    w = World(n1="2", n2="2")
    w.place("a1", "n1", cpu="1", priority=10)
    w.place("a2", "n1", cpu="1", priority=10)
    w.place("b1", "n2", cpu="2", priority=10)
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert result.nominated_node == "n2"


def test_pdb_protected_pods_are_spared_when_possible() -> None:
    """A node whose victims violate no PodDisruptionBudget beats one whose would."""
    w = World(n1="2", n2="2")
    w.place("guarded", "n1", cpu="2", priority=5, labels={"app": "db"})
    w.place("free", "n2", cpu="2", priority=10)
    w.pdbs.append(
        PDB(
            {
                "metadata": {"name": "db", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "db"}}},
                "status": {"disruptionsAllowed": 0},
            }
        )
    )
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert result.nominated_node == "n2"


def test_policy_never_does_not_preempt() -> None:
    """preemptionPolicy: Never pods wait instead."""
    w = World(n1="2")
    w.place("low", "n1", cpu="2", priority=1)
    result, st = w.preempt(make_pod("polite", cpu="2", priority=100, preemptionPolicy="Never"))
    assert result is None
    assert "preemptionPolicy=Never" in st.message


def test_nominated_room_is_held_for_the_preemptor() -> None:
    """After nomination, a lower-priority newcomer cannot take the freed room."""
    w = World(n1="2")
    high = make_pod("high", cpu="2", priority=100)
    w.cache.nominate(high, "n1")
    ni = w.cache.node_info("n1")
    assert ni is not None
    fit = NodeResourcesFit()
    assert not fit.filter(CycleState(), make_pod("sneaky", cpu="1", priority=1), ni).ok
    assert fit.filter(CycleState(), high, ni).ok


def test_group_plan_evicts_for_every_member_at_once() -> None:
    """A group of three, each needing a node, takes the three cheapest nodes' pods."""
    w = World(n1="2", n2="2", n3="2", n4="2")
    for i, prio in enumerate((5, 6, 7, 90), start=1):
        w.place(f"old-{i}", f"n{i}", cpu="2", priority=prio)
    members = [make_pod(f"m-{i}", cpu="2", priority=50) for i in range(3)]
    planned = w.plugin.plan_group(CycleState(), members, list(w.cache.node_infos()), below=50)
    assert planned is not None
    plan, victims = planned
    assert sorted(v.name for v in victims) == ["old-1", "old-2", "old-3"]
    assert sorted(node for _, node in plan) == ["n1", "n2", "n3"]


def test_group_plan_preempts_nothing_if_one_member_cannot_fit() -> None:
    """If the last member finds no room even with evictions, no pod is evicted."""
    w = World(n1="2", n2="2")
    w.place("low", "n1", cpu="2", priority=1)
    w.place("high", "n2", cpu="2", priority=99)
    members = [make_pod(f"m-{i}", cpu="2", priority=50) for i in range(2)]
    assert w.plugin.plan_group(CycleState(), members, list(w.cache.node_infos()), below=50) is None
