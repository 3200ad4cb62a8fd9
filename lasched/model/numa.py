"""NUMA topology: what a NodeResourceTopology says of a node, and what a pod asks of it.

**The node side.** A NodeResourceTopology (``topology.node.k8s.io/v1alpha2``,
cluster-scoped, named after its node) is published by Node Feature
Discovery's topology-updater or the resource-topology-exporter. Its zones of
type ``Node`` are the NUMA nodes, each with the capacity, allocatable and
*available* amount of every resource it holds; its top-level attributes
``topologyManagerPolicy`` and ``topologyManagerScope`` are the kubelet's
Topology Manager settings (the deprecated ``topologyPolicies`` list, such as
``SingleNUMANodeContainerLevel``, is read when the attributes are absent,
as scheduler-plugins does). :class:`NodeTopology` decodes one strictly: a
field of the wrong type, a quantity that is not one, a negative amount, a
``Node`` zone whose name is not ``node-<id>`` raise :class:`TopologyError`
naming the field by its path (``zones[1].resources[0].available``). Zones of
other types (sockets, cores) are read for their shape and not kept.
:meth:`NodeTopology.reported` builds the same model from what a node's
``lasched-agent`` reports (:data:`SOURCE_AGENT`), where nothing publishes
one: its zones' allocatable is their capacity, and so is their available
(the agent does not see the kubelet's allocations; lasched's own placements
are subtracted by lasched/cache/topology.py).

**The pod side.** :func:`numa_request` reads what a pod asks: the KubeNexus
annotations, in KubeNexus's spelling (``numa.scheduling.kubenexus.io/policy``:
``best-effort``, ``restricted``, ``single-numa`` or ``isolated``;
``numa.scheduling.kubenexus.io/resources``: a comma-separated list of
resource names), its QoS class and its per-container requests. As the kubelet
does, CPU and memory are NUMA-aligned only for a Guaranteed pod (every
container's CPU and memory limits set, requests equal to them): the CPU
manager's static policy and the memory manager pin no one else. Devices and
other extended resources are aligned whatever the QoS (the device manager
gives hints for every pod). A malformed annotation never fails decoding: it
becomes :attr:`NumaRequest.error`, which the scheduler turns into a Warning
Event and the plugin into an unresolvable rejection.

Amounts are integers: CPU in millicores, memory and the rest in base units.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lasched.model import quantity
from lasched.model.resources import CPU, EPHEMERAL_STORAGE, MEMORY, PODS, Resources
from lasched.model.strict import integer, shown

Amounts = Mapping[str, int]
"""Resource name -> amount (CPU in millicores)."""

API_VERSION = "topology.node.k8s.io/v1alpha2"

POLICY_ANNOTATION = "numa.scheduling.kubenexus.io/policy"
RESOURCES_ANNOTATION = "numa.scheduling.kubenexus.io/resources"

MAX_ZONES = 64
"""NUMA zones read per node (the kubelet's bitmask holds 64)."""

MAX_RESOURCES = 64
"""Resources read per zone, and names in the resources annotation."""

ZONE_PREFIX = "node-"
SOURCE_NRT = "NodeResourceTopology"
SOURCE_AGENT = "lasched-agent"
"""Where a node's topology comes from: a published object, or the node's agent."""
NATIVE = frozenset({CPU, MEMORY})
"""Resources the kubelet aligns only for Guaranteed pods."""


class Policy(enum.StrEnum):
    """The kubelet's Topology Manager policy (``--topology-manager-policy``)."""

    NONE = "none"
    BEST_EFFORT = "best-effort"
    RESTRICTED = "restricted"
    SINGLE_NUMA_NODE = "single-numa-node"


class Scope(enum.StrEnum):
    """The kubelet's Topology Manager scope: each container aligned alone, or the pod."""

    CONTAINER = "container"
    POD = "pod"


class PodPolicy(enum.StrEnum):
    """What a pod asks with ``numa.scheduling.kubenexus.io/policy`` (KubeNexus's words)."""

    BEST_EFFORT = "best-effort"
    RESTRICTED = "restricted"
    SINGLE_NUMA = "single-numa"
    ISOLATED = "isolated"


# The deprecated topologyPolicies values (noderesourcetopology-api's TopologyManagerPolicy).
_LEGACY: Mapping[str, tuple[Policy, Scope]] = {
    "SingleNUMANodeContainerLevel": (Policy.SINGLE_NUMA_NODE, Scope.CONTAINER),
    "SingleNUMANodePodLevel": (Policy.SINGLE_NUMA_NODE, Scope.POD),
    "Restricted": (Policy.RESTRICTED, Scope.CONTAINER),
    "RestrictedContainerLevel": (Policy.RESTRICTED, Scope.CONTAINER),
    "RestrictedPodLevel": (Policy.RESTRICTED, Scope.POD),
    "BestEffort": (Policy.BEST_EFFORT, Scope.CONTAINER),
    "BestEffortContainerLevel": (Policy.BEST_EFFORT, Scope.CONTAINER),
    "BestEffortPodLevel": (Policy.BEST_EFFORT, Scope.POD),
    "None": (Policy.NONE, Scope.CONTAINER),
}


class TopologyError(ValueError):
    """A NodeResourceTopology lasched cannot read; the message names the field."""


@dataclass(frozen=True, slots=True)
class Zone:
    """One NUMA node of a machine: its id (``node-<id>``) and its amounts."""

    name: str
    numa_id: int
    capacity: Amounts
    allocatable: Amounts
    available: Amounts


def amount(resource: str, value: Any) -> int:
    """A quantity as lasched counts it (CPU in millicores); QuantityError if it is none."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise quantity.QuantityError(f"{value!r} is not a quantity")
    return quantity.milli(value) if resource == CPU else quantity.value(value)


def _list(value: Any, path: str, *, limit: int) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise TopologyError(f"{path} must be a list, not {type(value).__name__}")
    if len(value) > limit:
        raise TopologyError(f"{path} has {len(value)} items; at most {limit} are read")
    return value


def _map(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TopologyError(f"{path} must be an object, not {type(value).__name__}")
    return value


def _string(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise TopologyError(f"{path}.{key} must be a non-empty string, not {value!r}")
    return value


def _zone(raw: Any, path: str) -> Zone | None:
    z = _map(raw, path)
    name, kind = _string(z, "name", path), _string(z, "type", path)
    amounts: dict[str, dict[str, int]] = {"capacity": {}, "allocatable": {}, "available": {}}
    for j, r in enumerate(_list(z.get("resources"), f"{path}.resources", limit=MAX_RESOURCES)):
        rpath = f"{path}.resources[{j}]"
        res = _map(r, rpath)
        resource = _string(res, "name", rpath)
        for field, into in amounts.items():
            if field not in res:
                raise TopologyError(f"{rpath}.{field} is required")
            try:
                n = amount(resource, res[field])
            except quantity.QuantityError as e:
                raise TopologyError(f"{rpath}.{field}: {e}") from None
            if n < 0:
                raise TopologyError(f"{rpath}.{field} must not be negative, not {res[field]!r}")
            into[resource] = n
    if kind != "Node":
        return None
    numa_id = integer(name[len(ZONE_PREFIX) :]) if name.startswith(ZONE_PREFIX) else None
    if numa_id is None or numa_id < 0:
        raise TopologyError(
            f"{path}.name must be node-<NUMA id> for a Node zone, not {shown(name)}"
        )
    return Zone(name, numa_id, amounts["capacity"], amounts["allocatable"], amounts["available"])


def _manager(obj: Mapping[str, Any]) -> tuple[Policy, Scope]:
    """The Topology Manager's policy and scope: the attributes, else the legacy list."""
    policy, scope = Policy.NONE, Scope.CONTAINER
    legacy = _list(obj.get("topologyPolicies"), "topologyPolicies", limit=16)
    if legacy:
        first = legacy[0]
        if not isinstance(first, str) or first not in _LEGACY:
            raise TopologyError(
                f"topologyPolicies[0] must be one of {', '.join(_LEGACY)}, not {first!r}"
            )
        policy, scope = _LEGACY[first]
    for j, raw in enumerate(_list(obj.get("attributes"), "attributes", limit=256)):
        a = _map(raw, f"attributes[{j}]")
        name, value = a.get("name"), a.get("value")
        if name == "topologyManagerPolicy":
            if value not in tuple(Policy):
                raise TopologyError(
                    f"attributes[{j}] (topologyManagerPolicy) must be one of "
                    f"{', '.join(Policy)}, not {value!r}"
                )
            policy = Policy(value)
        elif name == "topologyManagerScope":
            if value not in tuple(Scope):
                raise TopologyError(
                    f"attributes[{j}] (topologyManagerScope) must be container or pod, "
                    f"not {value!r}"
                )
            scope = Scope(value)
    return policy, scope


class NodeTopology:
    """A decoded NodeResourceTopology. Immutable: a new event builds a new one."""

    __slots__ = ("key", "name", "policy", "resource_version", "scope", "source", "zones")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = _map(obj.get("metadata"), "metadata")
        self.name: str = _string(meta, "name", "metadata")
        self.key = self.name
        self.resource_version: str = str(meta.get("resourceVersion", ""))
        self.policy, self.scope = _manager(obj)
        zones = []
        for i, raw in enumerate(_list(obj.get("zones"), "zones", limit=4 * MAX_ZONES)):
            z = _zone(raw, f"zones[{i}]")
            if z is not None:
                zones.append(z)
        if len(zones) > MAX_ZONES:
            raise TopologyError(f"zones has {len(zones)} Node zones; at most {MAX_ZONES}")
        if len({z.numa_id for z in zones}) != len(zones):
            raise TopologyError("zones names a NUMA node twice")
        self.zones: tuple[Zone, ...] = tuple(sorted(zones, key=lambda z: z.numa_id))
        self.source = SOURCE_NRT

    @classmethod
    def reported(
        cls,
        name: str,
        *,
        policy: Policy,
        scope: Scope,
        zones: Mapping[int, Amounts],
        version: str,
    ) -> NodeTopology:
        """What a node's agent reports: NUMA id -> capacity (CPU in millicores), taken as
        allocatable and available too. ``version`` stands for a resourceVersion."""
        t = cls.__new__(cls)
        t.name = t.key = name
        t.resource_version = version
        t.policy, t.scope = policy, scope
        t.zones = tuple(
            Zone(f"{ZONE_PREFIX}{i}", i, dict(a), dict(a), dict(a))
            for i, a in sorted(zones.items())
        )
        t.source = SOURCE_AGENT
        return t

    def __repr__(self) -> str:
        return f"NodeTopology({self.name}, {self.policy}/{self.scope}, zones={len(self.zones)})"


# ---- the pod side ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContainerRequest:
    """One container's requests, as the kubelet aligns them in container scope."""

    name: str
    init: bool  # an ordinary init container: runs alone, before the others
    amounts: Amounts


@dataclass(frozen=True, slots=True)
class NumaRequest:
    """What a pod asks of NUMA placement, and what the kubelet would align for it."""

    policy: PodPolicy | None
    """The pod's annotation; None: only the nodes' Topology Manager policies apply."""
    listed: frozenset[str] | None
    """The resources the annotation lists (None: every aligned resource)."""
    guaranteed: bool
    pod: Amounts
    """The pod's effective requests of resources the kubelet aligns (pod scope)."""
    containers: tuple[ContainerRequest, ...]
    """Each container's (container scope), init containers first."""
    error: str | None = None
    note: str | None = None
    """A listed resource the kubelet will not align (CPU or memory of a non-Guaranteed pod)."""

    def aligned(self, *, by_pod: bool) -> frozenset[str]:
        """The resources to fit in one zone: all the kubelet aligns, or (``by_pod``: for the
        pod's own policy) those the annotation lists among them."""
        names = frozenset(self.pod)
        if by_pod and self.listed is not None:
            return names & self.listed
        return names


def _aligned(resources: Resources, guaranteed: bool) -> dict[str, int]:
    out = {k: v for k, v in resources.scalar.items() if v > 0}
    if guaranteed:
        if resources.milli_cpu:
            out[CPU] = resources.milli_cpu
        if resources.memory:
            out[MEMORY] = resources.memory
    return out


def _equal(a: Any, b: Any, resource: str) -> bool:
    try:
        return amount(resource, a) == amount(resource, b)
    except quantity.QuantityError:
        return False


def is_guaranteed(spec: Mapping[str, Any]) -> bool:
    """The pod's QoS class is Guaranteed: every container (init ones too) has CPU and
    memory limits, and its requests of them, when given, equal the limits."""
    containers = [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]
    if not containers:
        return False
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for r in (CPU, MEMORY):
            if r not in limits:
                return False
            if r in requests and not _equal(requests[r], limits[r], r):
                return False
    return True


def _requests(c: Mapping[str, Any]) -> Resources:
    res = c.get("resources") or {}
    # A container with limits only is given requests equal to them by the apiserver.
    return Resources.from_list(res.get("requests") or res.get("limits"))


def _parse_listed(text: str) -> frozenset[str] | str:
    if len(text) > 4096:
        return f"annotation {RESOURCES_ANNOTATION}={shown(text, length=False)} is too long"
    names = [n.strip() for n in text.split(",")]
    if not all(names) or len(names) > MAX_RESOURCES:
        return (
            f"annotation {RESOURCES_ANNOTATION}={shown(text)} must be a comma-separated "
            f"list of at most {MAX_RESOURCES} resource names, such as cpu,memory,nvidia.com/gpu"
        )
    bad = [n for n in names if n in (EPHEMERAL_STORAGE, PODS) or n.startswith("hugepages-")]
    if bad:
        return f"annotation {RESOURCES_ANNOTATION} names {bad[0]}, which lasched does not align"
    return frozenset(names)


def numa_request(
    spec: Mapping[str, Any], annotations: Mapping[str, str], requests: Resources
) -> NumaRequest | None:
    """What the pod asks of NUMA placement (``requests``: its effective requests); None
    when nothing of it can need alignment (no annotation, no resource the kubelet aligns)."""
    raw_policy = annotations.get(POLICY_ANNOTATION)
    raw_listed = annotations.get(RESOURCES_ANNOTATION)
    guaranteed = is_guaranteed(spec)
    native_asked = bool(requests.milli_cpu or requests.memory)
    aligns_any = bool(requests.scalar) or (guaranteed and native_asked)
    if raw_policy is None and raw_listed is None and not aligns_any:
        return None  # most pods: decided before their containers are read again
    containers = []
    for c in spec.get("initContainers") or ():
        init = c.get("restartPolicy") != "Always"
        amounts = _aligned(_requests(c), guaranteed)
        containers.append(ContainerRequest(str(c.get("name", "")), init, amounts))
    for c in spec.get("containers") or ():
        amounts = _aligned(_requests(c), guaranteed)
        containers.append(ContainerRequest(str(c.get("name", "")), False, amounts))
    pod = _aligned(requests, guaranteed)
    if raw_policy is None and raw_listed is None and not pod:
        return None
    error = note = None
    policy: PodPolicy | None = None
    listed: frozenset[str] | None = None
    if raw_policy is not None:
        if raw_policy.strip() in tuple(PodPolicy):
            policy = PodPolicy(raw_policy.strip())
        else:
            error = (
                f"annotation {POLICY_ANNOTATION}={shown(raw_policy)} must be one of "
                f"{', '.join(PodPolicy)}"
            )
    if raw_listed is not None and error is None:
        parsed = _parse_listed(raw_listed)
        if isinstance(parsed, str):
            error = parsed
        else:
            listed = parsed
            if policy is None:
                error = f"annotation {RESOURCES_ANNOTATION} needs {POLICY_ANNOTATION} beside it"
            elif not guaranteed and (native := sorted(parsed & NATIVE)):
                note = (
                    f"annotation {RESOURCES_ANNOTATION} lists {', '.join(native)}, but the pod "
                    "is not Guaranteed QoS (every container's CPU and memory limits set and "
                    "equal to its requests): the kubelet aligns CPU and memory only for "
                    "Guaranteed pods, so lasched checks the other listed resources only"
                )
    if policy is not None and note is None and not guaranteed and listed is None and native_asked:
        note = (
            f"annotation {POLICY_ANNOTATION} asks {policy}, but the pod is not Guaranteed "
            "QoS (every container's CPU and memory limits set and equal to its requests): "
            "the kubelet aligns its devices only, and lasched checks those"
        )
    return NumaRequest(policy, listed, guaranteed, pod, tuple(containers), error, note)
