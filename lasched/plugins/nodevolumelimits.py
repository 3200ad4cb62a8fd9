"""NodeVolumeLimits: a node attaches no more CSI volumes per driver than its
CSINode allows (kube-scheduler's ``nodevolumelimits`` CSILimits plugin).

A driver's limit is ``spec.drivers[].allocatable.count`` of the node's
CSINode; a node without a CSINode, or a driver without a count, has no limit.
A volume counts once per node however many pods use it, identified by its CSI
driver and volume handle; a claim not bound yet counts as a volume of its
class's provisioner. The pod to place fits when, per driver, the volumes
already attached plus its new ones are within the limit.

Not done: in-tree volumes migrated to CSI (they count only as CSI PVs do),
the older node ``attachable-volumes-*`` allocatable limits, VolumeAttachments
(kube-scheduler also counts a volume still attached that no pod on the node
uses), and a CSIDriver's ``preventPodSchedulingIfMissing``.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable

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
from lasched.model.volume import Claim
from lasched.plugins.volumebinding import claim_status

NAME = "NodeVolumeLimits"

REASON = "node(s) exceed max volume count"


class NodeVolumeLimits(Batchable):
    name = NAME

    def __init__(self, volumes: VolumeCache) -> None:
        self.volumes = volumes
        # Unbound claims' stand-in handles never collide with a real volume's.
        self._prefix = uuid.uuid4().hex

    def sign_pod(self, pod: PodInfo) -> Hashable | None:
        return None if pod.claims else ()

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(ClusterEvent(EventResource.CSI_NODE, ADD_OR_UPDATE)),
            ClusterEventWithHint(ClusterEvent(EventResource.ASSIGNED_POD, ActionType.DELETE)),
            ClusterEventWithHint(
                ClusterEvent(EventResource.PERSISTENT_VOLUME_CLAIM, ActionType.ADD)
            ),
        ]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        return SUCCESS if pod.claims else SKIP

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if not pod.claims:
            return SUCCESS
        csinode = self.volumes.csinode(node.name)
        new: dict[str, str] = {}
        for pc in pod.claims:
            claim, rejected = claim_status(self.volumes, pod, pc.name, ephemeral=pc.ephemeral)
            if rejected is not None:
                return rejected
            assert claim is not None
            self._count(claim, new)
        limits = csinode.limits if csinode is not None else {}
        if not new or not limits:
            return SUCCESS
        attached: dict[str, str] = {}
        for other in node.pods.values():
            for pc in other.claims:
                # A claim that is gone is not counted: nothing says it is still attached.
                c = self.volumes.claim(other.namespace, pc.name) if pc.name else None
                if c is not None:
                    self._count(c, attached)
        in_use: dict[str, int] = {}
        for handle, driver in attached.items():
            new.pop(handle, None)  # a volume already attached is not attached again
            in_use[driver] = in_use.get(driver, 0) + 1
        wanted: dict[str, int] = {}
        for driver in new.values():
            wanted[driver] = wanted.get(driver, 0) + 1
        for driver, count in wanted.items():
            limit = limits.get(driver)
            if limit is not None and in_use.get(driver, 0) + count > limit:
                return unschedulable(REASON)
        return SUCCESS

    def _count(self, claim: Claim, into: dict[str, str]) -> None:
        """Add ``claim``'s volume (unique name -> CSI driver) when it is a CSI one."""
        driver, handle = "", ""
        pv = self.volumes.volume(claim.volume_name) if claim.volume_name else None
        if pv is not None:
            if pv.csi is None:
                return  # not a CSI volume
            driver, handle = pv.csi
        elif claim.storage_class:
            # Unbound (or its PV unknown): count it as a volume of its class's provisioner.
            cls = self.volumes.storage_class(claim.storage_class)
            if cls is None:
                return
            driver, handle = cls.provisioner, f"{self._prefix}-{claim.key}"
        if driver and handle:
            into[f"{driver}/{handle}"] = driver
