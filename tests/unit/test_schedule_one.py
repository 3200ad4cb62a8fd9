"""The scheduling cycle and its binding cycle, one pod at a time, with fakes for the API.

As kube-scheduler's ``TestSchedulerScheduleOne``: each case sends one pod
through :meth:`SchedulingCycle.schedule_one` and the binding cycle it starts,
with a fake binder, event recorder and status writer (lasched's own
interfaces, no Kubernetes API), then checks what was assumed, reserved,
bound, written and recorded, and where the pod waits. Every case also holds
the cycle to its two symmetries: each assumed pod is bound or forgotten, each
Reserve is undone by Unreserve unless the pod was bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import pytest

from lasched.cache.cache import CacheError, NodeInfo, SchedulerCache
from lasched.cycle import CycleMetrics, SchedulingCycle, pre_enqueue
from lasched.framework.interface import (
    SUCCESS,
    Code,
    CycleState,
    FilterPlugin,
    Status,
    unschedulable,
    wait,
)
from lasched.framework.runtime import Framework
from lasched.framework.waiting import WaitingRoom
from lasched.kube.events import EventRecorder, ObjectRef
from lasched.kube.statuswriter import EvictionOutcome
from lasched.model.pod import PodInfo, PodKey
from lasched.plugins.coscheduling import Coscheduling
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.plugins.preemption import DefaultPreemption, Evictions
from lasched.plugins.schedulinggates import SchedulingGates
from lasched.profiles import Profile
from lasched.queue.queue import Gated, QueuedPod, QueueOptions, QueueState, SchedulingQueue
from lasched.tasks import TaskSet
from lasched.timers import TimerHeap
from tests.unit.factories import make_node, make_pod, pod_json

# ---- fakes -----------------------------------------------------------------------


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeRecorder:
    """The profile's event recorder: what would be written, in order."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []  # (object, reason, note)

    def record(
        self, regarding: ObjectRef, *, type: str, reason: str, action: str, note: str
    ) -> None:
        self.recorded.append((regarding.name, reason, note))

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.recorded]


class FakeStatusWriter:
    """The status writer: keeps what would be written; evictions end when told to."""

    def __init__(self) -> None:
        self.conditions: list[tuple[str, str, str | None]] = []  # (pod, message, nominated)
        self.nominations: list[tuple[str, str]] = []
        self.evicted: list[str] = []
        self.phases: list[tuple[str, str]] = []
        self.outcome = EvictionOutcome.EVICTED
        self.hold: asyncio.Event | None = None  # while unset, the pod's writes are "in flight"
        self._evictions: list[Callable[[EvictionOutcome], None]] = []
        self.fail_with: Exception | None = None

    def unschedulable(
        self, pod: PodInfo, message: str, *, nominated_node: str | None = None
    ) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.conditions.append((pod.name, message, nominated_node))

    def nominated(self, pod: PodInfo, node: str) -> None:
        self.nominations.append((pod.name, node))

    async def written(self, key: PodKey) -> None:
        if self.hold is not None:
            await self.hold.wait()

    def evict(
        self, victim: PodInfo, *, preemptor: PodKey, then: Callable[[EvictionOutcome], None]
    ) -> None:
        self.evicted.append(victim.name)
        self._evictions.append(then)

    def end_evictions(self) -> None:
        """The apiserver answers every eviction sent so far with ``outcome``."""
        for then in self._evictions:
            then(self.outcome)
        self._evictions.clear()

    def podgroup_phase(self, key: str, phase: str) -> None:
        self.phases.append((key, phase))


class FakeMetrics(CycleMetrics):
    def __init__(self) -> None:
        self.attempts: list[str] = []
        self.bound_after: list[int] = []
        self.preemptions: list[int] = []

    def attempt(self, profile: str, result: str, seconds: float) -> None:
        self.attempts.append(result)

    def bound(self, attempts: int, seconds: float) -> None:
        self.bound_after.append(attempts)

    def binding(self, seconds: float) -> None:
        pass

    def preemption(self, victims: int) -> None:
        self.preemptions.append(victims)


