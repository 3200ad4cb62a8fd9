"""Pod-group (gang) declarations, in every spelling lasched accepts.

A pod belongs to at most one group, named within its namespace. Spellings,
first match wins:

==========================================  ===========================================
lasched labels                              ``lasched.io/pod-group: <name>``,
                                            ``lasched.io/min-available: "<n>"``,
                                            ``lasched.io/timeout-seconds: "<s>"`` (optional)
scheduler-plugins (coscheduling)            ``scheduling.x-k8s.io/pod-group: <name>`` and a
                                            ``PodGroup`` object of that name (minMember,
                                            scheduleTimeoutSeconds)
KubeNexus labels                            ``pod-group.scheduling.kubenexus.io/name``,
                                            ``pod-group.scheduling.kubenexus.io/min-available``
the earlier Python scheduler's annotation   ``pod-group: <name>``; optional
                                            ``pod-group-size: "<n>"``
==========================================  ===========================================

Before all of these, a pod's own ``spec.schedulingGroup`` (``spec.workloadRef`` on
v1.35), Kubernetes' gang API: :mod:`lasched.model.nativegroup` reads it.

For the ``pod-group`` annotation without a declared size, the size comes
from the members' controller (:func:`owner_size`, read from the apiserver by
the scheduler and handed to the gang plugin as a lookup):

==============  ==============================================================
any controller  its annotation ``pod-group-size: "<n>"`` (a JobSet's Jobs, an
                operator's objects: put it on the owner or the pod template)
Job             ``min(parallelism, completions - succeeded)`` (``parallelism``
                alone without ``completions``): the pods the Job controller
                keeps running at once
ReplicaSet      ``spec.replicas`` (a Deployment's pods belong to its current
                ReplicaSet, whose replicas are the Deployment's)
StatefulSet     ``spec.replicas``
==============  ==============================================================

Only when nothing says more (no controller, another kind, or one whose size
cannot be read) is the group all-or-nothing over the members that exist:
min-available is the number of members seen once no new member has arrived
for :data:`ANNOTATION_SETTLE_SECONDS`, so a group created pod by pod is not
mistaken for a group of one.

Values are read strictly (ASCII digits, no ``inf``): min-available and the
group size are integers from 1 to :data:`MAX_MEMBERS`, the timeout a number
of seconds within (0, :data:`MAX_TIMEOUT_SECONDS`], a group name at most
:data:`~lasched.model.strict.MAX_NAME_CHARS` characters. Anything else is a
:class:`GroupError` naming the label or annotation and showing the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from lasched.model.strict import (
    MAX_NAME_CHARS,
    decimal,
    integer,
    shown,
    spells_non_finite,
    too_long,
)

LASCHED_GROUP = "lasched.io/pod-group"
LASCHED_MIN = "lasched.io/min-available"
LASCHED_TIMEOUT = "lasched.io/timeout-seconds"
PODGROUP_LABEL = "scheduling.x-k8s.io/pod-group"
KUBENEXUS_GROUP = "pod-group.scheduling.kubenexus.io/name"
KUBENEXUS_MIN = "pod-group.scheduling.kubenexus.io/min-available"
ANNOTATION_GROUP = "pod-group"
ANNOTATION_SIZE = "pod-group-size"

ANNOTATION_SETTLE_SECONDS = 2.0
DEFAULT_TIMEOUT_SECONDS = 60.0
MAX_TIMEOUT_SECONDS = 86_400.0
MAX_MEMBERS = 2**31 - 1  # PodGroup's minMember is an int32


@dataclass(frozen=True, slots=True)
class GroupDecl:
    """What one pod says about its group."""

    key: str  # namespace/name
    min_available: int | None  # None: all members seen (annotation without a size)
    timeout_seconds: float | None
    source: str
    # Kubernetes' own API (lasched.model.nativegroup): the PodGroup or Workload named
    # (namespace/name), and the Workload's podGroup.
    ref: str | None = None
    template: str | None = None


class GroupError(ValueError):
    """A group declaration that cannot be honoured; the message names the value."""


def _positive_int(value: str, what: str) -> int:
    if problem := too_long(value):
        raise GroupError(f"{what}={shown(value, length=False)}: {problem}")
    n = integer(value)
    if n is None or n < 1:
        raise GroupError(f"{what}={shown(value)} is not a positive integer")
    if n > MAX_MEMBERS:
        raise GroupError(f"{what}={shown(value)} must be at most {MAX_MEMBERS}")
    return n


def _timeout(value: str | None) -> float | None:
    if value is None:
        return None
    what = f"label {LASCHED_TIMEOUT}"
    if problem := too_long(value):
        raise GroupError(f"{what}={shown(value, length=False)}: {problem}")
    t = decimal(value, signed=True, exponent=True)
    if t is None and not spells_non_finite(value):
        raise GroupError(f"{what}={shown(value)} is not a number of seconds")
    if t is None or not math.isfinite(t):
        raise GroupError(f"{what}={shown(value)} is not a finite number of seconds")
    if not 0 < t <= MAX_TIMEOUT_SECONDS:
        raise GroupError(f"{what}={shown(value)} must be within (0, {MAX_TIMEOUT_SECONDS:g}]")
    return t


def _name(value: str, what: str) -> str:
    if len(value) > MAX_NAME_CHARS:
        raise GroupError(f"{what}={shown(value, length=False)}: {too_long(value, MAX_NAME_CHARS)}")
    return value


def declared_group(
    namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> GroupDecl | None:
    """The pod's group declaration, None if it has none; GroupError if it is invalid."""
    if LASCHED_GROUP in labels:
        if LASCHED_MIN not in labels:
            raise GroupError(f"label {LASCHED_GROUP} needs {LASCHED_MIN} beside it")
        return GroupDecl(
            key=f"{namespace}/{_name(labels[LASCHED_GROUP], 'label ' + LASCHED_GROUP)}",
            min_available=_positive_int(labels[LASCHED_MIN], f"label {LASCHED_MIN}"),
            timeout_seconds=_timeout(labels.get(LASCHED_TIMEOUT)),
            source="lasched",
        )
    if PODGROUP_LABEL in labels:
        # min-available and timeout come from the PodGroup object.
        return GroupDecl(
            key=f"{namespace}/{_name(labels[PODGROUP_LABEL], 'label ' + PODGROUP_LABEL)}",
            min_available=None,
            timeout_seconds=None,
            source="podgroup",
        )
    if KUBENEXUS_GROUP in labels:
        if KUBENEXUS_MIN not in labels:
            raise GroupError(f"label {KUBENEXUS_GROUP} needs {KUBENEXUS_MIN} beside it")
        return GroupDecl(
            key=f"{namespace}/{_name(labels[KUBENEXUS_GROUP], 'label ' + KUBENEXUS_GROUP)}",
            min_available=_positive_int(labels[KUBENEXUS_MIN], f"label {KUBENEXUS_MIN}"),
            timeout_seconds=None,
            source="kubenexus",
        )
    if ANNOTATION_GROUP in annotations:
        name = _name(annotations[ANNOTATION_GROUP].strip(), f"annotation {ANNOTATION_GROUP}")
        if not name:
            raise GroupError(f'annotation {ANNOTATION_GROUP}="" names no group')
        size = annotations.get(ANNOTATION_SIZE)
        return GroupDecl(
            key=f"{namespace}/{name}",
            min_available=(
                _positive_int(size, f"annotation {ANNOTATION_SIZE}") if size is not None else None
            ),
            timeout_seconds=None,
            source="annotation",
        )
    return None


