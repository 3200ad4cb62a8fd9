"""VolumeBinding: a pod's PersistentVolumeClaims decide where it may run, and are
bound to volumes when it is bound (kube-scheduler's plugin and its binder,
``pkg/scheduler/framework/plugins/volumebinding``).

* **PreFilter** sorts the pod's claims: *bound* (the PV controller finished
  the bind), *delayed* (unbound, of a ``WaitForFirstConsumer`` class) and
  *immediate* (any other unbound claim, or one that names a volume not yet
  bound). An immediate claim keeps the pod waiting: the PV controller binds
  it, not the scheduler. A missing or deleting claim does too.
* **Filter** accepts a node when each bound claim's volume admits it (its node
  affinity), and each delayed claim either finds a free volume there (the
  smallest that matches: class, mode, access modes, selector, capacity, node
  affinity; one not already chosen for another claim of the pod) or can be
  provisioned there (its class has a provisioner, and ``allowedTopologies``
  admits the node). What it chose per node is kept for Reserve.
* **Reserve** assumes the choice (lasched/cache/volumes.py), so the next pod
  does not take the same volume; **Unreserve** restores it.
* **PreBind** writes it: each chosen volume's ``spec.claimRef`` (the PV
  controller then binds the claim to it), each claim to provision annotated
  with ``volume.kubernetes.io/selected-node``; then waits, up to
  ``bindTimeoutSeconds``, until every claim is bound (``checkBindings``). A
  volume whose claimRef was reset, or a provisioning that failed (the
  provisioner removes the annotation), fails the pod's binding cycle: it is
  unreserved and tried again.

Every rejection says which claim (``(claim "data")``) after kube-scheduler's
reason, so the pod's FailedScheduling event names it. Not done:
CSIStorageCapacity checks and the StorageCapacityScoring score, and in-tree
volumes migrated to CSI.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from lasched.cache.cache import NodeInfo
from lasched.cache.volumes import VolumeCache
from lasched.framework import events
from lasched.framework.events import (
    ADD_OR_UPDATE,
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    EventResource,
)
from lasched.framework.interface import (
    SKIP,
    SUCCESS,
    Batchable,
    CycleState,
    Status,
    error,
    unschedulable,
)
from lasched.model.pod import PodInfo
from lasched.model.volume import SELECTED_NODE, Claim, Volume
from lasched.plugins.volumeutil import find_matching_volume, node_affinity_matches

log = logging.getLogger(__name__)

NAME = "VolumeBinding"
_KEY = NAME

REASON_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
REASON_NODE_CONFLICT = "node(s) had volume node affinity conflict"
REASON_PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
REASON_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"

DEFAULT_BIND_TIMEOUT = 600.0


class VolumeWriteError(Exception):
    """An API write of a volume binding failed; the message says which object and why."""


class VolumeWrites(Protocol):
    """The API writes PreBind makes (lasched.kube.volumes gives them)."""

    async def bind_volume(self, volume: Volume, claim: Claim) -> str:
        """Set ``volume``'s claimRef to ``claim``, if ``volume`` is still at its
        resourceVersion; the new resourceVersion. Raises :class:`VolumeWriteError`."""
        ...

    async def select_node(self, claim: Claim, node: str) -> str:
        """Annotate ``claim`` with the node to provision for; the new resourceVersion.
        Raises :class:`VolumeWriteError`."""
        ...


def claim_note(names: Iterable[str]) -> str:
    """`` (claim "a")`` or `` (claims "a", "b")``: which claims a reason is about."""
    quoted = [f'"{n}"' for n in names]
    if not quoted:
        return ""
    return f" (claim {quoted[0]})" if len(quoted) == 1 else f" (claims {', '.join(quoted)})"


def claim_status(
    volumes: VolumeCache, pod: PodInfo, name: str, *, ephemeral: bool
) -> tuple[Claim | None, Status | None]:
    """A pod's claim, or the rejection its absence means (shared by the volume plugins)."""
    if not name:
        return None, unschedulable("PersistentVolumeClaim had no name", unresolvable=True)
    claim = volumes.claim(pod.namespace, name)
    if claim is None:
        return None, unschedulable(f'persistentvolumeclaim "{name}" not found', unresolvable=True)
    if ephemeral and pod.uid not in claim.owners:
        return None, unschedulable(
            f"PVC {pod.namespace}/{name} was not created for pod {pod.key} (pod is not owner)",
            unresolvable=True,
        )
    return claim, None


