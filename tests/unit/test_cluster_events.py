"""Typed cluster events and queueing hints: a parked pod moves only on an event one of the
plugins that rejected it registered, and only when that plugin's hint says QUEUE."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from lasched.cache.cache import NodeInfo
from lasched.framework import events
from lasched.framework.events import (
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    EventResource,
    QueueingHint,
    QueueingHints,
    node_update_action,
    pod_update_action,
)
from lasched.framework.interface import SUCCESS, Code, CycleState, EnqueueExtensions, Status
from lasched.framework.runtime import FitError, Framework
from lasched.framework.waiting import WaitingRoom
from lasched.latency.cache import LatencyCache
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.model.podgroup import PodGroup
from lasched.plugins.coscheduling import Coscheduling, Group
from lasched.plugins.latency import LatencyFilter
from lasched.plugins.nodeaffinity import NodeAffinity
from lasched.plugins.nodeports import NodePorts
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.plugins.nodeunschedulable import NodeUnschedulable
from lasched.plugins.schedulinggates import SchedulingGates
from lasched.plugins.tainttoleration import TaintToleration
from lasched.queue.queue import Gated, QueueOptions, QueueState, SchedulingQueue
from tests.unit.factories import make_node, make_pod, pod_json


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Custom:
    """A Filter of someone else's, without EnqueueExtensions: every event may help."""

    name = "Custom"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        return SUCCESS