@dataclass(frozen=True, slots=True)
class OwnerRef:
    """The ownerReference marked ``controller: true`` of a pod."""

    kind: str
    name: str
    uid: str

    def shown(self, namespace: str) -> str:
        return f"{self.kind} {namespace}/{self.name}"


def owner_ref(meta: Mapping[str, object]) -> OwnerRef | None:
    """The pod's controlling ownerReference, None if it has none (or a malformed one)."""
    refs = meta.get("ownerReferences")
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            kind, name, uid = ref.get("kind"), ref.get("name"), ref.get("uid")
            fields = (kind, name, uid)
            if all(isinstance(f, str) and f for f in fields):
                return OwnerRef(str(kind), str(name), str(uid))
    return None


@dataclass(frozen=True, slots=True)
class OwnerSize:
    """What a controller says about its group's size."""

    size: int | None  # None: nothing (the group falls back to the lull)
    source: str  # "Job default/train's parallelism", or why there is no size
    problem: str | None = None  # a value that could not be read, naming its field


OWNER_APIS: Mapping[str, str] = {
    "Job": "/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
    "ReplicaSet": "/apis/apps/v1/namespaces/{namespace}/replicasets/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
}
"""The controllers whose size lasched reads, and where (a GET of the object)."""


def _count(obj: Mapping[str, object], path: str, default: int | None) -> int | None:
    """An integer field at a dotted path: ``default`` when absent; GroupError when not a
    non-negative integer."""
    value: object = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise GroupError(f"{path}={value!r} is not a non-negative integer")
    return value