@dataclass(slots=True)
class _Choice:
    """What one node would bind: volumes for some claims, provisioning for others."""

    static: list[tuple[Volume, Claim]] = field(default_factory=list)
    provisions: list[Claim] = field(default_factory=list)


@dataclass(slots=True)
class _State:
    bound: list[Claim]
    delayed: list[Claim]
    # Each delayed claim's class -> its volumes, listed once per cycle.
    class_volumes: dict[str, list[Volume]]
    by_node: dict[str, _Choice] = field(default_factory=dict)
    # What Reserve assumed on the chosen node (None: every claim was bound already).
    chosen: _Choice | None = None


def pods_claim_changed(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """Queueing hint of a claim event: it is one of the pod's claims
    (``isSchedulableAfterPersistentVolumeClaimChange``)."""
    obj = new if new is not None else old
    if (
        isinstance(obj, Claim)
        and obj.namespace == pod.namespace
        and any(c.name == obj.name for c in pod.claims)
    ):
        return events.QUEUE
    return events.SKIP


class VolumeBinding(Batchable):
    """Filters by, and binds, a pod's PersistentVolumeClaims."""

    name = NAME

    def __init__(
        self,
        volumes: VolumeCache,
        writes: VolumeWrites,
        *,
        node_labels: Callable[[str], Mapping[str, str] | None],
        bind_timeout: float = DEFAULT_BIND_TIMEOUT,
    ) -> None:
        """``node_labels``: a node's labels now (None once it is gone), for PreBind's checks."""
        if not bind_timeout >= 0:
            raise ValueError(f"bindTimeoutSeconds must be non-negative, not {bind_timeout!r}")
        self.volumes = volumes
        self.writes = writes
        self._node_labels = node_labels
        self.bind_timeout = bind_timeout

    @classmethod
    def from_args(
        cls,
        args: Mapping[str, Any],
        volumes: VolumeCache,
        writes: VolumeWrites,
        *,
        node_labels: Callable[[str], Mapping[str, str] | None],
    ) -> VolumeBinding:
        """``VolumeBindingArgs``: ``bindTimeoutSeconds`` (default 600; 0 waits not at all)."""
        unknown = set(args) - {"bindTimeoutSeconds", "shape"}
        if unknown:
            raise ValueError(
                f"unknown field {sorted(unknown)[0]!r}; VolumeBinding takes bindTimeoutSeconds"
            )
        raw = args.get("bindTimeoutSeconds", DEFAULT_BIND_TIMEOUT)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw >= 0:
            raise ValueError(f"bindTimeoutSeconds must be a non-negative number, not {raw!r}")
        return cls(volumes, writes, node_labels=node_labels, bind_timeout=float(raw))

    def sign_pod(self, pod: PodInfo) -> Hashable | None:
        """A batch never takes a pod with claims: each one binds its own volumes."""
        return None if pod.claims else ()

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(ClusterEvent(EventResource.STORAGE_CLASS, ADD_OR_UPDATE)),
            ClusterEventWithHint(
                ClusterEvent(EventResource.PERSISTENT_VOLUME_CLAIM, ADD_OR_UPDATE),
                pods_claim_changed,
            ),
            ClusterEventWithHint(ClusterEvent(EventResource.PERSISTENT_VOLUME, ADD_OR_UPDATE)),
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.NODE,
                    ActionType.ADD | ActionType.UPDATE_NODE_LABEL | ActionType.UPDATE_NODE_TAINT,
                )
            ),
            ClusterEventWithHint(ClusterEvent(EventResource.CSI_NODE, ADD_OR_UPDATE)),
        ]

    # ---- PreFilter and Filter ----------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        if not pod.claims:
            return SKIP
        bound: list[Claim] = []
        delayed: list[Claim] = []
        immediate: list[str] = []
        for pc in pod.claims:
            claim, rejected = claim_status(self.volumes, pod, pc.name, ephemeral=pc.ephemeral)
            if rejected is not None:
                return rejected
            assert claim is not None
            if claim.deleting:
                return unschedulable(
                    f'persistentvolumeclaim "{claim.name}" is being deleted', unresolvable=True
                )
            if claim.phase == "Lost":
                return unschedulable(
                    f'persistentvolumeclaim "{claim.name}" bound to non-existent '
                    f'persistentvolume "{claim.volume_name}"',
                    unresolvable=True,
                )
            if claim.fully_bound:
                bound.append(claim)
                continue
            cls = self.volumes.storage_class(claim.storage_class) if claim.storage_class else None
            # A claim that names its volume but is not bound yet is the PV controller's to bind.
            if cls is not None and cls.wait_for_first_consumer and not claim.volume_name:
                delayed.append(claim)
            else:
                immediate.append(claim.name)
        if immediate:
            return unschedulable(REASON_IMMEDIATE + claim_note(immediate), unresolvable=True)
        classes = {c.storage_class for c in delayed}
        state.data[_KEY] = _State(
            bound=bound,
            delayed=delayed,
            class_volumes={c: self.volumes.volumes_of_class(c) for c in classes},
        )
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        s: _State | None = state.data.get(_KEY)
        if s is None or node.node is None:
            return SUCCESS
        labels = node.node.labels
        for claim in s.bound:
            pv = self.volumes.volume(claim.volume_name)
            if pv is None:
                return unschedulable(
                    REASON_PV_NOT_EXIST + claim_note([claim.name]), unresolvable=True
                )
            if not node_affinity_matches(pv, labels):
                return unschedulable(
                    REASON_NODE_CONFLICT + claim_note([claim.name]), unresolvable=True
                )
        if not s.delayed:
            s.by_node[node.name] = _Choice()
            return SUCCESS
        choice = _Choice()
        to_match: list[Claim] = []
        for claim in s.delayed:
            selected = claim.annotations.get(SELECTED_NODE)
            if selected is None:
                to_match.append(claim)
            elif selected != node.name:
                # Being provisioned for another node already.
                return unschedulable(
                    REASON_BIND_CONFLICT + claim_note([claim.name]), unresolvable=True
                )
            else:
                choice.provisions.append(claim)
        chosen: set[str] = set()
        # Smallest request first, as upstream, so a small claim never takes the large volume.
        for claim in sorted(to_match, key=lambda c: c.request):
            pv = find_matching_volume(
                claim, s.class_volumes.get(claim.storage_class, ()), labels, chosen
            )
            if pv is not None:
                chosen.add(pv.key)
                choice.static.append((pv, claim))
                continue
            st = self._provisionable(claim, labels)
            if st is not None:
                return st
            choice.provisions.append(claim)
        s.by_node[node.name] = choice
        return SUCCESS

    def _provisionable(self, claim: Claim, labels: Mapping[str, str]) -> Status | None:
        """None when ``claim``'s class can provision a volume for the node, else why not."""
        cls = self.volumes.storage_class(claim.storage_class)
        if cls is None:  # PreFilter found it: it went within this cycle, which cannot happen
            return error(f"failed to find storage class {claim.storage_class!r}")
        if not cls.provisions or not cls.topology_allows(labels):
            return unschedulable(REASON_BIND_CONFLICT + claim_note([claim.name]), unresolvable=True)
        return None

    # ---- Reserve and Unreserve ---------------------------------------------------

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        s: _State | None = state.data.get(_KEY)
        if s is None:
            return SUCCESS
        choice = s.by_node.get(node)
        if choice is None:
            return error(f"no pod volumes found for node {node!r}")
        if not choice.static and not choice.provisions:
            return SUCCESS
        assumed = _Choice()
        for pv, claim in choice.static:
            bound = pv.with_claim(claim)
            if bound.claim_ref != pv.claim_ref:
                self.volumes.assume_volume(bound)
            assumed.static.append((bound, claim))
        for claim in choice.provisions:
            annotated = claim.with_annotation(SELECTED_NODE, node)
            self.volumes.assume_claim(annotated)
            assumed.provisions.append(annotated)
        s.chosen = assumed
        return SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        s: _State | None = state.data.get(_KEY)
        if s is None or s.chosen is None:
            return
        for pv, _ in s.chosen.static:
            self.volumes.restore_volume(pv.key)
        for claim in s.chosen.provisions:
            self.volumes.restore_claim(claim.key)
        s.chosen = None

    # ---- PreBind -----------------------------------------------------------------

    async def pre_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        """Write the chosen bindings, then wait until the PV controller has bound every claim."""
        s: _State | None = state.data.get(_KEY)
        if s is None or s.chosen is None:
            return SUCCESS
        chosen = s.chosen
        written: dict[str, str] = {}  # object key -> the resourceVersion our write produced
        try:
            for pv, claim in chosen.static:
                base = self.volumes.api_volume(pv.key)
                if base is not None and base.claim_ref == pv.claim_ref:
                    continue  # already bound to this claim: nothing to write
                written[pv.key] = await self.writes.bind_volume(pv, claim)
            for claim in chosen.provisions:
                written[claim.key] = await self.writes.select_node(claim, node)
        except VolumeWriteError as e:
            return error(f"binding volumes: {e}")
        try:
            async with asyncio.timeout(self.bind_timeout):
                while not self._bound(chosen, node, written):
                    await self.volumes.changed()
        except TimeoutError:
            return error(
                f"binding volumes: timed out waiting for the condition{claim_note(_names(chosen))}"
            )
        except VolumeWriteError as e:
            return error(f"binding volumes: {e}")
        return SUCCESS

    def _bound(self, chosen: _Choice, node: str, written: Mapping[str, str]) -> bool:
        """Is every chosen claim bound? Raises VolumeWriteError when it never will be
        (kube-scheduler's ``checkBindings``)."""
        labels = self._node_labels(node)
        if labels is None:
            raise VolumeWriteError(f"node {node!r} is gone")
        for pv, claim in chosen.static:
            api_pv = self.volumes.api_volume(pv.key)
            api_claim = self.volumes.api_claim(claim.namespace, claim.name)
            if api_pv is None:
                raise VolumeWriteError(f'persistentvolume "{pv.key}" not found')
            if api_claim is None:
                raise VolumeWriteError(f'persistentvolumeclaim "{claim.key}" not found')
            if _older(api_pv.resource_version, written.get(pv.key)):
                return False  # our write has not come back through the informer yet
            if not node_affinity_matches(api_pv, labels):
                raise VolumeWriteError(f'pv "{pv.key}" node affinity doesn\'t match node "{node}"')
            if api_pv.claim_ref is None or not api_pv.claim_ref.uid:
                raise VolumeWriteError(f'ClaimRef got reset for pv "{pv.key}"')
            if not api_claim.fully_bound:
                return False
        for claim in chosen.provisions:
            api_claim = self.volumes.api_claim(claim.namespace, claim.name)
            if api_claim is None:
                raise VolumeWriteError(f'persistentvolumeclaim "{claim.key}" not found')
            if _older(api_claim.resource_version, written.get(claim.key)):
                return False
            if api_claim.annotations.get(SELECTED_NODE) != node:
                # A provisioner that failed removes the annotation: schedule again.
                raise VolumeWriteError(f'provisioning failed for PVC "{claim.name}"')
            if api_claim.volume_name:
                api_pv = self.volumes.api_volume(api_claim.volume_name)
                if api_pv is None:
                    return False  # not seen yet
                if not node_affinity_matches(api_pv, labels):
                    raise VolumeWriteError(
                        f'pv "{api_pv.key}" node affinity doesn\'t match node "{node}"'
                    )
            if not api_claim.fully_bound:
                return False
        return True


def _names(choice: _Choice) -> list[str]:
    return [c.name for _, c in choice.static] + [c.name for c in choice.provisions]


def _older(have: str, wrote: str | None) -> bool:
    """Is the informer's resourceVersion ``have`` older than the one our write made?"""
    if wrote is None:
        return False
    try:
        return int(have) < int(wrote)
    except ValueError:
        return have != wrote
