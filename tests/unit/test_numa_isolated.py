"""NUMA zones that evicting or isolating a pod concerns: KubeNexus's ``isolated`` policy keeps a
zone to one pod, and preemption counts a victim's zone share as freed where lasched knows it."""

from __future__ import annotations

from typing import Any

from lasched.cache.cache import SchedulerCache
from lasched.cache.topology import Topologies
from lasched.framework.interface import Code, CycleState, PostFilterResult, Status
from lasched.framework.runtime import Framework
from lasched.model.numa import NodeTopology, Policy, Scope
from lasched.model.pod import PodInfo
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.plugins.noderesourcetopology import NodeResourceTopologyMatch
from lasched.plugins.preemption import DefaultPreemption
from tests.unit.factories import make_node
from tests.unit.numa_factories import GPU, nrt_json, numa_pod

ZONE: dict[str, str | int] = {"cpu": "16", "memory": "64Gi", GPU: 2}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class World:
    """One node ``a`` with two zones of 16 cpu and 2 GPUs, the cache, the plugin, preemption."""

    def __init__(self, *, agent: bool = False, available: list[dict[str, Any]] | None = None):
        self.clock = Clock()
        self.cache = SchedulerCache()
        self.cache.add_node(make_node("a", cpu="32", memory="128Gi", extended={GPU: "4"}))
        self.topologies = Topologies(clock=self.clock)
        if agent:
            amounts = {"cpu": 16000, "memory": 64 << 30, GPU: 2}
            self.topologies.report(
                NodeTopology.reported(
                    "a",
                    policy=Policy.SINGLE_NUMA_NODE,
                    scope=Scope.POD,
                    zones={0: amounts, 1: amounts},
                    version="r1",
                )
            )
        else:
            zones = available or [ZONE, ZONE]
            self.topologies.set(NodeTopology(nrt_json("a", zones, allocatable=[ZONE, ZONE])))
        self.plugin = NodeResourceTopologyMatch(self.topologies, node_info=self.cache.node_info)
        self.fw = Framework(
            pre_filters=[self.plugin], filters=[NodeResourcesFit(), self.plugin], scores=[]
        )
        self.preemption = DefaultPreemption(
            node_info=self.cache.node_info,
            filter_node=self.fw.filter_node,
            pdbs=lambda: [],
            nominated_node=self.cache.nominated_node,
        )

    def place(self, pod: PodInfo) -> PodInfo:
        """Reserve ``pod`` on ``a`` as the cycle would, then bind it there."""
        assert self.plugin.reserve(CycleState(), pod, "a").ok
        bound = numa_pod(
            pod.name, node="a", priority=pod.priority, policy=_policy(pod), cpu="8", gpu=2
        )
        self.cache.add_pod(bound)
        return bound

    def filter(self, pod: PodInfo) -> Status:
        ni = self.cache.node_info("a")
        assert ni is not None
        return self.plugin.filter(CycleState(), pod, ni)

    def preempt(self, pod: PodInfo) -> tuple[PostFilterResult | None, Status]:
        state = CycleState()
        assert self.fw.run_pre_filters(state, pod)[0].ok
        statuses = {"a": self.filter(pod)}
        return self.preemption.post_filter(state, pod, statuses)


def _policy(pod: PodInfo) -> str | None:
    return None if pod.numa is None or pod.numa.policy is None else str(pod.numa.policy)


def gpu_pod(name: str, policy: str = "single-numa", **kwargs: Any) -> PodInfo:
    return numa_pod(name, policy=policy, cpu="8", gpu=2, **kwargs)


# ---- isolated ---------------------------------------------------------------------------


def test_an_isolated_pod_takes_a_zone_where_nothing_is_pinned() -> None:
    """Zone 0 has room but a pinned pod: the isolated pod goes to zone 1."""
    w = World(available=[{"cpu": "12", "memory": "64Gi", GPU: 2}, ZONE])
    verdict = w.plugin.fit(numa_pod("iso", policy="isolated", cpu="4", gpu=1), "a")
    assert verdict is not None and verdict.ok
    assert list(verdict.taken) == [1]


def test_an_isolated_pod_is_refused_where_every_zone_is_in_use() -> None:
    """The message says why each zone is not for it."""
    w = World(available=[{"cpu": "12", "memory": "64Gi", GPU: 2}] * 2)
    st = w.filter(numa_pod("iso", policy="isolated", cpu="4", gpu=1))
    assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert "node-0: in use, not free for an isolated pod" in st.message


def test_a_zone_an_isolated_pod_keeps_admits_no_other_numa_pod() -> None:
    """A single-numa pod that fits zone 0's numbers goes to zone 1, then finds none."""
    w = World()
    w.place(numa_pod("iso", policy="isolated", cpu="8", gpu=2))
    small = numa_pod("small", policy="single-numa", cpu="1", gpu=0)
    verdict = w.plugin.fit(small, "a")
    assert verdict is not None and list(verdict.taken) == [1]
    w.place(gpu_pod("other"))
    st = w.filter(numa_pod("third", policy="single-numa", cpu="1", gpu=1))
    assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert "node-0: isolated for pod default/iso" in st.message


