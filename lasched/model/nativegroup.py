"""Kubernetes' own gang API (``scheduling.k8s.io``): which release serves what, and how
its objects and pods' references read.

Three shapes, one per release; the API server serves exactly one of them:

=======  ========================  ====================================  ==========================
release  served                    pod field                             status condition
=======  ========================  ====================================  ==========================
v1.37    ``v1beta1`` PodGroup      ``spec.schedulingGroup.podGroupName``  PodGroupInitiallyScheduled
v1.36    ``v1alpha2`` PodGroup     ``spec.schedulingGroup.podGroupName``  PodGroupScheduled
v1.35    ``v1alpha1`` Workload     ``spec.workloadRef`` (name, podGroup,  none (no status)
         (``spec.podGroups``)      podGroupReplicaKey)
=======  ========================  ====================================  ==========================

(v1.36 and v1.37 serve Workloads too, as templates from which controllers create
PodGroups; the scheduler reads only the PodGroups.)

A PodGroup's ``spec.schedulingPolicy`` (a Workload's ``podGroups[].policy`` on v1.35)
has exactly one of ``basic`` (each pod is scheduled on its own) and ``gang`` (all or
nothing: ``minCount`` members placed at once, or none). The group of a pod that names a
PodGroup is keyed by the PodGroup (``namespace/name``); on v1.35 by the Workload, its
podGroup and the replica key (``namespace/workload/podGroup[/replica]``).

Invariant: nothing here raises on what a user wrote. A pod's reference that cannot be
read is a :class:`~lasched.model.podgroup.GroupError` naming the field; an object's
policy that cannot be read is a :class:`Policy` with ``problem`` naming the field,
which keeps its members waiting with that message rather than scheduling them under a
policy they did not ask for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lasched.model.podgroup import MAX_MEMBERS, GroupDecl, GroupError
from lasched.model.strict import MAX_NAME_CHARS, shown, shown_json

GROUP = "scheduling.k8s.io"
SCHEDULING_GROUP = "schedulingGroup"
WORKLOAD_REF = "workloadRef"
# metav1.Condition's message is at most 32768 bytes.
MAX_CONDITION_MESSAGE = 32_768


@dataclass(frozen=True, slots=True)
class NativeApi:
    """One release's shape of the API (see the module docstring)."""

    version: str
    resource: str  # what lasched watches: podgroups, or workloads on v1alpha1
    kind: str
    condition: str | None  # the condition kube-scheduler sets on a PodGroup

    @property
    def group_version(self) -> str:
        return f"{GROUP}/{self.version}"

    @property
    def path(self) -> str:
        return f"/apis/{self.group_version}/{self.resource}"


V1BETA1 = NativeApi("v1beta1", "podgroups", "PodGroup", "PodGroupInitiallyScheduled")
V1ALPHA2 = NativeApi("v1alpha2", "podgroups", "PodGroup", "PodGroupScheduled")
V1ALPHA1 = NativeApi("v1alpha1", "workloads", "Workload", None)
NATIVE_APIS = (V1BETA1, V1ALPHA2, V1ALPHA1)
"""Newest first: a server that serves more than one is read in its newest shape."""


def choose_api(served: Mapping[str, frozenset[str]]) -> NativeApi | None:
    """The newest shape whose resource the server lists (group-version -> resources)."""
    for api in NATIVE_APIS:
        if api.resource in served.get(api.group_version, frozenset()):
            return api
    return None


# ---- a pod's reference ---------------------------------------------------------------


def _ref_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise GroupError(f"{what}={shown_json(value)} is not a name")
    if len(value) > MAX_NAME_CHARS:
        raise GroupError(f"{what}={shown(value, length=False)} is longer than {MAX_NAME_CHARS}")
    return value


def native_group(namespace: str, spec: Mapping[str, Any]) -> GroupDecl | None:
    """The group a pod's spec names (``schedulingGroup`` or ``workloadRef``), None if it
    names none; GroupError naming the field if the reference cannot be read."""
    sg = spec.get(SCHEDULING_GROUP)
    if sg is not None:
        what = f"spec.{SCHEDULING_GROUP}"
        if not isinstance(sg, Mapping):
            raise GroupError(f"{what}={shown_json(sg)} is not an object")
        name = _ref_name(sg.get("podGroupName"), f"{what}.podGroupName")
        key = f"{namespace}/{name}"
        return GroupDecl(key, None, None, "native", ref=key)
    wr = spec.get(WORKLOAD_REF)
    if wr is not None:
        what = f"spec.{WORKLOAD_REF}"
        if not isinstance(wr, Mapping):
            raise GroupError(f"{what}={shown_json(wr)} is not an object")
        workload = _ref_name(wr.get("name"), f"{what}.name")
        group = _ref_name(wr.get("podGroup"), f"{what}.podGroup")
        replica = wr.get("podGroupReplicaKey")
        key = f"{namespace}/{workload}/{group}"
        if replica is not None and replica != "":
            key += "/" + _ref_name(replica, f"{what}.podGroupReplicaKey")
        return GroupDecl(key, None, None, "native", ref=f"{namespace}/{workload}", template=group)
    return None


