"""The scheduler: informers feed the cache and queue; one loop schedules.

One pod at a time goes through the **scheduling cycle**
(:meth:`Scheduler.schedule_one`), a plain synchronous call: PreFilter, Filter,
(PostFilter when nothing fits), PreScore, Score, then assume, Reserve and
Permit. Nothing in it awaits, so no informer event can change the cache
under it. The **binding cycle** (:meth:`Scheduler._binding_cycle`) then runs
beside the loop as a bounded background task: it waits at Permit if a plugin
asked to, writes the binding and the Event, and on any failure unreserves,
forgets the assumed pod and returns it to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

import lasched_protocol as proto
from lasched import metrics
from lasched.cache.cache import CacheError, NodeInfo, SchedulerCache
from lasched.eventhandlers import NodeEvents, PodEvents, PodGroupEvents
from lasched.framework.interface import Code, CycleState, PostFilterResult, Status
from lasched.framework.runtime import FitError, PluginError
from lasched.framework.waiting import WaitingPod, WaitingRoom
from lasched.kube import discovery
from lasched.kube.binding import (
    evict,
    set_nominated,
    set_podgroup_phase,
    set_unschedulable,
)
from lasched.kube.client import ApiError, KubeClient
from lasched.kube.election import LeaderElector, LeaseConfig
from lasched.kube.events import EventRecorder, ObjectRef
from lasched.kube.informers import Informer, StoreOnly
from lasched.kube.tokenreview import agent_authenticator
from lasched.latency import goldpinger, snapshot
from lasched.latency import static as static_rtt
from lasched.latency.cache import LatencyCache
from lasched.latency.hub import AgentHub, HubOptions
from lasched.model import selector
from lasched.model.node import Node
from lasched.model.pdb import PDB
from lasched.model.pod import PodInfo, PodKey
from lasched.model.podgroup import PodGroup
from lasched.plugins.coscheduling import Coscheduling, Group
from lasched.plugins.latency import LatencyFilter, LatencyScore
from lasched.plugins.preemption import Evictions
from lasched.plugins.queuesort import PrioritySort
from lasched.profiles import Profile, build_framework
from lasched.queue.queue import QueueClosed, QueuedPod, QueueOptions, SchedulingQueue
from lasched.settings import ConfigError, Settings
from lasched.tasks import TaskSet, supervised

log = logging.getLogger(__name__)

PODGROUP_API = "scheduling.x-k8s.io/v1alpha1"

# The longest the cyclic collector waits for the informers' first lists (Scheduler._first_sync).
FIRST_SYNC_GC_PAUSE = 120.0

# How often the loop monitor looks at the clock (readiness: "the loop was blocked").
LOOP_MONITOR_INTERVAL = 0.25

# kube-scheduler's field selector: terminal pods hold no resources.
NON_TERMINAL_PODS = "status.phase!=Succeeded,status.phase!=Failed"


@dataclass(slots=True)
class Attempt:
    """One pod between its scheduling cycle and the end of its binding cycle."""

    profile: Profile
    state: CycleState
    assumed: PodInfo
    first_seen: float
    attempts: int
    waiting: WaitingPod | None = None


class Scheduler:
    """Everything that schedules: cache, queue, profiles, informers, binder."""

    def __init__(self, client: KubeClient, settings: Settings, *, tune_gc: bool = False) -> None:
        """``tune_gc``: the process is this scheduler's alone, so it may manage the
        garbage collector (see :meth:`_first_sync`); a program that embeds the
        scheduler keeps its collector as it is."""
        self.client = client
        self.settings = settings
        self.tune_gc = tune_gc
        self.cache = SchedulerCache()
        self.waiting = WaitingRoom(time.monotonic)
        self.latency = LatencyCache(ttl_seconds=settings.latency.ttl_seconds)
        if settings.latency.static_file:
            try:
                n = static_rtt.load(settings.latency.static_file, self.latency)
            except static_rtt.StaticFileError as e:
                raise ConfigError(f"latency.staticFile: {e}") from e
            log.info("loaded %d RTTs from %s", n, settings.latency.static_file)
        self.latency_filter = LatencyFilter(
            self.latency, peer_nodes=self._peer_nodes, group_nodes=self._group_nodes
        )
        self.latency_score = LatencyScore(
            self.latency,
            peer_nodes=self._peer_nodes,
            group_nodes=self._group_nodes,
            cloud_fallback=settings.latency.cloud_fallback,
        )
        lat = settings.latency
        self.hub = AgentHub(
            self.latency,
            authenticator=agent_authenticator(client, lat),
            peers=self._node_addresses,
            endpoints=[
                proto.Target(id=e.name, address=e.address, kind="endpoint", port=e.port)
                for e in lat.endpoints
            ],
            on_change=self._latency_changed,
            options=HubOptions(interval_seconds=lat.report_interval_seconds),
        )
        self._latency_dirty = False
        # Members of admitted groups whose bind failed once and were retried at once.
        self.retried_now: set[PodKey] = set()
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
        self._peers_dirty = False
        self._peers_placed = False
        # One gang state for the process: a group's members may use several profiles.
        self.gang = Coscheduling(
            clock=time.monotonic,
            room=self.waiting,
            node_of=self.cache.node_of,
            on_release=self._gang_released,
            on_permitted=self._gang_permitted,
            podgroup=self._podgroup,
            initial_backoff=settings.queue.initial_backoff_seconds,
            max_backoff=settings.queue.max_backoff_seconds,
        )
        # Preemption victims from the decision until the informer shows them gone.
        self.evictions = Evictions(self.cache.node_info)
        self.profiles = {
            p.scheduler_name: Profile(
                name=p.scheduler_name,
                framework=build_framework(
                    p,
                    settings,
                    client=client,
                    cache=self.cache,
                    gang=self.gang,
                    pdbs=self.pdbs,
                    latency=self.latency_filter,
                    latency_score=self.latency_score,
                    evictions=self.evictions,
                ),
                events=EventRecorder(client, controller=p.scheduler_name),
            )
            for p in settings.profiles
        }
        q = settings.queue
        self.queue_sort = PrioritySort(
            points_per_minute=q.aging_points_per_minute, max_boost=q.aging_max_boost
        )
        self.queue = SchedulingQueue(
            QueueOptions(
                initial_backoff=q.initial_backoff_seconds,
                max_backoff=q.max_backoff_seconds,
                max_unschedulable=q.max_unschedulable_seconds,
                starvation_seconds=q.aging_starvation_seconds or None,
            ),
            sort_key=self.queue_sort.sort_key,
            pre_enqueue=self._pre_enqueue,
        )
        self.binds = TaskSet("bind", settings.bind_concurrency)
        self.status_writes = TaskSet("status", 16)
        # A pod's last status write in flight: its bind waits for it (see _pod_status).
        self._pod_status_writes: dict[PodKey, asyncio.Task[None]] = {}
        self._node_list: list[NodeInfo] | None = None
        self._warned: set[tuple[str, str]] = set()
        idle = settings.health.watch_idle_timeout_seconds
        self.pod_informer: Informer[PodInfo] = Informer(
            client,
            path="/api/v1/pods",
            decode=PodInfo,
            handler=PodEvents(self),
            field_selector=NON_TERMINAL_PODS,
            name="pods",
            idle_timeout=idle,
            on_error=self._pod_unreadable,
        )
        self.node_informer: Informer[Node] = Informer(
            client, path="/api/v1/nodes", decode=Node, handler=NodeEvents(self), name="nodes",
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
        self.podgroup_informer: Informer[PodGroup] = Informer(
            client,
            path=f"/apis/{PODGROUP_API}/podgroups",
            decode=PodGroup,
            handler=PodGroupEvents(self),
            name="podgroups",
            idle_timeout=idle,
        )
        self._podgroups_served = False
        self._loop_blocked_until = 0.0
        self._loop_blocked_for = 0.0
        metrics.track_queue(self.queue.counts)
        metrics.track_cache(self.cache.node_count, self.cache.pod_count, self.cache.assumed_count)

    # ---- life cycle ---------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.pod_informer.synced.is_set() and self.node_informer.synced.is_set()

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
        informers.append(self.pdb_informer)
        if self._podgroups_served:
            informers.append(self.podgroup_informer)
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
        await self.node_informer.synced.wait()
        await self.pod_informer.synced.wait()

    async def run(self) -> None:
        """Informers, event writers and the scheduling loop, until cancelled."""
        snapshot_file = self.settings.latency.snapshot_file
        if snapshot_file:
            await self._load_snapshot(snapshot_file)
        async with asyncio.TaskGroup() as tg:

            def guarded(name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
                """A named long-lived task whose unexpected failure is logged and restarted."""
                tg.create_task(supervised(name, body), name=name)

            if snapshot_file:
                guarded(
                    "latency-snapshot",
                    lambda: snapshot.run_periodic(
                        self.latency, snapshot_file, self.settings.latency.snapshot_interval_seconds
                    ),
                )
            if self.settings.latency.goldpinger_url:
                gp_url = self.settings.latency.goldpinger_url
                guarded(
                    "goldpinger",
                    lambda: goldpinger.poll(
                        self.latency,
                        url=gp_url,
                        interval_seconds=self.settings.latency.goldpinger_interval_seconds,
                        node_of_ip=lambda: {ip: n for n, ip in self._node_addresses().items()},
                        on_change=self._latency_changed,
                    ),
                )
            guarded("loop-monitor", self._monitor_loop)
            guarded("informer-nodes", self.node_informer.run)
            guarded("informer-pods", self.pod_informer.run)
            guarded("informer-pdbs", self.pdb_informer.run)
            guarded("podgroup-api", lambda: self._podgroups_if_served(tg))
            guarded("queue-flush", self.queue.run_flushes)
            guarded("permit-expiry", self._expire_waiting)
            guarded("latency-upkeep", self._latency_upkeep)
            for p in self.profiles.values():
                guarded(f"events-{p.name}", p.events.run)
            if self.elector is not None:
                guarded("leader-election", self.elector.run)
            await self._first_sync()
            log.info(
                "informers synced nodes=%d pods=%d pending=%d",
                self.cache.node_count(), self.cache.pod_count(), len(self.queue),
            )  # fmt: skip
            while True:
                await self.wait_leading()
                try:
                    await self.scheduling_loop()
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
        await self.wait_synced()

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

    def _pod_unreadable(self, raw: Mapping[str, Any], error: BaseException) -> None:
        """A pod the informer could not read: tell its owner where they look (an Event)."""
        meta = raw.get("metadata") or {}
        spec = raw.get("spec") or {}
        profile = self.profiles.get(str(spec.get("schedulerName", "")))
        if profile is None and spec:
            return  # another scheduler's pod
        name, uid = str(meta.get("name", "")), str(meta.get("uid", ""))
        if not name or not uid:
            return
        profile = profile or next(iter(self.profiles.values()))
        profile.events.record(
            ObjectRef(kind="Pod", namespace=str(meta.get("namespace", "")), name=name, uid=uid),
            type="Warning",
            reason="FailedScheduling",
            action="Scheduling",
            note=f"lasched could not process this pod ({type(error).__name__}: {error}); "
            "it is retried when the pod changes. The scheduler's log has the details.",
        )

    def _podgroup(self, key: str) -> PodGroup | None:
        return self.podgroup_informer.store.get(key)

    def pdbs(self) -> Iterable[PDB]:
        # The informer replaces its store on a relist: read it at call time.
        return self.pdb_informer.store.values()

    def _gang_permitted(self, g: Group) -> None:
        self._write_group_phase(g, "Scheduled")

    def _write_group_phase(self, g: Group, phase: str) -> None:
        """Groups backed by a PodGroup object show where they are in its status."""
        if not g.from_podgroup():
            return
        namespace, _, name = g.key.partition("/")
        self.status_writes.spawn(
            set_podgroup_phase(
                self.client, api=PODGROUP_API, namespace=namespace, name=name, phase=phase
            ),
            name=f"podgroup-{g.key}",
        )

    def _gang_released(self) -> None:
        """A group gave up its reservations or finished: waiting groups may go.

        A group that failed backs off. Its members tried meanwhile fail
        PreFilter and are parked, and no cluster event marks the end of the
        backoff: the queue moves them when it ends.
        """
        self.queue.move_all_to_active_or_backoff()
        now = time.monotonic()
        for g in self.gang.groups.values():
            if g.backoff_until > now:
                self.queue.move_at(
                    g.backoff_until, self._members_of(g.key), key=f"podgroup-backoff/{g.key}"
                )

    def _members_of(self, group: str) -> Callable[[PodInfo], bool]:
        def member(pod: PodInfo) -> bool:
            g = self.gang.group_of(pod)
            return g is not None and g.key == group

        return member

    def _peer_nodes(self, namespace: str, sel: Mapping[str, Any]) -> set[str]:
        """Nodes of placed (bound or assumed) pods in ``namespace`` matching ``sel``."""
        return {
            ni.name
            for ni in self.cache.node_infos()
            for p in ni.pods.values()
            if p.namespace == namespace and selector.matches(sel, p.labels)
        }

    def _group_nodes(self, pod: PodInfo) -> set[str]:
        g = self.gang.group_of(pod)
        if g is None:
            return set()
        return {n for k in g.members if k != pod.key and (n := self.cache.node_of(k))}

    def _node_addresses(self) -> dict[str, str]:
        return {n.name: ip for n in self.node_informer.store.values() if (ip := n.internal_ip)}

    def _latency_changed(self) -> None:
        self._latency_dirty = True

    def peers_changed(self) -> None:
        """The node list or a node's address changed: agents need new targets."""
        self._peers_dirty = True

    def pod_placed(self) -> None:
        """A pod was bound: pods waiting for latency peers may now have some."""
        self._peers_placed = True

    async def _latency_upkeep(self, interval: float = 1.0) -> None:
        """Coalesce latency changes and node-list changes into one action per interval.

        Agents report every few seconds each; moving the unschedulable pool or
        recomputing every agent's target list once per report would cost
        O(agents) work per second for nothing.
        """
        while True:
            await asyncio.sleep(interval)
            if self._latency_dirty:
                self._latency_dirty = False
                if self.queue.move_all_to_active_or_backoff(lambda p: p.latency is not None):
                    metrics.latency_requeues.inc()
            if self._peers_placed:
                self._peers_placed = False
                self.queue.move_all_to_active_or_backoff(
                    lambda p: p.latency is not None and p.latency.peers is not None
                )
            if self._peers_dirty:
                self._peers_dirty = False
                self.hub.peers_changed()

    async def _expire_waiting(self, interval: float = 0.05) -> None:
        """Group timeouts first (one message for the whole group), then per-pod ones."""
        while True:
            await asyncio.sleep(interval)
            self.gang.expire()
            self.waiting.expire()

    async def scheduling_loop(self) -> None:
        """Schedule one pod after another while leading; returns when not (or closed)."""
        while True:
            if not self.leading:
                return
            try:
                qp = await self.queue.pop()
            except QueueClosed:
                return
            if not self.leading:  # lost while waiting for a pod: leave it for the next leader
                self.queue.unpop(qp)
                return
            try:
                self.schedule_one(qp)
            except Exception as e:
                # A bug, in a plugin or here: this pod's attempt is an error, the loop goes on.
                log.exception("pod=%s scheduling cycle failed", qp.pod.key)
                if self.queue.get(qp.key) is qp and qp.where == "in-flight":
                    # Not handed to a binding cycle: nothing may stay assumed.
                    self.cache.forget(qp.pod)
                    self.queue.requeue_error(qp, reason=f"internal error: {type(e).__name__}: {e}")
            # pop() does not suspend while activeQ has pods: let informers,
            # binds and events run between cycles.
            await asyncio.sleep(0)

    async def shutdown(self) -> None:
        """Stop dequeuing; let in-flight binds and events finish within the grace."""
        self.queue.close()
        for wp in self.waiting:
            wp.reject("shutdown", "the scheduler is shutting down")
        grace = self.settings.shutdown_grace_seconds
        if not await self.binds.drain(grace):
            log.warning("binds still in flight after %.0f s; abandoning them", grace)
            await self.binds.cancel_all()
        if self.elector is not None:
            # Binds are done: a follower may take over while events are flushed.
            await self.elector.release()
        await self.status_writes.drain(min(grace, 5.0))
        for p in self.profiles.values():
            try:
                await p.events.flush(min(grace, 5.0))
            except TimeoutError:
                log.warning("profile=%s events not all written before shutdown", p.name)

    # ---- the scheduling cycle -------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        if self._node_list is None:
            self._node_list = list(self.cache.node_infos())
        return self._node_list

    def _pre_enqueue(self, pod: PodInfo) -> str | None:
        profile = self.profiles.get(pod.scheduler_name)
        if profile is None:
            return None
        try:
            st = profile.framework.run_pre_enqueue(pod)
        except PluginError as e:  # logged and counted where it was raised
            # kube-scheduler keeps a pod whose PreEnqueue failed gated; a later event retries it.
            return f"PreEnqueue failed: {e}"
        return None if st.ok else st.message

    def schedule_one(self, qp: QueuedPod) -> None:
        pod = qp.pod
        profile = self.profiles.get(pod.scheduler_name)
        if profile is None or pod.deleting or self.cache.node_of(pod.key) is not None:
            self.queue.done(pod.key)
            return
        started = time.perf_counter()
        fw = profile.framework
        state = CycleState()
        try:
            result = fw.schedule(state, pod, self.nodes(), cycle=qp.cycle)
            if isinstance(result, FitError):
                nominated = fw.run_post_filters(state, pod, result) if fw.post_filters else None
                self._unschedulable(profile, qp, result.summary(), nominated=nominated)
                self._observe(profile, "unschedulable", started)
                return
            assumed = self.cache.assume(pod, result.node)
        except PluginError as e:
            log.error("pod=%s scheduling error: %s", pod.key, e)
            self._record_failure(profile, pod, str(e))
            self.queue.requeue_error(qp, reason=str(e))
            self._observe(profile, "error", started)
            return
        except CacheError as e:
            fw.forget_batch()
            log.error("pod=%s %s; rebuilding the cache from the informers", pod.key, e)
            self.resync()
            self.queue.requeue_error(qp, reason=str(e))
            self._observe(profile, "error", started)
            return

        attempt = Attempt(profile, state, assumed, qp.first_seen, qp.attempts)
        st = fw.run_reserve(state, assumed, result.node)
        permit, waits = st, dict[str, float]()
        if st.ok:
            try:
                permit, waits = fw.run_permit(state, assumed, result.node)
            except PluginError as e:
                permit = e.as_status()
        if not (permit.ok or permit.code is Code.WAIT):
            if st.ok:
                fw.run_unreserve(state, assumed, result.node)
            self.cache.forget(assumed)
            fw.forget_batch()
            self._not_permitted(profile, qp, permit, started)
            return
        if permit.code is Code.WAIT:
            attempt.waiting = self.waiting.add(assumed, result.node, waits)
        self.queue.done(pod.key)
        self._observe(profile, "scheduled", started)
        log.debug(
            "pod=%s node=%s evaluated=%d feasible=%d took_ms=%.2f",
            pod.key, result.node, result.evaluated, result.feasible,
            (time.perf_counter() - started) * 1000,
        )  # fmt: skip
        self.binds.spawn(self._binding_cycle(attempt), name=str(pod.key))

    def _not_permitted(
        self, profile: Profile, qp: QueuedPod, status: Status, started: float
    ) -> None:
        """Reserve or Permit refused the pod, or a plugin there failed."""
        if status.code is Code.ERROR:
            # A plugin's bug, not a verdict on the pod: retry with backoff.
            self._record_failure(profile, qp.pod, status.message)
            self.queue.requeue_error(qp, reason=status.message)
            self._observe(profile, "error", started)
        else:
            self._unschedulable(profile, qp, status.message)
            self._observe(profile, "unschedulable", started)

    def _unschedulable(
        self,
        profile: Profile,
        qp: QueuedPod,
        message: str,
        *,
        nominated: PostFilterResult | None = None,
    ) -> None:
        log.info("pod=%s unschedulable: %s", qp.pod.key, message)
        node = None
        if nominated is not None:
            node = nominated.nominated_node
            self._preempt(profile, qp.pod, nominated)
        self._record_failure(profile, qp.pod, message, nominated_node=node)
        self.queue.requeue_unschedulable(qp, reason=message)

    def _preempt(self, profile: Profile, pod: PodInfo, result: PostFilterResult) -> None:
        """Nominate the node (holding its room) and evict the victims beside the loop.

        The victims are terminating from here on (:class:`Evictions`), so
        attempts before the informer shows them gone wait instead of
        preempting again: each victim is evicted, and told, once.
        """
        node = result.nominated_node
        self.cache.nominate(pod, node)
        for other, other_node in result.nominations:
            self.cache.nominate(other, other_node)
            self._pod_status(
                other,
                set_nominated(
                    self.client, namespace=other.namespace, name=other.name, node=other_node
                ),
                name=f"nominate-{other.key}",
            )
        victims = self.evictions.begin(result.victims)
        metrics.preemption_attempts.inc()
        metrics.preemption_victims.observe(len(victims))
        log.info(
            "pod=%s preempting node=%s victims=%s",
            pod.key, node, ",".join(v.key for v in victims),
        )  # fmt: skip
        for victim in victims:
            self.status_writes.spawn(self._evict(profile, pod, victim), name=f"evict-{victim.key}")

    async def _evict(self, profile: Profile, preemptor: PodInfo, victim: PodInfo) -> None:
        """Delete one victim; its Preempted event names its own node (a group's victims
        are on several).

        Cancelling is safe: the victim then counts as terminating only once the
        informer shows it so, and may otherwise be chosen again.
        """
        try:
            await evict(self.client, namespace=victim.namespace, name=victim.name, uid=victim.uid)
        except asyncio.CancelledError:
            self.evictions.failed(victim)
            raise
        except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as e:
            # Not evicted: the victim runs on, and the preemptor may choose again.
            log.warning(
                "pod=%s not evicted for pod=%s: %s: %s",
                victim.key, preemptor.key, type(e).__name__, e,
            )  # fmt: skip
            self.evictions.failed(victim)
            self.queue.move_all_to_active_or_backoff(lambda p: p.key == preemptor.key)
            return
        profile.events.record(
            ref(victim), type="Normal", reason="Preempted", action="Preempting",
            note=f"Preempted by pod {preemptor.key} on node {victim.node_name}",
        )  # fmt: skip

    @staticmethod
    def _observe(profile: Profile, result: str, started: float) -> None:
        metrics.schedule_attempts.labels(result, profile.name).inc()
        metrics.scheduling_attempt_duration.labels(result, profile.name).observe(
            time.perf_counter() - started
        )

    def _record_failure(
        self, profile: Profile, pod: PodInfo, message: str, *, nominated_node: str | None = None
    ) -> None:
        profile.events.record(
            ref(pod), type="Warning", reason="FailedScheduling", action="Scheduling", note=message
        )
        self._pod_status(
            pod,
            set_unschedulable(
                self.client,
                namespace=pod.namespace,
                name=pod.name,
                message=message,
                nominated_node=nominated_node,
            ),
            name=str(pod.key),
        )

    def _pod_status(self, pod: PodInfo, write: Coroutine[Any, Any, None], *, name: str) -> None:
        """Write a pod's status beside the loop, remembered until done.

        A failure's ``PodScheduled=False`` (and ``nominatedNodeName``) must
        reach the apiserver before the pod's binding: arriving after, it
        would mark a bound pod unschedulable, and the apiserver refuses a
        nominated node on a bound pod. A preemptor can be bound within
        milliseconds of its failed attempt, so the bind waits for this write.
        """
        previous = self._pod_status_writes.get(pod.key)

        async def ordered() -> None:
            if previous is not None:
                try:
                    await asyncio.wait([previous])
                except asyncio.CancelledError:
                    write.close()  # never started: no "never awaited" warning at shutdown
                    raise
            try:
                await write
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as e:
                # The apiserver went away or refused: the next attempt writes the status again.
                log.warning("pod=%s status not written: %s: %s", pod.key, type(e).__name__, e)

        task = self.status_writes.spawn(ordered(), name=name)
        self._pod_status_writes[pod.key] = task

        def forget(t: asyncio.Task[None], key: PodKey = pod.key) -> None:
            if self._pod_status_writes.get(key) is t:
                del self._pod_status_writes[key]

        task.add_done_callback(forget)

    async def _pod_status_written(self, key: PodKey) -> None:
        task = self._pod_status_writes.get(key)
        if task is not None:
            await asyncio.wait([task])  # its failure is logged by the TaskSet, not raised here

    # ---- the binding cycle ----------------------------------------------------

    async def _binding_cycle(self, a: Attempt) -> None:
        """Permit wait, then bind. Every path that does not bind unreserves and forgets."""
        pod, node = a.assumed, a.assumed.node_name
        bound = False
        try:
            if a.waiting is not None:
                verdict = await a.waiting.result()
                self.waiting.remove(pod.key)
                if not verdict.ok:
                    self._failed_after_reserve(a, verdict)
                    return
            await self._pod_status_written(pod.key)
            if not self.leading:
                # Paused or cut off past the renew deadline: the next leader decides.
                self._requeue(pod, "this scheduler stopped leading before the bind", error=True)
                return
            t0 = time.perf_counter()
            st = await a.profile.framework.run_bind(a.state, pod, node)
            metrics.binding_duration.observe(time.perf_counter() - t0)
            bound = st.code is Code.SUCCESS
            if bound:
                self._bound(a)
            elif st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                # Bound elsewhere or deleted: the informer brings the truth; never rebind.
                log.info("pod=%s bind to node=%s: %s", pod.key, node, st.message)
            else:
                a.profile.events.record(
                    ref(pod), type="Warning", reason="FailedScheduling", action="Scheduling",
                    note=st.message,
                )  # fmt: skip
                self._requeue(pod, st.message, error=True)
        except asyncio.CancelledError:
            # Abandoned (the scheduler stepped down or is stopping): the pod left the
            # queue when it was assumed, so it goes back, or it would never be tried again.
            # A binding already written is seen by the informer; a second one conflicts.
            self._requeue(pod, "its binding was abandoned", error=True)
            raise
        finally:
            if not bound:
                a.profile.framework.run_unreserve(a.state, pod, node)
                self.cache.forget(pod)
                # The room it held is free again, and pods parked meanwhile may fit: no
                # informer event says so (kube-scheduler moves them as for a deleted pod).
                self.queue.move_all_to_active_or_backoff()

    def _member_bind_failed(self, pod: PodInfo, g: Group, reason: str) -> None:
        placed, need = self.gang.placed(g), self.gang.required(g) or len(g.members)
        log.warning(
            "pod=%s bind failed after pod group %s was admitted (%d of %d placed): %s",
            pod.key, g.key, placed, need, reason,
        )  # fmt: skip
        profile = self.profiles.get(pod.scheduler_name)
        if profile is not None:
            profile.events.record(
                ref(pod), type="Warning", reason="GroupMemberBindFailed", action="Binding",
                note=f"pod group {g.key} was admitted but this member's bind failed "
                f"({placed} of {need} placed); retrying: {reason}",
            )  # fmt: skip
        if placed < need:
            self._write_group_phase(g, "Scheduling")

    def _bound(self, a: Attempt) -> None:
        pod = a.assumed
        if pod.key in self.retried_now:
            self.retried_now.discard(pod.key)
            g = self.gang.group_of(pod)
            if g is not None and self.gang.placed(g) >= (self.gang.required(g) or len(g.members)):
                self._write_group_phase(g, "Scheduled")
        metrics.pod_scheduling_sli_duration.labels(str(min(a.attempts, 15))).observe(
            time.monotonic() - a.first_seen
        )
        a.profile.events.record(
            ref(pod),
            type="Normal",
            reason="Scheduled",
            action="Binding",
            note=self._scheduled_note(pod),
        )

    def _scheduled_note(self, pod: PodInfo) -> str:
        note = f"Successfully assigned {pod.key} to {pod.node_name}"
        if pod.latency is not None and (why := self.latency_filter.explain(pod, pod.node_name)):
            note += f": {why}"
        return note

    def _failed_after_reserve(self, a: Attempt, verdict: Status) -> None:
        """Permit rejected or timed out: the pod goes back as unschedulable."""
        message = verdict.message or "rejected at permit"
        log.info("pod=%s rejected at permit: %s", a.assumed.key, message)
        self._record_failure(a.profile, a.assumed, message)
        self._requeue(a.assumed, message, error=False)

    def _requeue(self, pod: PodInfo, reason: str, *, error: bool) -> None:
        """Return a pod that left the queue (assumed) after its binding cycle failed."""
        fresh = self.pod_informer.store.get(pod.key)
        if fresh is None or fresh.bound or fresh.uid != pod.uid:
            return
        self.queue.add(fresh)
        qp = self.queue.get(fresh.key)
        if qp is None or qp.where != "active":
            return
        qp.attempts += 1
        group = self.gang.group_of(fresh)
        if error and group is not None and group.permitted:
            self._member_bind_failed(fresh, group, reason)
            if fresh.key not in self.retried_now:
                # The rest of its group is bound: retry this member at once, once;
                # a second failure backs off like any other error.
                self.retried_now.add(fresh.key)
                log.info("pod=%s member of bound pod group %s: retrying now", fresh.key, group.key)
                return
        if error:
            self.queue.requeue_error(qp, reason=reason)
        else:
            self.queue.requeue_unschedulable(qp, reason=reason)

    # ---- cache upkeep -----------------------------------------------------------

    def invalidate_nodes(self) -> None:
        self._node_list = None

    def resync(self) -> None:
        """Rebuild the cache from the informers' stores (the apiserver's view)."""
        self.cache.rebuild(
            list(self.node_informer.store.values()), list(self.pod_informer.store.values())
        )
        self.invalidate_nodes()

    def warn_invalid(self, pod: PodInfo, reason: str, message: str) -> None:
        """One Warning Event per pod and problem, however often the pod is updated."""
        key = (pod.uid, message)
        if key in self._warned:
            return
        self._warned.add(key)
        profile = self.profiles.get(pod.scheduler_name)
        if profile is not None:
            log.warning("pod=%s %s", pod.key, message)
            profile.events.record(
                ref(pod), type="Warning", reason=reason, action="Scheduling", note=message
            )

    def forget_warnings(self, pod: PodInfo) -> None:
        self._warned = {k for k in self._warned if k[0] != pod.uid}


def ref(pod: PodInfo) -> ObjectRef:
    return ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name, uid=pod.uid)