def test_isolation_outlasts_the_hold_and_ends_when_the_pod_goes() -> None:
    """The publisher showing the pod ends its hold, not its zone's isolation; leaving does."""
    w = World()
    iso = w.place(numa_pod("iso", policy="isolated", cpu="8", gpu=2))
    shown: dict[str, str | int] = {"cpu": "8", "memory": "63Gi", GPU: 0}
    w.topologies.set(NodeTopology(nrt_json("a", [shown, ZONE], allocatable=[ZONE, ZONE], rv="2")))
    assert not w.topologies.holds("a")
    other = numa_pod("other", policy="single-numa", cpu="1", gpu=0)
    fit = w.plugin.fit(other, "a")
    assert fit is not None and list(fit.taken) == [1]
    w.topologies.pod_gone(iso.key, "a")
    w.cache.remove_pod(iso.key)
    fit = w.plugin.fit(other, "a")
    assert fit is not None and list(fit.taken) == [0]


def test_unreserve_reopens_the_zone() -> None:
    """An isolated pod whose reserve is undone keeps no zone."""
    w = World()
    iso = numa_pod("iso", policy="isolated", cpu="8", gpu=2)
    assert w.plugin.reserve(CycleState(), iso, "a").ok
    w.plugin.unreserve(CycleState(), iso, "a")
    assert w.topologies.isolated_zone("default/iso", "a", {}) is not None  # a guess now
    w.topologies.release("default/iso", "a")
    fit = w.plugin.fit(numa_pod("x", policy="single-numa", cpu="1", gpu=0), "a", pods=())
    assert fit is not None and list(fit.taken) == [0]


def test_a_bound_isolated_pod_without_a_record_keeps_the_zone_its_use_shows() -> None:
    """After a restart, the zone whose used amounts could hold the pod is the one kept."""
    used = {"cpu": "8", "memory": "63Gi", GPU: 0}
    w = World(available=[ZONE, used])
    w.cache.add_pod(numa_pod("iso", node="a", policy="isolated", cpu="8", gpu=2))
    fit = w.plugin.fit(numa_pod("x", policy="single-numa", cpu="1", gpu=0), "a")
    assert fit is not None and list(fit.taken) == [0]
    assert w.topologies.isolated_zone("default/iso", "a", {}) == "node-1"


# ---- preemption ---------------------------------------------------------------------------


def test_a_high_priority_pod_preempts_the_low_one_holding_the_zone() -> None:
    """Each zone holds a low single-numa pod lasched placed: one is evicted for the high pod."""
    w = World()
    w.place(gpu_pod("low-0", priority=1))
    w.place(gpu_pod("low-1", priority=2))
    high = gpu_pod("high", priority=100)
    st = w.filter(high)
    assert st.code is Code.UNSCHEDULABLE, st.message
    result, why = w.preempt(high)
    assert result is not None, why.message
    assert result.nominated_node == "a"
    assert [v.name for v in result.victims] == ["low-0"]


def test_on_an_agent_reported_node_every_counted_pod_can_be_preempted() -> None:
    """Pods bound before lasched saw the node are adopted into zones, and evictable there."""
    w = World(agent=True)
    for i in (0, 1):
        p = numa_pod(f"old-{i}", node="a", priority=1, policy="single-numa", cpu="8", gpu=2)
        w.cache.add_pod(p)
        assert p.numa is not None
        w.topologies.adopt(p.key, "a", p.numa.pod)
    result, why = w.preempt(gpu_pod("high", priority=100))
    assert result is not None, why.message
    assert len(result.victims) == 1


def test_evicting_an_isolated_pod_reopens_its_zone_for_a_preemptor() -> None:
    """Only the low isolated pod's zone could hold 9 cpu once it is gone: it is the victim."""
    w = World()
    w.place(numa_pod("iso", policy="isolated", priority=1, cpu="8", gpu=2))
    w.place(numa_pod("filler", policy="single-numa", priority=200, cpu="8", gpu=2))
    high = numa_pod("high", policy="single-numa", priority=100, cpu="9", gpu=0)
    assert w.filter(high).code is Code.UNSCHEDULABLE
    result, why = w.preempt(high)
    assert result is not None, why.message
    assert [v.name for v in result.victims] == ["iso"]


def test_a_shortfall_the_publisher_shows_stays_unresolvable() -> None:
    """Pods with no hold (already published) are not counted as freed by eviction."""
    full = {"cpu": "8", "memory": "63Gi", GPU: 0}
    w = World(available=[full, full])
    for i in (0, 1):
        w.cache.add_pod(numa_pod(f"shown-{i}", node="a", priority=1, cpu="8", gpu=2))
    st = w.filter(gpu_pod("high", priority=100))
    assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    result, _ = w.preempt(gpu_pod("high", priority=100))
    assert result is None


def test_equal_priority_holders_leave_the_shortfall_unresolvable() -> None:
    """Only pods the preemptor may evict make a shortfall resolvable."""
    w = World()
    w.place(gpu_pod("peer-0", priority=100))
    w.place(gpu_pod("peer-1", priority=100))
    assert w.filter(gpu_pod("high", priority=100)).code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
