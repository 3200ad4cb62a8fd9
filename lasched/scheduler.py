"""The scheduler: informers feed the cache and queue; one loop schedules.

One pod at a time goes through the **scheduling cycle** (:meth:`Scheduler.schedule_one`),
a plain synchronous call: filter, score, assume. Nothing in it awaits, so no
informer event can change the cache under it. The **binding cycle** then runs
beside the loop as a bounded background task: it writes the binding and the
Event, and on failure forgets the assumed pod and returns it to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import CycleState
from lasched.framework.runtime import FitError, Framework, PluginError
from lasched.kube.binding import BindOutcome, bind, set_unschedulable
from lasched.kube.client import ApiError, KubeClient
from lasched.kube.events import EventRecorder, ObjectRef
from lasched.kube.informers import Informer
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.plugins.nodeunschedulable import NodeUnschedulable
from lasched.plugins.tainttoleration import TaintToleration
from lasched.queue.queue import QueueClosed, QueuedPod, QueueOptions, SchedulingQueue
from lasched.settings import ProfileSettings, Settings
from lasched.tasks import TaskSet

log = logging.getLogger(__name__)

# kube-scheduler's field selector: terminal pods hold no resources.
NON_TERMINAL_PODS = "status.phase!=Succeeded,status.phase!=Failed"


@dataclass(slots=True)
class Profile:
    """A scheduler name, the plugins that serve it, and its event recorder."""

    name: str
    framework: Framework
    events: EventRecorder


def build_framework(profile: ProfileSettings, settings: Settings) -> Framework:
    fit = NodeResourcesFit(profile.scoring_strategy)
    taints = TaintToleration()
    return Framework(
        pre_filters=[],
        filters=[NodeUnschedulable(), taints, fit],
        scores=[(fit, 1), (taints, 3)],
        percentage_of_nodes_to_score=settings.percentage_of_nodes_to_score,
    )


class Scheduler:
    """Everything that schedules: cache, queue, profiles, informers, binder."""

    def __init__(self, client: KubeClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.cache = SchedulerCache()
        self.queue = SchedulingQueue(
            QueueOptions(
                initial_backoff=settings.queue.initial_backoff_seconds,
                max_backoff=settings.queue.max_backoff_seconds,
                max_unschedulable=settings.queue.max_unschedulable_seconds,
            )
        )
        self.profiles = {
            p.scheduler_name: Profile(
                name=p.scheduler_name,
                framework=build_framework(p, settings),
                events=EventRecorder(client, controller=p.scheduler_name),
            )
            for p in settings.profiles
        }
        self.binds = TaskSet("bind", settings.bind_concurrency)
        self.status_writes = TaskSet("status", 16)
        self._node_list: list[NodeInfo] | None = None
        self.pod_informer: Informer[PodInfo] = Informer(
            client,
            path="/api/v1/pods",
            decode=PodInfo,
            key=lambda p: p.key,
            version=lambda p: p.resource_version,
            handler=_PodEvents(self),
            field_selector=NON_TERMINAL_PODS,
            name="pods",
        )
        self.node_informer: Informer[Node] = Informer(
            client,
            path="/api/v1/nodes",
            decode=Node,
            key=lambda n: n.name,
            version=lambda n: n.resource_version,
            handler=_NodeEvents(self),
            name="nodes",
        )
        self.scheduled = 0
        self.failed = 0

    # ---- life cycle ---------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.pod_informer.synced.is_set() and self.node_informer.synced.is_set()

    async def wait_synced(self) -> None:
        await self.node_informer.synced.wait()
        await self.pod_informer.synced.wait()

    async def run(self) -> None:
        """Informers, event writers and the scheduling loop, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.node_informer.run(), name="informer-nodes")
            tg.create_task(self.pod_informer.run(), name="informer-pods")
            tg.create_task(self.queue.run_flushes(), name="queue-flush")
            for p in self.profiles.values():
                tg.create_task(p.events.run(), name=f"events-{p.name}")
            await self.wait_synced()
            log.info(
                "informers synced nodes=%d pods=%d pending=%d",
                self.cache.node_count(), self.cache.pod_count(), len(self.queue),
            )  # fmt: skip
            await self.scheduling_loop()

    async def scheduling_loop(self) -> None:
        while True:
            try:
                qp = await self.queue.pop()
            except QueueClosed:
                return
            self.schedule_one(qp)
            # pop() does not suspend while activeQ has pods: let informers,
            # binds and events run between cycles.
            await asyncio.sleep(0)

    async def shutdown(self) -> None:
        """Stop dequeuing; let in-flight binds and events finish within the grace."""
        self.queue.close()
        grace = self.settings.shutdown_grace_seconds
        if not await self.binds.drain(grace):
            log.warning("binds still in flight after %.0f s; abandoning them", grace)
            await self.binds.cancel_all()
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

    def schedule_one(self, qp: QueuedPod) -> None:
        pod = qp.pod
        profile = self.profiles.get(pod.scheduler_name)
        if profile is None or pod.deleting or self.cache.node_of(pod.key) is not None:
            self.queue.done(pod.key)
            return
        started = time.perf_counter()
        try:
            result = profile.framework.schedule(CycleState(), pod, self.nodes())
        except PluginError as e:
            log.error("pod=%s scheduling error: %s", pod.key, e)
            self._record_failure(profile, qp, str(e))
            self.queue.requeue_error(qp, reason=str(e))
            return
        if isinstance(result, FitError):
            message = result.summary()
            log.info("pod=%s unschedulable: %s", pod.key, message)
            self._record_failure(profile, qp, message)
            self.queue.requeue_unschedulable(qp, reason=message)
            return
        assumed = self.cache.assume(pod, result.node)
        self.queue.done(pod.key)
        log.debug(
            "pod=%s node=%s evaluated=%d feasible=%d took_ms=%.2f",
            pod.key, result.node, result.evaluated, result.feasible,
            (time.perf_counter() - started) * 1000,
        )  # fmt: skip
        self.binds.spawn(self._bind(profile, assumed), name=str(pod.key))

    def _record_failure(self, profile: Profile, qp: QueuedPod, message: str) -> None:
        self.failed += 1
        pod = qp.pod
        profile.events.record(
            _ref(pod), type="Warning", reason="FailedScheduling", action="Scheduling", note=message
        )
        self.status_writes.spawn(
            set_unschedulable(self.client, namespace=pod.namespace, name=pod.name, message=message),
            name=str(pod.key),
        )

    # ---- the binding cycle ----------------------------------------------------

    async def _bind(self, profile: Profile, assumed: PodInfo) -> None:
        """Write the binding; every path ends the assumption (confirm or forget)."""
        node = assumed.node_name
        outcome: BindOutcome | None
        try:
            outcome = await bind(
                self.client,
                namespace=assumed.namespace,
                name=assumed.name,
                uid=assumed.uid,
                node=node,
            )
        except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as e:
            outcome = await self._resolve_ambiguous(assumed, e)
            if outcome is None:  # definitely not bound
                self.cache.forget(assumed)
                profile.events.record(
                    _ref(assumed),
                    type="Warning",
                    reason="FailedScheduling",
                    action="Scheduling",
                    note=f"Binding rejected: {e}",
                )
                self._retry(assumed, f"binding to {node} failed: {e}")
                return
        if outcome is BindOutcome.BOUND:
            self.scheduled += 1
            profile.events.record(
                _ref(assumed),
                type="Normal",
                reason="Scheduled",
                action="Binding",
                note=f"Successfully assigned {assumed.key} to {node}",
            )
            return
        # ALREADY_ASSIGNED or GONE: the informer brings the truth; never rebind.
        log.info("pod=%s bind to node=%s: %s", assumed.key, node, outcome.value)
        self.cache.forget(assumed)

    async def _resolve_ambiguous(self, pod: PodInfo, err: Exception) -> BindOutcome | None:
        """After an error whose outcome is unknown, read the pod before retrying."""
        if isinstance(err, ApiError) and err.status < 500 and err.status != 429:
            return None  # a definite rejection
        try:
            current = await self.client.get(f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}")
        except ApiError as e:
            return BindOutcome.GONE if e.not_found else None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        if (current.get("metadata") or {}).get("uid") != pod.uid:
            return BindOutcome.GONE
        bound_to = (current.get("spec") or {}).get("nodeName")
        if bound_to == pod.node_name:
            return BindOutcome.BOUND
        if bound_to:
            return BindOutcome.ALREADY_ASSIGNED
        return None

    def _retry(self, pod: PodInfo, reason: str) -> None:
        log.warning("pod=%s %s; retrying with backoff", pod.key, reason)
        fresh = self.pod_informer.store.get(pod.key)
        if fresh is None or fresh.bound or fresh.uid != pod.uid:
            return
        self.queue.add(fresh)
        qp = self.queue.get(fresh.key)
        if qp is not None:
            qp.attempts += 1
            self.queue.requeue_error(qp, reason=reason)

    def invalidate_nodes(self) -> None:
        self._node_list = None


