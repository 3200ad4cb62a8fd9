"""The storage of an oracle scene: classes, volumes, claims and CSINodes, and pods' use of them.

A scene's storage (:func:`generate`) exercises kube-scheduler's four volume
plugins against lasched's:

* StorageClasses: ``<prefix>-local`` (``kubernetes.io/no-provisioner``,
  ``WaitForFirstConsumer``: only the local volumes below can serve its
  claims), ``<prefix>-csi`` (a CSI provisioner that no one runs,
  :data:`DRIVER`, ``WaitForFirstConsumer``, often with ``allowedTopologies``
  over some zones) and ``<prefix>-immediate`` (the same provisioner,
  ``Immediate``: its claims stay unbound, and a pod using one waits).
* PersistentVolumes: local ones with node affinity to a node's hostname
  label (two nodes may share one) or to a zone, some carrying a zone label of
  their own, of several sizes, access modes, volume modes and disk labels; and
  CSI ones of :data:`DRIVER`.
* PersistentVolumeClaims in the scene's namespaces: *bound* ones (each
  pre-bound to a volume of its own, local or CSI, which the PV controller then
  binds), unbound ones of the local and CSI classes (``ReadWriteOnce`` or
  ``ReadWriteOncePod``, some with a selector or ``volumeMode: Block``), and
  unbound immediate ones.
* CSINodes for some nodes: an ``allocatable.count`` of 0 to 2 for
  :data:`DRIVER`, or none, sometimes beside another driver.

:func:`mount` gives some bound pods one of the bound claims of their
namespace (a ``ReadWriteOncePod`` claim in use, CSI volumes attached) and
some pending pods one or two claims of theirs, or a claim that does not
exist.

What keeps the comparison fair: nothing ever binds a pending pod, so no
claim is bound by a scheduler and no volume is provisioned; the only binds
are the PV controller's of the pre-bound pairs, which the scene waits for
(:func:`bound_claims`) before any pod is created. The scene's nodes do not
ask for controller-managed attachment, so the attach/detach controller
writes no VolumeAttachments (kube-scheduler v1.37 counts those toward CSI
limits); and there is no CSIDriver object, so no storage capacity or
driver-presence checks apply.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lasched.kube.client import KubeClient

JSON = dict[str, Any]

DRIVER = "csi.oracle.lasched.io"
"""The CSI driver of the CSI volumes and the provisioner of the CSI classes; nothing runs it."""
OTHER_DRIVER = "other.oracle.lasched.io"
STORAGE_LABEL = "oracle.lasched.io/storage"
"""On every generated storage object, to delete them by selector."""
HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
DISK = "example.com/disk"
RWO, RWOP, ROX = "ReadWriteOnce", "ReadWriteOncePod", "ReadOnlyMany"
MISSING = "no-such-claim"
"""A claim name no scene creates: a pod naming it waits at PreFilter in both schedulers."""


@dataclass(frozen=True, slots=True)
class Storage:
    """A scene's storage objects, in the order they are created."""

    classes: tuple[JSON, ...]
    volumes: tuple[JSON, ...]
    claims: tuple[JSON, ...]
    csinodes: tuple[JSON, ...]
    bound: frozenset[str]
    """Claims pre-bound to a volume, ``namespace/name``: the PV controller binds them."""

    def claims_in(self, namespace: str) -> list[str]:
        return [
            c["metadata"]["name"] for c in self.claims if c["metadata"]["namespace"] == namespace
        ]

    def describe(self) -> list[str]:
        """One line per object, for a mismatch report."""
        lines = []
        for sc in self.classes:
            topo = sc.get("allowedTopologies")
            lines.append(
                f"storageclass {sc['metadata']['name']} {sc['provisioner']} "
                f"{sc['volumeBindingMode']}" + (f" allowedTopologies={topo}" if topo else "")
            )
        for pv in self.volumes:
            meta, spec = pv["metadata"], pv["spec"]
            labels = {k: v for k, v in meta["labels"].items() if k != STORAGE_LABEL}
            ref = spec.get("claimRef")
            terms = (spec.get("nodeAffinity") or {}).get("required", {}).get("nodeSelectorTerms")
            lines.append(
                f"pv {meta['name']} {spec['storageClassName']} {spec['capacity']['storage']} "
                f"{spec['accessModes']} {spec.get('volumeMode', 'Filesystem')} {labels}"
                + (f" csi={spec['csi']['volumeHandle']}" if "csi" in spec else "")
                + (f" affinity={terms}" if terms else "")
                + (f" claimRef={ref['namespace']}/{ref['name']}" if ref else "")
            )
        for c in self.claims:
            meta, spec = c["metadata"], c["spec"]
            lines.append(
                f"pvc {meta['namespace']}/{meta['name']} {spec['storageClassName']} "
                f"{spec['resources']['requests']['storage']} {spec['accessModes']} "
                f"{spec.get('volumeMode', 'Filesystem')}"
                + (f" selector={spec['selector']}" if "selector" in spec else "")
                + (f" volumeName={spec['volumeName']}" if "volumeName" in spec else "")
            )
        for n in self.csinodes:
            lines.append(f"csinode {n['metadata']['name']} drivers={n['spec']['drivers']}")
        return lines


