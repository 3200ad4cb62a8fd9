"""The API writes of VolumeBinding's PreBind, as kube-scheduler's binder makes them
(``bindAPIUpdate``): a PersistentVolume's ``spec.claimRef`` set to the claim it was
chosen for, and a claim to provision annotated with the node.

Each write carries the resourceVersion the scheduler decided on, so a volume
or claim changed meanwhile is not overwritten: the apiserver answers 409 and
the pod is tried again with what changed. Every failure, an API error or a
broken connection, is a :class:`VolumeWriteError` naming the object.
"""

from __future__ import annotations

import aiohttp

from lasched.kube.client import ApiError, KubeClient
from lasched.model.volume import BOUND_BY_CONTROLLER, SELECTED_NODE, Claim, Volume
from lasched.plugins.volumebinding import VolumeWriteError

_FAILURES = (ApiError, aiohttp.ClientError, TimeoutError, OSError)


class KubeVolumeWrites:
    """:class:`lasched.plugins.volumebinding.VolumeWrites` through the apiserver."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def bind_volume(self, volume: Volume, claim: Claim) -> str:
        body = {
            "metadata": {
                "resourceVersion": volume.resource_version,
                # As GetBindVolumeToClaim marks it: the PV controller may unbind it again.
                "annotations": {BOUND_BY_CONTROLLER: "yes"},
            },
            "spec": {
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": claim.namespace,
                    "name": claim.name,
                    "uid": claim.uid,
                    "resourceVersion": claim.resource_version,
                }
            },
        }
        try:
            out = await self.client.patch(f"/api/v1/persistentvolumes/{volume.key}", body)
        except _FAILURES as e:
            raise VolumeWriteError(f'binding pv "{volume.key}" to pvc "{claim.key}": {e}') from e
        return str((out.get("metadata") or {}).get("resourceVersion", ""))

    async def select_node(self, claim: Claim, node: str) -> str:
        body = {
            "metadata": {
                "resourceVersion": claim.resource_version,
                "annotations": {SELECTED_NODE: node},
            }
        }
        path = f"/api/v1/namespaces/{claim.namespace}/persistentvolumeclaims/{claim.name}"
        try:
            out = await self.client.patch(path, body)
        except _FAILURES as e:
            raise VolumeWriteError(f'selecting node "{node}" for pvc "{claim.key}": {e}') from e
        return str((out.get("metadata") or {}).get("resourceVersion", ""))
