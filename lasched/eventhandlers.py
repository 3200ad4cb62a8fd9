"""Informer handlers: which change goes to the cache, which to the queue.

Bound pods (by anyone) go to the cache; pending pods of our profiles go to
the queue. Every other change that may make a waiting pod fit is handed to
the queue as a typed event (lasched.framework.events) with the object before
and after, and the plugins' queueing hints decide whom it moves:

* a node added or deleted (``Node/Add``, ``Node/Delete``), or changed in
  what filters read (``Node/Update…``, the action naming what changed: its
  allocatable, labels, taints or cordon, Ready condition; a heartbeat is no
  event);
* a pod bound (``AssignedPod/Add``: seen bound for the first time), a bound
  pod relabelled or scaled down (``AssignedPod/Update…``), a bound pod
  deleted (``AssignedPod/Delete``), a pending preemptor that held room
  deleted (``UnscheduledPod/Delete``);
* a PodGroup object added, changed or deleted (``PodGroup/…``);
* a PersistentVolumeClaim, PersistentVolume, StorageClass or CSINode added
  or changed (:class:`StorageEvents`).
* a NodeResourceTopology added, changed or deleted (``NodeResourceTopology/…``):
  the node's NUMA zones, kept in :class:`~lasched.cache.topology.Topologies`;
  a node's agent reporting its zones is told to the queue the same way.
  Bound pods are told to the topologies too, which account for them per zone
  where an agent's report is all there is.

A pending pod's own update moves only that pod, and only when it changed
something the scheduler reads (``SchedulingQueue.update``): the status lasched
writes after a failed attempt comes back here and must not retry the pod.
A pod joining a group rechecks the gated members of that group, and a group
without min-available rechecks them again when its members have settled.

The handlers are handed the parts they touch (:class:`Parts`), never the
scheduler: they run on the event loop between scheduling cycles, so what they
change is never seen half-changed by a cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Any

from lasched.cache.cache import SchedulerCache
from lasched.cache.topology import Topologies
from lasched.cache.volumes import VolumeCache
from lasched.framework import events
from lasched.framework.events import ClusterEvent, EventResource
from lasched.framework.waiting import WaitingRoom
from lasched.kube.events import ObjectRef
from lasched.latency.demand import LatencyDemand
from lasched.model.nativegroup import NativeGroup
from lasched.model.node import Node
from lasched.model.numa import NodeTopology
from lasched.model.pod import PodInfo, PodKey
from lasched.model.podgroup import PodGroup
from lasched.plugins.coscheduling import Coscheduling
from lasched.profiles import Profile
from lasched.queue.queue import SchedulingQueue

log = logging.getLogger(__name__)


class PodWarnings:
    """Warning Events about pods lasched cannot read as their owner meant them."""

    def __init__(self, profiles: Mapping[str, Profile]) -> None:
        self._profiles = profiles
        self._warned: set[tuple[str, str]] = set()

    def warn(self, pod: PodInfo, reason: str, message: str) -> None:
        """One Warning Event per pod and problem, however often the pod is updated."""
        key = (pod.uid, message)
        if key in self._warned:
            return
        self._warned.add(key)
        profile = self._profiles.get(pod.scheduler_name)
        if profile is not None:
            log.warning("pod=%s %s", pod.key, message)
            profile.events.record(
                _ref(pod), type="Warning", reason=reason, action="Scheduling", note=message
            )

    def forget(self, pod: PodInfo) -> None:
        self._warned = {k for k in self._warned if k[0] != pod.uid}

    def unreadable(self, raw: Mapping[str, Any], error: BaseException) -> None:
        """A pod the informer could not read: tell its owner where they look (an Event)."""
        meta = raw.get("metadata") or {}
        spec = raw.get("spec") or {}
        profile = self._profiles.get(str(spec.get("schedulerName", "")))
        if profile is None and spec:
            return  # another scheduler's pod
        name, uid = str(meta.get("name", "")), str(meta.get("uid", ""))
        if not name or not uid:
            return
        profile = profile or next(iter(self._profiles.values()))
        profile.events.record(
            ObjectRef(kind="Pod", namespace=str(meta.get("namespace", "")), name=name, uid=uid),
            type="Warning",
            reason="FailedScheduling",
            action="Scheduling",
            note=f"lasched could not process this pod ({type(error).__name__}: {error}); "
            "it is retried when the pod changes. The scheduler's log has the details.",
        )


def _ref(pod: PodInfo) -> ObjectRef:
    return ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name, uid=pod.uid)


@dataclass(frozen=True, slots=True)
class Parts:
    """What the handlers touch, and nothing more: handed in by the wiring."""

    profiles: Container[str]
    cache: SchedulerCache
    queue: SchedulingQueue
    gang: Coscheduling
    waiting: WaitingRoom
    retried_now: set[PodKey]
    warnings: PodWarnings
    invalidate_nodes: Callable[[], None]
    """The node list changed: the cycle's list of nodes is stale."""
    peers_changed: Callable[[], None]
    """The node list or a node's address changed: agents need new targets."""
    topologies: Topologies | None = None
    """NUMA zones by node: bound pods are accounted there (per zone, for agent reports)."""
    latency_demand: LatencyDemand | None = None
    """Latency pods still to place, for the plan: told of every pod, pending or not."""


