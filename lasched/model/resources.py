"""Resource vectors: what a pod requests and what a node can give.

Mirrors kube-scheduler's ``framework.Resource``: CPU in millicores, memory and
ephemeral storage in bytes, allowed pod count, and scalar (extended) resources
such as ``nvidia.com/gpu`` by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lasched.model import quantity

CPU = "cpu"
MEMORY = "memory"
EPHEMERAL_STORAGE = "ephemeral-storage"
PODS = "pods"

# Requests that are not node resources and never affect fit.
_IGNORED_PREFIXES = ("hugepages-",)


class Resources:
    """A mutable resource vector. ``scalar`` holds extended resources."""

    __slots__ = ("ephemeral_storage", "memory", "milli_cpu", "pods", "scalar")

    def __init__(
        self,
        *,
        milli_cpu: int = 0,
        memory: int = 0,
        ephemeral_storage: int = 0,
        pods: int = 0,
        scalar: dict[str, int] | None = None,
    ) -> None:
        self.milli_cpu = milli_cpu
        self.memory = memory
        self.ephemeral_storage = ephemeral_storage
        self.pods = pods
        self.scalar: dict[str, int] = scalar if scalar is not None else {}

    @classmethod
    def from_list(cls, rl: Mapping[str, Any] | None) -> Resources:
        """From a ResourceList such as ``{"cpu": "500m", "memory": "1Gi"}``."""
        r = cls()
        if not rl:
            return r
        for name, q in rl.items():
            if name == CPU:
                r.milli_cpu = quantity.milli(q)
            elif name == MEMORY:
                r.memory = quantity.value(q)
            elif name == EPHEMERAL_STORAGE:
                r.ephemeral_storage = quantity.value(q)
            elif name == PODS:
                r.pods = quantity.value(q)
            elif not name.startswith(_IGNORED_PREFIXES):
                r.scalar[name] = quantity.value(q)
        return r

    def copy(self) -> Resources:
        return Resources(
            milli_cpu=self.milli_cpu,
            memory=self.memory,
            ephemeral_storage=self.ephemeral_storage,
            pods=self.pods,
            scalar=dict(self.scalar),
        )

    def add(self, other: Resources) -> None:
        self.milli_cpu += other.milli_cpu
        self.memory += other.memory
        self.ephemeral_storage += other.ephemeral_storage
        self.pods += other.pods
        for k, v in other.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) + v

    def sub(self, other: Resources) -> None:
        self.milli_cpu -= other.milli_cpu
        self.memory -= other.memory
        self.ephemeral_storage -= other.ephemeral_storage
        self.pods -= other.pods
        for k, v in other.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) - v

    def set_max(self, other: Resources) -> None:
        """Each dimension becomes the larger of the two (for init containers)."""
        self.milli_cpu = max(self.milli_cpu, other.milli_cpu)
        self.memory = max(self.memory, other.memory)
        self.ephemeral_storage = max(self.ephemeral_storage, other.ephemeral_storage)
        self.pods = max(self.pods, other.pods)
        for k, v in other.scalar.items():
            self.scalar[k] = max(self.scalar.get(k, 0), v)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resources):
            return NotImplemented
        return (
            self.milli_cpu == other.milli_cpu
            and self.memory == other.memory
            and self.ephemeral_storage == other.ephemeral_storage
            and self.pods == other.pods
            and {k: v for k, v in self.scalar.items() if v}
            == {k: v for k, v in other.scalar.items() if v}
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"cpu={self.milli_cpu}m", f"memory={self.memory}"]
        if self.ephemeral_storage:
            parts.append(f"ephemeral-storage={self.ephemeral_storage}")
        if self.pods:
            parts.append(f"pods={self.pods}")
        parts += [f"{k}={v}" for k, v in sorted(self.scalar.items()) if v]
        return f"Resources({', '.join(parts)})"


def pod_requests(spec: Mapping[str, Any]) -> Resources:
    """What a pod spec requests, computed as kube-scheduler does.

    Regular containers are summed; restartable (sidecar) init containers run
    beside them and are added; each ordinary init container runs alone (after
    the sidecars started before it), so the pod needs the larger of the two
    phases. Pod overhead is added on top. Pod-level ``spec.resources.requests``
    (PodLevelResources) replace the container sum for the resources they name.
    """
    total = Resources()
    for c in spec.get("containers") or ():
        total.add(Resources.from_list((c.get("resources") or {}).get("requests")))

    sidecars = Resources()
    init_peak = Resources()
    for c in spec.get("initContainers") or ():
        req = Resources.from_list((c.get("resources") or {}).get("requests"))
        if c.get("restartPolicy") == "Always":
            sidecars.add(req)
            init_peak.set_max(sidecars)
        else:
            phase = req.copy()
            phase.add(sidecars)
            init_peak.set_max(phase)
    total.add(sidecars)
    total.set_max(init_peak)

    pod_level = (spec.get("resources") or {}).get("requests")
    if pod_level:
        level = Resources.from_list(pod_level)
        if CPU in pod_level:
            total.milli_cpu = level.milli_cpu
        if MEMORY in pod_level:
            total.memory = level.memory

    overhead = spec.get("overhead")
    if overhead:
        total.add(Resources.from_list(overhead))
    return total


DEFAULT_MILLI_CPU_REQUEST = 100
DEFAULT_MEMORY_REQUEST = 200 * 1024 * 1024


def non_zero_requests(spec: Mapping[str, Any]) -> tuple[int, int]:
    """(milli-CPU, memory) for scoring, where a container without a request counts
    as 100m / 200Mi, so that many request-less pods do not all land on one node
    (kube-scheduler's ``GetNonzeroRequests``)."""
    cpu = mem = 0
    for c in spec.get("containers") or ():
        req = Resources.from_list((c.get("resources") or {}).get("requests"))
        cpu += req.milli_cpu or DEFAULT_MILLI_CPU_REQUEST
        mem += req.memory or DEFAULT_MEMORY_REQUEST
    for c in spec.get("initContainers") or ():
        req = Resources.from_list((c.get("resources") or {}).get("requests"))
        cpu = max(cpu, req.milli_cpu or DEFAULT_MILLI_CPU_REQUEST)
        mem = max(mem, req.memory or DEFAULT_MEMORY_REQUEST)
    overhead = Resources.from_list(spec.get("overhead"))
    return cpu + overhead.milli_cpu, mem + overhead.memory
