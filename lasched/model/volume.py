"""PersistentVolumeClaims, PersistentVolumes, StorageClasses and CSINodes, as the
volume plugins read them (their matching rules: lasched/plugins/volumeutil.py).

Decoding never fails on a field's value: the apiserver validated these objects,
and a value lasched cannot read (a capacity that is not a quantity, a selector
of the wrong shape) reads as what matches nothing, so a bad object can only
keep a pod waiting, never stop an informer. Only an object without
``metadata.name`` raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from lasched.model import quantity

SELECTED_NODE = "volume.kubernetes.io/selected-node"
"""The annotation that asks a provisioner to create the claim's volume for a node."""
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
"""Set by the PV controller once it has bound a claim."""
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
READ_WRITE_ONCE_POD = "ReadWriteOncePod"


class PodClaim(NamedTuple):
    """A claim a pod's volume names: a ``persistentVolumeClaim``, or the claim of a
    generic ``ephemeral`` volume (``<pod>-<volume>``, which must be owned by the pod)."""

    name: str
    ephemeral: bool = False


def pod_claims(pod_name: str, spec: Mapping[str, Any]) -> tuple[PodClaim, ...]:
    """The claims of a pod's volumes, in the order of ``spec.volumes``."""
    out: list[PodClaim] = []
    for vol in spec.get("volumes") or ():
        if not isinstance(vol, Mapping):
            continue
        pvc = vol.get("persistentVolumeClaim")
        if isinstance(pvc, Mapping):
            out.append(PodClaim(str(pvc.get("claimName") or "")))
        elif isinstance(vol.get("ephemeral"), Mapping):
            out.append(PodClaim(f"{pod_name}-{vol.get('name', '')}", ephemeral=True))
    return tuple(out)


def _storage(resources: object) -> int:
    """The ``storage`` of a requests or capacity list, in bytes (0 if absent or unreadable)."""
    if not isinstance(resources, Mapping):
        return 0
    raw = resources.get("storage")
    if not isinstance(raw, str | int | float):
        return 0
    try:
        return quantity.value(raw)
    except ValueError:
        return 0


def _strings(raw: object) -> tuple[str, ...]:
    return tuple(str(x) for x in raw) if isinstance(raw, list) else ()


