"""Latency plugins: LatencyFilter (hard limits) and LatencyScore (soft preferences).

**LatencyFilter** admits a node when every hard limit of the pod holds
(``lasched.model.latencyreq``): delay labels and ``max-rtt`` against named
places, ``peer-max-rtt`` against the nodes of matching pods, and
``group-max-rtt`` against the nodes of the pod's group members already
placed. It reads only *measured, fresh* RTTs: unknown or stale data fails
closed, with a reason that says which.

**LatencyScore** ranks nodes by weighted RTT to the places a pod prefers (or
to its peers), where an unmeasured pair may fall back to an estimate. A pod
with no latency requirement at all follows the profile's *default
preference* (:class:`DefaultPreference`): nothing (resources alone decide),
``cloud`` (nodes labelled ``kubernetes.io/role=cloud``, keeping edge capacity
for the pods that need it; ``latency.cloudFallback``), or ``central`` (the
node with the lowest mean RTT to the other nodes, latent-scheduler's rule).
The mean RTT per node is worked out once per change of the latency cache or
of the node list, not once per pod.

A pod LatencyFilter rejected is worth another try when RTTs change (the
latency upkeep's ``Latency`` event, at most about once a second), when a
node is added (a static file or snapshot may know it), and when a pod its
``peer-selector`` matches is placed, relabelled or deleted, or a member of
its group is deleted (:meth:`LatencyFilter.events_to_register`).

Which direction is measured: the RTT between a place and a node is read
``place -> node`` (the place's agent measured it) and, when that is missing
or stale, ``node -> place`` (the node's agent measured it; the only way for
a user endpoint). A round trip crosses both directions either way.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from typing import Any

from lasched.cache.cache import NodeInfo
from lasched.framework import events
from lasched.framework.events import (
    LATENCY_UPDATE,
    NODE_ADD,
    ActionType,
    ClusterEvent,
    ClusterEventWithHint,
    EventResource,
)
from lasched.framework.interface import SKIP, SUCCESS, Batchable, CycleState, Status, unschedulable
from lasched.latency.cache import LatencyCache, Rtt
from lasched.latency.plan import Planner, planned_rtt
from lasched.model import selector
from lasched.model.latencyreq import LatencyRequirements, Preference
from lasched.model.pod import PodInfo

CLOUD_ROLE_LABEL = "kubernetes.io/role"
CLOUD_ROLE = "cloud"
MAX_NODE_SCORE = 100

PeerNodes = Callable[[str, Mapping[str, Any]], set[str]]
"""(namespace, label selector) -> nodes of the placed pods that match."""
GroupNodes = Callable[[PodInfo], set[str]]
"""A pod -> nodes of the other members of its group that are placed."""
NodeNames = Callable[[], Collection[str]]
"""Every node's name (the ``central`` preference averages a node's RTT to the others)."""


class DefaultPreference(enum.Enum):
    """What LatencyScore prefers for a pod that states no latency requirement."""

    NONE = "none"  # nothing: the other scores decide
    CLOUD = "cloud"  # nodes labelled kubernetes.io/role=cloud
    CENTRAL = "central"  # the lowest mean RTT to the other nodes

    @classmethod
    def parse(cls, value: object, what: str) -> DefaultPreference:
        """``value`` as a preference; ValueError naming ``what`` when it is none of them."""
        for p in cls:
            if value == p.value:
                return p
        choices = ", ".join(p.value for p in cls)
        raise ValueError(f"{what} must be one of {choices}, not {value!r}")


_PEERS = "Latency/peers"
_GROUP = "Latency/group"
_MODE = "LatencyScore/mode"
_ROOM = "LatencyScore/room"
_NEED = "LatencyScore/need"
_SCORED = "LatencyScore/scored"
_NO_ROOM_MS = 10_000.0
_PLANNED = "LatencyScore/planned"
_OFF_PLAN_MS = 1_000.0  # a node outside the pod's plan: after every planned one
_MEANS = "LatencyScore/means"
_RTT_FLOOR_US = 1000  # see LatencyScore.normalize


def between(cache: LatencyCache, place: str, node: str) -> Rtt | None:
    """The RTT between a place and a node: fresh ``place -> node``, else fresh ``node -> place``."""
    forward = cache.get(place, node)
    if forward is not None and not forward.stale:
        return forward
    backward = cache.get(node, place)
    if backward is not None and not backward.stale:
        return backward
    return forward or backward


def _check(rtt: Rtt | None, limit: float, what: str, origin: str) -> Status | None:
    """None when ``rtt`` is fresh and within ``limit``, else the reason it is not.

    Unresolvable: evicting pods never brings a node nearer, so preemption
    does not consider these nodes (the pod is retried when latency changes).
    """
    if rtt is None:
        return unschedulable(f"node(s) had no measured RTT {what}", unresolvable=True)
    if rtt.stale:
        return unschedulable(f"node(s) had only stale RTTs {what}", unresolvable=True)
    if rtt.ms > limit:
        return unschedulable(
            f"node(s) were more than {limit:g} ms {what} ({origin})", unresolvable=True
        )
    return None


def _has_limits(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """RTTs (or the nodes) changed: the pod's hard limits may hold now."""
    req = pod.latency
    return events.QUEUE if req is not None and req.hard else events.SKIP