def _ref(pod: PodInfo) -> ObjectRef:
    return ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name, uid=pod.uid)


class _PodEvents:
    """Routes pod changes: bound pods to the cache, pending ones of ours to the queue."""

    def __init__(self, s: Scheduler) -> None:
        self.s = s

    def _ours(self, pod: PodInfo) -> bool:
        return pod.scheduler_name in self.s.profiles

    def on_add(self, pod: PodInfo) -> None:
        if pod.bound:
            if not pod.terminal:
                self.s.cache.add_pod(pod)
            self.s.queue.delete(pod.key)
        elif self._ours(pod) and not pod.deleting:
            self.s.queue.add(pod)

    def on_update(self, old: PodInfo, new: PodInfo) -> None:
        if new.bound:
            if new.terminal:
                self.on_delete(new)
                return
            self.s.cache.update_pod(new)
            self.s.queue.delete(new.key)
        elif self._ours(new):
            if new.deleting:
                self.s.queue.delete(new.key)
            elif not self.s.cache.is_assumed(new.key):
                self.s.queue.update(new)

    def on_delete(self, pod: PodInfo) -> None:
        self.s.queue.delete(pod.key)
        if self.s.cache.node_of(pod.key) is not None:
            self.s.cache.remove_pod(pod.key)
            self.s.queue.move_all_to_active_or_backoff()


class _NodeEvents:
    def __init__(self, s: Scheduler) -> None:
        self.s = s

    def on_add(self, node: Node) -> None:
        self.s.cache.add_node(node)
        self.s.invalidate_nodes()
        self.s.queue.move_all_to_active_or_backoff()

    def on_update(self, old: Node, new: Node) -> None:
        self.s.cache.update_node(new)
        if _schedulable_change(old, new):
            self.s.invalidate_nodes()
            self.s.queue.move_all_to_active_or_backoff()

    def on_delete(self, node: Node) -> None:
        self.s.cache.remove_node(node.name)
        self.s.invalidate_nodes()


def _schedulable_change(old: Node, new: Node) -> bool:
    """Did anything that filters read change? Heartbeats alone do not count."""
    return (
        old.ready != new.ready
        or old.unschedulable != new.unschedulable
        or old.labels != new.labels
        or repr(old.taints) != repr(new.taints)
        or old.allocatable != new.allocatable
    )
