"""Cluster events and queueing hints: what changed, and whom it may help.

kube-scheduler's ``ClusterEvent`` (``pkg/scheduler/framework/types.go``): a
resource and an action. Every change that can make a waiting pod fit
reaches the queue as one event with the object before and after it
(``old``, ``new``; None for an add and a delete): the informer handlers send
node and pod changes, the binding cycle an assumed pod it forgot, the gang
plugin a group that stopped holding, the latency upkeep changed RTTs.

A plugin that rejects pods says which events can help them
(``EnqueueExtensions.events_to_register``, lasched.framework.interface), each
with a *queueing hint*: a pure, cheap function of the pending pod and the
change that answers :attr:`QueueingHint.QUEUE` (worth another try) or
:attr:`QueueingHint.SKIP`. The queue moves a pod only when a plugin that
rejected it registered the event and its hint says QUEUE
(:meth:`QueueingHints.says_queue`, kube-scheduler's ``isPodWorthRequeuing``).

Invariant: a hint may only keep a pod waiting when its plugin can tell the
change does not help; whatever is unknown moves the pod. So a pod with no
rejecting plugin on record (an error, a rejection nobody signed), a plugin
that registers nothing (it implements no EnqueueExtensions: every event),
a plugin the profile does not know, a hint that raises, and a
:data:`WILDCARD_EVENT` all move it.

This module is a leaf: the queue, the framework and the plugins read it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lasched.model.node import Node
    from lasched.model.pod import PodInfo
    from lasched.model.resources import Resources

log = logging.getLogger(__name__)


class EventResource(enum.StrEnum):
    """What changed. ``Pod`` is for registrations: it matches both kinds of pod event."""

    POD = "Pod"
    ASSIGNED_POD = "AssignedPod"  # bound, or assumed by this scheduler
    UNSCHEDULED_POD = "UnscheduledPod"
    NODE = "Node"
    POD_GROUP = "PodGroup"  # a PodGroup object, or a group that stopped holding
    LATENCY = "Latency"  # an RTT pair changed significantly
    PERSISTENT_VOLUME_CLAIM = "PersistentVolumeClaim"
    PERSISTENT_VOLUME = "PersistentVolume"
    STORAGE_CLASS = "StorageClass"
    CSI_NODE = "CSINode"
    NODE_RESOURCE_TOPOLOGY = "NodeResourceTopology"  # a node's NUMA zones (NRT object)
    WILDCARD = "*"


class ActionType(enum.Flag):
    """How it changed; an update says what it changed (kube-scheduler's ActionType)."""

    ADD = 1
    DELETE = 2
    UPDATE_NODE_ALLOCATABLE = 4
    UPDATE_NODE_LABEL = 8
    UPDATE_NODE_TAINT = 16  # taints, or spec.unschedulable (a cordon is a taint)
    UPDATE_NODE_CONDITION = 32  # the Ready condition
    UPDATE_POD_LABEL = 64
    UPDATE_POD_SCALE_DOWN = 128  # requests shrank
    # An update of a PodGroup, an RTT, a storage object or an NRT, or a group's hold ending.
    UPDATE_OTHER = 256
    UPDATE = 4 | 8 | 16 | 32 | 64 | 128 | 256
    ALL = 1 | 2 | UPDATE


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """A kind of change: as an event, what happened; as a registration, what helps."""

    resource: EventResource
    action: ActionType

    def __post_init__(self) -> None:
        if not self.action:
            raise ValueError(f"ClusterEvent({self.resource}) `action` must name an action")

    def match(self, event: ClusterEvent) -> bool:
        """Does this registration cover ``event``?"""
        if not self.action & event.action:
            return False
        r = self.resource
        return (
            r is EventResource.WILDCARD
            or r is event.resource
            or (
                r is EventResource.POD
                and event.resource in (EventResource.ASSIGNED_POD, EventResource.UNSCHEDULED_POD)
            )
        )

    @property
    def label(self) -> str:
        """``NodeUpdateNodeLabel|UpdateNodeTaint``, for logs."""
        names = "|".join(
            "".join(w.capitalize() for w in (a.name or "").split("_"))
            for a in ActionType
            if a in self.action
        )
        return f"{self.resource.value}{names}"


NODE_ADD = ClusterEvent(EventResource.NODE, ActionType.ADD)
NODE_DELETE = ClusterEvent(EventResource.NODE, ActionType.DELETE)
ASSIGNED_POD_ADD = ClusterEvent(EventResource.ASSIGNED_POD, ActionType.ADD)
ASSIGNED_POD_DELETE = ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE)
UNSCHEDULED_POD_DELETE = ClusterEvent(EventResource.UNSCHEDULED_POD, ActionType.DELETE)
POD_GROUP_ADD = ClusterEvent(EventResource.POD_GROUP, ActionType.ADD)
POD_GROUP_UPDATE = ClusterEvent(EventResource.POD_GROUP, ActionType.UPDATE_OTHER)
POD_GROUP_DELETE = ClusterEvent(EventResource.POD_GROUP, ActionType.DELETE)
LATENCY_UPDATE = ClusterEvent(EventResource.LATENCY, ActionType.UPDATE_OTHER)
ADD_OR_UPDATE = ActionType.ADD | ActionType.UPDATE_OTHER
"""A storage object's registrations: added, or changed (kube-scheduler's ``Add|Update``)."""