class LedgerCache(SchedulerCache):
    """The cache, with every assume and forget written down; ``broken`` refuses to assume."""

    def __init__(self, *, broken: bool = False) -> None:
        super().__init__()
        self.broken = broken
        self.assumed: list[PodKey] = []
        self.forgotten: list[PodKey] = []

    def assume(self, pod: PodInfo, node_name: str) -> PodInfo:
        if self.broken:
            raise CacheError(f"pod {pod.key} is already in the cache; cannot assume it")
        assumed = super().assume(pod, node_name)
        self.assumed.append(pod.key)
        return assumed

    def forget(self, pod: PodInfo) -> None:
        if self.is_assumed(pod.key):
            self.forgotten.append(pod.key)
        super().forget(pod)

    def outstanding(self) -> list[PodKey]:
        """Assumed and neither forgotten nor yet confirmed by the informer."""
        return [k for k in self.assumed if k not in self.forgotten]


class Reservations:
    """A Reserve plugin that writes down what it reserved and unreserved."""

    def __init__(self, name: str, answer: Status = SUCCESS) -> None:
        self.name = name
        self.answer = answer
        self.reserved: list[str] = []
        self.unreserved: list[str] = []

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        if self.answer.ok:
            self.reserved.append(pod.name)
        return self.answer

    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        self.unreserved.append(pod.name)


class Gate:
    """A Permit plugin with a fixed answer (or a bug)."""

    name = "Gate"

    def __init__(self, answer: Status | Exception = SUCCESS) -> None:
        self.answer = answer

    def permit(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Exploding:
    """A Filter plugin with a bug."""

    name = "Exploding"

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        raise RuntimeError("boom")


class FakeBinder:
    """The Bind plugin: answers ``answer``, once ``go`` is set."""

    name = "FakeBinder"

    def __init__(self, answer: Status = SUCCESS) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str]] = []
        self.go = asyncio.Event()
        self.go.set()

    async def bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        await self.go.wait()
        self.calls.append((pod.name, node))
        return self.answer


class FakePreBind:
    """A PreBind plugin that answers ``status`` and remembers whom it saw."""

    name = "Volumes"

    def __init__(self, status: Status) -> None:
        self.status = status
        self.calls: list[tuple[str, str]] = []

    async def pre_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        self.calls.append((pod.name, node))
        return self.status


