"""What remediation may never touch, what counts as a broken limit, and the rate limits.

The safety rules follow the descheduler's default evictor
(``pkg/framework/plugins/defaultevictor`` in kubernetes-sigs/descheduler):
no mirror (static) pods, no DaemonSet pods, no pods without a controller, no
system-critical pods, no pods with local storage unless allowed, nothing in
an excluded namespace, and nothing already terminating. lasched is stricter
in two places (docs/latency.md, "Remediation"): the controller must be one
that recreates the pod (ReplicaSet, ReplicationController, StatefulSet), and
a member of a pod group stays, because moving one member breaks its gang's
all-or-nothing placement.

A limit is *broken* only by a fresh RTT above it: a missing or stale RTT is
no evidence, so it never starts or continues a grace period.

Invariant of :class:`RateLimits`: within any window of ``window`` seconds, at
most ``per_node`` evictions from one node, ``per_namespace`` from one
namespace and ``total`` overall are granted.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Collection

from lasched.latency.cache import LatencyCache
from lasched.model.pod import PodInfo
from lasched.plugins.latency import between

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
SYSTEM_CRITICAL_PRIORITY = 2_000_000_000
"""Kubernetes' ``SystemCriticalPriority``: system-cluster-critical and above."""
RECREATING_KINDS = frozenset({"ReplicaSet", "ReplicationController", "StatefulSet"})
"""Controllers that create a replacement for an evicted pod without further ado."""


class Outcome(enum.Enum):
    """What remediation did about one pod whose trigger was due; the value is the metric label."""

    EVICTED = "evicted"
    DRY_RUN = "dry_run"
    NO_CONTROLLER = "no_controller"
    DAEMONSET = "daemonset"
    MIRROR = "mirror"
    EXCLUDED_NAMESPACE = "excluded_namespace"
    CRITICAL = "critical"
    LOCAL_STORAGE = "local_storage"
    POD_GROUP = "pod_group"
    COOL_DOWN = "cool_down"
    RATE_LIMITED = "rate_limited"
    NO_PLACEMENT = "no_placement"
    PDB_REFUSED = "pdb_refused"
    FAILED = "failed"


WHY: dict[Outcome, str] = {
    Outcome.NO_CONTROLLER: "no controller would recreate it",
    Outcome.DAEMONSET: "a DaemonSet pod belongs on its node",
    Outcome.MIRROR: "a mirror (static) pod is the kubelet's",
    Outcome.EXCLUDED_NAMESPACE: "its namespace is excluded (remediation.excludedNamespaces)",
    Outcome.CRITICAL: "a system-critical pod",
    Outcome.LOCAL_STORAGE: "its emptyDir or hostPath data would be lost "
    "(remediation.evictLocalStoragePods)",
    Outcome.POD_GROUP: "moving one member would break its pod group's placement",
    Outcome.COOL_DOWN: "in its cool-down (remediation.cooldownSeconds)",
    Outcome.RATE_LIMITED: "a rate limit is reached",
    Outcome.NO_PLACEMENT: "no replacement could be placed within its limits now",
    Outcome.PDB_REFUSED: "the Eviction API refused (PodDisruptionBudget)",
    Outcome.FAILED: "the eviction failed",
    Outcome.DRY_RUN: "dry run (remediation.dryRun)",
}
"""Why a pod was not evicted, as its Event says."""


def exempt(
    pod: PodInfo, *, excluded_namespaces: Collection[str], local_storage: bool
) -> Outcome | None:
    """The safety rule that keeps ``pod`` where it is, or None when none does."""
    if MIRROR_ANNOTATION in pod.annotations:
        return Outcome.MIRROR
    if pod.namespace in excluded_namespaces:
        return Outcome.EXCLUDED_NAMESPACE
    if pod.controller is not None and pod.controller[0] == "DaemonSet":
        return Outcome.DAEMONSET
    if pod.controller is None or pod.controller[0] not in RECREATING_KINDS:
        return Outcome.NO_CONTROLLER
    if pod.priority >= SYSTEM_CRITICAL_PRIORITY:
        return Outcome.CRITICAL
    if pod.local_storage and not local_storage:
        return Outcome.LOCAL_STORAGE
    if pod.group is not None:
        return Outcome.POD_GROUP
    return None


def broken_limits(latency: LatencyCache, pod: PodInfo, node: str) -> list[str]:
    """Each hard limit to a place that a fresh RTT from ``node`` breaks, with its figures:
    ``rtt from edge-0 = 48.0 ms > 10 ms (delay_edge-0, 2 s old)``. Empty when none is."""
    req = pod.latency
    if req is None:
        return []
    out = []
    for limit in req.limits:
        rtt = between(latency, limit.place, node)
        if rtt is None or rtt.stale or rtt.ms <= limit.max_ms:
            continue
        age = "static" if rtt.source == "static" else f"{rtt.age_s:.0f} s old"
        figure = f"rtt from {limit.place} = {rtt.ms:.1f} ms > {limit.max_ms:g} ms"
        out.append(f"{figure} ({limit.origin}, {age})")
    return out


class RateLimits:
    """Evictions granted per node, per namespace and overall within a sliding window."""

    def __init__(self, *, window: float, per_node: int, per_namespace: int, total: int) -> None:
        if not window > 0:
            raise ValueError(f"`window` must be positive, not {window}")
        self._window = window
        self._per_node = per_node
        self._per_namespace = per_namespace
        self._total = total
        self._granted: deque[tuple[float, str, str]] = deque()  # (when, node, namespace)

    def allows(self, now: float, *, node: str, namespace: str) -> bool:
        """Whether one more eviction from ``node`` in ``namespace`` fits every limit now."""
        self._expire(now)
        if len(self._granted) >= self._total:
            return False
        on_node = sum(1 for _, n, _ in self._granted if n == node)
        in_namespace = sum(1 for _, _, ns in self._granted if ns == namespace)
        return on_node < self._per_node and in_namespace < self._per_namespace

    def take(self, now: float, *, node: str, namespace: str) -> None:
        """Count one eviction (call after :meth:`allows` said yes)."""
        self._granted.append((now, node, namespace))

    def _expire(self, now: float) -> None:
        while self._granted and self._granted[0][0] <= now - self._window:
            self._granted.popleft()