def owner_size(namespace: str, ref: OwnerRef, obj: Mapping[str, object]) -> OwnerSize:
    """The group size the controller object ``obj`` says (see the module docstring)."""
    who = ref.shown(namespace)
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if isinstance(annotations, Mapping) and isinstance(
        declared := annotations.get(ANNOTATION_SIZE), str
    ):
        try:
            n = _positive_int(declared, f"annotation {ANNOTATION_SIZE} of {who}")
        except GroupError as e:
            return OwnerSize(None, f"{who} has no readable size: {e}", str(e))
        return OwnerSize(n, f"{who}'s annotation {ANNOTATION_SIZE}")
    try:
        if ref.kind == "Job":
            parallelism = _count(obj, "spec.parallelism", 1)
            completions = _count(obj, "spec.completions", None)
            succeeded = _count(obj, "status.succeeded", 0)
            assert parallelism is not None and succeeded is not None
            if completions is None:
                return _sized(parallelism, f"{who}'s parallelism")
            left = completions - succeeded
            if left < parallelism:
                return _sized(left, f"{who}'s completions left ({completions} - {succeeded})")
            return _sized(parallelism, f"{who}'s parallelism")
        if ref.kind in ("ReplicaSet", "StatefulSet"):
            replicas = _count(obj, "spec.replicas", 1)
            assert replicas is not None
            return _sized(replicas, f"{who}'s replicas")
    except GroupError as e:
        return OwnerSize(None, f"{who} has no readable size: {e}", f"{who}: {e}")
    return OwnerSize(None, f"{who} says no size (annotate it with {ANNOTATION_SIZE})")


def _sized(n: int, source: str) -> OwnerSize:
    # 0 (a Job scaled to nothing, a ReplicaSet at 0): no group to wait for; let the lull decide.
    if n < 1:
        return OwnerSize(None, f"{source} is {n}")
    return OwnerSize(min(n, MAX_MEMBERS), source)


class PodGroup:
    """A scheduler-plugins ``PodGroup`` object (scheduling.x-k8s.io/v1alpha1)."""

    __slots__ = ("key", "min_member", "resource_version", "timeout_seconds")

    def __init__(self, obj: Mapping[str, object]) -> None:
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        assert isinstance(meta, dict) and isinstance(spec, dict)
        self.key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        self.resource_version: str = str(meta.get("resourceVersion", ""))
        self.min_member: int = int(spec.get("minMember") or 1)
        timeout = spec.get("scheduleTimeoutSeconds")
        self.timeout_seconds: float | None = float(timeout) if timeout else None