class World:
    """A SchedulingCycle over its own queue, cache and profile; the API is all fakes."""

    def __init__(
        self,
        *,
        nodes: tuple[tuple[str, str], ...] = (("n1", "2"),),
        explode: bool = False,
        reserve: Status = SUCCESS,
        permit: Status | Exception = SUCCESS,
        bind: Status = SUCCESS,
        pre_bind: Status = SUCCESS,
        preemption: bool = False,
        broken_cache: bool = False,
    ) -> None:
        self.clock = FakeClock()
        self.timers = TimerHeap(self.clock)  # fired by hand: time is virtual
        self.cache = LedgerCache(broken=broken_cache)
        for name, cpu in nodes:
            self.cache.add_node(make_node(name, cpu=cpu))
        self.waiting = WaitingRoom(timers=self.timers)
        self.gang = Coscheduling(
            clock=self.clock, room=self.waiting, node_of=self.cache.node_of, timers=self.timers
        )
        self.evictions = Evictions(self.cache.node_info)
        self.first, self.second = Reservations("First"), Reservations("Second", reserve)
        self.binder = FakeBinder(bind)
        self.pre_bind = FakePreBind(pre_bind)
        filters: list[FilterPlugin] = [NodeResourcesFit()]
        if explode:
            filters.append(Exploding())
        post_filters = []
        if preemption:
            post_filters.append(
                DefaultPreemption(
                    node_info=self.cache.node_info,
                    # fw is built below, with this plugin among its PostFilters.
                    filter_node=lambda state, pod, ni: fw.filter_node(state, pod, ni),  # noqa: PLW0108
                    pdbs=lambda: [],
                    nominated_node=self.cache.nominated_node,
                    evictions=self.evictions,
                )
            )
        fw = Framework(
            pre_enqueue=[SchedulingGates()],
            pre_filters=[],
            filters=filters,
            post_filters=post_filters,
            scores=[],
            reserves=[self.first, self.second],
            permits=[Gate(permit)],
            pre_binds=[self.pre_bind],
            binders=[self.binder],
        )
        self.queue = SchedulingQueue(
            QueueOptions(backoff_jitter=0.0),
            clock=self.clock,
            hints={"lasched": fw.queueing_hints},
            timers=self.timers,
        )
        self.events = FakeRecorder()
        self.status = FakeStatusWriter()
        self.metrics = FakeMetrics()
        self.store: dict[PodKey, PodInfo] = {}  # the pod informer's
        self.resyncs = 0
        self.is_leading = True
        self.binds = TaskSet("bind", 8)
        self.cycle = SchedulingCycle(
            queue=self.queue,
            cache=self.cache,
            profiles={"lasched": Profile("lasched", fw, cast(EventRecorder, self.events))},
            waiting=self.waiting,
            gang=self.gang,
            evictions=self.evictions,
            status=self.status,
            binds=self.binds,
            fresh=self.store.get,
            resync=self._resync,
            leading=lambda: self.is_leading,
            metrics=self.metrics,
            clock=self.clock,
        )

    def _resync(self) -> None:
        self.resyncs += 1

    def add(self, pod: PodInfo) -> None:
        """The informer shows a pending pod."""
        self.store[pod.key] = pod
        self.gang.pod_added(pod)
        self.queue.add(pod)

    def place(self, name: str, node: str, *, cpu: str, priority: int) -> PodInfo:
        """The informer shows a bound pod."""
        pod = make_pod(name, cpu=cpu, node=node, priority=priority)
        self.store[pod.key] = pod
        self.cache.add_pod(pod)
        return pod

    async def attempt(self, pod: PodInfo) -> QueuedPod:
        """Pop ``pod`` from activeQ and run its scheduling cycle (its binding cycle waits)."""
        if pod.key not in self.queue:
            self.add(pod)
        qp = await asyncio.wait_for(self.queue.pop(), 1)
        assert qp.key == pod.key
        self.cycle.schedule_one(qp)
        return qp

    async def settled(self) -> None:
        """Every binding cycle started has ended."""
        assert await self.binds.drain(1)

    def where(self, pod: PodInfo) -> QueueState | None:
        qp = self.queue.get(pod.key)
        return None if qp is None else qp.where


# ---- one attempt, start to end ------------------------------------------------------

BIND_TIMEOUT = Status(Code.ERROR, ("etcdserver: request timed out",))


@dataclass(frozen=True)
class Case:
    id: str
    pod_cpu: str = "1"
    scheduler: str = "lasched"
    nodes: tuple[tuple[str, str], ...] = (("n1", "2"),)
    explode: bool = False
    reserve: Status = SUCCESS
    permit: Status | Exception = SUCCESS
    bind: Status = SUCCESS
    broken_cache: bool = False
    # What follows:
    result: str | None = "scheduled"  # the attempt's metric (None: not an attempt)
    reserved: bool = False  # the Reserve plugins ran
    bind_to: str | None = None  # the binder was asked to bind to this node
    events: tuple[tuple[str, str], ...] = ()  # (reason, note)
    conditions: tuple[str, ...] = ()  # PodScheduled=False messages written
    where: QueueState | None = None  # where the pod waits (None: out of the queue)
    rejected_by: frozenset[str] = frozenset()  # the plugins on record (only events they
    # registered move the pod)
    assumed: bool = False  # assumed at the end (bound, until the informer confirms it)
    resyncs: int = 0


