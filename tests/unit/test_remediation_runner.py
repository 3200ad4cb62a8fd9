"""The remediation loop's I/O: evictions sent, refusals reported, one Event per decision."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import cast

from prometheus_client import REGISTRY

from lasched.cache.cache import SchedulerCache
from lasched.kube.client import ApiError
from lasched.kube.events import EventRecorder, ObjectRef
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.remediation.judge import REFUSED_RETRY_SECONDS, Judge
from lasched.remediation.rules import Outcome
from lasched.remediation.runner import Remediation, bound_pods
from tests.unit.factories import make_node, make_pod
from tests.unit.test_remediation_judge import GRACE, SETTINGS, World, deployed


class FakeRecorder:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str, str]] = []  # (pod, type, reason, note)

    def record(
        self, regarding: ObjectRef, *, type: str, reason: str, action: str, note: str
    ) -> None:
        self.recorded.append((regarding.name, type, reason, note))


class Evictor:
    """The Eviction API: answers each pod by name, remembering what it was asked."""

    def __init__(self, answers: dict[str, ApiError | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, pod: PodInfo) -> None:
        self.asked.append(pod.name)
        if (err := self.answers.get(pod.name)) is not None:
            raise err


def refused(status: int) -> ApiError:
    return ApiError(status=status, reason="TooManyRequests", message="budget", body=None)


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def loop(
    w: World, judge: Judge, evict: Evictor, rec: FakeRecorder, lead: list[bool]
) -> Remediation:
    def pods() -> Iterable[tuple[PodInfo, Node | None]]:
        return ((p, w.nodes.get(p.node_name)) for p in w.pods)

    return Remediation(
        judge=judge,
        interval=2.0,
        pods=pods,
        evict=evict,
        recorder=lambda pod: cast(EventRecorder, rec),
        leading=lambda: lead[0],
    )


async def test_evictions_refusals_and_skips_each_get_one_event_and_count() -> None:
    """Evicted: LatencyRemediated; a PDB's 429: skipped with the reason; a bare pod: skipped."""
    w = World(replace(SETTINGS, max_per_node=5))
    for pod in (deployed("moved"), deployed("budget"), deployed("bare", controller=None)):
        w.add(pod)
    evict = Evictor({"budget": refused(429)})
    rec = FakeRecorder()
    r = loop(w, w.judge, evict, rec, [True])
    before = (
        counted("lasched_remediation_evictions_total", trigger="latency"),
        counted("lasched_remediation_skipped_total", reason="pdb_refused"),
        counted("lasched_remediation_skipped_total", reason="no_controller"),
    )
    w.rtt("edge-0", "edge-1", 50.0)
    r.pass_once()
    w.advance(GRACE)
    w.rtt("edge-0", "edge-1", 50.0)
    r.pass_once()
    assert await r.evictions.drain(5)
    assert sorted(evict.asked) == ["budget", "moved"]
    by_pod = {name: (kind, reason, note) for name, kind, reason, note in rec.recorded}
    assert by_pod["moved"][:2] == ("Normal", "LatencyRemediated")
    assert by_pod["budget"][:2] == ("Warning", "LatencyRemediationSkipped")
    assert "the Eviction API refused (PodDisruptionBudget)" in by_pod["budget"][2]
    assert by_pod["bare"][:2] == ("Warning", "LatencyRemediationSkipped")
    assert "no controller would recreate it: rtt from edge-0 = 50.0 ms" in by_pod["bare"][2]
    after = (
        counted("lasched_remediation_evictions_total", trigger="latency"),
        counted("lasched_remediation_skipped_total", reason="pdb_refused"),
        counted("lasched_remediation_skipped_total", reason="no_controller"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    # The refused pod is judged again soon (the moved one waits out its cool-down).
    w.advance(REFUSED_RETRY_SECONDS)
    w.rtt("edge-0", "edge-1", 50.0)
    assert [(d.pod.name, d.outcome) for d in r.pass_once()] == [("budget", Outcome.EVICTED)]


async def test_a_pod_gone_before_its_eviction_is_not_reported() -> None:
    """404 or 409: the pod was deleted or replaced meanwhile; nothing to tell."""
    w = World()
    w.add(deployed("gone"))
    rec = FakeRecorder()
    r = loop(w, w.judge, Evictor({"gone": refused(404)}), rec, [True])
    w.rtt("edge-0", "edge-1", 50.0)
    r.pass_once()
    w.advance(GRACE)
    w.rtt("edge-0", "edge-1", 50.0)
    r.pass_once()
    assert await r.evictions.drain(5)
    assert rec.recorded == []


async def test_a_follower_judges_nothing() -> None:
    """Not leading: no decision, no eviction, and the triggers seen are forgotten."""
    w = World()
    w.add(deployed())
    evict = Evictor({})
    lead = [True]
    r = loop(w, w.judge, evict, FakeRecorder(), lead)
    w.rtt("edge-0", "edge-1", 50.0)
    r.pass_once()
    w.advance(GRACE)
    lead[0] = False
    w.rtt("edge-0", "edge-1", 50.0)
    assert r.pass_once() == []
    lead[0] = True
    assert r.pass_once() == []  # the grace period starts again
    assert evict.asked == []


def test_bound_pods_are_those_of_the_served_profiles_and_not_merely_assumed() -> None:
    """Pods of other schedulers and pods only assumed (their bind not yet seen) are skipped."""
    cache = SchedulerCache()
    cache.add_node(make_node("edge-1"))
    ours = make_pod("ours", node="edge-1")
    theirs = make_pod("theirs", node="edge-1", scheduler="default-scheduler")
    cache.add_pod(ours)
    cache.add_pod(theirs)
    cache.assume(make_pod("assumed"), "edge-1")
    assert [(p.name, n.name if n else None) for p, n in bound_pods(cache, {"lasched": 1})] == [
        ("ours", "edge-1")
    ]
