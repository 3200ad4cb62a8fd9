"""What the volume plugins read: claims, volumes, classes and CSINodes, with the
versions this scheduler assumed on top (kube-scheduler's ``AssumeCache``).

The informers' stores are the apiserver's view; they are read at call time
(a relist replaces a store). Between Reserve and the end of PreBind a pod's
chosen volumes are *assumed*: a PersistentVolume bound to its claim, a claim
annotated with the node its volume is to be provisioned for. Readers see the
assumed version, so the next pod's cycle does not pick the same volume.

Invariant: an assumed version lives until the informer delivers a newer
version of that object (or its deletion), or until the plugin that assumed
it restores it (Unreserve). Both paths are structural: the informer handler
calls :meth:`VolumeCache.observed`, and VolumeBinding's Unreserve restores
whatever its Reserve assumed.

:meth:`VolumeCache.changed` lets a binding cycle wait for the next change of
a claim or a volume without polling (PreBind waits for the PV controller).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from lasched.model.volume import Claim, CSINode, StorageClass, Volume


class VolumeCache:
    """The stores of four informers, and the claims and volumes assumed over them."""

    def __init__(
        self,
        *,
        claims: Callable[[], Mapping[str, Claim]] = lambda: {},
        volumes: Callable[[], Mapping[str, Volume]] = lambda: {},
        classes: Callable[[], Mapping[str, StorageClass]] = lambda: {},
        csinodes: Callable[[], Mapping[str, CSINode]] = lambda: {},
    ) -> None:
        self._claims = claims
        self._volumes = volumes
        self._classes = classes
        self._csinodes = csinodes
        self._assumed_claims: dict[str, Claim] = {}
        self._assumed_volumes: dict[str, Volume] = {}
        self._changed: asyncio.Event | None = None

    # ---- reads ----------------------------------------------------------------

    def claim(self, namespace: str, name: str) -> Claim | None:
        key = f"{namespace}/{name}"
        return self._assumed_claims.get(key) or self._claims().get(key)

    def api_claim(self, namespace: str, name: str) -> Claim | None:
        """The informer's version, without what was assumed."""
        return self._claims().get(f"{namespace}/{name}")

    def volume(self, name: str) -> Volume | None:
        return self._assumed_volumes.get(name) or self._volumes().get(name)

    def api_volume(self, name: str) -> Volume | None:
        return self._volumes().get(name)

    def volumes_of_class(self, storage_class: str) -> list[Volume]:
        """Every volume of a class, assumed versions in place of the informer's."""
        assumed = self._assumed_volumes
        return [
            assumed.get(v.key, v)
            for v in self._volumes().values()
            if v.storage_class == storage_class
        ]

    def storage_class(self, name: str) -> StorageClass | None:
        return self._classes().get(name)

    def csinode(self, name: str) -> CSINode | None:
        return self._csinodes().get(name)

    # ---- assume / restore -----------------------------------------------------

    def assume_volume(self, volume: Volume) -> None:
        self._assumed_volumes[volume.key] = volume

    def restore_volume(self, name: str) -> None:
        self._assumed_volumes.pop(name, None)

    def assume_claim(self, claim: Claim) -> None:
        self._assumed_claims[claim.key] = claim

    def restore_claim(self, key: str) -> None:
        self._assumed_claims.pop(key, None)

    @property
    def assumed(self) -> int:
        return len(self._assumed_claims) + len(self._assumed_volumes)

    # ---- what the informers say -------------------------------------------------

    def observed(self, obj: object, *, deleted: bool = False) -> None:
        """The informer delivered a new version of ``obj``, or its deletion: it
        replaces any assumed version, and waiters of :meth:`changed` wake."""
        if isinstance(obj, Volume):
            held = self._assumed_volumes.get(obj.key)
            if held is not None and (deleted or held.resource_version != obj.resource_version):
                del self._assumed_volumes[obj.key]
        elif isinstance(obj, Claim):
            held_claim = self._assumed_claims.get(obj.key)
            if held_claim is not None and (
                deleted or held_claim.resource_version != obj.resource_version
            ):
                del self._assumed_claims[obj.key]
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def changed(self) -> None:
        """Return at the next claim or volume change the informers deliver.

        Cancelling is safe: it only waits.
        """
        if self._changed is None:
            self._changed = asyncio.Event()
        await self._changed.wait()
