"""Latency remediation's decisions in virtual time: triggers, grace, safety, cool-down, limits."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from lasched.latency.cache import LatencyCache
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.remediation.judge import (
    LATENCY,
    NODE_NOT_READY,
    REFUSED_RETRY_SECONDS,
    Decision,
    Judge,
)
from lasched.remediation.placement import Placement
from lasched.remediation.rules import Outcome, RateLimits
from lasched.settings import RemediationSettings
from lasched.timers import VirtualClock
from tests.unit.factories import make_node, pod_json

GRACE = 60.0
SETTINGS = RemediationSettings(
    enabled=True,
    grace_period_seconds=GRACE,
    node_not_ready_seconds=300.0,
    cooldown_seconds=600.0,
    window_seconds=60.0,
    max_per_node=2,
    max_per_namespace=5,
    max_total=10,
)
WALL_START = 1_700_000_000.0


class FakePlacer:
    """Places every replacement on ``nodes`` (none: nowhere), counting its calls."""

    def __init__(self, nodes: tuple[str, ...] = ("edge-2",)) -> None:
        self.nodes = nodes
        self.asked: list[str] = []
        self.held: list[tuple[str, str]] = []

    def begin(self) -> None:
        self.held.clear()

    def place(self, pod: PodInfo) -> Placement:
        self.asked.append(pod.name)
        if not self.nodes:
            return Placement((), "0/2 nodes are available: 2 Insufficient cpu")
        return Placement(self.nodes)

    def hold(self, pod: PodInfo, node: str) -> None:
        self.held.append((pod.name, node))


class World:
    """A judge over a latency cache, both on one virtual clock, and the pods to judge."""

    def __init__(self, settings: RemediationSettings = SETTINGS, **placer: Any) -> None:
        self.clock = VirtualClock(1000.0)
        self.wall = VirtualClock(WALL_START)
        self.latency = LatencyCache(ttl_seconds=30, clock=self.clock)
        self.placer = FakePlacer(**placer)
        self.judge = Judge(
            settings, latency=self.latency, placer=self.placer, clock=self.clock, wall=self.wall
        )
        self.nodes: dict[str, Node] = {n: make_node(n) for n in ("edge-1", "edge-2", "edge-3")}
        self.pods: list[PodInfo] = []

    def rtt(self, src: str, dst: str, ms: float) -> None:
        # alpha 1 would be simpler, but the cache's EWMA is what runs: feed it until it settles.
        for _ in range(30):
            self.latency.observe(src, dst, median_ms=ms)

    def advance(self, seconds: float) -> None:
        self.clock.t += seconds
        self.wall.t += seconds

    def add(self, pod: PodInfo) -> PodInfo:
        self.pods.append(pod)
        return pod

    def run(self) -> list[Decision]:
        return self.judge.judge((p, self.nodes.get(p.node_name)) for p in self.pods)

    def outcomes(self) -> list[tuple[str, Outcome]]:
        return [(d.pod.name, d.outcome) for d in self.run()]


def deployed(
    name: str = "web",
    *,
    node: str = "edge-1",
    namespace: str = "apps",
    controller: tuple[str, str] | None = ("ReplicaSet", "rs-1"),
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    created: str | None = None,
    limit: bool = True,
    **spec: Any,
) -> PodInfo:
    """A pod bound to ``node``, with ``limit``: ``delay_edge-0: 10`` (10 ms from edge-0)."""
    body = pod_json(
        name,
        node=node,
        namespace=namespace,
        controller=controller,
        labels={**({"delay_edge-0": "10"} if limit else {}), **(labels or {})},
        **spec,
    )
    body["metadata"]["annotations"] = annotations or {}
    if created is not None:
        body["metadata"]["creationTimestamp"] = created
    return PodInfo(body)


def test_a_broken_limit_is_acted_on_once_the_grace_period_has_passed() -> None:
    """Fresh RTTs above the limit for less than the grace period: nothing; at it: evicted."""
    w = World()
    w.rtt("edge-0", "edge-1", 5.0)
    w.add(deployed())
    assert w.run() == []
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.run() == []  # the break starts now
    w.advance(GRACE - 1)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.run() == []
    w.advance(1)
    w.rtt("edge-0", "edge-1", 50.0)
    [d] = w.run()
    assert (d.outcome, d.trigger.kind) == (Outcome.EVICTED, LATENCY)
    assert d.note() == (
        "evicted from edge-1: rtt from edge-0 = 50.0 ms > 10 ms (delay_edge-0, 0 s old) "
        "for 60 s (gracePeriodSeconds 60); a replacement fits on 1 node(s): edge-2"
    )
    assert w.placer.held == [("web", "edge-2")]


def test_a_limit_that_holds_again_starts_the_grace_period_over() -> None:
    """A break that heals for one pass is forgotten: the next one waits the full grace."""
    w = World()
    w.add(deployed())
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE - 10)
    w.rtt("edge-0", "edge-1", 1.0)
    assert w.run() == []
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE - 1)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.run() == []
    w.advance(1)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.outcomes() == [("web", Outcome.EVICTED)]


@pytest.mark.parametrize("data", ["stale", "missing"])
def test_stale_or_missing_rtts_are_no_evidence(data: str) -> None:
    """Only fresh measurements break a limit: old or absent data never evicts."""
    w = World()
    w.add(deployed())
    if data == "stale":
        w.rtt("edge-0", "edge-1", 50.0)
        w.run()
        w.advance(31)  # past the 30 s TTL
    for _ in range(5):
        w.advance(GRACE)
        assert w.run() == []


def test_the_reverse_direction_counts_when_the_place_measures_nothing() -> None:
    """The node's own agent's RTT to the place is read when the place's is missing."""
    w = World()
    w.add(deployed())
    w.rtt("edge-1", "edge-0", 50.0)
    w.run()
    w.advance(GRACE)
    w.rtt("edge-1", "edge-0", 50.0)
    assert w.outcomes() == [("web", Outcome.EVICTED)]


