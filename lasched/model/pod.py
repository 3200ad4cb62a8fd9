"""PodInfo: the parts of a Pod the scheduler reads, decoded once per event.

Only what scheduling needs is kept: the full object of 30,000 pods would cost
several times the memory (see bench/). Sub-structures that plugins interpret
(affinity, tolerations) stay as the apiserver's JSON, which is already small;
what many pods repeat (tolerations, short strings, empty maps) is held once
(lasched/model/sharing.py).

Labels and annotations are free text, so decoding never fails on their
values: a malformed one becomes an error text (``latency_error``,
``group_error``, ``priority_error``, ``numa.error``) that the scheduler turns into a Warning
Event. Pod (anti-)affinity and topology spread constraints are parsed here,
once per pod version (lasched/model/affinity.py); a malformed one becomes
``affinity_error`` / ``spread_error``, which its plugin's PreFilter reports.
Only a structure the apiserver would never send (a pod without
``metadata.name``) raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NewType

from lasched.model.affinity import (
    PodAffinity,
    SpreadConstraint,
    controller_of,
    parse_pod_affinity,
    parse_spread_constraints,
)
from lasched.model.images import pod_images
from lasched.model.latencyreq import GROUP_MAX_RTT, LatencyRequirements, parse_requirements
from lasched.model.nativegroup import native_group
from lasched.model.numa import NumaRequest, numa_request
from lasched.model.podgroup import GroupDecl, GroupError, OwnerRef, declared_group, owner_ref
from lasched.model.priority import effective_priority
from lasched.model.resources import Resources, non_zero_requests, pod_requests
from lasched.model.sharing import EMPTY, shared_str, shared_tolerations, shared_values
from lasched.model.strict import integer
from lasched.model.volume import PodClaim, pod_claims

PodKey = NewType("PodKey", str)
"""``namespace/name``."""

UID = NewType("UID", str)

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def pod_key(namespace: str, name: str) -> PodKey:
    return PodKey(f"{namespace}/{name}")


def parse_time(text: str | None) -> float:
    """An RFC 3339 timestamp from the apiserver as a Unix time (0.0 if absent)."""
    if not text:
        return 0.0
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class PodInfo:
    """A decoded pod. Treat instances as immutable: a new event builds a new one."""

    __slots__ = (
        "affinity",
        "affinity_error",
        "annotations",
        "claims",
        "controller",
        "created",
        "deleting",
        "group",
        "group_error",
        "host_ports",
        "images",
        "key",
        "labels",
        "latency",
        "latency_error",
        "local_storage",
        "name",
        "namespace",
        "node_name",
        "node_selector",
        "nominated_node_name",
        "non_zero",
        "numa",
        "owner",
        "phase",
        "pod_affinity",
        "preemption_policy",
        "priority",
        "priority_error",
        "requests",
        "resource_version",
        "scheduler_name",
        "scheduling_gates",
        "spread_constraints",
        "spread_error",
        "tolerations",
        "uid",
        "unschedulable_message",
    )

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        self.namespace: str = shared_str(meta.get("namespace", "default"))
        self.name: str = meta["name"]
        self.key = pod_key(self.namespace, self.name)
        self.uid = UID(meta.get("uid", ""))
        self.resource_version: str = meta.get("resourceVersion", "")
        self.labels: Mapping[str, str] = shared_values(meta.get("labels"))
        self.annotations: Mapping[str, str] = meta.get("annotations") or EMPTY
        self.created: float = parse_time(meta.get("creationTimestamp"))
        self.deleting: bool = meta.get("deletionTimestamp") is not None
        self.scheduler_name: str = shared_str(spec.get("schedulerName", "default-scheduler"))
        self.node_name: str = shared_str(spec.get("nodeName", ""))
        self.scheduling_gates: tuple[str, ...] = tuple(
            g.get("name", "") for g in spec.get("schedulingGates") or ()
        )
        self.node_selector: Mapping[str, str] = shared_values(spec.get("nodeSelector"))
        self.affinity: Mapping[str, Any] = spec.get("affinity") or EMPTY
        self.tolerations: list[dict[str, Any]] = shared_tolerations(spec.get("tolerations"))
        self.priority, self.priority_error = effective_priority(spec, self.annotations)
        self.preemption_policy: str = shared_str(
            spec.get("preemptionPolicy", "PreemptLowerPriority")
        )
        self.phase: str = shared_str(status.get("phase", "Pending"))
        self.nominated_node_name: str = status.get("nominatedNodeName", "")
        # What the PodScheduled=False condition says now (None: no such condition): a
        # scheduler need not write the same again (kube-scheduler's updatePod skips it).
        self.unschedulable_message: str | None = _unschedulable_message(status)
        self.requests: Resources = pod_requests(spec)
        self.non_zero: tuple[int, int] = non_zero_requests(spec)
        self.host_ports: tuple[tuple[str, str, int], ...] = _host_ports(spec)
        # Normalized images of the init containers, then the containers (ImageLocality).
        self.images: tuple[str, ...] = pod_images(spec)
        # The PersistentVolumeClaims its volumes use (lasched/plugins/volumebinding.py).
        self.claims: tuple[PodClaim, ...] = pod_claims(self.name, spec) if "volumes" in spec else ()
        # An emptyDir or hostPath volume: data an eviction would lose (latency remediation).
        self.local_storage: bool = "volumes" in spec and _local_storage(spec)
        self.latency: LatencyRequirements | None
        self.latency, self.latency_error = parse_requirements(self.labels, self.annotations)
        self.group: GroupDecl | None = None
        self.group_error: str | None = None
        try:
            # Kubernetes' own gang API first: it is what kube-scheduler would honour.
            self.group = native_group(self.namespace, spec) or declared_group(
                self.namespace, self.labels, self.annotations
            )
        except GroupError as e:
            self.group_error = str(e)
        # A group declared without a size takes it from the controller (lasched.model.podgroup);
        # a latency pod's says how many like it are still to come (lasched.latency.demand).
        self.owner: OwnerRef | None = (
            owner_ref(meta)
            if (
                self.group is not None and self.group.source == "annotation"
                and self.group.min_available is None
            )
            or self.latency is not None
            else None
        )  # fmt: skip
        if self.latency is not None and self.latency.group_max_ms and self.group is None:
            self.latency_error = f"annotation {GROUP_MAX_RTT} needs the pod to be in a pod group"
        # (kind, uid) of the controlling ownerReference: default spreading groups by it.
        self.controller: tuple[str, str] | None = controller_of(meta)
        self.pod_affinity: PodAffinity | None
        self.affinity_error: str | None
        self.pod_affinity, self.affinity_error = parse_pod_affinity(
            self.affinity, namespace=self.namespace, labels=self.labels
        )
        # None for most pods: nothing the kubelet would NUMA-align, no annotation.
        self.numa: NumaRequest | None = numa_request(spec, self.annotations, self.requests)
        self.spread_constraints: tuple[SpreadConstraint, ...]
        self.spread_error: str | None
        self.spread_constraints, self.spread_error = parse_spread_constraints(
            spec.get("topologySpreadConstraints"), labels=self.labels
        )

    @property
    def bound(self) -> bool:
        return bool(self.node_name)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def __repr__(self) -> str:
        return f"PodInfo({self.key}, node={self.node_name or '-'}, rv={self.resource_version})"


def _local_storage(spec: Mapping[str, Any]) -> bool:
    """Whether a volume keeps data on the node (the descheduler's ``IsPodWithLocalStorage``)."""
    return any(
        isinstance(v, Mapping) and (v.get("emptyDir") is not None or v.get("hostPath") is not None)
        for v in spec.get("volumes") or ()
    )


def _host_ports(spec: Mapping[str, Any]) -> tuple[tuple[str, str, int], ...]:
    """(hostIP, protocol, hostPort) of every container port that claims a host port.

    A hostPort that is not a port number (1..65535) claims nothing: the
    apiserver never stores one, and decoding must not fail on it.
    """
    ports = []
    for c in (*(spec.get("initContainers") or ()), *(spec.get("containers") or ())):
        for p in c.get("ports") or ():
            hp = p.get("hostPort")
            if isinstance(hp, str):
                hp = integer(hp)
            if isinstance(hp, int) and not isinstance(hp, bool) and 0 < hp < 65536:
                ports.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", hp))
    return tuple(ports)


def _unschedulable_message(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or ():
        if cond.get("type") == "PodScheduled":
            if cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                return str(cond.get("message", ""))
            return None
    return None