def _room_freed(s: Parts, event: ClusterEvent, old: Any, new: Any) -> None:
    """A bound pod deleted or a node added: the event moves the parked pods it may help,
    and the members of gangs whose failed round's backoff it ends go to activeQ."""
    back = s.gang.room_freed()
    s.queue.on_event(event, old, new)
    if back:
        s.queue.activate(back)


class PodEvents:
    def __init__(self, s: Parts) -> None:
        self.s = s

    def _ours(self, pod: PodInfo) -> bool:
        return pod.scheduler_name in self.s.profiles

    def _check(self, pod: PodInfo) -> None:
        if pod.priority_error:
            self.s.warnings.warn(pod, "InvalidPriority", pod.priority_error)
        if pod.group_error:
            self.s.warnings.warn(pod, "InvalidPodGroup", pod.group_error)
        if pod.latency_error:
            self.s.warnings.warn(pod, "InvalidLatencyRequirement", pod.latency_error)
        if pod.affinity_error:
            self.s.warnings.warn(pod, "InvalidPodAffinity", pod.affinity_error)
        if pod.spread_error:
            self.s.warnings.warn(pod, "InvalidTopologySpreadConstraint", pod.spread_error)
        if pod.numa is not None and pod.numa.error:
            self.s.warnings.warn(pod, "InvalidNUMARequirement", pod.numa.error)
        elif pod.numa is not None and pod.numa.note:
            self.s.warnings.warn(pod, "NUMARequirementNarrowed", pod.numa.note)

    def _track_group(self, pod: PodInfo) -> None:
        """Group membership counts every member, bound or pending; a new one may open gates."""
        gang = self.s.gang
        members = gang.pod_added(pod)
        if not members:
            return
        g = gang.group_of(pod)
        if g is not None and (problem := g.disagreement()):
            for m in g.members.values():
                self.s.warnings.warn(m, "InvalidPodGroup", problem)
        self.s.queue.recheck_gated(members)
        if g is not None and (settled := gang.settles_at(g)) is not None:
            # No event says when the members stop arriving: a timer does.
            self.s.queue.move_at(settled, gang.members_of(g.key), key=f"podgroup-settle/{g.key}")

    def _demand(self, pod: PodInfo) -> None:
        demand = self.s.latency_demand
        if demand is not None and pod.latency is not None:
            pending = (
                not pod.bound and self._ours(pod) and not pod.deleting
                and not self.s.cache.is_assumed(pod.key)
            )  # fmt: skip
            demand.seen(pod, pending=pending)

    def on_add(self, pod: PodInfo) -> None:
        self._track_group(pod)
        self._demand(pod)
        if pod.bound:
            self.s.queue.delete(pod.key)
            if not pod.terminal:
                self.s.cache.add_pod(pod)
                self._adopt(pod)
                self.s.queue.on_event(events.ASSIGNED_POD_ADD, None, pod)
        elif self._ours(pod) and not pod.deleting:
            self._check(pod)
            self._follow_nomination(pod)
            self.s.queue.add(pod)

    def on_update(self, old: PodInfo, new: PodInfo) -> None:
        self._track_group(new)
        self._demand(new)
        if new.bound:
            if new.terminal:
                self.on_delete(new)
                return
            self.s.cache.update_pod(new)
            self.s.queue.delete(new.key)
            if not old.bound:
                self._adopt(new)
                self.s.queue.on_event(events.ASSIGNED_POD_ADD, None, new)
            elif action := events.pod_update_action(old, new):
                self.s.queue.on_event(ClusterEvent(EventResource.ASSIGNED_POD, action), old, new)
        elif self._ours(new):
            if new.deleting:
                self.s.queue.delete(new.key)
            elif not self.s.cache.is_assumed(new.key):
                self._check(new)
                self._follow_nomination(new)
                self.s.queue.update(new)

    def _adopt(self, pod: PodInfo) -> None:
        """A bound pod lasched holds no NUMA zone for (bound by another scheduler, or before a
        restart) is held where an agent's report is the node's topology."""
        if self.s.topologies is not None and pod.numa is not None and pod.numa.pod:
            self.s.topologies.adopt(pod.key, pod.node_name, pod.numa.pod)

    def _follow_nomination(self, pod: PodInfo) -> None:
        """status.nominatedNodeName (ours, or from before a restart) holds room."""
        cache = self.s.cache
        if pod.nominated_node_name and cache.nominated_node(pod.key) != pod.nominated_node_name:
            cache.nominate(pod, pod.nominated_node_name)

    def on_delete(self, pod: PodInfo) -> None:
        held_room = not pod.bound and self.s.cache.nominated_node(pod.key) is not None
        self.s.cache.clear_nomination(pod.key)
        self.s.gang.pod_deleted(pod)
        if self.s.latency_demand is not None:
            self.s.latency_demand.gone(pod)
        if (g := self.s.gang.group_of(pod)) is not None:
            self.s.queue.recheck_gated(list(g.members))  # its leaving may settle a disagreement
        self.s.retried_now.discard(pod.key)
        self.s.queue.delete(pod.key)
        waiting = self.s.waiting.get(pod.key)
        if waiting is not None:
            waiting.reject("", "the pod was deleted")
        if (
            pod.priority_error
            or pod.group_error
            or pod.group
            or pod.latency_error
            or pod.affinity_error
            or pod.spread_error
            or pod.numa is not None
        ):
            self.s.warnings.forget(pod)
        if self.s.cache.node_of(pod.key) is not None and not self.s.cache.is_assumed(pod.key):
            if self.s.topologies is not None and pod.bound:
                self.s.topologies.pod_gone(pod.key, pod.node_name)
            self.s.cache.remove_pod(pod.key)
            _room_freed(self.s, events.ASSIGNED_POD_DELETE, pod, None)
        elif held_room:  # a pending preemptor: the room held for it on its node is free
            self.s.queue.on_event(events.UNSCHEDULED_POD_DELETE, pod, None)


