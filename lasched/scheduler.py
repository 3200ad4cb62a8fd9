"""The composition root: builds the scheduler's parts, runs its tasks, leads or follows.

:class:`Scheduler` builds every collaborator once and hands each one the few
objects it needs: informers feed the cache and the queue through the event
handlers (:mod:`lasched.eventhandlers`); the scheduling and binding cycles
(:mod:`lasched.cycle`) pop pods and decide; the status writer
(:mod:`lasched.kube.statuswriter`) tells the apiserver beside the loop. No
module imports this one back.

:meth:`Scheduler.run` starts the long-lived tasks, each named and supervised
(a failure is logged and the task restarted), waits for the informers'
first lists, and then schedules while this replica leads. Every deadline
(Permit, a pod group's, backoffs, timed moves, coalesced latency events) is
a timer on one heap (:mod:`lasched.timers`), run by one task. A replica that
loses the Lease steps down to a warm follower: waiting pods are rejected,
binds not yet written are cancelled, and informers, cache, queue and agents
stay up for the next term.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any

import lasched_protocol as proto
from lasched import heap, metrics
from lasched.cache.cache import SchedulerCache
from lasched.cache.topology import Topologies
from lasched.cache.volumes import VolumeCache
from lasched.cycle import SchedulingCycle, pre_enqueue
from lasched.eventhandlers import (
    NodeEvents,
    Parts,
    PodEvents,
    PodGroupEvents,
    PodWarnings,
    StorageEvents,
    TopologyEvents,
)
from lasched.framework.events import EventResource
from lasched.framework.waiting import WaitingRoom
from lasched.kube import discovery
from lasched.kube.binding import request_eviction
from lasched.kube.client import ClientOptions, KubeClient
from lasched.kube.election import LeaderElector, LeaseConfig
from lasched.kube.events import CONCURRENCY, EventRecorder
from lasched.kube.informers import Informer, StoreOnly
from lasched.kube.nativegroups import NativeGroups
from lasched.kube.nodelabels import patch_node_labels
from lasched.kube.owners import OwnerSizes
from lasched.kube.statuswriter import StatusWriter
from lasched.kube.tokenreview import agent_authenticator
from lasched.latency import goldpinger, snapshot
from lasched.latency import static as static_rtt
from lasched.latency.cache import LatencyCache
from lasched.latency.demand import LatencyDemand
from lasched.latency.hub import AgentHub, HubOptions
from lasched.latency.plan import Planner, planned_rtt
from lasched.latency.sitetask import SiteTask
from lasched.latency.upkeep import LatencyUpkeep
from lasched.model import selector
from lasched.model.namespace import Namespace
from lasched.model.node import Node
from lasched.model.numa import API_VERSION as NRT_API
from lasched.model.numa import NodeTopology
from lasched.model.pdb import PDB
from lasched.model.pod import PodInfo, PodKey
from lasched.model.podgroup import OwnerRef, PodGroup
from lasched.model.volume import Claim, CSINode, StorageClass, Volume
from lasched.plugins.coscheduling import Coscheduling, Group
from lasched.plugins.latency import CLOUD_ROLE, CLOUD_ROLE_LABEL, LatencyFilter, LatencyScore
from lasched.plugins.preemption import Evictions
from lasched.plugins.queuesort import PrioritySort
from lasched.profiles import Profile, build_framework
from lasched.queue.queue import QueueOptions, SchedulingQueue
from lasched.remediation.judge import Judge
from lasched.remediation.placement import Placer
from lasched.remediation.runner import Remediation, bound_pods
from lasched.settings import ConfigError, Settings
from lasched.tasks import TaskSet, supervised
from lasched.timers import TimerHeap

log = logging.getLogger(__name__)

PODGROUP_API = "scheduling.x-k8s.io/v1alpha1"

# The longest the cyclic collector waits for the informers' first lists (Scheduler._first_sync).
FIRST_SYNC_GC_PAUSE = 120.0

# How often the loop monitor looks at the clock (readiness: "the loop was blocked").
LOOP_MONITOR_INTERVAL = 0.25

# kube-scheduler's field selector: terminal pods hold no resources.
NON_TERMINAL_PODS = "status.phase!=Succeeded,status.phase!=Failed"


class Scheduler:
    """Builds the parts, runs them; what leads and what follows."""

    def __init__(
        self,
        client: KubeClient,
        settings: Settings,
        *,
        tune_gc: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``tune_gc``: the process is this scheduler's alone, so it may manage the
        garbage collector (see :meth:`_first_sync`); a program that embeds the
        scheduler keeps its collector as it is. ``clock``: what the timers, the queue,
        the waiting room, the gang state and the cycle read as now."""
        self.client = client
        self.settings = settings
        self.tune_gc = tune_gc
        self.cache = SchedulerCache()
        self.timers = TimerHeap(clock)
        self.waiting = WaitingRoom(timers=self.timers)
        self.latency = LatencyCache(ttl_seconds=settings.latency.ttl_seconds)
        self._load_static_file()
        le = settings.leader_election
        self.elector: LeaderElector | None = None
        if le.leader_elect:
            self.elector = LeaderElector(
                client,
                LeaseConfig(
                    identity=f"{socket.gethostname()}_{uuid.uuid4()}",
                    name=le.resource_name,
                    namespace=le.resource_namespace,
                    lease_duration=le.lease_duration_seconds,
                    renew_deadline=le.renew_deadline_seconds,
                    retry_period=le.retry_period_seconds,
                ),
            )
        # A group without a declared size asks its controller (a GET beside the loop).
        self.owner_sizes = OwnerSizes(client, on_read=self._owner_read, clock=clock)
        # One gang state for the process: a group's members may use several profiles.
        # Its hooks act through the cycle, built below: they run only once pods are tried.
        self.gang = Coscheduling(
            clock=clock,
            room=self.waiting,
            node_of=self.cache.node_of,
            on_release=lambda g: self.cycle.gang_released(g),  # noqa: PLW0108
            on_permitted=lambda g: self.cycle.gang_permitted(g),  # noqa: PLW0108
            on_hold=lambda g: self.cycle.gang_held(g),  # noqa: PLW0108
            podgroup=self.podgroup,
            native=lambda decl: self.native_groups.lookup(decl),  # noqa: PLW0108 (built below)
            on_outcome=self._gang_outcome,
            owner_size=self.owner_sizes.lookup,
            initial_backoff=settings.queue.initial_backoff_seconds,
            max_backoff=settings.queue.max_backoff_seconds,
            timers=self.timers,
        )
        self.latency_filter = LatencyFilter(
            self.latency,
            peer_nodes=functools.partial(peer_nodes, self.cache),
            group_nodes=functools.partial(group_nodes, self.cache, self.gang),
        )
        # The pending latency pods, and their controllers' still to come, planned together.
        self.latency_demand = LatencyDemand(owner_size=self.owner_sizes.lookup)
        self.latency_planner = Planner(
            self.latency_demand,
            nodes=self.cache.node_infos,
            rtt=functools.partial(planned_rtt, self.latency),
            version=lambda: (self.latency.version, self.cache.node_count()),
        )
        self.latency_score = LatencyScore(
            self.latency,
            planner=self.latency_planner if settings.latency.plan else None,
            peer_nodes=functools.partial(peer_nodes, self.cache),
            group_nodes=functools.partial(group_nodes, self.cache, self.gang),
            node_names=lambda: [ni.name for ni in self.cache.node_infos()],
            cloud_fallback=settings.latency.cloud_fallback,
        )
        # Preemption victims from the decision until the informer shows them gone.
        self.evictions = Evictions(self.cache.node_info)
        # What the volume plugins read: the storage informers' stores (built below, read
        # at call time) and the volumes and claims assumed over them.
        self.volumes = VolumeCache(
            claims=lambda: self.claim_informer.store,
            volumes=lambda: self.volume_informer.store,
            classes=lambda: self.class_informer.store,
            csinodes=lambda: self.csinode_informer.store,
        )
        # NUMA zones by node (NodeResourceTopology), with the holds of lasched's placements.
        self.topologies = Topologies(clock=clock)
        self.profiles = self._profiles()
        q = settings.queue
        self.queue = SchedulingQueue(
            QueueOptions(
                initial_backoff=q.initial_backoff_seconds,
                max_backoff=q.max_backoff_seconds,
                max_unschedulable=q.max_unschedulable_seconds,
                starvation_seconds=q.aging_starvation_seconds or None,
            ),
            clock=clock,
            sort_key=PrioritySort(
                points_per_minute=q.aging_points_per_minute, max_boost=q.aging_max_boost
            ).sort_key,
            pre_enqueue=functools.partial(pre_enqueue, self.profiles),
            hints={name: p.framework.queueing_hints for name, p in self.profiles.items()},
            timers=self.timers,
        )
        lat = settings.latency
        self.sites = self._sites()
        self.upkeep = LatencyUpkeep(
            timers=self.timers,
            on_event=self.queue.on_event,
            refresh_targets=lambda: self.hub.peers_changed(),  # noqa: PLW0108
            on_latency=self.sites.changed if self.sites is not None else lambda: None,
        )
        self.hub = AgentHub(
            self.latency,
            authenticator=agent_authenticator(client, lat),
            peers=self._node_addresses,
            endpoints=[
                proto.Target(id=e.name, address=e.address, kind="endpoint", port=e.port)
                for e in lat.endpoints
            ],
            on_change=self.upkeep.latency_changed,
            # NUMA zones from agents where no NodeResourceTopology is published.
            on_topology=lambda node, topo: self.topology_events.reported(node, topo),  # noqa: PLW0108
            options=HubOptions(interval_seconds=lat.report_interval_seconds),
        )
        self.binds = TaskSet("bind", settings.bind_concurrency)
        self.status_writer = StatusWriter(client, podgroup_api=PODGROUP_API)
        self.cycle = SchedulingCycle(
            queue=self.queue,
            cache=self.cache,
            profiles=self.profiles,
            waiting=self.waiting,
            gang=self.gang,
            evictions=self.evictions,
            status=self.status_writer,
            binds=self.binds,
            fresh=self.pod,
            resync=self._resync,
            leading=lambda: self.leading,
            placement_note=self.latency_filter.explain,
            on_placed=self._latency_placed,
            clock=clock,
        )
        parts = Parts(
            profiles=self.profiles,
            cache=self.cache,
            queue=self.queue,
            gang=self.gang,
            waiting=self.waiting,
            retried_now=self.cycle.retried_now,
            warnings=PodWarnings(self.profiles),
            invalidate_nodes=self.cycle.invalidate_nodes,
            peers_changed=self.upkeep.peers_changed,
            topologies=self.topologies,
            latency_demand=self.latency_demand,
        )
        self.pod_events = PodEvents(parts)
        self.node_events = NodeEvents(parts)
        idle = settings.health.watch_idle_timeout_seconds
        self.pod_informer: Informer[PodInfo] = Informer(
            client,
            path="/api/v1/pods",
            decode=PodInfo,
            handler=self.pod_events,
            field_selector=NON_TERMINAL_PODS,
            name="pods",
            idle_timeout=idle,
            on_error=parts.warnings.unreadable,
        )
        self.node_informer: Informer[Node] = Informer(
            client, path="/api/v1/nodes", decode=Node, handler=self.node_events, name="nodes",
            idle_timeout=idle,
        )  # fmt: skip
        self.pdb_informer: Informer[PDB] = Informer(
            client,
            path="/apis/policy/v1/poddisruptionbudgets",
            decode=PDB,
            handler=StoreOnly(),
            name="poddisruptionbudgets",
            idle_timeout=idle,
        )
        # A pod affinity term's namespaceSelector reads namespaces' labels.
        self.namespace_informer: Informer[Namespace] = Informer(
            client,
            path="/api/v1/namespaces",
            decode=Namespace,
            handler=StoreOnly(),
            name="namespaces",
            idle_timeout=idle,
        )
        self._build_group_informers(client, parts, idle)
        self._build_storage_informers(client, idle)
        self.remediation = self._remediation(clock)
        self._podgroups_served = self._topologies_served = False
        # Set once discovery has said whether NodeResourceTopologies are served: the first
        # cycle waits for it (and for their list), so no pod is placed blind to a node's
        # Topology Manager policy at start.
        self._topologies_known = asyncio.Event()
        self._loop_blocked_until = 0.0
        self._loop_blocked_for = 0.0
        metrics.track_queue(self.queue.counts)
        metrics.track_cache(self.cache.node_count, self.cache.pod_count, self.cache.assumed_count)

    def _load_static_file(self) -> None:
        """Pinned RTTs from ``latency.staticFile``, if one is set."""
        path = self.settings.latency.static_file
        if path:
            try:
                n = static_rtt.load(path, self.latency)
            except static_rtt.StaticFileError as e:
                raise ConfigError(f"latency.staticFile: {e}") from e
            log.info("loaded %d RTTs from %s", n, path)

    def _build_group_informers(self, client: KubeClient, parts: Parts, idle: float) -> None:
        """scheduler-plugins' PodGroups, and Kubernetes' own (or v1.35's Workloads)."""
        self.podgroup_informer: Informer[PodGroup] = Informer(
            client,
            path=f"/apis/{PODGROUP_API}/podgroups",
            decode=PodGroup,
            handler=PodGroupEvents(parts),
            name="podgroups",
            idle_timeout=idle,
        )
        # Kubernetes' own PodGroups (or v1.35's Workloads), in the shape the server serves.
        self.native_groups = NativeGroups(
            client, handler=PodGroupEvents(parts), status=self.status_writer, idle_timeout=idle
        )

    def _build_storage_informers(self, client: KubeClient, idle: float) -> None:
        """Claims, volumes, storage classes and CSINodes, read by the volume plugins; and
        NodeResourceTopologies, read by NodeResourceTopologyMatch."""
        self.topology_events = TopologyEvents(self.topologies, self.queue, cache=self.cache)
        topology_events = self.topology_events
        self.topology_informer: Informer[NodeTopology] = Informer(
            client,
            path=f"/apis/{NRT_API}/noderesourcetopologies",
            decode=NodeTopology,
            handler=topology_events,
            name="noderesourcetopologies",
            idle_timeout=idle,
            on_error=topology_events.unreadable,
        )
        self.claim_informer: Informer[Claim] = Informer(
            client, path="/api/v1/persistentvolumeclaims", decode=Claim,
            handler=StorageEvents(self.queue, self.volumes, EventResource.PERSISTENT_VOLUME_CLAIM),
            name="persistentvolumeclaims", idle_timeout=idle,
        )  # fmt: skip
        self.volume_informer: Informer[Volume] = Informer(
            client, path="/api/v1/persistentvolumes", decode=Volume,
            handler=StorageEvents(self.queue, self.volumes, EventResource.PERSISTENT_VOLUME),
            name="persistentvolumes", idle_timeout=idle,
        )  # fmt: skip
        self.class_informer: Informer[StorageClass] = Informer(
            client, path="/apis/storage.k8s.io/v1/storageclasses", decode=StorageClass,
            handler=StorageEvents(self.queue, self.volumes, EventResource.STORAGE_CLASS),
            name="storageclasses", idle_timeout=idle,
        )  # fmt: skip
        self.csinode_informer: Informer[CSINode] = Informer(
            client, path="/apis/storage.k8s.io/v1/csinodes", decode=CSINode,
            handler=StorageEvents(self.queue, self.volumes, EventResource.CSI_NODE),
            name="csinodes", idle_timeout=idle,
        )  # fmt: skip

    def _remediation(self, clock: Callable[[], float]) -> Remediation | None:
        """Latency remediation on the leader, when enabled (lasched.remediation)."""
        rs = self.settings.remediation
        if not rs.enabled:
            return None
        placer = Placer(profiles=self.profiles, cache=self.cache)
        client = self.client

        async def evict(pod: PodInfo) -> None:
            await request_eviction(client, namespace=pod.namespace, name=pod.name, uid=pod.uid)

        def recorder(pod: PodInfo) -> EventRecorder | None:
            profile = self.profiles.get(pod.scheduler_name)
            return profile.events if profile is not None else None

        return Remediation(
            judge=Judge(rs, latency=self.latency, placer=placer, clock=clock),
            interval=rs.interval_seconds,
            pods=lambda: bound_pods(self.cache, self.profiles),
            evict=evict,
            recorder=recorder,
            leading=lambda: self.leading,
        )

    def _sites(self) -> SiteTask | None:
        """Sites and tiers inferred from RTTs on the leader, when enabled (docs/latency.md)."""
        ts = self.settings.latency.topology
        if not ts.enabled:
            return None
        client = self.client

        async def patch(name: str, labels: Mapping[str, str | None]) -> None:
            await patch_node_labels(client, name, labels)

        return SiteTask(
            ts,
            latency=self.latency,
            nodes=lambda: self.node_informer.store.values(),  # noqa: PLW0108 (built later)
            patch=patch if ts.write_labels else None,
            is_cloud=lambda n: n.labels.get(CLOUD_ROLE_LABEL) == CLOUD_ROLE,
            leading=lambda: self.leading,
        )

    def _profiles(self) -> dict[str, Profile]:
        """Every profile of the settings, by scheduler name, sharing the parts above."""
        # Events on a pool of their own: a burst of them never waits for, or takes,
        # the connections the bindings use.
        events_client = self.client.companion(
            ClientOptions(max_connections=CONCURRENCY, user_agent="lasched/events")
        )
        return {
            p.scheduler_name: Profile(
                name=p.scheduler_name,
                framework=build_framework(
                    p,
                    self.settings,
                    client=self.client,
                    cache=self.cache,
                    gang=self.gang,
                    pdbs=self.pdbs,
                    latency=self.latency_filter,
                    latency_score=self.latency_score,
                    evictions=self.evictions,
                    namespace_labels=self._namespace_labels,
                    volumes=self.volumes,
                    topologies=self.topologies,
                ),
                events=EventRecorder(events_client, controller=p.scheduler_name),
            )
            for p in self.settings.profiles
        }

    # ---- reads of the informers' stores (replaced on a relist: read at call time) ----

    def _namespace_labels(self, name: str) -> Mapping[str, str] | None:
        ns = self.namespace_informer.store.get(name)
        return None if ns is None else ns.labels

    def pod(self, key: PodKey) -> PodInfo | None:
        """The pod as the informer last saw it; None when it is gone (or terminal)."""
        return self.pod_informer.store.get(key)

    def node(self, name: str) -> Node | None:
        return self.node_informer.store.get(name)

    def podgroup(self, key: str) -> PodGroup | None:
        return self.podgroup_informer.store.get(key)

    def _gang_outcome(self, g: Group, scheduled: bool, message: str) -> None:
        """A gang's round ended: a Kubernetes PodGroup's status says how."""
        if (decl := g.native()) is not None:
            self.native_groups.outcome(decl, scheduled=scheduled, message=message)

    def _latency_placed(self, pod: PodInfo, node: str) -> None:
        if pod.latency is not None:
            self.latency_planner.placed(pod, node)
            self.latency_demand.placed(pod)

    def _owner_read(self, namespace: str, ref: OwnerRef) -> None:
        """A controller's size was read (or changed): its group's gates may open, or its
        members settle now if it gave none."""
        self.latency_planner.invalidate()  # its pods still to come may count now
        members = self.gang.members_owned_by(namespace, ref.uid)
        self.queue.recheck_gated(members)
        pod = self.pod(members[0]) if members else None
        g = self.gang.group_of(pod) if pod is not None else None
        if g is not None and (settled := self.gang.settles_at(g)) is not None:
            self.queue.move_at(settled, self.gang.members_of(g.key), key=f"podgroup-settle/{g.key}")

    def pdbs(self) -> Iterable[PDB]:
        return self.pdb_informer.store.values()

    def _resync(self) -> None:
        """Rebuild the cache from the informers' stores (the apiserver's view)."""
        self.cache.rebuild(
            list(self.node_informer.store.values()), list(self.pod_informer.store.values())
        )

    def _node_addresses(self) -> dict[str, str]:
        return {n.name: ip for n in self.node_informer.store.values() if (ip := n.internal_ip)}

    # ---- life cycle ---------------------------------------------------------

    def _storage_informers(self) -> list[Informer[Any]]:
        return [
            self.claim_informer,
            self.volume_informer,
            self.class_informer,
            self.csinode_informer,
        ]

    @property
    def synced(self) -> bool:
        return (
            self.pod_informer.synced.is_set()
            and self.node_informer.synced.is_set()
            and all(inf.synced.is_set() for inf in self._storage_informers())
        )

    @property
    def leading(self) -> bool:
        return self.elector is None or self.elector.is_leading()

    def health(self) -> list[str]:
        """Why this replica is not ready (empty when it is): what ``/readyz`` reports.

        Informers that have heard nothing from the apiserver (no event, no
        bookmark) within their idle timeout, an event loop that was recently
        blocked, and a leader whose Lease renewals fail.
        """
        problems = []
        informers: list[Informer[Any]] = [self.pod_informer, self.node_informer]
        informers += [self.pdb_informer, self.namespace_informer, *self._storage_informers()]
        if self._podgroups_served:
            informers.append(self.podgroup_informer)
        if self._topologies_served:
            informers.append(self.topology_informer)
        if self.native_groups.informer is not None:
            informers.append(self.native_groups.informer)
        for inf in informers:
            if (why := inf.health()) is not None:
                problems.append(why)
        if time.monotonic() < self._loop_blocked_until:
            problems.append(f"event loop blocked for {self._loop_blocked_for:.1f} s recently")
        el = self.elector
        if el is not None and el.leading.is_set() and not el.is_leading():
            problems.append(f"leader cannot renew lease {el.config.namespace}/{el.config.name}")
        return problems

    async def wait_leading(self) -> None:
        """Followers stay warm (informers, cache, queue, agents) and wait here."""
        if self.elector is None:
            return
        await self.elector.leading.wait()
        metrics.leader_election_master_status.labels(self.elector.config.name).set(1)
        # Binds the previous leader made may still be arriving; the informers
        # have seen everything up to now, and anything later fails its
        # binding's UID precondition or conflicts, never double-binds.
        log.info("leading: scheduling %d pending pods", len(self.queue))

    async def wait_synced(self) -> None:
        """The nodes, the pods, what the volume plugins read and, when served, the
        NodeResourceTopologies are listed (a pod's claim is never taken for missing, nor a
        node's NUMA policy for absent, because an informer has not listed yet)."""
        await self.node_informer.synced.wait()
        await self.pod_informer.synced.wait()
        for inf in self._storage_informers():
            await inf.synced.wait()
        await self._topologies_known.wait()
        if self._topologies_served:
            await self.topology_informer.synced.wait()

    async def run(self) -> None:
        """Informers, event writers and the scheduling loop, until cancelled."""
        snapshot_file = self.settings.latency.snapshot_file
        if snapshot_file:
            await self._load_snapshot(snapshot_file)
        async with asyncio.TaskGroup() as tg:

            def guarded(name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
                """A named long-lived task whose unexpected failure is logged and restarted."""
                tg.create_task(supervised(name, body), name=name)

            lat = self.settings.latency
            if snapshot_file:
                guarded(
                    "latency-snapshot",
                    lambda: snapshot.run_periodic(
                        self.latency, snapshot_file, lat.snapshot_interval_seconds
                    ),
                )
            if lat.goldpinger_url:
                gp_url = lat.goldpinger_url
                guarded(
                    "goldpinger",
                    lambda: goldpinger.poll(
                        self.latency,
                        url=gp_url,
                        interval_seconds=lat.goldpinger_interval_seconds,
                        node_of_ip=lambda: {ip: n for n, ip in self._node_addresses().items()},
                        on_change=self.upkeep.latency_changed,
                    ),
                )
            guarded("loop-monitor", self._monitor_loop)
            guarded("informer-nodes", self.node_informer.run)
            guarded("informer-pods", self.pod_informer.run)
            guarded("informer-pdbs", self.pdb_informer.run)
            guarded("informer-namespaces", self.namespace_informer.run)
            for inf in self._storage_informers():
                guarded(f"informer-{inf.name}", inf.run)
            guarded("podgroup-api", lambda: self._podgroups_if_served(tg))
            guarded("nrt-api", lambda: self._topologies_if_served(tg))
            guarded("native-podgroups", self.native_groups.run)
            guarded("timers", self.timers.run)
            for p in self.profiles.values():
                guarded(f"events-{p.name}", p.events.run)
            if self.elector is not None:
                guarded("leader-election", self.elector.run)
            if self.remediation is not None:
                guarded("remediation", self._remediate)
            if self.sites is not None:
                guarded("sites", self._infer_sites)
            await self._first_sync()
            log.info(
                "informers synced nodes=%d pods=%d pending=%d",
                self.cache.node_count(), self.cache.pod_count(), len(self.queue),
            )  # fmt: skip
            while True:
                await self.wait_leading()
                try:
                    await self.cycle.scheduling_loop()
                except Exception:
                    # A bug outside any one pod's cycle (the queue itself): say so, go on.
                    log.exception("the scheduling loop failed; restarting it in 1 s")
                    metrics.task_restarts.labels("scheduling-loop").inc()
                    await asyncio.sleep(1.0)
                    continue
                if self.queue.closed:
                    return
                await self._step_down()

    async def _first_sync(self) -> None:
        """Wait for the informers' first lists; with ``tune_gc``, the cyclic collector rests.

        The cluster arrives as hundreds of thousands of long-lived objects, and
        every full collection on the way would traverse all of them again; once
        synced, what exists is frozen, out of the collector's full passes
        (docs/architecture.md, "The cyclic garbage collector"). An apiserver
        that never answers cannot keep the collector off for longer than
        :data:`FIRST_SYNC_GC_PAUSE`.
        """
        if not self.tune_gc:
            await self.wait_synced()
            return
        gc.disable()
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_SYNC_GC_PAUSE):
                    await self.wait_synced()
        finally:
            gc.freeze()
            gc.enable()
            heap.trim()
        await self.wait_synced()

    async def _remediate(self) -> None:
        """Remediation passes once the informers have listed (never on a partial view)."""
        assert self.remediation is not None
        await self.wait_synced()
        await self.remediation.run()

    async def _infer_sites(self) -> None:
        """Site passes once the informers have listed (every node known, with its labels)."""
        assert self.sites is not None
        await self.wait_synced()
        await self.sites.run()

    async def _load_snapshot(self, path: str) -> None:
        """A restarted scheduler starts with what it knew (entries keep their age)."""
        try:
            n = await snapshot.load(self.latency, path, now=time.time())
        except snapshot.SnapshotError as e:
            log.warning("%s; starting without the latency snapshot", e)
            return
        log.info("restored %d RTTs from the latency snapshot %s", n, path)

    async def _podgroups_if_served(self, tg: asyncio.TaskGroup) -> None:
        """Watch PodGroups when the cluster serves their API (asked until it answers)."""
        if not await discovery.serves(self.client, PODGROUP_API):
            log.info("no PodGroup API (%s) in this cluster; its pod groups are off", PODGROUP_API)
            return
        self._podgroups_served = True
        tg.create_task(
            supervised("informer-podgroups", self.podgroup_informer.run),
            name="informer-podgroups",
        )

    async def _topologies_if_served(self, tg: asyncio.TaskGroup) -> None:
        """Watch NodeResourceTopologies when the cluster serves their API (asked until it
        answers). Without it, NUMA policies of nodes are unknown: nodes pass, and pods that
        annotate a strict NUMA policy wait (docs/numa.md)."""
        served = await discovery.serves(self.client, NRT_API)
        self._topologies_served = served
        self._topologies_known.set()
        if not served:
            log.info(
                "no NodeResourceTopology API (%s) in this cluster; NUMA zones are unknown",
                NRT_API,
            )
            return
        tg.create_task(
            supervised("informer-noderesourcetopologies", self.topology_informer.run),
            name="informer-noderesourcetopologies",
        )

    async def _monitor_loop(self) -> None:
        """Measure how late the loop runs a timer; a long block makes readiness fail a while."""
        loop = asyncio.get_running_loop()
        threshold = self.settings.health.loop_blocked_seconds
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_MONITOR_INTERVAL)
            lag = loop.time() - before - LOOP_MONITOR_INTERVAL
            metrics.event_loop_lag.set(lag)
            if lag >= threshold:
                log.warning("the event loop was blocked for %.1f s", lag)
                self._loop_blocked_for = lag
                self._loop_blocked_until = time.monotonic() + threshold

    async def _step_down(self) -> None:
        """Leadership was lost: stop everything that writes decisions, stay warm."""
        assert self.elector is not None
        metrics.leader_election_master_status.labels(self.elector.config.name).set(0)
        for wp in list(self.waiting):
            wp.reject("leadership", "this scheduler stopped leading")
        # A bind not yet written must not race the next leader's decisions.
        await self.binds.cancel_all()
        log.warning(
            "stopped scheduling (%s); following, informers and agents stay warm",
            self.elector.lost_because or "not leading",
        )  # fmt: skip
        # Wait until the election task has seen the loss, so that wait_leading blocks.
        # A clock condition, not an event: the renewal may still succeed late.
        while self.elector.leading.is_set() and not self.elector.is_leading():  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def shutdown(self) -> None:
        """Stop dequeuing; let in-flight binds and events finish within the grace."""
        self.queue.close()
        for wp in self.waiting:
            wp.reject("shutdown", "the scheduler is shutting down")
        grace = self.settings.shutdown_grace_seconds
        await self.owner_sizes.reads.cancel_all()
        if self.remediation is not None:
            await self.remediation.evictions.cancel_all()
        if not await self.binds.drain(grace):
            log.warning("binds still in flight after %.0f s; abandoning them", grace)
            await self.binds.cancel_all()
        if self.elector is not None:
            # Binds are done: a follower may take over while events are flushed.
            await self.elector.release()
        await self.status_writer.drain(min(grace, 5.0))
        for p in self.profiles.values():
            try:
                await p.events.flush(min(grace, 5.0))
            except TimeoutError:
                log.warning("profile=%s events not all written before shutdown", p.name)


def peer_nodes(cache: SchedulerCache, namespace: str, sel: Mapping[str, Any]) -> set[str]:
    """Nodes of placed (bound or assumed) pods in ``namespace`` matching ``sel``."""
    return {
        ni.name
        for ni in cache.node_infos()
        for p in ni.pods.values()
        if p.namespace == namespace and selector.matches(sel, p.labels)
    }


def group_nodes(cache: SchedulerCache, gang: Coscheduling, pod: PodInfo) -> set[str]:
    """Nodes of the other placed members of ``pod``'s group (not of those terminating:
    a member on its way out no longer bounds where the others go)."""
    g = gang.group_of(pod)
    if g is None:
        return set()
    return {
        n
        for k, m in g.members.items()
        if k != pod.key and not m.deleting and (n := cache.node_of(k))
    }
