"""NodeResourceTopologyMatch: a pod's CPUs, memory and devices from one NUMA zone.

scheduler-plugins' plugin of this name, with KubeNexus's annotations. What
must fit, on a node with a NodeResourceTopology (lasched/model/numa.py):

* the node's Topology Manager policy ``single-numa-node``: what the kubelet
  aligns (devices always; CPU and memory of Guaranteed pods) from one zone,
  per the node's scope (each container, or the pod), or the kubelet would
  refuse the pod after binding (TopologyAffinityError);
* ``restricted``: from the fewest zones that could ever hold it (the
  kubelet admits only such a preferred affinity); scheduler-plugins does not
  check this policy, lasched does;
* the pod's annotation ``numa.scheduling.kubenexus.io/policy: single-numa``
  (or ``isolated``): the resources its ``/resources`` annotation lists (all
  aligned ones without it) from one zone, the pod counted whole, whatever
  the node's policy; ``restricted``: from the fewest zones; ``best-effort``:
  scored only;
* ``isolated`` (KubeNexus's dedicated NUMA node): as ``single-numa``, in a zone
  where nothing is pinned (every resource's free amount is its allocatable),
  and while the pod is on the node its zone is *closed* to every other pod
  this plugin places in zones. Which zone it keeps is recorded at Reserve and
  lasts until the pod leaves (lasched/cache/topology.py); the isolated pods are
  read from the NodeInfo being filtered, so a victim removed in preemption's
  what-if no longer closes its zone.

A node without a NodeResourceTopology passes, except for a pod whose
annotation asks single-numa, isolated or restricted: lasched cannot tell
whether such a node fits, so it is rejected, and the message says why.

**Cost for other pods.** PreFilter skips (and Filter and Score do not run
for) a pod with nothing the kubelet would align and no annotation, and a pod
without annotation while no node publishes a topology; such pods still
batch. So the plugin sits in the default profile.

**Preemption.** Evicting a pod frees what lasched counts it taking from a
zone: its hold (a placement the publisher does not show yet, or any pod on an
agent-reported node) and the zone it keeps isolated. Filter sees the
evictions as the NodeInfo it is given lacking pods that the cache's has
(DefaultPreemption's simulated node), and counts those pods' holds as free.
A shortfall is *resolvable* when evicting the node's lower-priority pods that
lasched counts in its zones would make the pod fit, and unresolvable
otherwise: what a pod the publisher already shows takes comes back only when
it publishes again (the NRT event then requeues the pod), so no what-if
could show it.

**Reserve.** Reserve records what the pod takes from each zone as a hold on
the node's topology (lasched/cache/topology.py), so the next pod is judged on
the published numbers less lasched's own placements; Unreserve releases it.

**Queueing hints.** A pod this plugin rejected is worth another try when a
NodeResourceTopology is added, deleted, or updated with more free in a zone
or another policy, and when an assigned pod goes (a forgotten reserve frees
its hold).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Any

from lasched.cache.cache import NodeInfo
from lasched.cache.topology import Topologies
from lasched.framework import events
from lasched.framework.events import ActionType, ClusterEvent, ClusterEventWithHint, EventResource
from lasched.framework.interface import (
    MAX_NODE_SCORE,
    SKIP,
    SUCCESS,
    Batchable,
    CycleState,
    Status,
    unschedulable,
)
from lasched.model.numa import NodeTopology, NumaRequest, PodPolicy, Policy, Scope
from lasched.model.pod import PodInfo
from lasched.plugins import numafit
from lasched.plugins.numafit import Fit

NAME = "NodeResourceTopologyMatch"
NO_TOPOLOGY = "publishes no NUMA topology (NodeResourceTopology) to check the pod's NUMA policy"

_SINGLE, _RESTRICTED = "single", "restricted"
_POD_LEVEL: Mapping[PodPolicy | None, str | None] = {
    PodPolicy.SINGLE_NUMA: _SINGLE,
    PodPolicy.ISOLATED: _SINGLE,
    PodPolicy.RESTRICTED: _RESTRICTED,
    PodPolicy.BEST_EFFORT: None,
    None: None,
}
_NODE_LEVEL: Mapping[Policy, str | None] = {
    Policy.SINGLE_NUMA_NODE: _SINGLE,
    Policy.RESTRICTED: _RESTRICTED,
    Policy.BEST_EFFORT: None,
    Policy.NONE: None,
}


def _check(
    level: str,
    req: NumaRequest,
    topo: NodeTopology,
    free: list[dict[str, int]],
    *,
    by_pod: bool,
    closed: Mapping[int, str],
) -> Fit:
    resources = req.aligned(by_pod=by_pod)
    if level == _SINGLE:
        scope = Scope.POD if by_pod else topo.scope
        return numafit.single(
            req, topo.zones, free, scope=scope, resources=resources, closed=closed
        )
    return numafit.restricted(req, topo.zones, free, resources=resources, closed=closed)


def _isolated(pod: PodInfo) -> bool:
    """The pod asks ``isolated`` over something the kubelet aligns."""
    req = pod.numa
    return req is not None and req.policy is PodPolicy.ISOLATED and bool(req.aligned(by_pod=True))


def _topology_changed(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """Added or deleted; or a zone with more free, another policy or scope, other zones."""
    if not isinstance(old, NodeTopology) or not isinstance(new, NodeTopology):
        return events.QUEUE
    if (old.policy, old.scope) != (new.policy, new.scope) or len(old.zones) != len(new.zones):
        return events.QUEUE
    for a, b in zip(old.zones, new.zones, strict=True):
        if a.name != b.name or any(n > a.available.get(r, 0) for r, n in b.available.items()):
            return events.QUEUE
    return events.SKIP


class NodeResourceTopologyMatch(Batchable):
    """Filter, Score and Reserve on NUMA zones (see the module's docstring)."""

    name = NAME

    def __init__(
        self,
        topologies: Topologies,
        *,
        strategy: str = "LeastAllocated",
        resources: Mapping[str, int] | None = None,
        node_info: Callable[[str], NodeInfo | None] = lambda name: None,
    ) -> None:
        """``node_info``: the cache's NodeInfo of a node, to tell a simulated one's evictions
        and to find the isolated pods at Reserve."""
        if strategy not in numafit.STRATEGIES:
            raise ValueError(
                f"scoringStrategy.type must be one of {', '.join(numafit.STRATEGIES)}, "
                f"not {strategy!r}"
            )
        for resource, weight in (resources or {}).items():
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise ValueError(
                    f"scoringStrategy.resources[{resource!r}] must be a positive integer, "
                    f"not {weight!r}"
                )
        self._topologies = topologies
        self._node_info = node_info
        self.strategy = strategy
        self.resources = dict(resources or {})

    @classmethod
    def from_args(
        cls,
        topologies: Topologies,
        args: Mapping[str, Any],
        *,
        node_info: Callable[[str], NodeInfo | None] = lambda name: None,
    ) -> NodeResourceTopologyMatch:
        """From the args KubeSchedulerConfiguration's reader (or lasched's file) gives."""
        unknown = set(args) - {"scoringStrategy", "resources"}
        if unknown:
            raise ValueError(f"{NAME}: unknown argument(s) {sorted(unknown)}")
        return cls(
            topologies,
            strategy=str(args.get("scoringStrategy", "LeastAllocated")),
            resources=args.get("resources") or None,
            node_info=node_info,
        )

    # ---- whom it concerns -------------------------------------------------------

    def _applies(self, pod: PodInfo) -> bool:
        req = pod.numa
        if req is None:
            return False
        return bool(req.error) or req.policy is not None or len(self._topologies) > 0

    def sign_pod(self, pod: PodInfo) -> Hashable | None:
        """A pod this plugin judges never joins a batch (its zones are not in the signature)."""
        return None if self._applies(pod) else ()

    def events_to_register(self) -> list[ClusterEventWithHint]:
        """NodeResourceTopology added, deleted or grown; an assigned pod gone."""
        return [
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.NODE_RESOURCE_TOPOLOGY,
                    ActionType.ADD | ActionType.DELETE | ActionType.UPDATE_OTHER,
                ),
                _topology_changed,
            ),
            ClusterEventWithHint(events.ASSIGNED_POD_DELETE),
        ]

    # ---- filter -----------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        if not self._applies(pod):
            return SKIP
        assert pod.numa is not None
        if pod.numa.error:
            return unschedulable(pod.numa.error, unresolvable=True)
        return SUCCESS

    def fit(
        self,
        pod: PodInfo,
        node: str,
        *,
        pods: Collection[PodInfo] | None = None,
        gone: Collection[str] = (),
    ) -> Fit | None:
        """What ``pod`` would take from ``node``'s zones, why it cannot, or None when
        nothing is to be checked there. ``pods``: those on the node (default: the cache's),
        whose isolated ones close their zones; ``gone``: pods whose holds count as free."""
        req = pod.numa
        if req is None:
            return None
        # A pod policy over nothing the kubelet aligns (CPU of a Burstable pod) asks nothing.
        pod_level = _POD_LEVEL[req.policy] if req.aligned(by_pod=True) else None
        topo = self._topologies.get(node)
        if topo is None:
            return Fit(shortfall=NO_TOPOLOGY) if pod_level else None
        node_level = _NODE_LEVEL[topo.policy]
        if node_level is None and pod_level is None:
            return None
        free = self._topologies.free(topo, gone=gone)
        closed = self._closed(pod, topo, free, pods)
        result: Fit | None = None
        if node_level is not None:
            result = _check(node_level, req, topo, free, by_pod=False, closed=closed)
            if not result.ok:
                return result
        if pod_level is not None:
            own = _check(pod_level, req, topo, free, by_pod=True, closed=closed)
            if not own.ok or result is None:
                return own
        return result

    def _closed(
        self,
        pod: PodInfo,
        topo: NodeTopology,
        free: list[dict[str, int]],
        pods: Collection[PodInfo] | None,
    ) -> dict[int, str]:
        """Zone index -> why ``pod`` may not take from it: another pod keeps it isolated,
        or ``pod`` is isolated and something is pinned there."""
        if pods is None:
            ni = self._node_info(topo.name)
            pods = ni.pods.values() if ni is not None else ()
        index = {z.name: i for i, z in enumerate(topo.zones)}
        closed: dict[int, str] = {}
        for p in pods:
            if p.key == pod.key or not _isolated(p):
                continue
            assert p.numa is not None
            zone = self._topologies.isolated_zone(p.key, topo.name, p.numa.pod)
            i = index.get(zone) if zone is not None else None
            if i is not None:
                closed[i] = f"isolated for pod {p.key}"
        if _isolated(pod):
            for i, (z, f) in enumerate(zip(topo.zones, free, strict=True)):
                if i not in closed and any(f.get(r, 0) < n for r, n in z.allocatable.items()):
                    closed[i] = "in use, not free for an isolated pod"
        return closed

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        real = self._node_info(node.name)
        gone: Collection[str] = ()
        if real is not None and real is not node and real.pods is not node.pods:
            # Preemption's what-if: the pods missing from ``node`` are being evicted.
            gone = real.pods.keys() - node.pods.keys()
        verdict = self.fit(pod, node.name, pods=node.pods.values(), gone=gone)
        if verdict is None or verdict.ok:
            return SUCCESS
        message = f"node {node.name}: {verdict.shortfall}"
        return unschedulable(message, unresolvable=not self._evicting_helps(pod, node, gone))

    def _evicting_helps(self, pod: PodInfo, node: NodeInfo, gone: Collection[str]) -> bool:
        """Would evicting the lower-priority pods lasched counts in ``node``'s zones (their
        holds, their isolated zones) let ``pod`` fit?"""
        victims = {
            p.key
            for p in node.pods.values()
            if p.priority < pod.priority
            and (_isolated(p) or self._topologies.held(p.key, node.name))
        }
        if not victims:
            return False
        kept = [p for p in node.pods.values() if p.key not in victims]
        verdict = self.fit(pod, node.name, pods=kept, gone={*gone, *victims})
        return verdict is not None and verdict.ok

    # ---- score ------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        req = pod.numa
        if req is None or not req.aligned(by_pod=True) or not len(self._topologies):
            return SKIP
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        req = pod.numa
        topo = self._topologies.get(node.name)
        if req is None or topo is None:
            return 0
        need = {r: req.pod[r] for r in req.aligned(by_pod=True)}
        free = self._topologies.free(topo)
        closed = self._closed(pod, topo, free, node.pods.values())
        open_free = [{} if i in closed else f for i, f in enumerate(free)]
        return numafit.node_score(self.strategy, need, topo.zones, open_free, self.resources)

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        for i, s in enumerate(scores):
            scores[i] = min(max(s, 0), MAX_NODE_SCORE)

    # ---- reserve ----------------------------------------------------------------

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        verdict = self.fit(pod, node)
        if verdict is None:
            return SUCCESS
        if not verdict.ok:  # the zones filled since Filter (another profile's pod)
            return unschedulable(f"node {node}: {verdict.shortfall}")
        topo = self._topologies.get(node)
        if topo is not None and verdict.taken:
            names = [z.name for z in topo.zones]
            self._topologies.hold(
                pod.key, node, {names[i]: amounts for i, amounts in verdict.taken.items()}
            )
            if _isolated(pod):
                self._topologies.isolate(pod.key, node, names[min(verdict.taken)])
        return SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        self._topologies.release(pod.key, node)
