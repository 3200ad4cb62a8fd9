"""The latency pods still to place, by population: what a plan (lasched.latency.plan)
splits the free room among.

Two sources, added together per population:

- the pods lasched holds pending (seen by the pod informer, unassigned, not
  yet placed by a cycle);
- the pods their controller will still create: a ReplicaSet's (and so a
  Deployment's), StatefulSet's or Job's size (:class:`~lasched.kube.owners.OwnerSizes`,
  one cached GET per controller) less the pods of it that exist. Pods of a
  Deployment being rolled out are created over seconds; without this the
  plan would give their users' nodes to whoever came first.

Counts are kept as pods come and go, so asking costs one pass over the
populations, not over the pods.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from lasched.latency.plan import population_key
from lasched.model.pod import PodInfo, PodKey
from lasched.model.podgroup import OwnerRef, OwnerSize

OwnerSizeOf = Callable[[str, OwnerRef], OwnerSize | None]
"""(namespace, controller) -> its size; None while it is being read."""


class LatencyDemand:
    """Pending latency pods by population, and their controllers' pods still to come."""

    def __init__(self, owner_size: OwnerSizeOf | None = None) -> None:
        self._owner_size = owner_size
        self._pending: dict[Hashable, dict[PodKey, PodInfo]] = {}
        self._key_of: dict[PodKey, Hashable] = {}
        # Controllers of planned pods: (namespace, uid) -> its ref, its live pods, and one
        # of them with its population (its pods still to come are that population's).
        self._owners: dict[tuple[str, str], _Owner] = {}
        self._owner_of: dict[PodKey, tuple[str, str]] = {}

    def key(self, pod: PodInfo) -> Hashable | None:
        ref = self._ref(pod)
        return population_key(pod, ref.uid if ref is not None else "")

    @staticmethod
    def _ref(pod: PodInfo) -> OwnerRef | None:
        return pod.owner if pod.latency is not None else None

    def seen(self, pod: PodInfo, *, pending: bool) -> None:
        """The informer's latest word on ``pod``: ``pending`` when it is unassigned, ours
        and not being deleted (it counts as demand until placed)."""
        self._drop_pending(pod.key)
        key = self.key(pod)
        if key is None:
            self.gone(pod)
            return
        ref = self._ref(pod)
        if ref is not None and self._owner_size is not None:
            at = (pod.namespace, ref.uid)
            owner = self._owners.get(at)
            if owner is None:
                owner = self._owners[at] = _Owner(ref, set(), pod, key)
            owner.pods.add(pod.key)
            owner.example, owner.key = pod, key
            self._owner_of[pod.key] = at
        if pending:
            self._pending.setdefault(key, {})[pod.key] = pod
            self._key_of[pod.key] = key

    def placed(self, pod: PodInfo) -> None:
        """A cycle placed ``pod``: it is demand no more (its controller still counts it)."""
        self._drop_pending(pod.key)

    def gone(self, pod: PodInfo) -> None:
        self._drop_pending(pod.key)
        at = self._owner_of.pop(pod.key, None)
        if at is not None:
            owner = self._owners[at]
            owner.pods.discard(pod.key)
            if not owner.pods:
                del self._owners[at]

    def _drop_pending(self, pod: PodKey) -> None:
        key = self._key_of.pop(pod, None)
        if key is not None:
            pods = self._pending[key]
            pods.pop(pod, None)
            if not pods:
                del self._pending[key]

    def populations(self) -> Mapping[Hashable, tuple[PodInfo, int]]:
        out = {key: (next(iter(pods.values())), len(pods)) for key, pods in self._pending.items()}
        for owner in self._owners.values():
            more = self._to_come(owner)
            if more:
                example, n = out.get(owner.key, (owner.example, 0))
                out[owner.key] = (example, n + more)
        return out

    def _to_come(self, owner: _Owner) -> int:
        """Pods the controller will still create: its size less its live pods."""
        if self._owner_size is None:
            return 0
        size = self._owner_size(owner.example.namespace, owner.ref)
        if size is None or size.size is None:
            return 0
        return max(size.size - len(owner.pods), 0)


@dataclass(slots=True)
class _Owner:
    ref: OwnerRef
    pods: set[PodKey]
    example: PodInfo
    key: Hashable
