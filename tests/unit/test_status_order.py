"""The status writer: a pod's writes reach the apiserver in order, and before its binding;
evictions report their outcome; a refused write is logged, never raised."""

from __future__ import annotations

import asyncio
import gc
import inspect
import warnings
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio.client import Configuration

from lasched.kube import statuswriter
from lasched.kube.client import ApiError, KubeClient
from lasched.kube.statuswriter import EvictionOutcome, StatusWriter
from lasched.model.pod import pod_key
from lasched.tasks import TaskSet
from tests.unit.factories import make_pod


async def test_binding_waits_for_the_status_writes_sent_and_drops_those_queued() -> None:
    """A failure's status (PodScheduled=False, nominated node) already sent is written
    before a later bind; one still queued is dropped.

    Arriving after the binding, it would mark a bound pod unschedulable, and the
    apiserver refuses a nominated node on a bound pod.
    """
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        writer = StatusWriter(client, podgroup_api="scheduling.x-k8s.io/v1alpha1")
        pod = make_pod("preemptor")
        gate, order = asyncio.Event(), []

        async def write(what: str, *, slow: bool) -> None:
            if slow:
                await gate.wait()
            order.append(what)

        writer.write(pod, write("unschedulable", slow=True), name="first")
        writer.write(pod, write("nominated", slow=False), name="second")
        await asyncio.sleep(0.05)
        assert order == []  # the first is sent (and slow); the second waits for it
        writer.write(pod, write("nominated again", slow=False), name="third")
        bind = asyncio.create_task(writer.written(pod.key))
        await asyncio.sleep(0.05)
        assert not bind.done(), "the bind must wait for the status write sent"
        gate.set()
        await asyncio.wait_for(bind, 1)
        await asyncio.sleep(0.05)
        assert order == ["unschedulable"]  # the two queued behind it were dropped
        assert writer.in_flight == 0  # forgotten once written or dropped
        await asyncio.wait_for(writer.written(pod.key), 0.1)  # nothing pending
    finally:
        await client.close()


@pytest.fixture
async def writer() -> AsyncIterator[StatusWriter]:
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        yield StatusWriter(client, podgroup_api="scheduling.x-k8s.io/v1alpha1")
    finally:
        await client.close()


REFUSED = ApiError(status=500, reason="InternalError", message="etcd", body=None)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(None, EvictionOutcome.EVICTED), (REFUSED, EvictionOutcome.REFUSED)],
    ids=["deleted", "refused"],
)
async def test_an_evictions_outcome_goes_back_to_who_asked(
    writer: StatusWriter,
    monkeypatch: pytest.MonkeyPatch,
    answer: Exception | None,
    expected: EvictionOutcome,
) -> None:
    """The victim's deletion is sent with its UID; the answer, not an exception, comes back."""
    sent: list[tuple[str, str]] = []

    async def evict(kc: KubeClient, *, namespace: str, name: str, uid: str) -> None:
        sent.append((name, uid))
        if answer is not None:
            raise answer

    monkeypatch.setattr(statuswriter, "evict", evict)
    outcomes: list[EvictionOutcome] = []
    victim = make_pod("low")
    writer.evict(victim, preemptor=make_pod("vip").key, then=outcomes.append)
    assert await writer.drain(1)
    assert sent == [("low", victim.uid)]
    assert outcomes == [expected]


async def test_an_eviction_cancelled_before_its_answer_is_abandoned(
    writer: StatusWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shutdown that cancels the deletion tells the asker it is abandoned, not refused."""
    sent = asyncio.Event()

    async def evict(kc: KubeClient, *, namespace: str, name: str, uid: str) -> None:
        sent.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(statuswriter, "evict", evict)
    outcomes: list[EvictionOutcome] = []
    writer.evict(make_pod("low"), preemptor=make_pod("vip").key, then=outcomes.append)
    await asyncio.wait_for(sent.wait(), 1)
    await writer._tasks.cancel_all()
    assert outcomes == [EvictionOutcome.ABANDONED]


async def test_a_status_write_the_apiserver_refuses_is_logged_and_the_next_goes_on(
    writer: StatusWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused PodScheduled=False is dropped with a warning; the pod's next write is sent."""
    written: list[str] = []

    async def set_unschedulable(kc: KubeClient, *, message: str, **fields: object) -> None:
        if message == "first":
            raise REFUSED
        written.append(message)

    monkeypatch.setattr(statuswriter, "set_unschedulable", set_unschedulable)
    pod = make_pod("p")
    writer.unschedulable(pod, "first")
    writer.unschedulable(pod, "second", nominated_node="n1")
    assert await writer.drain(1)
    assert written == ["second"]
    assert "pod=default/p status not written: ApiError" in caplog.text


async def test_a_podgroups_phase_is_written_to_its_status(
    writer: StatusWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``namespace/name`` and the phase reach the PodGroup's status subresource."""
    written: list[tuple[str, str, str, str]] = []

    async def set_podgroup_phase(
        kc: KubeClient, *, api: str, namespace: str, name: str, phase: str
    ) -> None:
        written.append((api, namespace, name, phase))

    monkeypatch.setattr(statuswriter, "set_podgroup_phase", set_podgroup_phase)
    writer.podgroup_phase("team-a/train", "Scheduled")
    assert await writer.drain(1)
    assert written == [("scheduling.x-k8s.io/v1alpha1", "team-a", "train", "Scheduled")]


async def test_a_write_cancelled_while_queued_for_a_slot_never_runs() -> None:
    """A TaskSet task cancelled before it got a slot closes its coroutine unrun (no
    "never awaited" warning); the slot holder runs on and the next one still gets it."""
    tasks = TaskSet("status", 1)
    gate, ran = asyncio.Event(), []

    async def job(name: str) -> None:
        if name == "first":
            await gate.wait()
        ran.append(name)

    tasks.spawn(job("first"), name="first")
    queued = job("queued")
    dropped = tasks.spawn(queued, name="queued")
    tasks.spawn(job("last"), name="last")
    await asyncio.sleep(0.01)
    dropped.cancel()
    await asyncio.sleep(0.01)
    assert inspect.getcoroutinestate(queued) == inspect.CORO_CLOSED
    gate.set()
    assert await tasks.drain(1)
    assert ran == ["first", "last"]


async def test_a_write_dropped_before_it_had_a_slot_leaves_no_never_awaited_warning() -> None:
    """A bind drops a pod's status write still waiting for one of the writer's slots:
    the write's coroutine is closed, not left for Python to warn about."""
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        writer = StatusWriter(client, podgroup_api="scheduling.x-k8s.io/v1alpha1", limit=1)
        gate = asyncio.Event()

        async def slow() -> None:
            await gate.wait()

        async def never() -> None:
            raise AssertionError("a dropped write must not run")

        writer.write(make_pod("busy"), slow(), name="busy")
        writer.write(make_pod("bound"), never(), name="queued")
        await asyncio.sleep(0.01)  # "queued" waits for the one slot
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await writer.written(pod_key("default", "bound"))
            await asyncio.sleep(0.01)
            gc.collect()
        assert not [w for w in caught if "never awaited" in str(w.message)]
        gate.set()
        assert await writer.drain(1)
    finally:
        await client.close()