def _peer_changed(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """A placed pod the pod's peer selector matches came, went or changed labels; or a
    member of its group left, one node fewer to be near."""
    req = pod.latency
    if req is None:
        return events.SKIP
    for other in (old, new):
        if not isinstance(other, PodInfo) or other.key == pod.key:
            continue
        if (
            req.peers is not None
            and other.namespace == pod.namespace
            and selector.matches(req.peers.selector, other.labels)
        ):
            return events.QUEUE
    if (
        new is None
        and req.group_max_ms is not None
        and isinstance(old, PodInfo)
        and old.group is not None
        and pod.group is not None
        and old.group.key == pod.group.key
    ):
        return events.QUEUE
    return events.SKIP


class LatencyFilter(Batchable):
    name = "LatencyFilter"

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(LATENCY_UPDATE, _has_limits),
            ClusterEventWithHint(NODE_ADD, _has_limits),
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.ASSIGNED_POD,
                    ActionType.ADD | ActionType.DELETE | ActionType.UPDATE_POD_LABEL,
                ),
                _peer_changed,
            ),
        ]

    def __init__(
        self,
        cache: LatencyCache,
        *,
        peer_nodes: PeerNodes = lambda ns, sel: set(),
        group_nodes: GroupNodes = lambda pod: set(),
    ) -> None:
        self._cache = cache
        self._peer_nodes = peer_nodes
        self._group_nodes = group_nodes

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        if pod.latency_error:
            return unschedulable(pod.latency_error, unresolvable=True)
        req = pod.latency
        if req is None or not req.hard:
            return SKIP
        if req.peers is not None and req.peers.max_ms is not None:
            peers = self._peer_nodes(pod.namespace, req.peers.selector)
            if not peers and not selector.matches(req.peers.selector, pod.labels):
                return unschedulable(
                    f"no pod matching {req.peers.text} is placed yet (lasched.io/peer-selector)"
                )
            state.data[_PEERS] = peers
        if req.group_max_ms is not None:
            state.data[_GROUP] = self._group_nodes(pod)
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        req = pod.latency
        if req is None:  # preemption simulates filters without this plugin's PreFilter
            return SUCCESS
        name = node.name
        for limit in req.limits:
            bad = _check(
                between(self._cache, limit.place, name), limit.max_ms,
                f"from {limit.place}", limit.origin,
            )  # fmt: skip
            if bad is not None:
                return bad
        peers: set[str] = state.data.get(_PEERS, set())
        if peers and req.peers is not None and req.peers.max_ms is not None:
            what = f"from pods matching {req.peers.text}"
            for peer in peers:
                bad = _check(
                    between(self._cache, peer, name), req.peers.max_ms, what, "peer-max-rtt"
                )
                if bad is not None:
                    return bad
        members: set[str] = state.data.get(_GROUP, set())
        if members and req.group_max_ms is not None and pod.group is not None:
            what = f"from other members of pod group {pod.group.key}"
            for other in members:
                bad = _check(
                    between(self._cache, other, name), req.group_max_ms, what, "group-max-rtt"
                )
                if bad is not None:
                    return bad
        return SUCCESS

    def why_not(self, state: CycleState, pod: PodInfo, node: str) -> str:
        """The pair that makes :meth:`filter` reject ``node``, with its RTT; empty if none does.

        For ``lasched explain``: ``rtt from edge-1 = 41.0 ms > 25 ms (delay_edge-1, 3 s old)``.
        Checks in :meth:`filter`'s order, on the ``state`` its :meth:`pre_filter` filled.
        """
        req = pod.latency
        if req is None:
            return ""
        checks = [(limit.place, limit.max_ms, limit.origin) for limit in req.limits]
        if req.peers is not None and req.peers.max_ms is not None:
            origin = f"peer-max-rtt to pods matching {req.peers.text}"
            checks += [(p, req.peers.max_ms, origin) for p in sorted(state.data.get(_PEERS, ()))]
        if req.group_max_ms is not None:
            checks += [
                (m, req.group_max_ms, "group-max-rtt") for m in sorted(state.data.get(_GROUP, ()))
            ]
        for place, limit, origin in checks:
            rtt = between(self._cache, place, node)
            if rtt is None:
                return f"no measured RTT from {place} ({origin})"
            age = "static" if rtt.source == "static" else f"{rtt.age_s:.0f} s old"
            if rtt.stale:
                return f"rtt from {place} = {rtt.ms:.1f} ms is stale ({age}; {origin})"
            if rtt.ms > limit:
                return f"rtt from {place} = {rtt.ms:.1f} ms > {limit:g} ms ({origin}, {age})"
        return ""

    def explain(self, pod: PodInfo, node: str) -> str:
        """The RTTs that admitted ``node``, for the Scheduled event."""
        req = pod.latency
        if req is None:
            return ""
        parts = []
        for limit in req.limits:
            rtt = between(self._cache, limit.place, node)
            if rtt is not None:
                parts.append(rtt.describe(limit.place))
        for p in req.preferences:
            rtt = between(self._cache, p.place, node)
            if rtt is not None:
                parts.append(rtt.describe(p.place))
        if req.peers is not None:
            worst = _worst(self._cache, self._peer_nodes(pod.namespace, req.peers.selector), node)
            if worst is not None:
                parts.append(f"pods matching {req.peers.text}: {worst[1].describe(worst[0])}")
        if req.group_max_ms is not None:
            worst = _worst(self._cache, self._group_nodes(pod), node)
            if worst is not None:
                parts.append(f"group: {worst[1].describe(worst[0])}")
        return "; ".join(parts)