CASES = [
    Case(
        "fits-assumed-bound-scheduled-event",
        reserved=True,
        bind_to="n1",
        events=(("Scheduled", "Successfully assigned default/p to n1"),),
        assumed=True,
    ),
    Case(
        "nothing-fits-failed-scheduling-condition-parked",
        pod_cpu="4",
        nodes=(("n1", "2"), ("n2", "2")),
        result="unschedulable",
        events=(("FailedScheduling", "0/2 nodes are available: 2 Insufficient cpu."),),
        conditions=("0/2 nodes are available: 2 Insufficient cpu.",),
        where=QueueState.UNSCHEDULABLE,
        rejected_by=frozenset({"NodeResourcesFit"}),
    ),
    Case(
        "filter-plugin-error-backs-off",
        explode=True,
        result="error",
        events=(("FailedScheduling", "plugin Exploding: RuntimeError: boom"),),
        conditions=("plugin Exploding: RuntimeError: boom",),
        where=QueueState.BACKOFF,
    ),
    Case(
        "broken-cache-resyncs-and-backs-off",
        broken_cache=True,
        result="error",
        where=QueueState.BACKOFF,
        resyncs=1,
    ),
    Case(
        "reserve-refuses-undoes-the-earlier-reserves-and-parks",
        reserve=unschedulable("no room in the ledger"),
        result="unschedulable",
        reserved=True,
        events=(("FailedScheduling", "no room in the ledger"),),
        conditions=("no room in the ledger",),
        where=QueueState.UNSCHEDULABLE,
        rejected_by=frozenset({"Second"}),
    ),
    Case(
        "permit-refuses-unreserves-forgets-and-parks",
        permit=unschedulable("not now"),
        result="unschedulable",
        reserved=True,
        events=(("FailedScheduling", "not now"),),
        conditions=("not now",),
        where=QueueState.UNSCHEDULABLE,
        rejected_by=frozenset({"Gate"}),
    ),
    Case(
        "permit-plugin-error-unreserves-forgets-and-backs-off",
        permit=RuntimeError("boom"),
        result="error",
        reserved=True,
        events=(("FailedScheduling", "plugin Gate: RuntimeError: boom"),),
        conditions=("plugin Gate: RuntimeError: boom",),
        where=QueueState.BACKOFF,
    ),
    Case(
        "bind-fails-forgets-unreserves-and-requeues",
        bind=BIND_TIMEOUT,
        reserved=True,
        bind_to="n1",
        events=(("FailedScheduling", "etcdserver: request timed out"),),
        where=QueueState.BACKOFF,
    ),
    Case(
        "bound-elsewhere-forgets-and-never-rebinds",
        bind=unschedulable("already-assigned", unresolvable=True),
        reserved=True,
        bind_to="n1",
    ),
    Case("another-schedulers-pod-leaves-the-queue-untried", scheduler="elsewhere", result=None),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_schedule_one(case: Case) -> None:
    """One attempt and its binding cycle: what is assumed, bound, written and where it waits."""
    w = World(
        nodes=case.nodes,
        explode=case.explode,
        reserve=case.reserve,
        permit=case.permit,
        bind=case.bind,
        broken_cache=case.broken_cache,
    )
    pod = make_pod("p", cpu=case.pod_cpu, scheduler=case.scheduler)
    nodes = w.cycle.nodes()
    await w.attempt(pod)
    await w.settled()

    assert w.metrics.attempts == ([case.result] if case.result else [])
    assert w.first.reserved == (["p"] if case.reserved else [])
    assert w.binder.calls == ([("p", case.bind_to)] if case.bind_to else [])
    assert w.events.recorded == [("p", reason, note) for reason, note in case.events]
    assert w.status.conditions == [("p", message, None) for message in case.conditions]
    assert w.where(pod) == case.where
    qp = w.queue.get(pod.key)
    assert (qp.unschedulable_plugins if qp else frozenset()) == case.rejected_by
    assert w.resyncs == case.resyncs
    assert (w.cycle.nodes() is nodes) == (not case.resyncs)  # a resync lists the nodes anew
    # assume/forget: a pod not bound is forgotten on every path.
    assert w.cache.is_assumed(pod.key) == case.assumed
    assert w.cache.outstanding() == ([pod.key] if case.assumed else [])
    # reserve/unreserve: every Reserve that succeeded is undone unless the pod was bound.
    for plugin in (w.first, w.second):
        assert plugin.unreserved == ([] if case.assumed else plugin.reserved)


@pytest.mark.parametrize(
    ("said", "written"),
    [
        ("0/2 nodes are available: 2 Insufficient cpu.", False),
        ("0/2 nodes are available: 2 node(s) had untolerated taint.", True),
    ],
    ids=["says-it-already", "said-something-else"],
)
async def test_a_failure_the_pod_already_states_is_not_written_again(
    said: str, written: bool
) -> None:
    """As kube-scheduler's updatePod: the PodScheduled=False condition is written only when
    its message changes; the FailedScheduling Event is recorded every time."""
    w = World(nodes=(("n1", "2"), ("n2", "2")))
    body = pod_json("p", cpu="4")
    body["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": said}
    ]
    await w.attempt(PodInfo(body))
    await w.settled()
    message = "0/2 nodes are available: 2 Insufficient cpu."
    assert w.events.recorded == [("p", "FailedScheduling", message)]
    assert w.status.conditions == ([("p", message, None)] if written else [])