def _meta(name: str, **extra: Any) -> JSON:
    return {"name": name, "labels": {STORAGE_LABEL: "true"}, **extra}


def _class(name: str, provisioner: str, mode: str, topology: Sequence[str] = ()) -> JSON:
    sc: JSON = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": _meta(name),
        "provisioner": provisioner,
        "volumeBindingMode": mode,
        "reclaimPolicy": "Retain",
    }
    if topology:
        sc["allowedTopologies"] = [
            {"matchLabelExpressions": [{"key": ZONE, "values": sorted(topology)}]}
        ]
    return sc


def _affinity(key: str, value: str) -> JSON:
    return {
        "required": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
            ]
        }
    }


def _local_volume(r: random.Random, name: str, storage_class: str, node: JSON) -> JSON:
    """A local volume on ``node`` (by its hostname label), or on its zone."""
    labels = node["metadata"]["labels"]
    zone = labels.get(ZONE)
    meta = _meta(name)
    zonal = zone and r.random() < 0.2
    affinity = _affinity(ZONE, zone) if zonal else _affinity(HOST, labels[HOST])
    if r.random() < 0.3:
        # Mostly the node's own zone; now and then another, for VolumeZone to reject.
        meta["labels"][ZONE] = zone if zone and r.random() < 0.8 else r.choice(("zone-a", "zone-b"))
    if r.random() < 0.4:
        meta["labels"][DISK] = r.choice(("ssd", "hdd"))
    x = r.random()
    modes = [RWO] if x < 0.7 else [RWOP] if x < 0.9 else [RWO, ROX]
    spec: JSON = {
        "capacity": {"storage": r.choice(("1Gi", "5Gi", "10Gi"))},
        "accessModes": modes,
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": storage_class,
        "local": {"path": f"/mnt/disks/{name}"},
        "nodeAffinity": affinity,
    }
    if r.random() < 0.1:
        spec["volumeMode"] = "Block"
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec}


def _csi_volume(r: random.Random, name: str, storage_class: str, zones: Sequence[str]) -> JSON:
    """A volume of :data:`DRIVER`, sometimes zonal (a zone label, node affinity or both)."""
    meta = _meta(name)
    spec: JSON = {
        "capacity": {"storage": "10Gi"},
        "accessModes": [RWO],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": storage_class,
        "csi": {"driver": DRIVER, "volumeHandle": name},
    }
    zone = r.choice(zones)
    if r.random() < 0.5:
        meta["labels"][ZONE] = zone
    if r.random() < 0.3:
        spec["nodeAffinity"] = _affinity(ZONE, zone)
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta, "spec": spec}


def _claim(
    name: str,
    namespace: str,
    storage_class: str,
    *,
    request: str,
    modes: Sequence[str],
    **spec: Any,
) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(name, namespace=namespace),
        "spec": {
            "storageClassName": storage_class,
            "accessModes": list(modes),
            "resources": {"requests": {"storage": request}},
            **spec,
        },
    }


def _csinode(r: random.Random, node: str) -> JSON:
    drivers: list[JSON] = []
    mine: JSON = {"name": DRIVER, "nodeID": node}
    if r.random() < 0.8:
        mine["allocatable"] = {"count": r.choice((0, 1, 1, 2))}
    drivers.append(mine)
    if r.random() < 0.2:
        drivers.append({"name": OTHER_DRIVER, "nodeID": node, "allocatable": {"count": 1}})
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": _meta(node),
        "spec": {"drivers": drivers},
    }