def _worst(cache: LatencyCache, places: Iterable[str], node: str) -> tuple[str, Rtt] | None:
    found = [(p, r) for p in places if (r := between(cache, p, node)) is not None]
    return max(found, key=lambda pr: pr[1].ms) if found else None


class MeanRtt:
    """Each node's mean RTT to the other nodes, kept until the RTTs or the nodes change.

    Shared by every profile's LatencyScore: one computation per change,
    O(nodes^2) lookups, however many pods are scored meanwhile.
    """

    def __init__(self, cache: LatencyCache, node_names: NodeNames) -> None:
        self._cache = cache
        self._node_names = node_names
        self._key: tuple[int, frozenset[str]] | None = None
        self._means: dict[str, float] = {}

    def of(self) -> Mapping[str, float]:
        """Mean RTT in ms by node; a node with no known RTT to any other is absent."""
        names = frozenset(self._node_names())
        key = (self._cache.version, names)
        if key != self._key:
            self._means = {n: m for n in names if (m := self._mean(n, names)) is not None}
            self._key = key
        return self._means

    def _mean(self, node: str, names: frozenset[str]) -> float | None:
        # Measured (stale too: a preference is better served by an old RTT than by
        # none), else the coordinates' estimate; time alone then never changes the answer.
        known = []
        for other in names:
            if other == node:
                continue
            rtt = between(self._cache, node, other)
            if rtt is None:
                rtt = self._cache.estimate(node, other)
            if rtt is not None:
                known.append(rtt.ms)
        return sum(known) / len(known) if known else None


