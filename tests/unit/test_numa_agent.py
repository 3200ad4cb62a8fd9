"""NUMA zones reported by a node's agent: precedence, per-zone accounting, adoption, TTL."""

from __future__ import annotations

from typing import cast

import lasched_protocol as proto
from lasched.cache.topology import Topologies
from lasched.eventhandlers import TopologyEvents
from lasched.framework.interface import CycleState
from lasched.latency.hub import reported_topology
from lasched.model.numa import SOURCE_AGENT, SOURCE_NRT, NodeTopology, Policy, Scope
from lasched.plugins.noderesourcetopology import NodeResourceTopologyMatch
from lasched.queue.queue import SchedulingQueue
from tests.unit.numa_factories import GPU, nrt_json, numa_pod
from tests.unit.test_numa import Clock, cpus, node

GIB = 1 << 30


def report(name: str = "a", *zones: dict[str, int], seq: int = 1) -> NodeTopology:
    """What an agent on ``name`` reports: zone i holds ``zones[i]`` (cpu in CPUs)."""
    msg = proto.Topology(
        seq=seq,
        time=1.0,
        zones=tuple(proto.NumaZone(i, tuple(sorted(z.items()))) for i, z in enumerate(zones)),
        policy="single-numa-node",
        scope="pod",
    )
    return reported_topology(name, msg)


def test_a_report_becomes_the_model_with_cpus_in_millicores() -> None:
    """Capacity, allocatable and available are what the agent saw; CPUs count in millicores."""
    t = report("a", {"cpu": 8, "memory": 64 * GIB, GPU: 2})
    assert (t.source, t.policy, t.scope) == (SOURCE_AGENT, Policy.SINGLE_NUMA_NODE, Scope.POD)
    [z] = t.zones
    assert z.name == "node-0"
    assert z.capacity == z.allocatable == z.available == {"cpu": 8000, "memory": 64 * GIB, GPU: 2}


def test_a_published_topology_wins_over_the_agents_report() -> None:
    """With both, the NodeResourceTopology is read; deleting it brings the report back."""
    t = Topologies(clock=Clock())
    t.report(report("a", {"cpu": 32}))
    assert cpus(t) == [32000]
    t.set(NodeTopology(nrt_json("a", [{"cpu": "4"}])))
    assert cpus(t) == [4000]
    topo = t.get("a")
    assert topo is not None and topo.source == SOURCE_NRT
    t.remove("a")
    assert cpus(t) == [32000]
    assert len(t) == 1


def test_a_hold_on_a_report_lasts_while_its_pod_does() -> None:
    """The agent never shows a placement: the hold outlives the NRT TTL and ends when the
    pod leaves the node."""
    clock = Clock()
    t = Topologies(clock=clock)
    t.report(report("a", {"cpu": 8, "memory": 64 * GIB}, {"cpu": 2, "memory": 64 * GIB}))
    plugin = NodeResourceTopologyMatch(t)
    first, second = numa_pod("first", cpu=6), numa_pod("second", cpu=6)
    assert plugin.reserve(CycleState(), first, "a").ok
    clock.t += 10_000
    t.report(report("a", {"cpu": 8, "memory": 64 * GIB}, {"cpu": 2, "memory": 64 * GIB}, seq=2))
    assert "node-0: 2 cpu" in plugin.filter(CycleState(), second, node("a")).message
    t.pod_gone(first.key, "a")
    assert plugin.filter(CycleState(), second, node("a")).ok


def test_pods_bound_before_the_report_are_adopted_in_the_lowest_zone_that_fits() -> None:
    """A restart loses lasched's holds: the bound pods are held again, where they fit
    first, or spread over the zones in order when none holds them whole."""
    t = Topologies(clock=Clock())
    t.report(
        report("a", {"cpu": 4}, {"cpu": 8}, {"cpu": 4}),
        [("ns/small", {"cpu": 3000}), ("ns/mid", {"cpu": 6000}), ("ns/wide", {"cpu": 6000})],
    )
    # small in zone 0, mid in zone 1; wide fits no zone whole: 1 + 2 + 3 CPUs, in order.
    assert cpus(t) == [0, 0, 1000]
    t.adopt("ns/small", "a", {"cpu": 3000})  # held already: nothing changes
    assert cpus(t) == [0, 0, 1000]


def test_a_report_outlives_its_agent_by_the_ttl_only() -> None:
    """A disconnected agent's report is used report_ttl longer, then the node has none."""
    clock = Clock()
    t = Topologies(clock=clock, report_ttl=60)
    t.report(report("a", {"cpu": 8}))
    t.unreport("a")
    clock.t += 59
    assert t.get("a") is not None
    clock.t += 2
    assert t.get("a") is None
    assert len(t) == 0
    t.report(report("a", {"cpu": 8}))  # the agent is back
    assert t.get("a") is not None


def test_holds_on_a_report_end_when_a_published_object_shows_them() -> None:
    """An NRT arriving later, with the pod's CPUs gone from its zone, ends the agent-era hold."""
    t = Topologies(clock=Clock())
    t.report(report("a", {"cpu": 8}))
    t.hold("p", "a", {"node-0": {"cpu": 6000}})
    t.set(NodeTopology(nrt_json("a", [{"cpu": "2"}], rv="7")))
    assert t.holds("a") == []
    assert cpus(t) == [2000]


def test_a_report_requeues_pods_unless_a_published_object_shadows_it() -> None:
    """The queue hears of a new or changed report as of a topology; not of one it shadows."""
    told: list[str] = []

    class Queue:
        def on_event(self, event: object, old: object, new: object) -> None:
            told.append(getattr(event, "label", ""))

    t = Topologies(clock=Clock())
    handler = TopologyEvents(t, cast(SchedulingQueue, Queue()))
    handler.reported("a", report("a", {"cpu": 8}))
    handler.reported("a", report("a", {"cpu": 16}, seq=2))
    handler.on_add(NodeTopology(nrt_json("a", [{"cpu": "4"}])))
    handler.reported("a", report("a", {"cpu": 32}, seq=3))
    handler.reported("a", None)
    assert told == [
        "NodeResourceTopologyAdd",
        "NodeResourceTopologyUpdateOther",
        "NodeResourceTopologyAdd",
    ]