# ---- the objects ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """How a native group is scheduled: ``min_count`` members at once (gang), each pod on
    its own (basic: ``min_count`` None), or not at all while ``problem`` says why."""

    min_count: int | None
    source: str  # "gang minCount of PodGroup default/train"
    problem: str | None = None

    @property
    def gang(self) -> bool:
        return self.min_count is not None


def _policy(raw: object, what: str, who: str) -> Policy:
    """A PodGroup's ``schedulingPolicy`` (v1alpha2 on) or a Workload's ``policy``."""
    if not isinstance(raw, Mapping):
        return Policy(None, who, f"{who}: {what}={shown_json(raw)} is not an object")
    chosen = [k for k in ("basic", "gang") if raw.get(k) is not None]
    if len(chosen) != 1:
        return Policy(None, who, f"{who}: {what} must set exactly one of basic and gang")
    if chosen[0] == "basic":
        return Policy(None, f"basic policy of {who}")
    gang = raw["gang"]
    n = gang.get("minCount") if isinstance(gang, Mapping) else None
    field = f"{what}.gang.minCount"
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_MEMBERS:
        return Policy(None, who, f"{who}: {field}={shown_json(n)} is not a positive int32")
    return Policy(n, f"gang minCount of {who}")


class NativeGroup:
    """A PodGroup (v1beta1, v1alpha2) or a Workload (v1alpha1), as lasched reads it.

    ``policy(template)``: the PodGroup's policy (``template`` None), or the policy of the
    Workload's podGroup named ``template``.
    """

    __slots__ = ("conditions", "generation", "key", "kind", "policies", "resource_version")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self.key: str = f"{meta.get('namespace', 'default')}/{meta['name']}"
        self.kind: str = str(obj.get("kind") or "")
        self.resource_version: str = str(meta.get("resourceVersion", ""))
        generation = meta.get("generation")
        self.generation: int = generation if isinstance(generation, int) else 0
        spec = obj.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}
        status = obj.get("status")
        conditions = status.get("conditions") if isinstance(status, Mapping) else None
        self.conditions: tuple[Mapping[str, Any], ...] = tuple(
            c for c in conditions or () if isinstance(c, Mapping)
        ) if isinstance(conditions, list) else ()  # fmt: skip
        self.policies: dict[str | None, Policy]
        if "podGroups" in spec or self.kind == "Workload":
            self.kind = "Workload"
            self.policies = _workload_policies(self.key, spec.get("podGroups"))
        else:
            self.kind = "PodGroup"
            who = f"PodGroup {self.key}"
            self.policies = {None: _policy(spec.get("schedulingPolicy"), _SP, who)}

    def policy(self, template: str | None) -> Policy:
        # A Workload whose podGroups cannot be read has one problem for every template.
        found = self.policies.get(template) or self.policies.get(None)
        if found is not None:
            return found
        shown_name = f" {template!r}" if template is not None else ""
        return Policy(
            None, f"{self.kind} {self.key}", f"{self.kind} {self.key} has no podGroup{shown_name}"
        )


_SP = "spec.schedulingPolicy"


def _workload_policies(key: str, groups: object) -> dict[str | None, Policy]:
    who = f"Workload {key}"
    if not isinstance(groups, list):
        return {None: Policy(None, who, f"{who}: spec.podGroups is not a list")}
    out: dict[str | None, Policy] = {}
    for i, g in enumerate(groups):
        name = g.get("name") if isinstance(g, Mapping) else None
        if not isinstance(name, str) or not name:
            continue  # a member naming it gets "has no podGroup"
        out[name] = _policy(
            g.get("policy"), f"spec.podGroups[{i}].policy", f"{who} podGroup {name!r}"
        )
    return out


def condition_patch(
    group: NativeGroup,
    *,
    condition: str,
    scheduled: bool,
    message: str,
    now: str,
) -> dict[str, Any] | None:
    """The status patch that records a scheduling outcome as kube-scheduler does, or None
    when there is nothing to write: the condition already says so, or it is already
    True (the API makes True terminal: a later failed round never turns it back)."""
    status, reason = ("True", "Scheduled") if scheduled else ("False", "Unschedulable")
    message = message[:MAX_CONDITION_MESSAGE]
    old = next((c for c in group.conditions if c.get("type") == condition), None)
    if old is not None:
        if old.get("status") == "True" and not scheduled:
            return None
        if (old.get("status"), old.get("reason"), old.get("message")) == (status, reason, message):
            return None
    since = old.get("lastTransitionTime") if old and old.get("status") == status else None
    return {
        "status": {
            "conditions": [
                {
                    "type": condition,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "observedGeneration": group.generation,
                    "lastTransitionTime": since or now,
                }
            ]
        }
    }