class NodeEvents:
    def __init__(self, s: Parts) -> None:
        self.s = s

    def on_add(self, node: Node) -> None:
        self.s.cache.add_node(node)
        self.s.invalidate_nodes()
        _room_freed(self.s, events.NODE_ADD, None, node)
        self.s.peers_changed()

    def on_update(self, old: Node, new: Node) -> None:
        self.s.cache.update_node(new)
        if action := events.node_update_action(old, new):
            self.s.queue.on_event(ClusterEvent(EventResource.NODE, action), old, new)
        if old.internal_ip != new.internal_ip:
            self.s.peers_changed()

    def on_delete(self, node: Node) -> None:
        self.s.cache.remove_node(node.name)
        if self.s.topologies is not None:
            self.s.topologies.forget_node(node.name)
        self.s.invalidate_nodes()
        self.s.queue.on_event(events.NODE_DELETE, node, None)
        self.s.peers_changed()


class PodGroupEvents:
    """A PodGroup object (scheduler-plugins' or Kubernetes' own, or a v1.35 Workload)
    appearing, changing or going may open its members' gates."""

    def __init__(self, s: Parts) -> None:
        self.s = s

    def on_add(self, group: PodGroup | NativeGroup) -> None:
        self.s.queue.on_event(events.POD_GROUP_ADD, None, group)

    def on_update(self, old: PodGroup | NativeGroup, new: PodGroup | NativeGroup) -> None:
        self.s.queue.on_event(events.POD_GROUP_UPDATE, old, new)

    def on_delete(self, group: PodGroup | NativeGroup) -> None:
        self.s.queue.on_event(events.POD_GROUP_DELETE, group, None)


