"""VolumeRestrictions: a ``ReadWriteOncePod`` claim serves one pod in the whole
cluster (kube-scheduler's ``volumerestrictions`` plugin).

PreFilter looks up the pod's claims (a missing one keeps the pod waiting) and
counts the placed pods, bound or assumed, that use one of its
``ReadWriteOncePod`` claims; with none, Filter is skipped. With one, every
node is rejected, as upstream's Filter does from the same count.

Not done: the disk conflicts of in-tree GCE PD, AWS EBS, RBD and iSCSI
volumes (in-tree volume types kube-scheduler still checks), and the
PreFilter extensions that let preemption count a victim's claim as freed.
"""

from __future__ import annotations

from collections.abc import Hashable

from lasched.cache.cache import NodeInfo, SchedulerCache
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
from lasched.model.volume import READ_WRITE_ONCE_POD
from lasched.plugins.volumebinding import claim_note, claim_status, pods_claim_changed

NAME = "VolumeRestrictions"
_KEY = NAME

REASON_RWOP = (
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode"
)


class VolumeRestrictions(Batchable):
    name = NAME

    def __init__(self, volumes: VolumeCache, cache: SchedulerCache) -> None:
        self.volumes = volumes
        self.cache = cache

    def sign_pod(self, pod: PodInfo) -> Hashable | None:
        return None if pod.claims else ()

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE)),
            ClusterEventWithHint(ClusterEvent(EventResource.NODE, ActionType.ADD)),
            ClusterEventWithHint(
                ClusterEvent(EventResource.PERSISTENT_VOLUME_CLAIM, ADD_OR_UPDATE),
                pods_claim_changed,
            ),
        ]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        if not pod.claims:
            return SKIP
        rwop: set[str] = set()
        for pc in pod.claims:
            claim, rejected = claim_status(self.volumes, pod, pc.name, ephemeral=False)
            if rejected is not None:
                return rejected
            assert claim is not None
            if READ_WRITE_ONCE_POD in claim.access_modes:
                rwop.add(claim.name)
        if not rwop:
            return SKIP
        used = sorted(
            c.name
            for ni in self.cache.node_infos()
            for other in ni.pods.values()
            if other.namespace == pod.namespace and other.key != pod.key
            for c in other.claims
            if c.name in rwop
        )
        if not used:
            return SKIP
        state.data[_KEY] = used
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        used: list[str] | None = state.data.get(_KEY)
        if not used:
            return SUCCESS
        return unschedulable(REASON_RWOP + claim_note(sorted(set(used))))