def generate(
    r: random.Random,
    *,
    prefix: str,
    namespaces: Sequence[str],
    node_list: Sequence[JSON],
    zones: Sequence[str],
) -> Storage:
    """A scene's storage, from ``r`` alone (the same objects for the same state of ``r``)."""
    local, csi, immediate = f"{prefix}-local", f"{prefix}-csi", f"{prefix}-immediate"
    topology = r.sample(list(zones), r.randint(1, len(zones))) if r.random() < 0.7 else []
    classes = (
        _class(local, "kubernetes.io/no-provisioner", "WaitForFirstConsumer"),
        _class(csi, DRIVER, "WaitForFirstConsumer", topology),
        _class(immediate, DRIVER, "Immediate"),
    )
    volumes: list[JSON] = []
    free: list[JSON] = []  # local volumes no claim is pre-bound to
    for node in node_list:
        for _ in range(r.choice((0, 0, 1, 2))):
            pv = _local_volume(r, f"{prefix}-lv{len(volumes)}", local, node)
            volumes.append(pv)
            free.append(pv)
    claims: list[JSON] = []
    bound: set[str] = set()

    def ns() -> str:
        return namespaces[0] if r.random() < 0.7 else r.choice(namespaces[1:])

    for _ in range(r.randint(1, 3)):
        name, namespace = f"{prefix}-bc{len(claims)}", ns()
        if free and r.random() < 0.5:
            pv = free.pop(r.randrange(len(free)))
            storage_class = local
            modes = [m for m in pv["spec"]["accessModes"] if m != ROX]
        else:
            pv = _csi_volume(r, f"{prefix}-cv{len(volumes)}", csi, zones)
            volumes.append(pv)
            storage_class, modes = csi, [r.choice((RWO, RWO, RWOP))]
            pv["spec"]["accessModes"] = modes  # the PV controller binds only a subset
        pv["spec"]["claimRef"] = {"namespace": namespace, "name": name}
        extra = {"volumeMode": pv["spec"]["volumeMode"]} if "volumeMode" in pv["spec"] else {}
        claims.append(
            _claim(
                name,
                namespace,
                storage_class,
                request="1Gi",
                modes=modes,
                volumeName=pv["metadata"]["name"],
                **extra,
            )
        )
        bound.add(f"{namespace}/{name}")
    for _ in range(r.randint(2, 4)):
        spec: JSON = {}
        if r.random() < 0.2:
            spec["selector"] = {"matchLabels": {DISK: "ssd"}}
        if r.random() < 0.1:
            spec["volumeMode"] = "Block"
        claims.append(
            _claim(
                f"{prefix}-lc{len(claims)}",
                ns(),
                local,
                request=r.choice(("1Gi", "2Gi", "5Gi", "20Gi")),
                modes=[r.choice((RWO, RWO, RWOP))],
                **spec,
            )
        )
    for _ in range(r.randint(1, 2)):
        claims.append(_claim(f"{prefix}-pc{len(claims)}", ns(), csi, request="1Gi", modes=[RWO]))
    if r.random() < 0.5:
        claims.append(
            _claim(f"{prefix}-ic{len(claims)}", ns(), immediate, request="1Gi", modes=[RWO])
        )
    csinodes = tuple(_csinode(r, n["metadata"]["name"]) for n in node_list if r.random() < 0.6)
    return Storage(
        classes=classes,
        volumes=tuple(volumes),
        claims=tuple(claims),
        csinodes=csinodes,
        bound=frozenset(bound),
    )


def mount(
    r: random.Random, storage: Storage, *, bound: Sequence[JSON], pending: Sequence[JSON]
) -> None:
    """Give some pods volumes: bound pods a bound claim, pending pods any one or two."""
    for p in bound:
        namespace = p["metadata"]["namespace"]
        mine = [c for c in storage.claims_in(namespace) if f"{namespace}/{c}" in storage.bound]
        if mine and r.random() < 0.3:
            _add_volumes(p, [r.choice(mine)])
    for p in pending:
        if r.random() >= 0.35:
            continue
        mine = storage.claims_in(p["metadata"]["namespace"])
        if r.random() < 0.05 or not mine:
            _add_volumes(p, [MISSING])
        else:
            _add_volumes(p, r.sample(mine, min(len(mine), r.choice((1, 1, 2)))))


def _add_volumes(pod: JSON, claims: Sequence[str]) -> None:
    pod["spec"]["volumes"] = [
        {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)
    ]


STORAGE_PATHS = {
    "StorageClass": "/apis/storage.k8s.io/v1/storageclasses",
    "PersistentVolume": "/api/v1/persistentvolumes",
    "CSINode": "/apis/storage.k8s.io/v1/csinodes",
}


def path_of(obj: JSON) -> str:
    """The collection an object is created in."""
    if obj["kind"] == "PersistentVolumeClaim":
        return f"/api/v1/namespaces/{obj['metadata']['namespace']}/persistentvolumeclaims"
    return STORAGE_PATHS[obj["kind"]]


async def bound_claims(kc: KubeClient, namespaces: Sequence[str]) -> set[str]:
    """The generated claims the PV controller has bound, ``namespace/name``."""
    out = set()
    for ns in namespaces:
        listing = await kc.get(
            f"/api/v1/namespaces/{ns}/persistentvolumeclaims", labelSelector=f"{STORAGE_LABEL}=true"
        )
        out |= {
            f"{ns}/{c['metadata']['name']}"
            for c in listing["items"]
            if c.get("status", {}).get("phase") == "Bound"
        }
    return out


async def delete(kc: KubeClient, namespaces: Sequence[str]) -> None:
    """Every generated storage object (claims first; the protection finalizers let each go
    once nothing uses it)."""
    selector = {"labelSelector": f"{STORAGE_LABEL}=true"}
    for ns in namespaces:
        await kc.request(
            "DELETE", f"/api/v1/namespaces/{ns}/persistentvolumeclaims", params=selector
        )
    for path in STORAGE_PATHS.values():
        await kc.request("DELETE", path, params=selector)