class StorageEvents:
    """Claims, volumes, storage classes and CSINodes: what the volume plugins read.

    Each change first reaches the volume cache (a newer version replaces one
    the scheduler assumed, and a PreBind waiting for the PV controller looks
    again), then the queue: an add or an update is a ``<resource>/Add`` or
    ``<resource>/UpdateOther`` event for the pods the volume plugins rejected.
    A deletion frees nothing a pod waits for, so it moves no pod.
    """

    def __init__(
        self, queue: SchedulingQueue, volumes: VolumeCache, resource: EventResource
    ) -> None:
        self._queue = queue
        self._volumes = volumes
        self._add = ClusterEvent(resource, events.ActionType.ADD)
        self._update = ClusterEvent(resource, events.ActionType.UPDATE_OTHER)

    def on_add(self, obj: object) -> None:
        self._volumes.observed(obj)
        self._queue.on_event(self._add, None, obj)

    def on_update(self, old: object, new: object) -> None:
        self._volumes.observed(new)
        self._queue.on_event(self._update, old, new)

    def on_delete(self, obj: object) -> None:
        self._volumes.observed(obj, deleted=True)


class TopologyEvents:
    """A node's NUMA zones published, changed or withdrawn: kept, and told to the queue."""

    def __init__(
        self,
        topologies: Topologies,
        queue: SchedulingQueue,
        *,
        cache: SchedulerCache | None = None,
    ) -> None:
        """``cache``: the pods bound to a node, adopted when its agent reports."""
        self._topologies = topologies
        self._queue = queue
        self._cache = cache

    def reported(self, node: str, topology: NodeTopology | None) -> None:
        """The node's agent reported its zones, or (None) disconnected."""
        if topology is None:
            self._topologies.unreport(node)
            return
        before = self._topologies.get(node)
        info = self._cache.node_info(node) if self._cache is not None else None
        pods = [
            (p.key, p.numa.pod)
            for p in (info.pods.values() if info is not None else ())
            if p.numa is not None and p.numa.pod
        ]
        self._topologies.report(topology, pods)
        after = self._topologies.get(node)
        if after is not before:  # not shadowed by a published object
            event = events.NRT_ADD if before is None else events.NRT_UPDATE
            self._queue.on_event(event, before, after)

    def on_add(self, topology: NodeTopology) -> None:
        self._topologies.set(topology)
        self._queue.on_event(events.NRT_ADD, None, topology)

    def on_update(self, old: NodeTopology, new: NodeTopology) -> None:
        self._topologies.set(new)
        self._queue.on_event(events.NRT_UPDATE, old, new)

    def on_delete(self, topology: NodeTopology) -> None:
        self._topologies.remove(topology.name)
        self._queue.on_event(events.NRT_DELETE, topology, None)

    def unreadable(self, raw: Mapping[str, Any], error: BaseException) -> None:
        """An object the informer could not decode: its node publishes nothing readable,
        rather than what it published before (the informer logged the traceback)."""
        meta = raw.get("metadata") if isinstance(raw, Mapping) else None
        name = str(meta.get("name", "")) if isinstance(meta, Mapping) else ""
        log.warning(
            "NodeResourceTopology %s cannot be read (%s); node %s is taken to publish no "
            "NUMA topology until it is fixed",
            name or "?", error, name or "?",
        )  # fmt: skip
        if name and self._topologies.get(name) is not None:
            self._topologies.remove(name)
            self._queue.on_event(events.NRT_DELETE, None, None)