# ---- Permit ------------------------------------------------------------------------


async def test_a_pod_waiting_at_permit_binds_once_allowed() -> None:
    """WAIT holds the pod reserved and assumed in the waiting room; allowing it binds it."""
    w = World(permit=wait(30))
    pod = make_pod("p", cpu="1")
    await w.attempt(pod)
    await asyncio.sleep(0)
    waiting = w.waiting.get(pod.key)
    assert waiting is not None
    assert (w.metrics.attempts, w.cache.outstanding(), w.binder.calls) == (
        ["scheduled"], [pod.key], [],
    )  # fmt: skip
    waiting.allow("Gate")
    await w.settled()
    assert w.binder.calls == [("p", "n1")]
    assert w.waiting.get(pod.key) is None
    assert w.events.reasons() == ["Scheduled"]


async def test_a_pod_rejected_at_permit_is_unreserved_forgotten_and_requeued() -> None:
    """A rejection while waiting: FailedScheduling and the condition say why; nothing stays held."""
    w = World(permit=wait(30))
    pod = make_pod("p", cpu="1")
    await w.attempt(pod)
    await asyncio.sleep(0)
    waiting = w.waiting.get(pod.key)
    assert waiting is not None
    waiting.reject("Gate", "pod group default/g gave up")
    await w.settled()
    assert w.binder.calls == []
    assert w.events.recorded == [("p", "FailedScheduling", "pod group default/g gave up")]
    assert w.status.conditions == [("p", "pod group default/g gave up", None)]
    assert w.cache.outstanding() == []
    assert w.first.unreserved == w.first.reserved == ["p"]
    # Parked as unschedulable, then moved with the rest: the room it held is free again.
    assert w.where(pod) is QueueState.BACKOFF
    assert w.waiting.get(pod.key) is None


