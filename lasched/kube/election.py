"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Every replica runs informers, caches and agent streams (a warm standby);
only the holder of the Lease schedules. The rules are client-go's
``leaderelection`` package:

- A candidate tries every ``retry_period``. It may take the Lease when it
  does not exist, has no holder, or its record has not changed for
  ``lease_duration`` **as observed on the candidate's own monotonic clock**:
  the holder's timestamps are never compared with local time, so clock skew
  between machines cannot cause two leaders.
- Writes are optimistic (the Lease's resourceVersion), so of two candidates
  racing for an expired Lease exactly one wins.
- The leader renews every ``retry_period``; if it cannot renew for
  ``renew_deadline`` (which is shorter than ``lease_duration``), it stops
  leading *before* another replica may take over.
- On cancellation (graceful shutdown) the leader releases the Lease (empty
  holder, one-second duration), so a follower takes over at its next retry
  instead of waiting for expiry.

Where lasched departs from client-go:

- **Leading is judged on the clock, not only by a flag.**
  :meth:`LeaderElector.is_leading` is false as soon as ``renew_deadline``
  has passed since the last successful renewal, even if the renewing task
  has not run yet: a process resumed after a pause (SIGSTOP, a frozen VM, a
  blocked loop) stops scheduling at its first look at the clock, not when
  its timers catch up.
- **Seeing another holder ends leadership at once.** A renewal that reads a
  Lease held by another identity, still valid, does not wait for the
  deadline.
- **A lost leader steps down instead of exiting.** kube-scheduler exits and
  relies on a restart; lasched stops scheduling (see
  :meth:`lasched.scheduler.Scheduler.run`), keeps its informers and agent
  streams warm, and campaigns again. An apiserver that is away longer than
  ``renew_deadline`` (a rolling upgrade) then costs a hand-over, not a
  process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from lasched.kube.client import ApiError, KubeClient

log = logging.getLogger(__name__)

JITTER = 1.2  # client-go's JitterFactor for the candidate's retries


class LeadershipLost(RuntimeError):
    """Why a leader stopped leading (kept in :attr:`LeaderElector.lost_because`)."""


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    identity: str
    name: str = "lasched"
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if not self.renew_deadline > JITTER * self.retry_period:
            raise ValueError(f"renew_deadline must be greater than {JITTER} x retry_period")


def micro_time(t: float) -> str:
    """A Unix time as a Kubernetes MicroTime."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for one Lease; see the module docstring for the rules."""

    def __init__(
        self,
        client: KubeClient,
        config: LeaseConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self.config = config
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self.leading = asyncio.Event()
        self.holder: str | None = None  # the last holder seen
        self._renewed_at = float("-inf")  # our clock at the last successful acquire or renew
        self._usurper: str | None = None  # another holder of a valid Lease, seen while leading
        self.terms = 0
        self.lost_because: LeadershipLost | None = None
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._lease: dict[str, Any] | None = None
        # One write at a time: a release must not race a renewal (stale
        # resourceVersion) nor be followed by one (taking the Lease back).
        self._lock = asyncio.Lock()
        self._released = False

    @property
    def _path(self) -> str:
        c = self.config
        return f"/apis/coordination.k8s.io/v1/namespaces/{c.namespace}/leases/{c.name}"

    def is_leading(self) -> bool:
        """Leading, and renewed within ``renew_deadline`` by our own clock."""
        return (
            self.leading.is_set() and self._clock() - self._renewed_at < self.config.renew_deadline
        )

    async def run(self) -> None:
        """Campaign, lead, step down when the Lease is lost, campaign again; until cancelled.

        Cancelling is safe: a leader releases its Lease first.
        """
        c = self.config
        while True:
            log.info(
                "leader election: campaigning for lease %s/%s as %s",
                c.namespace, c.name, c.identity,
            )  # fmt: skip
            while not await self._try():
                await self._sleep(c.retry_period * random.uniform(1.0, JITTER))
            log.info("leader election: acquired lease %s/%s", c.namespace, c.name)
            self.terms += 1
            self.lost_because = None
            self.leading.set()
            try:
                lost = await self._renew_until_lost()
            except asyncio.CancelledError:
                await asyncio.shield(self.release())
                raise
            self.leading.clear()
            self.lost_because = lost
            log.error("leader election: stopped leading: %s", lost)

    async def _renew_until_lost(self) -> LeadershipLost:
        c = self.config
        while True:
            while not await self._try():
                if self._usurper is not None:
                    return LeadershipLost(
                        f"lease {c.namespace}/{c.name} is held by {self._usurper}"
                    )
                if self._clock() - self._renewed_at >= c.renew_deadline:
                    return LeadershipLost(
                        f"could not renew lease {c.namespace}/{c.name} for {c.renew_deadline:g} s"
                    )
                await self._sleep(c.retry_period)
            await self._sleep(c.retry_period)

    async def _try(self) -> bool:
        """One acquire-or-renew attempt; False on any failure (logged)."""
        while True:
            if self._released:
                await asyncio.Event().wait()  # released at shutdown: never campaign again
            try:
                async with self._lock:
                    if self._released:
                        continue
                    return await self._try_acquire_or_renew()
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
                log.warning("leader election: %s: %s", type(e).__name__, e)
                return False
            except Exception:  # a Lease we cannot read: a failed attempt, not the end
                log.exception("leader election: attempt failed")
                return False

    async def _try_acquire_or_renew(self) -> bool:
        self._usurper = None
        started = self._clock()  # a renewal counts from when it was asked for
        if await self._acquire_or_renew():
            self._renewed_at = started
            return True
        return False

    async def _acquire_or_renew(self) -> bool:
        c = self.config
        now = self._wall()
        timeout = c.renew_deadline / 2
        try:
            lease = await self._client.request("GET", self._path, timeout=timeout)
        except ApiError as e:
            if not e.not_found:
                raise
            body = self._record(None, now)
            try:
                self._lease = await self._client.request(
                    "POST", self._path.rsplit("/", 1)[0], body=body, timeout=timeout
                )
            except ApiError as e2:
                if e2.conflict:
                    return False
                raise
            self._saw(self._lease, c.identity)
            return True

        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self._saw(lease, holder)
        duration = float(spec.get("leaseDurationSeconds") or c.lease_duration)
        if holder and holder != c.identity and self._clock() < self._observed_at + duration:
            if self.leading.is_set():
                self._usurper = holder
            return False
        body = self._record(lease, now)
        try:
            self._lease = await self._client.request("PUT", self._path, body=body, timeout=timeout)
        except ApiError as e:
            if e.conflict:
                return False
            raise
        self._saw(self._lease, c.identity)
        return True

    def _saw(self, lease: dict[str, Any], holder: str) -> None:
        """Remember when the record last changed, on our own clock."""
        spec = lease.get("spec") or {}
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock()
        if holder != self.holder:
            self.holder = holder
            if holder and holder != self.config.identity:
                log.info("leader election: the leader is %s", holder)

    def _record(self, lease: dict[str, Any] | None, now: float) -> dict[str, Any]:
        c = self.config
        spec = (lease or {}).get("spec") or {}
        ours = spec.get("holderIdentity") == c.identity
        transitions = int(spec.get("leaseTransitions") or 0)
        if lease is not None and not ours:
            transitions += 1
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": c.name, "namespace": c.namespace},
            "spec": {
                "holderIdentity": c.identity,
                "leaseDurationSeconds": round(c.lease_duration),
                "acquireTime": spec.get("acquireTime") if ours else micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": transitions,
            },
        }
        if lease is not None:
            body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return body

    async def release(self) -> None:
        """Give the Lease up so a follower need not wait for it to expire (idempotent)."""
        if self._released:
            return
        async with self._lock:
            if self._released:
                return
            self._released = True
            if self.leading.is_set() and self._lease is not None:
                self.leading.clear()
                await self._put_release(self._lease)

    async def _put_release(self, lease: dict[str, Any]) -> None:
        c = self.config
        now = self._wall()
        spec = lease.get("spec") or {}
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": c.name,
                "namespace": c.namespace,
                "resourceVersion": lease["metadata"]["resourceVersion"],
            },
            "spec": {
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": micro_time(now),
                "renewTime": micro_time(now),
                "leaseTransitions": spec.get("leaseTransitions") or 0,
            },
        }
        with contextlib.suppress(ApiError, aiohttp.ClientError, OSError, TimeoutError):
            await self._client.request("PUT", self._path, body=body, timeout=5.0)
            log.info("leader election: released lease %s/%s", c.namespace, c.name)