NRT_ADD = ClusterEvent(EventResource.NODE_RESOURCE_TOPOLOGY, ActionType.ADD)
NRT_UPDATE = ClusterEvent(EventResource.NODE_RESOURCE_TOPOLOGY, ActionType.UPDATE_OTHER)
NRT_DELETE = ClusterEvent(EventResource.NODE_RESOURCE_TOPOLOGY, ActionType.DELETE)
WILDCARD_EVENT = ClusterEvent(EventResource.WILDCARD, ActionType.ALL)
"""Every selected pod is worth another try, whoever rejected it (a timed move, the
safety flush): kube-scheduler's UnschedulableTimeout and ForceActivate."""


class QueueingHint(enum.Enum):
    SKIP = "QueueSkip"
    QUEUE = "Queue"


QUEUE = QueueingHint.QUEUE
SKIP = QueueingHint.SKIP

HintFn = Callable[["PodInfo", Any, Any], QueueingHint]
"""``(pending pod, old, new)``: may this change make the pod schedulable?"""


@dataclass(frozen=True, slots=True)
class ClusterEventWithHint:
    """An event a plugin registers, with its hint (None: every such event helps)."""

    event: ClusterEvent
    hint: HintFn | None = None


EVERY_EVENT = (ClusterEventWithHint(WILDCARD_EVENT),)
"""What a plugin that implements no EnqueueExtensions is taken to register."""


class QueueingHints:
    """One profile's registrations, by plugin: what kube-scheduler's queueingHintMap holds.

    Registrations can be replaced (:meth:`register`) when a profile's plugins
    are, and holders of this object see the new ones.
    """

    def __init__(
        self, registrations: Mapping[str, Sequence[ClusterEventWithHint]] | None = None
    ) -> None:
        self.register(registrations or {})

    def register(self, registrations: Mapping[str, Sequence[ClusterEventWithHint]]) -> None:
        """Replace every registration: plugin name -> the events it registers."""
        self._by_plugin = {name: tuple(regs) for name, regs in registrations.items()}
        self._for_event: dict[ClusterEvent, dict[str, tuple[HintFn | None, ...]]] = {}
        self.plugins = frozenset(self._by_plugin)
        """The plugins it knows (those of the profile that can reject a pod)."""

    def registrations(self, plugin: str) -> tuple[ClusterEventWithHint, ...]:
        return self._by_plugin.get(plugin, ())

    def for_event(self, event: ClusterEvent) -> Mapping[str, tuple[HintFn | None, ...]]:
        """The plugins that registered ``event``, with their hints (worked out once per kind)."""
        found = self._for_event.get(event)
        if found is None:
            found = {}
            for name, regs in self._by_plugin.items():
                hints = tuple(r.hint for r in regs if r.event.match(event))
                if hints:
                    found[name] = hints
            self._for_event[event] = found
        return found

    def says_queue(
        self, pod: PodInfo, plugins: Iterable[str], event: ClusterEvent, old: Any, new: Any
    ) -> bool:
        """Is ``event`` worth another try for ``pod``, rejected by ``plugins``?"""
        if event.resource is EventResource.WILDCARD:
            return True
        registered = self.for_event(event)
        for plugin in plugins:
            if plugin not in self._by_plugin:
                return True  # nothing known of it: any change may help
            for hint in registered.get(plugin, ()):
                if hint is None:
                    return True
                try:
                    if hint(pod, old, new) is QUEUE:
                        return True
                except Exception:
                    # kube-scheduler's rule: a failing hint queues the pod.
                    log.exception("plugin=%s queueing hint for %s failed", plugin, event.label)
                    return True
        return False


# ---- what changed in an update ----------------------------------------------------------


def node_update_action(old: Node, new: Node) -> ActionType:
    """What a node update changed that filters read; empty for a heartbeat."""
    action = ActionType(0)
    if old.allocatable != new.allocatable:
        action |= ActionType.UPDATE_NODE_ALLOCATABLE
    if old.labels != new.labels:
        action |= ActionType.UPDATE_NODE_LABEL
    if old.unschedulable != new.unschedulable or _taints(old) != _taints(new):
        action |= ActionType.UPDATE_NODE_TAINT
    if old.ready != new.ready:
        action |= ActionType.UPDATE_NODE_CONDITION
    return action


def _taints(node: Node) -> list[tuple[str, str, str]]:
    return [(t.key, t.value, t.effect) for t in node.taints]


def pod_update_action(old: PodInfo, new: PodInfo) -> ActionType:
    """What an update of a bound pod changed that may help pending pods; empty for status."""
    action = ActionType(0)
    if old.labels != new.labels:
        action |= ActionType.UPDATE_POD_LABEL
    if scaled_down(old.requests, new.requests):
        action |= ActionType.UPDATE_POD_SCALE_DOWN
    return action


def scaled_down(old: Resources, new: Resources) -> bool:
    """Did any request shrink? (A pod resized in place.)"""
    return bool(
        new.milli_cpu < old.milli_cpu
        or new.memory < old.memory
        or new.ephemeral_storage < old.ephemeral_storage
        or any(new.scalar.get(k, 0) < v for k, v in old.scalar.items())
    )
