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
A hold also ends when its pod leaves the node (:meth:`Topologies.pod_gone`).

**Two sources, one answer.** A node's topology is its published
NodeResourceTopology when there is one, else what its ``lasched-agent``
reported (:meth:`Topologies.report`). A published object always wins: it
knows the kubelet's allocations, the agent only the machine. An agent's
report never shows a placement (its available is its allocatable), so a
hold taken against it has no time to live: it lasts while its pod is on the
node, and pods bound there that lasched holds nothing for (bound before a
restart, or by another scheduler) are *adopted* (:meth:`Topologies.adopt`):
held in the lowest zones that fit them, as the kubelet's lowest-NUMA-id
preference would. When a published object arrives, such holds take the TTL
from then and end like any other. A report outlives its agent's connection
by ``report_ttl`` (an agent restarting must not make the node's pods wait),
then the node publishes nothing until its agent reports again.

**Isolated pods' zones.** A pod asking ``isolated`` keeps its zone to
itself for as long as it runs, longer than any hold: :meth:`Topologies.isolate`
records the zone it was reserved in, and the record ends only when the
reserve is undone or the pod leaves the node. An isolated pod bound there
without a record (before a restart, by another scheduler) is given the zone
:meth:`Topologies.isolated_zone` guesses once and remembers: its hold's zone,
else the lowest zone whose used amounts could hold it, else the lowest that
could ever hold it.

**What evicting a pod frees.** :meth:`Topologies.free` with ``gone`` counts
those pods' holds as free: preemption's what-if. A hold is what lasched knows
a pod takes from a zone and the publisher does not show yet (or, on an
agent-reported node, never will), so evicting the pod frees exactly that. A
pod the publisher already shows has no hold; what its eviction frees appears
only when the publisher says so.
Time comes from an injected clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from lasched.model.numa import SOURCE_AGENT, Amounts, NodeTopology

DEFAULT_HOLD_TTL = 180.0
"""Three of NFD topology-updater's default one-minute intervals."""
DEFAULT_REPORT_TTL = 600.0
"""How long an agent's report is used after its connection ended."""


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
    """The NUMA topologies published or reported, and lasched's holds on them."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_HOLD_TTL,
        report_ttl: float = DEFAULT_REPORT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        if not report_ttl > 0:
            raise ValueError(f"report_ttl must be positive, not {report_ttl!r}")
        self._ttl = ttl
        self._report_ttl = report_ttl
        self._clock = clock
        self._nodes: dict[str, NodeTopology] = {}
        self._reported: dict[str, NodeTopology] = {}
        self._reported_until: dict[str, float] = {}  # reports whose agent is gone
        self._holds: dict[str, list[Hold]] = {}
        self._isolated: dict[str, dict[str, str]] = {}  # node -> isolated pod -> zone name

    def __len__(self) -> int:
        if not self._reported:
            return len(self._nodes)
        return len(self._nodes) + sum(
            1 for n in list(self._reported) if n not in self._nodes and self._live_report(n)
        )

    def get(self, node: str) -> NodeTopology | None:
        """The node's published topology, else its agent's live report, else None."""
        published = self._nodes.get(node)
        if published is not None or node not in self._reported:
            return published
        return self._reported[node] if self._live_report(node) else None

    def _live_report(self, node: str) -> bool:
        until = self._reported_until.get(node)
        if until is None or until > self._clock():
            return True
        del self._reported[node], self._reported_until[node]
        return False

    def set(self, topology: NodeTopology) -> None:
        """A node's topology was published or updated: holds it shows end."""
        self._nodes[topology.name] = topology
        holds = self._holds.get(topology.name)
        if holds:
            # Holds taken against an agent's report now wait for the publisher like others.
            expires = self._clock() + self._ttl
            holds = [
                Hold(h.pod, h.taken, h.basis, h.basis_available, expires)
                if math.isinf(h.expires)
                else h
                for h in holds
            ]
            self._holds[topology.name] = _unshown(holds, topology)
            if not self._holds[topology.name]:
                del self._holds[topology.name]

    def remove(self, node: str) -> None:
        """The node's published topology was deleted (its agent's report, if any, stands)."""
        self._nodes.pop(node, None)
        if node not in self._reported:
            self._holds.pop(node, None)

    def report(self, topology: NodeTopology, pods: Iterable[tuple[str, Amounts]] = ()) -> None:
        """The node's agent reported ``topology`` (a :data:`SOURCE_AGENT` one); ``pods``:
        (key, aligned requests) of the pods bound there, adopted if nothing holds for them."""
        self._reported[topology.name] = topology
        self._reported_until.pop(topology.name, None)
        for key, need in pods:
            self.adopt(key, topology.name, need)

    def unreport(self, node: str) -> None:
        """The node's agent disconnected: its report stands ``report_ttl`` longer."""
        if node in self._reported:
            self._reported_until[node] = self._clock() + self._report_ttl

    def forget_node(self, node: str) -> None:
        """The node was deleted: its report and holds go."""
        self._reported.pop(node, None)
        self._reported_until.pop(node, None)
        self._isolated.pop(node, None)
        if node not in self._nodes:
            self._holds.pop(node, None)

    def adopt(self, pod: str, node: str, need: Amounts) -> None:
        """A pod bound to ``node`` with ``need`` aligned: held in the lowest zones that fit,
        when the node's topology is an agent's and nothing holds for the pod yet."""
        topology = self.get(node)
        if topology is None or topology.source != SOURCE_AGENT or not need:
            return
        if any(h.pod == pod for h in self._holds.get(node, ())):
            return
        free = self.free(topology)
        taken: dict[str, Amounts] = {}
        fits = [i for i, f in enumerate(free) if all(f.get(r, 0) >= n for r, n in need.items())]
        if fits:
            taken[topology.zones[fits[0]].name] = dict(need)
        else:  # it spans zones: take from each in order what it has
            left = dict(need)
            for zone, f in zip(topology.zones, free, strict=True):
                part = {r: min(n, max(f.get(r, 0), 0)) for r, n in left.items() if n > 0}
                part = {r: n for r, n in part.items() if n > 0}
                if part:
                    taken[zone.name] = part
                    left = {r: n - part.get(r, 0) for r, n in left.items()}
        self.hold(pod, node, taken)

    def pod_gone(self, pod: str, node: str) -> None:
        """``pod`` left ``node`` (deleted, or ended): what it held is free again."""
        self.release(pod, node)

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

    def free(self, topology: NodeTopology, *, gone: Collection[str] = ()) -> list[dict[str, int]]:
        """Each zone's published available less the holds on it, in ``topology.zones`` order;
        the holds of the pods in ``gone`` (evicted, in a what-if) count as free."""
        out = [dict(z.available) for z in topology.zones]
        holds = self.holds(topology.name)
        if holds:
            index = {z.name: i for i, z in enumerate(topology.zones)}
            for h in holds:
                if h.pod in gone:
                    continue
                for zone, amounts in h.taken.items():
                    i = index.get(zone)
                    if i is not None:
                        for r, n in amounts.items():
                            out[i][r] = out[i].get(r, 0) - n
        return out

    def hold(self, pod: str, node: str, taken: Mapping[str, Amounts]) -> None:
        """``pod`` was reserved on ``node``, taking ``taken`` from its zones."""
        topology = self.get(node)
        if topology is None or not taken:
            return
        self._drop_hold(pod, node)
        # An agent's report never shows a placement: such a hold lasts while its pod does.
        ttl = math.inf if topology.source == SOURCE_AGENT else self._ttl
        self._holds.setdefault(node, []).append(
            Hold(
                pod=pod,
                taken=taken,
                basis=topology.resource_version,
                basis_available={z.name: z.available for z in topology.zones},
                expires=self._clock() + ttl,
            )
        )

    def held(self, pod: str, node: str) -> bool:
        """Does ``pod`` hold room in ``node``'s zones (so that evicting it frees that)?"""
        return any(h.pod == pod for h in self.holds(node))

    def isolate(self, pod: str, node: str, zone: str) -> None:
        """``pod``, asking ``isolated``, was reserved in ``zone`` of ``node``."""
        self._isolated.setdefault(node, {})[pod] = zone

    def isolated_zone(self, pod: str, node: str, need: Amounts) -> str | None:
        """The zone of ``node`` that the isolated ``pod`` (aligning ``need``) keeps: the one
        recorded, else a guess remembered from now on (see the module's docstring)."""
        zone = self._isolated.get(node, {}).get(pod)
        topology = self.get(node)
        if zone is not None or topology is None or not topology.zones:
            return zone
        own = [h for h in self.holds(node) if h.pod == pod and len(h.taken) == 1]
        if own:
            zone = next(iter(own[0].taken))
        else:
            free = self.free(topology)
            used = [
                {r: z.allocatable.get(r, 0) - f.get(r, 0) for r in need}
                for z, f in zip(topology.zones, free, strict=True)
            ]
            zone = next(
                (z.name for z, u in zip(topology.zones, used, strict=True) if _covers(u, need)),
                next(
                    (z.name for z in topology.zones if _covers(z.allocatable, need)),
                    topology.zones[0].name,
                ),
            )
        self.isolate(pod, node, zone)
        return zone

    def release(self, pod: str, node: str) -> None:
        """``pod``'s reserve on ``node`` was undone: its hold and its isolated zone end."""
        isolated = self._isolated.get(node)
        if isolated and isolated.pop(pod, None) is not None and not isolated:
            del self._isolated[node]
        self._drop_hold(pod, node)

    def _drop_hold(self, pod: str, node: str) -> None:
        holds = self._holds.get(node)
        if holds:
            kept = [h for h in holds if h.pod != pod]
            if kept:
                self._holds[node] = kept
            else:
                del self._holds[node]


def _covers(have: Amounts, need: Amounts) -> bool:
    return all(have.get(r, 0) >= n for r, n in need.items())


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