@pytest.mark.parametrize(
    ("status", "note"),
    [
        (
            Status(Code.ERROR, ("binding volumes: timed out",)),
            'running PreBind plugin "Volumes": binding volumes: timed out',
        ),
        (unschedulable("volume node affinity conflict"), "volume node affinity conflict"),
    ],
    ids=["error-backs-off", "rejection-parks"],
)
async def test_a_failed_pre_bind_unreserves_forgets_and_requeues(status: Status, note: str) -> None:
    """PreBind runs after Permit, before Bind; its failure undoes the attempt and says why."""
    w = World(pre_bind=status)
    pod = make_pod("p", cpu="1")
    await w.attempt(pod)
    await w.settled()
    assert w.pre_bind.calls == [("p", "n1")]
    assert w.binder.calls == []
    assert w.events.recorded == [("p", "FailedScheduling", note)]
    assert w.cache.outstanding() == []
    assert w.first.unreserved == w.first.reserved == ["p"]
    # Requeued; the room it held is free again, which moves it on to backoff.
    assert w.where(pod) is QueueState.BACKOFF


async def test_a_permit_deadline_passing_rejects_the_pod() -> None:
    """Past its Permit timeout (virtual time) the pod is rejected with kube-scheduler's words."""
    w = World(permit=wait(5))
    pod = make_pod("p", cpu="1")
    await w.attempt(pod)
    w.clock.t += 6
    assert w.timers.fire_due() == 1
    await w.settled()
    assert w.status.conditions == [
        ("p", "rejected due to timeout after waiting at permit Gate", None)
    ]
    assert w.cache.outstanding() == []


# ---- PostFilter: preemption -----------------------------------------------------------


async def test_preemption_nominates_the_node_and_evicts_the_victims() -> None:
    """Nothing fits, a lower pod can go: the node is nominated (held, written) and it is evicted."""
    w = World(preemption=True)
    low = w.place("low", "n1", cpu="2", priority=1)
    vip = make_pod("vip", cpu="2", priority=100)
    await w.attempt(vip)
    assert w.metrics.attempts == ["unschedulable"]
    assert w.metrics.preemptions == [1]
    assert w.cache.nominated_node(vip.key) == "n1"
    assert w.status.conditions == [("vip", "0/1 nodes are available: 1 Insufficient cpu.", "n1")]
    assert w.status.evicted == ["low"]
    assert w.evictions.terminating(low)
    assert w.where(vip) is QueueState.UNSCHEDULABLE
    w.status.end_evictions()
    assert w.events.recorded == [
        ("vip", "FailedScheduling", "0/1 nodes are available: 1 Insufficient cpu."),
        ("low", "Preempted", "Preempted by pod default/vip on node n1"),
    ]
    assert w.cache.outstanding() == []


async def test_a_refused_eviction_lets_the_preemptor_try_again_at_once() -> None:
    """The victim runs on (no Preempted event, not terminating); the preemptor leaves the pool."""
    w = World(preemption=True)
    low = w.place("low", "n1", cpu="2", priority=1)
    vip = make_pod("vip", cpu="2", priority=100)
    await w.attempt(vip)
    w.status.outcome = EvictionOutcome.REFUSED
    w.status.end_evictions()
    assert "Preempted" not in w.events.reasons()
    assert not w.evictions.terminating(low)
    assert w.where(vip) in (QueueState.ACTIVE, QueueState.BACKOFF)


# ---- the binding cycle ---------------------------------------------------------------


async def test_the_bind_waits_for_the_pods_status_writes() -> None:
    """Status written for an earlier attempt reaches the apiserver before the binding."""
    w = World()
    w.status.hold = asyncio.Event()
    await w.attempt(make_pod("p", cpu="1"))
    await asyncio.sleep(0.01)
    assert w.binder.calls == []
    w.status.hold.set()
    await w.settled()
    assert w.binder.calls == [("p", "n1")]


async def test_a_replica_that_stopped_leading_leaves_the_bind_to_the_next_leader() -> None:
    """Not leading at bind time: no binding; the pod is forgotten, unreserved and requeued."""
    w = World()
    pod = make_pod("p", cpu="1")
    await w.attempt(pod)
    w.is_leading = False
    await w.settled()
    assert w.binder.calls == []
    assert w.cache.outstanding() == []
    assert w.first.unreserved == ["p"]
    assert w.where(pod) is QueueState.BACKOFF


