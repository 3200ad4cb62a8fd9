"""The check before an eviction: a replacement through the profile's real filters."""

from __future__ import annotations

import time
from typing import cast

from lasched.cache.cache import SchedulerCache
from lasched.framework.waiting import WaitingRoom
from lasched.kube.client import KubeClient
from lasched.kube.events import EventRecorder
from lasched.latency.cache import LatencyCache
from lasched.model.pod import PodInfo
from lasched.plugins.coscheduling import Coscheduling
from lasched.plugins.latency import LatencyFilter, LatencyScore
from lasched.plugins.preemption import Evictions
from lasched.profiles import Profile, build_framework
from lasched.remediation.placement import Placer, unbound
from lasched.settings import ProfileSettings, Settings
from tests.unit.factories import make_node, pod_json


def world(rtts: dict[str, float], *, cpu: dict[str, str] | None = None) -> Placer:
    """Nodes edge-1..3 (``cpu`` each, 8 by default) and RTTs from edge-0 to them."""
    cache = SchedulerCache()
    for n in ("edge-1", "edge-2", "edge-3"):
        cache.add_node(make_node(n, cpu=(cpu or {}).get(n, "8")))
    latency = LatencyCache(ttl_seconds=30)
    for node, ms in rtts.items():
        latency.observe("edge-0", node, median_ms=ms)
    gang = Coscheduling(
        clock=time.monotonic, room=WaitingRoom(time.monotonic), node_of=cache.node_of
    )
    fw = build_framework(
        ProfileSettings(),
        Settings(),
        client=cast(KubeClient, None),
        cache=cache,
        gang=gang,
        pdbs=list,
        latency=LatencyFilter(latency),
        latency_score=LatencyScore(latency),
        evictions=Evictions(cache.node_info),
    )
    profile = Profile("lasched", fw, cast(EventRecorder, None))
    return Placer(profiles={"lasched": profile}, cache=cache)


def bound(name: str, node: str = "edge-1", cpu: str = "1") -> PodInfo:
    labels = {"delay_edge-0": "10"}
    return PodInfo(
        pod_json(name, node=node, cpu=cpu, labels=labels, controller=("ReplicaSet", "rs"))
    )


def test_the_replacement_goes_only_where_its_limits_hold() -> None:
    """edge-2 is within 10 ms of edge-0, edge-3 is not, and the pod's own node never counts."""
    placer = world({"edge-1": 50.0, "edge-2": 4.0, "edge-3": 30.0})
    assert placer.place(bound("web")).nodes == ("edge-2",)


def test_no_node_within_the_limits_says_why() -> None:
    """Nowhere to go: kube-scheduler's sentence, with the latency reason."""
    placer = world({"edge-1": 50.0, "edge-2": 40.0, "edge-3": 30.0})
    p = placer.place(bound("web"))
    assert p.nodes == ()
    assert p.reason == (
        "0/2 nodes are available: 2 node(s) were more than 10 ms from edge-0 (delay_edge-0)"
    )


def test_resources_count_and_approved_replacements_are_held_within_a_pass() -> None:
    """Room for one more pod on edge-2: the second replacement of a pass finds none."""
    placer = world({"edge-1": 50.0, "edge-2": 4.0, "edge-3": 30.0}, cpu={"edge-2": "1500m"})
    placer.begin()
    first, second = bound("a"), bound("b")
    assert placer.place(first).nodes == ("edge-2",)
    placer.hold(first, "edge-2")
    p = placer.place(second)
    assert p.nodes == ()
    assert "Insufficient cpu" in p.reason
    placer.begin()  # the next pass: holds are gone
    assert placer.place(second).nodes == ("edge-2",)


def test_a_pod_of_no_profile_is_never_placed() -> None:
    """A scheduler name lasched does not serve: no placement, so no eviction."""
    placer = world({"edge-2": 4.0})
    other = PodInfo(pod_json("x", node="edge-1", scheduler="default-scheduler"))
    assert placer.place(other).reason == "no profile serves scheduler 'default-scheduler'"


def test_the_copy_is_unbound_and_the_pod_unchanged() -> None:
    """unbound() copies; the informer's PodInfo keeps its node."""
    pod = bound("web")
    copy = unbound(pod)
    assert (copy.node_name, pod.node_name, copy.key) == ("", "edge-1", pod.key)
