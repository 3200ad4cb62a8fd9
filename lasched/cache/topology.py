"""NUMA topologies by node, and lasched's own placements their publisher has not shown yet.

A NodeResourceTopology's ``available`` lags: its publisher (NFD's
topology-updater, the resource-topology-exporter) reads the kubelet every so
often (a minute, by default), so a pod lasched has just placed in a zone is
not subtracted yet, and a second pod judged on the same numbers may be sent
to a zone that no longer has room, where the kubelet refuses it
(TopologyAffinityError). scheduler-plugins calls this the overreserve
problem.

Invariant: what :meth:`Topologies.free` reports for a zone is the published
``available`` less every *hold* on it. A hold is what lasched took from each
zone when it reserved a pod there (the plugin's Reserve; Unreserve releases
it, so holds and reserves pair as assume and forget do). A hold ends when
the first of these happens:

* a newer NodeResourceTopology of the node *shows* it: the zone's available
  fell, from the numbers the hold was taken against, by at least the holds
  taken against those numbers up to and including this one (so two pods in
  one zone are not both taken for shown by one pod's drop);
* its time to live passes (:data:`DEFAULT_HOLD_TTL`): the publisher may never
  show it (the pod was deleted, or another pod left meanwhile and hid the
  drop), and a hold must not keep room forever;
* the pod's reserve is undone (Unreserve), or the node's topology is deleted.

A hold kept too long only under-reports free room (a pod waits); one dropped
too early over-reports it, which is why a drop needs the numbers to show it.
Time comes from an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lasched.model.numa import Amounts, NodeTopology

DEFAULT_HOLD_TTL = 180.0
"""Three of NFD topology-updater's default one-minute intervals."""


@dataclass(frozen=True, slots=True)
class Hold:
    """What one reserved pod took from a node's zones (by NUMA zone name)."""

    pod: str
    taken: Mapping[str, Amounts]
    basis: str
    """The resourceVersion of the topology the amounts were taken against."""
    basis_available: Mapping[str, Amounts]
    expires: float


class Topologies:
    """The NUMA topologies the informer holds, and lasched's holds on them."""

    def __init__(
        self, *, ttl: float = DEFAULT_HOLD_TTL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        self._ttl = ttl
        self._clock = clock
        self._nodes: dict[str, NodeTopology] = {}
        self._holds: dict[str, list[Hold]] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, node: str) -> NodeTopology | None:
        return self._nodes.get(node)

    def set(self, topology: NodeTopology) -> None:
        """A node's topology was published or updated: holds it shows end."""
        self._nodes[topology.name] = topology
        holds = self._holds.get(topology.name)
        if holds:
            self._holds[topology.name] = _unshown(holds, topology)
            if not self._holds[topology.name]:
                del self._holds[topology.name]

    def remove(self, node: str) -> None:
        self._nodes.pop(node, None)
        self._holds.pop(node, None)

    def holds(self, node: str) -> list[Hold]:
        """The node's holds that have not expired (expired ones are dropped here)."""
        holds = self._holds.get(node)
        if not holds:
            return []
        now = self._clock()
        live = [h for h in holds if h.expires > now]
        if len(live) != len(holds):
            if live:
                self._holds[node] = live
            else:
                del self._holds[node]
        return live

    def free(self, topology: NodeTopology) -> list[dict[str, int]]:
        """Each zone's published available less the holds on it, in ``topology.zones`` order."""
        out = [dict(z.available) for z in topology.zones]
        holds = self.holds(topology.name)
        if holds:
            index = {z.name: i for i, z in enumerate(topology.zones)}
            for h in holds:
                for zone, amounts in h.taken.items():
                    i = index.get(zone)
                    if i is not None:
                        for r, n in amounts.items():
                            out[i][r] = out[i].get(r, 0) - n
        return out

    def hold(self, pod: str, node: str, taken: Mapping[str, Amounts]) -> None:
        """``pod`` was reserved on ``node``, taking ``taken`` from its zones."""
        topology = self._nodes.get(node)
        if topology is None or not taken:
            return
        self.release(pod, node)
        self._holds.setdefault(node, []).append(
            Hold(
                pod=pod,
                taken=taken,
                basis=topology.resource_version,
                basis_available={z.name: z.available for z in topology.zones},
                expires=self._clock() + self._ttl,
            )
        )

    def release(self, pod: str, node: str) -> None:
        """``pod``'s reserve on ``node`` was undone: its hold ends."""
        holds = self._holds.get(node)
        if holds:
            kept = [h for h in holds if h.pod != pod]
            if kept:
                self._holds[node] = kept
            else:
                del self._holds[node]


def _unshown(holds: list[Hold], new: NodeTopology) -> list[Hold]:
    """The holds ``new`` does not show yet (see the module's invariant)."""
    now_available = {z.name: z.available for z in new.zones}
    # Amounts held, per (basis, zone, resource), by this hold and the ones before it.
    cumulative: dict[tuple[str, str, str], int] = {}
    kept = []
    for h in holds:
        shown = h.basis != new.resource_version
        for zone, amounts in h.taken.items():
            before = h.basis_available.get(zone, {})
            after = now_available.get(zone)
            for r, n in amounts.items():
                key = (h.basis, zone, r)
                cumulative[key] = cumulative.get(key, 0) + n
                if after is None or before.get(r, 0) - after.get(r, 0) < cumulative[key]:
                    shown = False
        if not shown:
            kept.append(h)
    return kept