def framework() -> Framework:
    """The in-tree plugins that reject pods, as the default profile has them."""
    gang = Coscheduling(clock=time.monotonic, room=WaitingRoom(), node_of=lambda key: None)
    return Framework(
        pre_enqueue=[SchedulingGates(), gang],
        pre_filters=[gang],
        filters=[
            NodeUnschedulable(),
            TaintToleration(),
            NodeAffinity(),
            NodePorts(),
            LatencyFilter(LatencyCache()),
            NodeResourcesFit(),
            Custom(),
        ],
        scores=[],
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> SchedulingQueue:
    return SchedulingQueue(
        QueueOptions(backoff_jitter=0.0), clock=clock, hints={"lasched": framework().queueing_hints}
    )


async def park(q: SchedulingQueue, pod: PodInfo, *plugins: str) -> None:
    """Try ``pod`` once; ``plugins`` reject it and no event arrives meanwhile."""
    q.add(pod)
    qp = await q.pop()
    assert qp.key == pod.key
    q.requeue_unschedulable(qp, reason="rejected", plugins=plugins)
    assert qp.where is QueueState.UNSCHEDULABLE


# ---- objects ------------------------------------------------------------------------


def node(name: str = "n1", **kwargs: Any) -> Node:
    return make_node(name, **kwargs)


def bound(name: str, *, node: str = "n1", **kwargs: Any) -> PodInfo:
    return make_pod(name, node=node, **kwargs)


def with_ports(name: str, *ports: int, node: str = "") -> PodInfo:
    body = pod_json(name, node=node)
    body["spec"]["containers"][0]["ports"] = [
        {"containerPort": p, "hostPort": p, "protocol": "TCP"} for p in ports
    ]
    return PodInfo(body)


def with_selector(name: str, selector: dict[str, str]) -> PodInfo:
    return make_pod(name, nodeSelector=selector)


def with_latency(name: str, **annotations: str) -> PodInfo:
    body = pod_json(name)
    body["metadata"]["annotations"] = {
        f"lasched.io/{k.replace('_', '-')}": v for k, v in annotations.items()
    }
    return PodInfo(body)


def member(name: str, group: str) -> PodInfo:
    return make_pod(name, labels={"lasched.io/pod-group": group, "lasched.io/min-available": "2"})


def podgroup(name: str) -> PodGroup:
    return PodGroup({"metadata": {"name": name, "namespace": "default"}, "spec": {"minMember": 2}})


NO_SCHEDULE = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
OTHER_TAINT = {"key": "maintenance", "value": "", "effect": "NoExecute"}


def node_update(old: Node, new: Node) -> tuple[ClusterEvent, Node, Node]:
    """A node update as the informer handler sends it: the action names what changed."""
    return ClusterEvent(EventResource.NODE, node_update_action(old, new)), old, new


def pod_update(old: PodInfo, new: PodInfo) -> tuple[ClusterEvent, PodInfo, PodInfo]:
    return ClusterEvent(EventResource.ASSIGNED_POD, pod_update_action(old, new)), old, new


# ---- plugin by plugin, event by event ------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    pod: Callable[[], PodInfo]
    rejected_by: tuple[str, ...]
    event: Callable[[], tuple[ClusterEvent, Any, Any]]
    moves: bool


CASES = [
    # NodeResourcesFit: room, in a node or freed by a pod.
    Case(
        "fit/node-label-change-skips",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: node_update(node(cpu="2"), node(cpu="2", labels={"zone": "a"})),
        False,
    ),
    Case(
        "fit/allocatable-grows-moves",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: node_update(node(cpu="2"), node(cpu="8")),
        True,
    ),
    Case(
        "fit/allocatable-grows-too-little-skips",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: node_update(node(cpu="2"), node(cpu="3")),
        False,
    ),
    Case(
        "fit/allocatable-shrinks-skips",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: node_update(node(cpu="16"), node(cpu="8")),
        False,
    ),
    Case(
        "fit/node-added-that-fits-moves",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: (events.NODE_ADD, None, node(cpu="8")),
        True,
    ),
    Case(
        "fit/node-added-too-small-skips",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: (events.NODE_ADD, None, node(cpu="2")),
        False,
    ),
    Case(
        "fit/bound-pod-deleted-moves",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: (events.ASSIGNED_POD_DELETE, bound("old", cpu="2"), None),
        True,
    ),
    Case(
        "fit/preemptor-holding-room-deleted-moves",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: (events.UNSCHEDULED_POD_DELETE, make_pod("pre"), None),
        True,
    ),
    Case(
        "fit/bound-pod-scaled-down-moves",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: pod_update(bound("b", cpu="2"), bound("b", cpu="1")),
        True,
    ),
    Case(
        "fit/bound-pod-relabelled-skips",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: pod_update(bound("b"), bound("b", labels={"a": "b"})),
        False,
    ),
    Case(
        "fit/latency-change-skips",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: (events.LATENCY_UPDATE, None, None),
        False,
    ),
    Case(
        "fit/pod-bound-elsewhere-skips",
        lambda: make_pod("p", cpu="4"),
        ("NodeResourcesFit",),
        lambda: (events.ASSIGNED_POD_ADD, None, bound("b")),
        False,
    ),
    # NodeAffinity: a node that comes to match.
    Case(
        "affinity/node-gains-the-label-moves",
        lambda: with_selector("p", {"zone": "a"}),
        ("NodeAffinity",),
        lambda: node_update(node(), node(labels={"zone": "a"})),
        True,
    ),
    Case(
        "affinity/unrelated-label-skips",
        lambda: with_selector("p", {"zone": "a"}),
        ("NodeAffinity",),
        lambda: node_update(node(), node(labels={"rack": "7"})),
        False,
    ),
    Case(
        "affinity/matched-before-skips",
        lambda: with_selector("p", {"zone": "a"}),
        ("NodeAffinity",),
        lambda: node_update(node(labels={"zone": "a"}), node(labels={"zone": "a", "r": "1"})),
        False,
    ),
    Case(
        "affinity/matching-node-added-moves",
        lambda: with_selector("p", {"zone": "a"}),
        ("NodeAffinity",),
        lambda: (events.NODE_ADD, None, node(labels={"zone": "a"})),
        True,
    ),
    Case(
        "affinity/allocatable-change-skips",
        lambda: with_selector("p", {"zone": "a"}),
        ("NodeAffinity",),
        lambda: node_update(node(cpu="2"), node(cpu="8")),
        False,
    ),
    # TaintToleration: a taint the pod does not tolerate goes away.
    Case(
        "taint/removed-moves",
        lambda: make_pod("p"),
        ("TaintToleration",),
        lambda: node_update(node(taints=[NO_SCHEDULE]), node()),
        True,
    ),
    Case(
        "taint/added-skips",
        lambda: make_pod("p"),
        ("TaintToleration",),
        lambda: node_update(node(), node(taints=[NO_SCHEDULE])),
        False,
    ),
    Case(
        "taint/another-stays-skips",
        lambda: make_pod("p"),
        ("TaintToleration",),
        lambda: node_update(node(taints=[NO_SCHEDULE, OTHER_TAINT]), node(taints=[OTHER_TAINT])),
        False,
    ),
    Case(
        "taint/untainted-node-added-moves",
        lambda: make_pod("p"),
        ("TaintToleration",),
        lambda: (events.NODE_ADD, None, node()),
        True,
    ),
    # NodeUnschedulable: a node becomes schedulable.
    Case(
        "unschedulable/uncordoned-moves",
        lambda: make_pod("p"),
        ("NodeUnschedulable",),
        lambda: node_update(node(unschedulable=True), node()),
        True,
    ),
    Case(
        "unschedulable/ready-again-moves",
        lambda: make_pod("p"),
        ("NodeUnschedulable",),
        lambda: node_update(node(ready=False), node()),
        True,
    ),
    Case(
        "unschedulable/cordoned-skips",
        lambda: make_pod("p"),
        ("NodeUnschedulable",),
        lambda: node_update(node(), node(unschedulable=True)),
        False,
    ),
    Case(
        "unschedulable/label-change-skips",
        lambda: make_pod("p"),
        ("NodeUnschedulable",),
        lambda: node_update(node(unschedulable=True), node(unschedulable=True, labels={"a": "b"})),
        False,
    ),
    # NodePorts: the pod holding the port is deleted.
    Case(
        "ports/holder-deleted-moves",
        lambda: with_ports("p", 8080),
        ("NodePorts",),
        lambda: (events.ASSIGNED_POD_DELETE, with_ports("old", 8080, node="n1"), None),
        True,
    ),
    Case(
        "ports/other-port-freed-skips",
        lambda: with_ports("p", 8080),
        ("NodePorts",),
        lambda: (events.ASSIGNED_POD_DELETE, with_ports("old", 9090, node="n1"), None),
        False,
    ),
    Case(
        "ports/node-added-moves",
        lambda: with_ports("p", 8080),
        ("NodePorts",),
        lambda: (events.NODE_ADD, None, node()),
        True,
    ),
    # LatencyFilter: RTTs change, peers come and go.
    Case(
        "latency/rtt-change-moves",
        lambda: with_latency("p", max_rtt="edge-1=10"),
        ("LatencyFilter",),
        lambda: (events.LATENCY_UPDATE, None, None),
        True,
    ),
    Case(
        "latency/node-label-skips",
        lambda: with_latency("p", max_rtt="edge-1=10"),
        ("LatencyFilter",),
        lambda: node_update(node(), node(labels={"a": "b"})),
        False,
    ),
    Case(
        "latency/matching-peer-placed-moves",
        lambda: with_latency("p", peer_selector="app=db", peer_max_rtt="5"),
        ("LatencyFilter",),
        lambda: (events.ASSIGNED_POD_ADD, None, bound("db-0", labels={"app": "db"})),
        True,
    ),
    Case(
        "latency/other-pod-placed-skips",
        lambda: with_latency("p", peer_selector="app=db", peer_max_rtt="5"),
        ("LatencyFilter",),
        lambda: (events.ASSIGNED_POD_ADD, None, bound("web-0", labels={"app": "web"})),
        False,
    ),
    Case(
        "latency/peer-in-another-namespace-skips",
        lambda: with_latency("p", peer_selector="app=db", peer_max_rtt="5"),
        ("LatencyFilter",),
        lambda: (
            events.ASSIGNED_POD_ADD,
            None,
            bound("db-0", namespace="other", labels={"app": "db"}),
        ),
        False,
    ),
    Case(
        "latency/pod-relabelled-into-the-selector-moves",
        lambda: with_latency("p", peer_selector="app=db", peer_max_rtt="5"),
        ("LatencyFilter",),
        lambda: pod_update(bound("x"), bound("x", labels={"app": "db"})),
        True,
    ),
    # Coscheduling: PodGroup objects and groups that stop holding.
    Case(
        "gang/its-podgroup-changed-moves",
        lambda: member("m0", "train"),
        ("Coscheduling",),
        lambda: (events.POD_GROUP_UPDATE, podgroup("train"), podgroup("train")),
        True,
    ),
    Case(
        "gang/another-podgroup-skips",
        lambda: member("m0", "train"),
        ("Coscheduling",),
        lambda: (events.POD_GROUP_ADD, None, podgroup("infer")),
        False,
    ),
    Case(
        "gang/a-group-stopped-holding-moves",
        lambda: member("m0", "train"),
        ("Coscheduling",),
        lambda: (events.POD_GROUP_UPDATE, None, Group("default/infer")),
        True,
    ),
    Case(
        "gang/node-added-skips",
        lambda: member("m0", "train"),
        ("Coscheduling",),
        lambda: (events.NODE_ADD, None, node()),
        False,
    ),
    # Several plugins: any one of them may be helped.
    Case(
        "two-plugins/either-hint-moves",
        lambda: with_selector("p", {"zone": "a"}),
        ("NodeResourcesFit", "NodeAffinity"),
        lambda: node_update(node(), node(labels={"zone": "a"})),
        True,
    ),
    # Whatever is unknown moves.
    Case(
        "no-plugin-on-record/any-event-moves",
        lambda: make_pod("p"),
        (),
        lambda: node_update(node(), node(labels={"a": "b"})),
        True,
    ),
    Case(
        "plugin-without-enqueue-extensions/any-event-moves",
        lambda: make_pod("p"),
        ("Custom",),
        lambda: (events.NODE_DELETE, node(), None),
        True,
    ),
    Case(
        "plugin-the-profile-does-not-know/any-event-moves",
        lambda: make_pod("p"),
        ("SomeExtender",),
        lambda: (events.NODE_DELETE, node(), None),
        True,
    ),
    Case(
        "pod-of-another-profile/any-event-moves",
        lambda: make_pod("p", scheduler="other"),
        ("NodeResourcesFit",),
        lambda: (events.LATENCY_UPDATE, None, None),
        True,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_an_event_moves_a_parked_pod_only_if_a_rejecting_plugin_says_so(
    queue: SchedulingQueue, case: Case
) -> None:
    """Each plugin's registered events and hints, as the queue applies them."""
    pod = case.pod()
    await park(queue, pod, *case.rejected_by)
    event, old, new = case.event()
    moved = queue.on_event(event, old, new)
    qp = queue.get(pod.key)
    assert qp is not None
    assert moved == int(case.moves)
    assert (qp.where is not QueueState.UNSCHEDULABLE) == case.moves


def test_every_in_tree_rejecting_plugin_registers_its_events() -> None:
    """The framework collects each rejecting plugin's registrations; the others, everything."""
    hints = framework().queueing_hints
    assert hints.plugins == {
        "SchedulingGates",
        "Coscheduling",
        "NodeUnschedulable",
        "TaintToleration",
        "NodeAffinity",
        "NodePorts",
        "LatencyFilter",
        "NodeResourcesFit",
        "Custom",
    }
    assert hints.registrations("SchedulingGates") == ()  # only its own update opens a gate
    assert hints.registrations("Custom") == events.EVERY_EVENT
    assert set(hints.for_event(events.LATENCY_UPDATE)) == {"LatencyFilter", "Custom"}
    assert set(hints.for_event(events.NODE_ADD)) == {
        "NodeUnschedulable",
        "TaintToleration",
        "NodeAffinity",
        "NodePorts",
        "LatencyFilter",
        "NodeResourcesFit",
        "Custom",
    }
    for plugin in framework().filters:
        assert isinstance(plugin, EnqueueExtensions) == (plugin.name != "Custom")


# ---- the event an update makes ------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "action"),
    [
        (node(), node(rv="2"), ActionType(0)),
        (node(cpu="2"), node(cpu="4"), ActionType.UPDATE_NODE_ALLOCATABLE),
        (node(), node(labels={"a": "b"}), ActionType.UPDATE_NODE_LABEL),
        (node(), node(taints=[NO_SCHEDULE]), ActionType.UPDATE_NODE_TAINT),
        (
            node(taints=[NO_SCHEDULE]),
            node(taints=[{**NO_SCHEDULE, "effect": "NoExecute"}]),
            ActionType.UPDATE_NODE_TAINT,
        ),
        (node(), node(unschedulable=True), ActionType.UPDATE_NODE_TAINT),
        (node(), node(ready=False), ActionType.UPDATE_NODE_CONDITION),
        (
            node(),
            node(labels={"a": "b"}, cpu="4"),
            ActionType.UPDATE_NODE_LABEL | ActionType.UPDATE_NODE_ALLOCATABLE,
        ),
    ],
    ids=["heartbeat", "allocatable", "label", "taint", "taint-effect", "cordon", "ready", "two"],
)
def test_a_node_update_names_what_changed(old: Node, new: Node, action: ActionType) -> None:
    """What filters read, each its own action; a heartbeat is no event."""
    assert node_update_action(old, new) == action


@pytest.mark.parametrize(
    ("old", "new", "action"),
    [
        (bound("b", rv="1"), bound("b", rv="2"), ActionType(0)),
        (bound("b"), bound("b", labels={"a": "b"}), ActionType.UPDATE_POD_LABEL),
        (bound("b", cpu="2"), bound("b", cpu="1"), ActionType.UPDATE_POD_SCALE_DOWN),
        (bound("b", cpu="1"), bound("b", cpu="2"), ActionType(0)),
    ],
    ids=["status", "label", "scale-down", "scale-up"],
)
def test_a_bound_pod_update_names_what_may_help(
    old: PodInfo, new: PodInfo, action: ActionType
) -> None:
    """Only what can help a pending pod is an event."""
    assert pod_update_action(old, new) == action


@pytest.mark.parametrize(
    ("registration", "event", "matches"),
    [
        (ClusterEvent(EventResource.POD, ActionType.DELETE), events.ASSIGNED_POD_DELETE, True),
        (ClusterEvent(EventResource.POD, ActionType.DELETE), events.UNSCHEDULED_POD_DELETE, True),
        (ClusterEvent(EventResource.POD, ActionType.DELETE), events.ASSIGNED_POD_ADD, False),
        (ClusterEvent(EventResource.NODE, ActionType.UPDATE), events.NODE_ADD, False),
        (
            ClusterEvent(EventResource.NODE, ActionType.UPDATE_NODE_LABEL),
            ClusterEvent(
                EventResource.NODE,
                ActionType.UPDATE_NODE_LABEL | ActionType.UPDATE_NODE_ALLOCATABLE,
            ),
            True,
        ),
        (events.WILDCARD_EVENT, events.LATENCY_UPDATE, True),
        (ClusterEvent(EventResource.NODE, ActionType.ALL), events.LATENCY_UPDATE, False),
    ],
    ids=[
        "pod-assigned",
        "pod-unscheduled",
        "other-action",
        "add-is-no-update",
        "one-of-two-actions",
        "wildcard",
        "other-resource",
    ],
)
def test_a_registration_matches_events(
    registration: ClusterEvent, event: ClusterEvent, matches: bool
) -> None:
    """kube-scheduler's ClusterEvent.Match: the resource, or Pod for both kinds, or *."""
    assert registration.match(event) == matches


def test_an_event_must_name_an_action() -> None:
    """The error names the argument."""
    with pytest.raises(ValueError, match="`action` must name an action"):
        ClusterEvent(EventResource.NODE, ActionType(0))


def test_an_event_has_a_readable_label() -> None:
    """For logs: the resource and the actions, in kube-scheduler's spelling."""
    event = ClusterEvent(
        EventResource.NODE, ActionType.UPDATE_NODE_LABEL | ActionType.UPDATE_NODE_TAINT
    )
    assert event.label == "NodeUpdateNodeLabel|UpdateNodeTaint"


# ---- the queue's side -----------------------------------------------------------------


class Counting:
    """A Filter whose hint counts the pods it is asked about."""

    name = "Counting"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        return SUCCESS

    def events_to_register(self) -> list[ClusterEventWithHint]:
        def hint(pod: PodInfo, old: Any, new: Any) -> QueueingHint:
            self.asked.append(pod.name)
            return events.SKIP

        return [ClusterEventWithHint(events.LATENCY_UPDATE, hint)]


async def test_an_event_visits_only_the_pods_its_plugins_rejected(clock: FakeClock) -> None:
    """The pool is indexed by rejecting plugin: pods of other plugins are not even asked."""
    counting = Counting()
    fw = Framework(pre_filters=[], filters=[NodeResourcesFit(), counting], scores=[])
    q = SchedulingQueue(QueueOptions(), clock=clock, hints={"lasched": fw.queueing_hints})
    for i in range(20):
        await park(q, make_pod(f"fit-{i}", cpu="64"), "NodeResourcesFit")
    await park(q, make_pod("counted"), "Counting")
    assert q.on_event(events.LATENCY_UPDATE) == 0
    assert counting.asked == ["counted"]


async def test_a_failing_hint_moves_the_pod(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """kube-scheduler's rule: a hint that raises counts as QUEUE, and is logged."""

    class Broken(Counting):
        def events_to_register(self) -> list[ClusterEventWithHint]:
            def hint(pod: PodInfo, old: Any, new: Any) -> QueueingHint:
                raise KeyError("oops")

            return [ClusterEventWithHint(events.LATENCY_UPDATE, hint)]

    fw = Framework(pre_filters=[], filters=[Broken()], scores=[])
    q = SchedulingQueue(QueueOptions(), clock=clock, hints={"lasched": fw.queueing_hints})
    await park(q, make_pod("p"), "Counting")
    assert q.on_event(events.LATENCY_UPDATE) == 1
    assert "queueing hint for LatencyUpdateOther failed" in caplog.text


@pytest.mark.parametrize(
    ("event", "part"),
    [
        (lambda: node_update(node(cpu="2"), node(cpu="8")), QueueState.BACKOFF),
        (lambda: node_update(node(), node(labels={"a": "b"})), QueueState.UNSCHEDULABLE),
    ],
    ids=["helpful-event-means-backoff", "other-event-means-parked"],
)
async def test_events_during_an_attempt_are_judged_when_it_fails(
    queue: SchedulingQueue,
    event: Callable[[], tuple[ClusterEvent, Any, Any]],
    part: QueueState,
) -> None:
    """An event that arrived while the pod was tried counts only if its rejectors' hints
    say it may help (kube-scheduler's in-flight events)."""
    queue.add(make_pod("p", cpu="4"))
    qp = await queue.pop()
    queue.on_event(*event())
    queue.requeue_unschedulable(qp, reason="no fit", plugins=("NodeResourcesFit",))
    assert qp.where is part


async def test_events_while_a_pod_waits_at_permit_are_judged_when_it_comes_back(
    queue: SchedulingQueue,
) -> None:
    """Its attempt is open through Permit and binding: an event then still counts."""
    queue.add(make_pod("p", cpu="4"))
    qp = await queue.pop()
    queue.done(qp.key)  # assumed, waiting at Permit
    queue.add(make_pod("other"))
    other = await queue.pop()
    queue.requeue_unschedulable(other, reason="x", plugins=("NodeResourcesFit",))
    queue.on_event(events.ASSIGNED_POD_DELETE, bound("gone", cpu="2"), None)
    queue.add(make_pod("p", cpu="4", rv="2"))  # rejected at Permit: back
    back = queue.get(qp.key)
    assert back is not None
    queue.requeue_unschedulable(back, reason="rejected at permit", plugins=("NodeResourcesFit",))
    assert back.where is QueueState.BACKOFF


async def test_a_gated_pod_moves_on_its_plugins_events_only(clock: FakeClock) -> None:
    """Gated by Coscheduling: a PodGroup event reruns PreEnqueue, a node event does not."""
    asked: list[str] = []

    def gate(pod: PodInfo) -> Gated | None:
        asked.append(pod.name)
        return Gated("waiting for members", "Coscheduling")

    q = SchedulingQueue(
        QueueOptions(), clock=clock, pre_enqueue=gate, hints={"lasched": framework().queueing_hints}
    )
    q.add(member("m0", "train"))
    q.on_event(events.NODE_ADD, None, node())
    assert asked == ["m0"]
    q.on_event(events.POD_GROUP_ADD, None, podgroup("train"))
    assert asked == ["m0", "m0"]
    qp = q.get(member("m0", "train").key)
    assert qp is not None
    assert qp.where is QueueState.GATED


def test_the_fit_error_names_the_rejecting_plugins() -> None:
    """kube-scheduler's UnschedulablePlugins: every Filter that rejected a node, or PreFilter."""
    by_filters = FitError(
        num_all_nodes=3,
        node_statuses={
            "n1": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",), "NodeResourcesFit"),
            "n2": Status(Code.UNSCHEDULABLE, ("taint",), "TaintToleration"),
            "n3": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",), "NodeResourcesFit"),
        },
    )
    assert by_filters.unschedulable_plugins == {"NodeResourcesFit", "TaintToleration"}
    by_pre_filter = FitError(
        num_all_nodes=3, pre_filter=Status(Code.UNSCHEDULABLE, ("x",), "Coscheduling")
    )
    assert by_pre_filter.unschedulable_plugins == {"Coscheduling"}
    no_nodes = FitError(num_all_nodes=0, pre_filter=Status(Code.UNSCHEDULABLE, ("no nodes",)))
    assert no_nodes.unschedulable_plugins == frozenset()


def test_hints_can_be_replaced_and_holders_see_them() -> None:
    """Setting a profile's plugins again re-registers their events in place."""
    fw = framework()
    hints: QueueingHints = fw.queueing_hints
    fw.filters = (NodeResourcesFit(),)
    assert fw.queueing_hints is hints
    assert "TaintToleration" not in hints.plugins


async def test_a_pod_gated_with_no_plugin_on_record_is_rechecked_on_any_event(
    clock: FakeClock,
) -> None:
    """A PreEnqueue that failed names no plugin: any event runs PreEnqueue again."""
    asked: list[str] = []

    def gate(pod: PodInfo) -> Gated | None:
        asked.append(pod.name)
        return Gated("PreEnqueue failed: plugin X: RuntimeError: boom")

    q = SchedulingQueue(
        QueueOptions(), clock=clock, pre_enqueue=gate, hints={"lasched": framework().queueing_hints}
    )
    q.add(make_pod("p"))
    q.on_event(events.LATENCY_UPDATE)
    assert asked == ["p", "p"]