async def test_an_abandoned_bind_returns_the_pod_to_the_queue() -> None:
    """Cancelled mid-bind (stepping down, stopping): forgotten, unreserved, tried again later."""
    w = World()
    w.binder.go.clear()
    pod = make_pod("p", cpu="1")
    await w.attempt(pod)
    await asyncio.sleep(0)
    await w.binds.cancel_all()
    assert w.cache.outstanding() == []
    assert w.first.unreserved == ["p"]
    assert w.where(pod) is QueueState.BACKOFF


async def test_a_failed_bind_of_an_admitted_group_member_is_retried_at_once_then_backs_off() -> (
    None
):
    """The rest of its group is bound: the member is retried at once, once, and told why."""
    w = World(bind=BIND_TIMEOUT)
    body = pod_json("m-0", cpu="1")
    body["metadata"]["labels"] = {"lasched.io/pod-group": "g", "lasched.io/min-available": "1"}
    member = PodInfo(body)
    w.add(member)
    group = w.gang.group_of(member)
    assert group is not None
    group.permitted = True
    await w.attempt(member)
    await w.settled()
    assert w.where(member) is QueueState.ACTIVE
    assert w.cycle.retried_now == {member.key}
    assert w.events.reasons() == ["FailedScheduling", "GroupMemberBindFailed"]
    await w.attempt(member)
    await w.settled()
    assert w.where(member) is QueueState.BACKOFF
    assert w.cache.outstanding() == []


# ---- the loop --------------------------------------------------------------------------


async def test_a_bug_in_one_pods_cycle_is_an_error_for_that_pod_and_the_loop_goes_on() -> None:
    """An exception out of schedule_one requeues that pod with backoff; the next pod binds."""
    w = World(nodes=(("n1", "2"),))
    w.status.fail_with = RuntimeError("status writer bug")
    broken, fine = make_pod("broken", cpu="4", priority=10), make_pod("fine", cpu="1")
    w.add(broken)
    w.add(fine)
    loop = asyncio.create_task(w.cycle.scheduling_loop())
    await asyncio.sleep(0.05)
    w.queue.close()
    await asyncio.wait_for(loop, 1)
    await w.settled()
    qp = w.queue.get(broken.key)
    assert qp is not None
    assert qp.where is QueueState.BACKOFF
    assert qp.reason == "internal error: RuntimeError: status writer bug"
    assert w.binder.calls == [("fine", "n1")]


def test_pre_enqueue_gates_by_the_profiles_plugins_and_admits_other_schedulers_pods() -> None:
    """The queue's PreEnqueue hook: why a pod is gated, None to admit it or a pod of no profile."""
    profiles = World().cycle.profiles
    gates = [{"name": "example.com/wait"}]
    assert pre_enqueue(profiles, make_pod("gated", schedulingGates=gates)) == Gated(
        "waiting for scheduling gates: example.com/wait", "SchedulingGates"
    )
    assert pre_enqueue(profiles, make_pod("ready")) is None
    assert (
        pre_enqueue(profiles, make_pod("other", scheduler="elsewhere", schedulingGates=gates))
        is None
    )


class RaisingGate:
    name = "RaisingGate"

    def pre_enqueue(self, pod: PodInfo) -> Status:
        raise RuntimeError("gate bug")


def test_a_failing_pre_enqueue_gates_with_no_plugin_on_record() -> None:
    """Its plugin raised: the pod is gated with no plugin named, so any event rechecks it."""
    w = World()
    w.cycle.profiles["lasched"].framework.pre_enqueue = (RaisingGate(),)
    gated = pre_enqueue(w.cycle.profiles, make_pod("p"))
    assert gated == Gated("PreEnqueue failed: plugin RaisingGate: RuntimeError: gate bug")
    assert gated.plugin == ""