def test_a_node_not_ready_past_its_timeout_moves_its_pods() -> None:
    """NotReady for nodeNotReadySeconds: every movable pod on it goes, latency limits or not."""
    w = World()
    w.add(deployed("limited"))
    w.add(deployed("plain", limit=False, controller=("StatefulSet", "ss-1")))
    w.nodes["edge-1"] = make_node("edge-1", ready=False)
    assert w.run() == []
    w.advance(299)
    assert w.run() == []
    w.advance(1)
    decisions = w.run()
    assert [(d.pod.name, d.outcome, d.trigger.kind) for d in decisions] == [
        ("limited", Outcome.EVICTED, NODE_NOT_READY),
        ("plain", Outcome.EVICTED, NODE_NOT_READY),
    ]
    assert "node edge-1 NotReady for 300 s (nodeNotReadySeconds 300)" in decisions[0].note()


def test_a_node_ready_again_is_forgotten() -> None:
    """A node that recovers before its timeout starts the wait over when it fails again."""
    w = World()
    w.add(deployed())
    w.nodes["edge-1"] = make_node("edge-1", ready=False)
    w.run()
    w.advance(200)
    w.nodes["edge-1"] = make_node("edge-1")
    w.run()
    w.nodes["edge-1"] = make_node("edge-1", ready=False)
    w.run()
    w.advance(200)
    assert w.run() == []