def _meta(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    meta = obj["metadata"]
    spec = obj.get("spec")
    return meta, spec if isinstance(spec, Mapping) else {}


class Claim:
    """A decoded PersistentVolumeClaim. Treat instances as immutable."""

    __slots__ = (
        "access_modes",
        "annotations",
        "deleting",
        "key",
        "name",
        "namespace",
        "owners",
        "phase",
        "request",
        "resource_version",
        "selector",
        "storage_class",
        "uid",
        "volume_mode",
        "volume_name",
    )

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta, spec = _meta(obj)
        self.name: str = meta["name"]
        self.namespace: str = meta.get("namespace", "default")
        self.key = f"{self.namespace}/{self.name}"
        self.uid: str = meta.get("uid", "")
        self.resource_version: str = meta.get("resourceVersion", "")
        ann = meta.get("annotations")
        self.annotations: dict[str, str] = dict(ann) if isinstance(ann, Mapping) else {}
        self.deleting = meta.get("deletionTimestamp") is not None
        self.owners: tuple[str, ...] = tuple(
            str(o.get("uid", ""))
            for o in meta.get("ownerReferences") or ()
            if isinstance(o, Mapping) and o.get("controller")
        )
        cls = spec.get("storageClassName")
        self.storage_class: str = (
            str(cls) if cls is not None else self.annotations.get(BETA_STORAGE_CLASS, "")
        )
        self.access_modes = _strings(spec.get("accessModes"))
        self.volume_mode: str = str(spec.get("volumeMode") or "Filesystem")
        self.volume_name: str = str(spec.get("volumeName") or "")
        resources = spec.get("resources")
        self.request = _storage(
            resources.get("requests") if isinstance(resources, Mapping) else None
        )
        sel = spec.get("selector")
        self.selector: Mapping[str, Any] | None = sel if isinstance(sel, Mapping) else None
        status = obj.get("status")
        self.phase: str = str(status.get("phase", "")) if isinstance(status, Mapping) else ""

    @property
    def fully_bound(self) -> bool:
        """Bound to a volume, and the PV controller has finished the bind."""
        return bool(self.volume_name) and BIND_COMPLETED in self.annotations

    def with_annotation(self, key: str, value: str) -> Claim:
        """A copy with one more annotation (an assumed version; same resourceVersion)."""
        c = object.__new__(Claim)
        for slot in Claim.__slots__:
            setattr(c, slot, getattr(self, slot))
        c.annotations = {**self.annotations, key: value}
        return c

    def __repr__(self) -> str:
        return f"Claim({self.key}, volume={self.volume_name or '-'}, rv={self.resource_version})"


class ClaimRef(NamedTuple):
    namespace: str
    name: str
    uid: str


class Volume:
    """A decoded PersistentVolume. Treat instances as immutable."""

    __slots__ = (
        "access_modes",
        "capacity",
        "claim_ref",
        "csi",
        "deleting",
        "key",
        "labels",
        "node_terms",
        "phase",
        "resource_version",
        "storage_class",
        "volume_mode",
    )

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta, spec = _meta(obj)
        self.key: str = meta["name"]
        self.resource_version: str = meta.get("resourceVersion", "")
        labels = meta.get("labels")
        self.labels: dict[str, str] = dict(labels) if isinstance(labels, Mapping) else {}
        self.deleting = meta.get("deletionTimestamp") is not None
        ann = meta.get("annotations")
        ann = ann if isinstance(ann, Mapping) else {}
        cls = spec.get("storageClassName")
        self.storage_class: str = (
            str(cls) if cls is not None else str(ann.get(BETA_STORAGE_CLASS, ""))
        )
        self.access_modes = _strings(spec.get("accessModes"))
        self.volume_mode: str = str(spec.get("volumeMode") or "Filesystem")
        self.capacity = _storage(spec.get("capacity"))
        ref = spec.get("claimRef")
        self.claim_ref: ClaimRef | None = (
            ClaimRef(
                str(ref.get("namespace", "")), str(ref.get("name", "")), str(ref.get("uid", ""))
            )
            if isinstance(ref, Mapping)
            else None
        )
        # None: no node affinity (any node); else the terms, ORed.
        self.node_terms: tuple[Mapping[str, Any], ...] | None = None
        na = spec.get("nodeAffinity")
        req = na.get("required") if isinstance(na, Mapping) else None
        if isinstance(req, Mapping):
            terms = req.get("nodeSelectorTerms")
            self.node_terms = (
                tuple(t for t in terms if isinstance(t, Mapping)) if isinstance(terms, list) else ()
            )
        csi = spec.get("csi")
        self.csi: tuple[str, str] | None = (
            (str(csi.get("driver", "")), str(csi.get("volumeHandle", "")))
            if isinstance(csi, Mapping)
            else None
        )
        status = obj.get("status")
        self.phase: str = str(status.get("phase", "")) if isinstance(status, Mapping) else ""

    @property
    def name(self) -> str:
        return self.key

    def bound_to(self, claim: Claim) -> bool:
        """Pre-bound or bound to ``claim`` (``IsVolumeBoundToClaim``)."""
        ref = self.claim_ref
        if ref is None or ref.name != claim.name or ref.namespace != claim.namespace:
            return False
        return not ref.uid or ref.uid == claim.uid

    def with_claim(self, claim: Claim) -> Volume:
        """A copy bound to ``claim`` (``GetBindVolumeToClaim``; same resourceVersion)."""
        v = object.__new__(Volume)
        for slot in Volume.__slots__:
            setattr(v, slot, getattr(self, slot))
        v.claim_ref = ClaimRef(claim.namespace, claim.name, claim.uid)
        return v

    def __repr__(self) -> str:
        return f"Volume({self.key}, claim={self.claim_ref}, rv={self.resource_version})"


class StorageClass:
    """A decoded StorageClass."""

    __slots__ = ("allowed_topologies", "binding_mode", "key", "provisioner", "resource_version")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self.key: str = meta["name"]
        self.resource_version: str = meta.get("resourceVersion", "")
        self.provisioner: str = str(obj.get("provisioner") or "")
        mode = obj.get("volumeBindingMode")
        self.binding_mode: str | None = str(mode) if mode is not None else None
        topo = obj.get("allowedTopologies")
        self.allowed_topologies: tuple[Mapping[str, Any], ...] = (
            tuple(t for t in topo if isinstance(t, Mapping)) if isinstance(topo, list) else ()
        )

    @property
    def wait_for_first_consumer(self) -> bool:
        return self.binding_mode == WAIT_FOR_FIRST_CONSUMER

    @property
    def provisions(self) -> bool:
        """Does a provisioner create volumes of this class?"""
        return bool(self.provisioner) and self.provisioner != NO_PROVISIONER

    def topology_allows(self, node_labels: Mapping[str, str]) -> bool:
        """``allowedTopologies`` (``MatchTopologySelectorTerms``): none allows every node;
        else terms ORed, each term's label expressions ANDed."""
        if not self.allowed_topologies:
            return True
        for term in self.allowed_topologies:
            exprs = term.get("matchLabelExpressions") or ()
            if all(
                isinstance(e, Mapping)
                and node_labels.get(str(e.get("key", ""))) in _strings(e.get("values"))
                for e in exprs
            ):
                return True
        return False


class CSINode:
    """A decoded CSINode: each driver's attach limit (``allocatable.count``), where set."""

    __slots__ = ("key", "limits", "resource_version")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta, spec = _meta(obj)
        self.key: str = meta["name"]
        self.resource_version: str = meta.get("resourceVersion", "")
        self.limits: dict[str, int] = {}
        for d in spec.get("drivers") or ():
            if not isinstance(d, Mapping):
                continue
            alloc = d.get("allocatable")
            count = alloc.get("count") if isinstance(alloc, Mapping) else None
            if isinstance(count, int) and not isinstance(count, bool):
                self.limits[str(d.get("name", ""))] = count
