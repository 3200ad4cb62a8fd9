"""The remediation loop: a pass every interval on the leader, evictions, Events, metrics.

Each pass hands the bound pods of lasched's profiles to the
:class:`~lasched.remediation.judge.Judge` and acts on its decisions: an
approval is sent to the Eviction API beside the loop (a bounded
:class:`~lasched.tasks.TaskSet`), and every decision, and every eviction's
outcome, becomes one Event on the pod and one count. A follower judges
nothing and forgets the triggers it has seen.

Why a pass per interval and not an event: what is judged is how long a
condition has held, measured against the clock, over RTTs that change
continuously; a pass costs a lookup per hard limit of each bound pod with
one, and bounds the delay after a grace period ends at one interval.

The Eviction API's answers: success (the pod terminates; its controller
creates a replacement, which lasched places); 429 (a PodDisruptionBudget
refused: the pod runs on, the Event says so); 404 or 409 (the pod is gone
or was replaced meanwhile: nothing to tell); anything else, or no answer,
is a failed eviction, reported as such.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping

import aiohttp

from lasched import metrics
from lasched.cache.cache import SchedulerCache
from lasched.kube.client import ApiError
from lasched.kube.events import EventRecorder, ObjectRef
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.remediation.judge import Decision, Judge
from lasched.remediation.rules import Outcome
from lasched.tasks import TaskSet

log = logging.getLogger(__name__)

Evict = Callable[[PodInfo], Awaitable[None]]
"""Ask the Eviction API to evict a pod; raises ApiError when it refuses."""

REASONS = {
    Outcome.EVICTED: "LatencyRemediated",
    Outcome.DRY_RUN: "LatencyRemediationDryRun",
}
SKIPPED = "LatencyRemediationSkipped"


def bound_pods(
    cache: SchedulerCache, served: Mapping[str, object]
) -> Iterator[tuple[PodInfo, Node | None]]:
    """The bound pods (not merely assumed) of the profiles in ``served``, with their node."""
    for ni in cache.node_infos():
        for pod in ni.pods.values():
            if pod.node_name and pod.scheduler_name in served and not cache.is_assumed(pod.key):
                yield pod, ni.node


class Remediation:
    """Runs the judge's passes while leading and carries out its decisions."""

    def __init__(
        self,
        *,
        judge: Judge,
        interval: float,
        pods: Callable[[], Iterable[tuple[PodInfo, Node | None]]],
        evict: Evict,
        recorder: Callable[[PodInfo], EventRecorder | None],
        leading: Callable[[], bool],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._judge = judge
        self._interval = interval
        self._pods = pods
        self._evict = evict
        self._recorder = recorder
        self._leading = leading
        self._sleep = sleep
        self.evictions = TaskSet("remediation", 4)

    async def run(self) -> None:
        """A pass every interval, until cancelled (cancelling is safe: evictions sent go on)."""
        while True:
            await self._sleep(self._interval)
            self.pass_once()

    def pass_once(self) -> list[Decision]:
        """One pass: judge, report, send the evictions; returns the decisions."""
        if not self._leading():
            self._judge.reset()
            return []
        decisions = self._judge.judge(self._pods())
        for d in decisions:
            if d.evict:
                self.evictions.spawn(self._evicting(d), name=str(d.pod.key))
            else:
                self.report(d)
        return decisions

    async def _evicting(self, d: Decision) -> None:
        pod = d.pod
        try:
            await self._evict(pod)
        except ApiError as e:
            if e.not_found or e.conflict:
                log.info("pod=%s gone before its eviction; nothing to remediate", pod.key)
                return
            refused = Outcome.PDB_REFUSED if e.status == 429 else Outcome.FAILED
            log.warning("pod=%s not evicted: %s", pod.key, e)
            self._judge.refused(pod.key)
            self.report(d.refused(refused))
            return
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            log.warning("pod=%s not evicted: %s: %s", pod.key, type(e).__name__, e)
            self._judge.refused(pod.key)
            self.report(d.refused(Outcome.FAILED))
            return
        log.info("pod=%s %s", pod.key, d.note())
        self.report(d)

    def report(self, d: Decision) -> None:
        """One count and one Event for a decision (or an eviction's outcome)."""
        if d.outcome is Outcome.EVICTED:
            metrics.remediation_evictions.labels(d.trigger.kind).inc()
        else:
            metrics.remediation_skipped.labels(d.outcome.value).inc()
        recorder = self._recorder(d.pod)
        if recorder is None:
            return
        pod = d.pod
        recorder.record(
            ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name, uid=pod.uid),
            type="Normal" if d.outcome in REASONS else "Warning",
            reason=REASONS.get(d.outcome, SKIPPED),
            action="Evict",
            note=d.note(),
        )