@pytest.mark.parametrize(
    ("pod", "outcome"),
    [
        (deployed(controller=None), Outcome.NO_CONTROLLER),
        (deployed(controller=("Job", "job-1")), Outcome.NO_CONTROLLER),
        (deployed(controller=("DaemonSet", "ds-1")), Outcome.DAEMONSET),
        (deployed(annotations={"kubernetes.io/config.mirror": "x"}), Outcome.MIRROR),
        (deployed(namespace="kube-system"), Outcome.EXCLUDED_NAMESPACE),
        (deployed(priority=2_000_000_000), Outcome.CRITICAL),
        (deployed(volumes=[{"name": "scratch", "emptyDir": {}}]), Outcome.LOCAL_STORAGE),
        (deployed(volumes=[{"name": "h", "hostPath": {"path": "/x"}}]), Outcome.LOCAL_STORAGE),
        (deployed(labels={"scheduling.x-k8s.io/pod-group": "g"}), Outcome.POD_GROUP),
    ],
    ids=[
        "bare", "job", "daemonset", "mirror", "excluded-namespace", "critical", "empty-dir",
        "host-path", "pod-group",
    ],
)  # fmt: skip
def test_safety_rules_keep_pods_where_they_are(pod: PodInfo, outcome: Outcome) -> None:
    """The descheduler's never-evict rules (and lasched's stricter ones) hold, checked first."""
    w = World()
    w.add(pod)
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE)
    w.rtt("edge-0", "edge-1", 50.0)
    [d] = w.run()
    assert d.outcome is outcome
    assert d.note().startswith("not evicted from edge-1, ")
    assert "rtt from edge-0 = 50.0 ms > 10 ms" in d.note()
    assert w.placer.asked == []


def test_local_storage_pods_may_be_allowed() -> None:
    """remediation.evictLocalStoragePods lets a pod with an emptyDir go."""
    w = World(replace(SETTINGS, evict_local_storage_pods=True))
    w.add(deployed(volumes=[{"name": "scratch", "emptyDir": {}}]))
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.outcomes() == [("web", Outcome.EVICTED)]


def test_a_decision_not_to_evict_is_reported_once_per_reason() -> None:
    """Each pass judges again, but only a changed reason is returned (one Event each)."""
    w = World(nodes=())
    w.add(deployed())
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE)
    w.rtt("edge-0", "edge-1", 50.0)
    [d] = w.run()
    assert d.outcome is Outcome.NO_PLACEMENT
    assert d.note().endswith("(0/2 nodes are available: 2 Insufficient cpu)")
    for _ in range(3):
        w.advance(2)
        w.rtt("edge-0", "edge-1", 50.0)
        assert w.run() == []
    w.placer.nodes = ("edge-3",)  # room appears: the check passes now
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.outcomes() == [("web", Outcome.EVICTED)]


def test_a_pod_is_not_approved_again_within_its_cool_down() -> None:
    """A pod approved once is not approved again for cooldownSeconds, even if it is still
    there (its eviction slow to show, say)."""
    w = World()
    w.add(deployed())
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.outcomes() == [("web", Outcome.EVICTED)]
    for _ in range(5):
        w.advance(100)
        w.rtt("edge-0", "edge-1", 50.0)
        assert w.run() == []
    w.advance(100)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.outcomes() == [("web", Outcome.EVICTED)]


def test_a_refused_eviction_is_tried_again_soon_not_a_cool_down_later() -> None:
    """After the Eviction API refused (a PodDisruptionBudget's 429), the pod is judged again
    REFUSED_RETRY_SECONDS later, not cooldownSeconds later."""
    w = World()
    w.add(deployed())
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.outcomes() == [("web", Outcome.EVICTED)]
    w.judge.refused(w.pods[0].key)
    w.advance(REFUSED_RETRY_SECONDS - 1)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.run() == []
    w.advance(1)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.outcomes() == [("web", Outcome.EVICTED)]


def test_a_young_pod_is_in_its_cool_down() -> None:
    """A replacement created less than cooldownSeconds ago is not evicted, and says so."""
    w = World()
    w.add(deployed(created="2023-11-14T22:10:00Z"))  # 3 min 20 s before WALL_START + 60
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE)
    w.rtt("edge-0", "edge-1", 50.0)
    [d] = w.run()
    assert d.outcome is Outcome.COOL_DOWN
    w.advance(600)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.outcomes() == [("web", Outcome.EVICTED)]