class LatencyScore(Batchable):
    """Lower weighted RTT scores higher; see the module docstring for the default preference."""

    name = "LatencyScore"

    def __init__(
        self,
        cache: LatencyCache,
        *,
        peer_nodes: PeerNodes = lambda ns, sel: set(),
        group_nodes: GroupNodes = lambda pod: set(),
        node_names: NodeNames = lambda: (),
        cloud_fallback: bool = False,
        default_preference: DefaultPreference | None = None,
        anchor_limit: int = 256,
        means: MeanRtt | None = None,
        planner: Planner | None = None,
    ) -> None:
        """``default_preference`` None: ``cloud`` when ``cloud_fallback``, else ``none``."""
        self._cache = cache
        self._peer_nodes = peer_nodes
        self._group_nodes = group_nodes
        self._node_names = node_names
        if default_preference is None:
            default_preference = (
                DefaultPreference.CLOUD if cloud_fallback else DefaultPreference.NONE
            )
        self.default_preference = default_preference
        self._anchor_limit = anchor_limit
        self._means = means if means is not None else MeanRtt(cache, node_names)
        self.planner = planner

    def configured(self, args: Mapping[str, Any], what: str = "LatencyScore") -> LatencyScore:
        """This plugin with a profile's args (``defaultPreference``, or the older
        ``cloudFallback``), sharing the latency view; ValueError names a bad arg."""
        unknown = sorted(set(args) - {"defaultPreference", "cloudFallback"})
        if unknown:
            raise ValueError(f"{what}.{unknown[0]} is not an arg of LatencyScore")
        preference = self.default_preference
        cloud = args.get("cloudFallback")
        if cloud is not None:
            if not isinstance(cloud, bool):
                raise ValueError(f"{what}.cloudFallback must be true or false, not {cloud!r}")
            preference = DefaultPreference.CLOUD if cloud else DefaultPreference.NONE
        if "defaultPreference" in args:
            preference = DefaultPreference.parse(
                args["defaultPreference"], f"{what}.defaultPreference"
            )
            if cloud is not None and (preference is DefaultPreference.CLOUD) != cloud:
                raise ValueError(
                    f"{what}.cloudFallback={str(cloud).lower()} contradicts "
                    f"{what}.defaultPreference={preference.value}"
                )
        if preference is self.default_preference:
            return self
        return self._copy(preference, self.planner)

    def unplanned(self) -> LatencyScore:
        """This plugin without a plan, sharing the latency view (the extender's: pods it
        scores are placed by kube-scheduler, so a plan would never see them placed)."""
        return self if self.planner is None else self._copy(self.default_preference, None)

    def _copy(self, preference: DefaultPreference, planner: Planner | None) -> LatencyScore:
        return LatencyScore(
            self._cache, peer_nodes=self._peer_nodes, group_nodes=self._group_nodes,
            node_names=self._node_names, default_preference=preference,
            anchor_limit=self._anchor_limit, means=self._means, planner=planner,
        )  # fmt: skip

    def _plan_into(self, state: CycleState, pod: PodInfo) -> None:
        """The nodes the plan keeps for ``pod``, for :meth:`score` (none without a plan)."""
        if self.planner is not None and (planned := self.planner.nodes_for(pod)) is not None:
            state.data[_PLANNED] = planned

    def sign_pod(self, pod: PodInfo) -> Hashable | None:
        """None for a pod its plan covers: the plan changes with every pod placed, so the
        previous pod's scores do not hold for the next (no batch takes it)."""
        if self.planner is not None and self.planner.covers(pod):
            return None
        return ()

    def mean_rtt(self) -> Mapping[str, float]:
        """Each node's mean RTT to the others in ms (the ``central`` preference's measure)."""
        return self._means.of()

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        req = pod.latency
        if req is None:
            if self.default_preference is DefaultPreference.NONE:
                return SKIP
            state.data[_MODE] = self.default_preference.value
            if self.default_preference is DefaultPreference.CENTRAL:
                state.data[_MEANS] = self._means.of()
            return SUCCESS
        if req.group_max_ms is not None and pod.group is not None:
            return self._pre_score_group(state, pod, req, req.group_max_ms, nodes)
        scored = _scored(req)
        if scored is None:
            return SKIP
        state.data[_MODE] = "rtt"
        state.data[_SCORED] = scored
        self._plan_into(state, pod)
        if req.peers is not None and (req.peers.max_ms is None or not scored.preferences):
            state.data[_PEERS] = self._peer_nodes(pod.namespace, req.peers.selector)
        return SUCCESS

    def _pre_score_group(
        self,
        state: CycleState,
        pod: PodInfo,
        req: LatencyRequirements,
        budget: float,
        nodes: list[NodeInfo],
    ) -> Status:
        """A gang with a pairwise budget is placed member by member, so choose well early.

        Once members are placed, the next one prefers nodes near its users
        (its preferences, else the places it limits) and near the placed
        members (the filter already bounds the worst pair). The first member,
        the *anchor*, goes nearest its users among the nodes with room for
        the whole gang within the budget around them (room counted in
        members: what the feasible nodes within the budget can still hold); a
        gang that names no users anchors where that room is largest, so it
        starts where it fits instead of wherever resources alone would put
        it, and then fails as a whole.
        """
        users = _places(req)
        state.data[_SCORED] = LatencyRequirements(preferences=users)
        self._plan_into(state, pod)
        placed = self._group_nodes(pod)
        if placed:
            state.data[_MODE] = "group"
            state.data[_PEERS] = placed
            return SUCCESS
        if len(nodes) > self._anchor_limit:
            # O(n^2) lookups: beyond this, the users (or resources alone) decide the anchor.
            if not users:
                return SKIP
            state.data[_MODE] = "rtt"
            return SUCCESS
        fits = {n.name: _members_fit(n, pod) for n in nodes}
        room = {
            a: sum(
                k
                for b, k in fits.items()
                if k and (r := between(self._cache, a, b)) is not None and not r.stale
                and r.ms <= budget
            )
            for a in fits
        }  # fmt: skip
        state.data[_ROOM] = room
        if not users:
            state.data[_MODE] = "anchor"
            return SUCCESS
        need = pod.group.min_available if pod.group is not None else None
        state.data[_NEED] = need or 1
        state.data[_MODE] = "anchor-users"
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """Cloud mode: 100 on cloud nodes. RTT, gang and central modes: the cost in µs, -1 if
        unknown."""
        mode = state.data.get(_MODE)
        if mode == "cloud":
            assert node.node is not None
            return MAX_NODE_SCORE if node.node.labels.get(CLOUD_ROLE_LABEL) == CLOUD_ROLE else 0
        if mode == "central":
            mean: float | None = state.data[_MEANS].get(node.name)
            return -1 if mean is None else round(mean * 1000)
        if mode == "anchor":
            # Negated so that, like costs, lower is better for normalize().
            room: dict[str, int] = state.data[_ROOM]
            return 1_000_000 - room.get(node.name, 0)
        scored: LatencyRequirements = state.data[_SCORED]
        cost = _cost(self._cache, scored, state.data.get(_PEERS, set()), node.name)
        if cost is None:
            return -1
        if mode == "anchor-users" and state.data[_ROOM].get(node.name, 0) < state.data[_NEED]:
            cost += _NO_ROOM_MS  # the gang would not fit around it: a last resort
        planned: frozenset[str] | None = state.data.get(_PLANNED)
        if planned is not None and node.name not in planned:
            cost += _OFF_PLAN_MS
        return round(cost * 1000)

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Costs to 0..100: relative to the best node for RTTs, min-max for the anchor's room
        and for the central node (the lowest mean RTT takes 100, the highest 0: the
        central preference is latent-scheduler's rule, "the lowest", not a trade-off).

        An RTT cost scores ``100 * (best + 1 ms) / (cost + 1 ms)``: twice as
        far as the best node is worth about half, whatever the farthest node
        of the cluster is. Rescaling between the best and the worst node
        instead would let one distant region squeeze 9 ms against 28 ms into
        a few points, which resource scores then outweigh. The 1 ms keeps
        sub-millisecond differences from dominating.
        """
        mode = state.data.get(_MODE)
        if mode == "cloud":
            return
        known = [s for s in scores if s >= 0]
        if not known:
            scores[:] = [0] * len(scores)
            return
        lo, hi = min(known), max(known)
        for i, s in enumerate(scores):
            if s < 0:
                scores[i] = 0
            elif mode not in ("anchor", "central"):
                scores[i] = MAX_NODE_SCORE * (lo + _RTT_FLOOR_US) // (s + _RTT_FLOOR_US)
            elif hi == lo:
                scores[i] = MAX_NODE_SCORE
            else:
                scores[i] = MAX_NODE_SCORE * (hi - s) // (hi - lo)


def _members_fit(node: NodeInfo, pod: PodInfo) -> int:
    """How many pods like ``pod`` the node has room for, by cpu, memory and pod count."""
    if node.node is None:
        return 0
    alloc, used, req = node.node.allocatable, node.requested, pod.requests
    room = alloc.pods - len(node.pods)
    for free, ask in (
        (alloc.milli_cpu - used.milli_cpu, req.milli_cpu),
        (alloc.memory - used.memory, req.memory),
    ):
        if ask > 0:
            room = min(room, free // ask)
    return max(room, 0)


def _places(req: LatencyRequirements) -> tuple[Preference, ...]:
    """The places a pod's RTT is scored against: its preferences, else the places it limits.

    A hard limit says where the pod's traffic goes; within the limit, lower
    is still better for it. Scoring by resources alone instead let a pod
    with a wide limit spread to far nodes, costing its users latency, while
    a nearer node stayed free.
    """
    if req.preferences:
        return req.preferences
    return tuple(Preference(place, 1) for place in dict.fromkeys(lim.place for lim in req.limits))


def _scored(req: LatencyRequirements) -> LatencyRequirements | None:
    """What :meth:`LatencyScore.score` weighs for a pod outside a budgeted gang, or None."""
    places = _places(req)
    if places:
        return LatencyRequirements(preferences=places)
    if req.peers is not None:
        return LatencyRequirements()  # near its peers alone
    return None


def _cost(
    cache: LatencyCache, req: LatencyRequirements, peers: set[str], node: str
) -> float | None:
    """Weighted sum of RTTs to preferred places plus the mean RTT to peers; None if unknown."""
    total = 0.0
    for p in req.preferences:
        rtt = planned_rtt(cache, p.place, node)
        if rtt is None:
            return None
        total += p.weight * rtt
    if peers:
        rtts = [planned_rtt(cache, peer, node) for peer in peers]
        known = [r for r in rtts if r is not None]
        if not known:
            return None
        total += sum(known) / len(known)
    return total
