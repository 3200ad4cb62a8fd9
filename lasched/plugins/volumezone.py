"""VolumeZone: a pod whose bound volumes live in a zone (or region) runs there
(kube-scheduler's ``volumezone`` plugin).

PreFilter reads the zone and region labels of the volumes bound to the pod's
claims (``topology.kubernetes.io/zone``, ``…/region`` and their beta
``failure-domain.beta.kubernetes.io`` forms; a value may list several zones
joined by ``__``). A claim not bound yet is skipped when its class waits for
the first consumer (VolumeBinding picks a volume on the chosen node), and
keeps the pod waiting otherwise. Filter accepts a node without any zone label,
and otherwise one whose label value is among each volume's (a beta label of
the volume is matched against the node's GA label when the node has no beta
one).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from lasched.cache.cache import NodeInfo
from lasched.cache.volumes import VolumeCache
from lasched.framework.events import (
    ADD_OR_UPDATE,
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    EventResource,
)
from lasched.framework.interface import SKIP, SUCCESS, Batchable, CycleState, Status, unschedulable
from lasched.model.pod import PodInfo
from lasched.plugins.volumebinding import claim_note, claim_status, pods_claim_changed

NAME = "VolumeZone"
_KEY = NAME

REASON = "node(s) had no available volume zone"

BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"
BETA_REGION = "failure-domain.beta.kubernetes.io/region"
ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
TOPOLOGY_LABELS = (BETA_ZONE, BETA_REGION, ZONE, REGION)
_GA = {BETA_ZONE: ZONE, BETA_REGION: REGION}


@dataclass(frozen=True, slots=True)
class _Topology:
    claim: str
    key: str
    values: frozenset[str]


def zones(value: str) -> frozenset[str] | None:
    """A zone label's value as a set (``LabelZonesToSet``); None when it has an empty part."""
    parts = value.split("__")
    if any(not p.strip() for p in parts):
        return None
    return frozenset(p.strip() for p in parts)


class VolumeZone(Batchable):
    name = NAME

    def __init__(self, volumes: VolumeCache) -> None:
        self.volumes = volumes

    def sign_pod(self, pod: PodInfo) -> Hashable | None:
        return None if pod.claims else ()

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(ClusterEvent(EventResource.STORAGE_CLASS, ActionType.ADD)),
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL)
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.PERSISTENT_VOLUME_CLAIM, ADD_OR_UPDATE),
                pods_claim_changed,
            ),
            ClusterEventWithHint(ClusterEvent(EventResource.PERSISTENT_VOLUME, ADD_OR_UPDATE)),
        ]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        if not pod.claims:
            return SKIP
        found: list[_Topology] = []
        for pc in pod.claims:
            claim, rejected = claim_status(self.volumes, pod, pc.name, ephemeral=pc.ephemeral)
            if rejected is not None:
                return rejected
            assert claim is not None
            if not claim.volume_name:
                if not claim.storage_class:
                    return unschedulable(
                        "PersistentVolumeClaim had no pv name and storageClass name"
                        + claim_note([claim.name]),
                        unresolvable=True,
                    )
                cls = self.volumes.storage_class(claim.storage_class)
                if cls is None:
                    return unschedulable(
                        f'storageclass.storage.k8s.io "{claim.storage_class}" not found',
                        unresolvable=True,
                    )
                if cls.binding_mode is None:
                    return unschedulable(
                        f'VolumeBindingMode not set for StorageClass "{claim.storage_class}"',
                        unresolvable=True,
                    )
                if cls.wait_for_first_consumer:
                    continue
                return unschedulable(
                    "PersistentVolume had no name" + claim_note([claim.name]), unresolvable=True
                )
            pv = self.volumes.volume(claim.volume_name)
            if pv is None:
                return unschedulable(
                    f'persistentvolume "{claim.volume_name}" not found', unresolvable=True
                )
            for key in TOPOLOGY_LABELS:
                value = pv.labels.get(key)
                if value is None:
                    continue
                values = zones(value)
                if values is not None:  # upstream skips a value it cannot read
                    found.append(_Topology(claim.name, key, values))
        if not found:
            return SKIP
        state.data[_KEY] = tuple(found)
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        topologies: tuple[_Topology, ...] | None = state.data.get(_KEY)
        if not topologies or node.node is None:
            return SUCCESS
        labels = node.node.labels
        if not any(k in labels for k in TOPOLOGY_LABELS):
            return SUCCESS  # a node without zones takes any volume
        for t in topologies:
            v = labels.get(t.key)
            if v is None and t.key in _GA:
                v = labels.get(_GA[t.key])
            if v is None or v not in t.values:
                return unschedulable(REASON + claim_note([t.claim]), unresolvable=True)
        return SUCCESS