ONE_NODE = [("a", "edge-1", "x"), ("b", "edge-1", "x"), ("c", "edge-1", "x")]
TWO_NAMESPACES = [("a", "edge-1", "x"), ("b", "edge-2", "x"), ("c", "edge-3", "y")]
SPREAD = [("a", "edge-1", "x"), ("b", "edge-2", "y"), ("c", "edge-3", "z")]


@pytest.mark.parametrize(
    ("limits", "pods", "evicted"),
    [
        (replace(SETTINGS, max_per_node=2), ONE_NODE, ["a", "b"]),
        (replace(SETTINGS, max_per_namespace=1), TWO_NAMESPACES, ["a", "c"]),
        (replace(SETTINGS, max_total=2), SPREAD, ["a", "b"]),
    ],
    ids=["per-node", "per-namespace", "total"],
)
def test_rate_limits_hold_back_the_rest_until_the_window_passes(
    limits: RemediationSettings, pods: list[tuple[str, str, str]], evicted: list[str]
) -> None:
    """Past a limit a pod is rate-limited (once reported), and evicted when the window ends."""
    w = World(limits, nodes=("edge-9",))
    for name, node, ns in pods:
        w.add(deployed(name, node=node, namespace=ns))
        w.rtt("edge-0", node, 50.0)
    w.run()
    w.advance(GRACE)
    for _, node, _ in pods:
        w.rtt("edge-0", node, 50.0)
    out = w.outcomes()
    assert [n for n, o in out if o is Outcome.EVICTED] == evicted
    held = [n for n, o in out if o is Outcome.RATE_LIMITED]
    assert held == [n for n, _, _ in pods if n not in evicted]
    w.advance(30)
    for _, node, _ in pods:
        w.rtt("edge-0", node, 50.0)
    assert w.run() == []  # still limited: nothing new to report
    w.advance(30)
    for _, node, _ in pods:
        w.rtt("edge-0", node, 50.0)
    assert [n for n, o in w.outcomes() if o is Outcome.EVICTED] == held


def test_a_dry_run_reports_without_evicting_and_counts_against_the_limits() -> None:
    """dryRun: the decision is 'would evict'; the rate limits see it as an eviction."""
    w = World(replace(SETTINGS, dry_run=True, max_per_node=1), nodes=("edge-2",))
    w.add(deployed("a"))
    w.add(deployed("b"))
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE)
    w.rtt("edge-0", "edge-1", 50.0)
    decisions = w.run()
    assert [(d.pod.name, d.outcome) for d in decisions] == [
        ("a", Outcome.DRY_RUN),
        ("b", Outcome.RATE_LIMITED),
    ]
    assert not any(d.evict for d in decisions)
    assert decisions[0].note().startswith("would evict from edge-1 (dry run): rtt from edge-0")


def test_terminating_and_unbound_pods_are_left_alone() -> None:
    """A pod being deleted already goes; one not bound has no place to leave."""
    w = World()
    w.add(deployed("going", deleting=True))
    w.add(deployed("pending", node=""))
    w.nodes["edge-1"] = make_node("edge-1", ready=False)
    w.advance(1000)
    w.run()
    w.advance(1000)
    assert w.run() == []


def test_a_follower_forgets_the_triggers_it_saw() -> None:
    """reset() (leadership lost): a new term waits the full grace period again."""
    w = World()
    w.add(deployed())
    w.rtt("edge-0", "edge-1", 50.0)
    w.run()
    w.advance(GRACE - 1)
    w.judge.reset()
    w.advance(1)
    w.rtt("edge-0", "edge-1", 50.0)
    assert w.run() == []


def test_rate_limits_forget_grants_older_than_the_window() -> None:
    """A grant counts for exactly ``window`` seconds."""
    rl = RateLimits(window=10, per_node=1, per_namespace=5, total=5)
    rl.take(0.0, node="n", namespace="a")
    assert not rl.allows(9.9, node="n", namespace="a")
    assert rl.allows(9.9, node="m", namespace="a")
    assert rl.allows(10.0, node="n", namespace="a")
    with pytest.raises(ValueError, match="`window` must be positive"):
        RateLimits(window=0, per_node=1, per_namespace=1, total=1)
