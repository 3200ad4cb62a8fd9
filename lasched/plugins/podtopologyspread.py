"""PodTopologySpread: keep matching pods spread over topology domains.

kube-scheduler's plugin (``podtopologyspread/{filtering,scoring,common}.go``).

For each constraint, a *domain* is a value of its ``topologyKey`` on an
*eligible* node: one that carries every key of the pod's constraints, and,
when ``nodeAffinityPolicy`` is Honor (the default), matches the pod's
nodeSelector and required node affinity, and when ``nodeTaintsPolicy`` is
Honor (default Ignore), has no NoSchedule / NoExecute taint the pod does not
tolerate. A domain's count is the pods on its eligible nodes, in the pod's
namespace and not terminating, that the constraint's selector matches; an
empty selector (``labelSelector: {}``) counts none, as kube-scheduler's
``countPodsMatchSelector``, though the pod itself still matches it.

* **Filter** (``DoNotSchedule``): a node without a constraint's key fails
  with "node(s) didn't match pod topology spread constraints (missing
  required label)" (unresolvable); otherwise ``count(node's domain) + (1 if
  the pod matches its own selector) - global minimum`` must not exceed
  ``maxSkew``, where the global minimum is 0 while there are fewer domains
  than ``minDomains``. The reason names the domain
  (``topology.kubernetes.io/zone=zone-a``) unless it is the node itself.
* **Score** (``ScheduleAnyway``): kube-scheduler's ``scoreForCount`` summed
  over the constraints (count times ``log(domains + 2)`` plus ``maxSkew - 1``),
  then reversed onto 0..100 so the emptiest domains score highest.

**Default constraints.** A pod with no constraints of its own gets the
plugin's defaults: with ``defaultingType: System`` (the default),
kube-scheduler's ``topology.kubernetes.io/zone`` maxSkew 5 and
``kubernetes.io/hostname`` maxSkew 3, both ScheduleAnyway; with ``List``, the
``defaultConstraints`` given. kube-scheduler selects the pods to spread with
the Services, ReplicationControllers, ReplicaSets and StatefulSets that select
the pod. lasched has no informers for those: the defaults apply to a pod
whose controlling ownerReference is a ReplicaSet, StatefulSet or
ReplicationController, and count the pods of the same namespace with the
same controller (uid). This departs from kube-scheduler for pods selected by
a Service (not spread here unless a controller owns them) and for selectors
that overlap several controllers (kube-scheduler spreads the union; lasched
each controller's own pods).

Invariant: as InterPodAffinity's, Filter judges a node by its own
``NodeInfo.pods`` (preemption's trimmed copies, nominated pods) and the rest
of the cluster by the PreFilter counts plus :meth:`add_pod` /
:meth:`remove_pod`. The domain counts are kept in tallies
(lasched.plugins.interpodaffinity.Tally) by what they depend on (namespace,
constraints, and the pod's node affinity and tolerations when a policy
honours them): the cache's change journal names the nodes changed since,
and only those are recounted, so a run of alike pods costs the nodes they
went to. A node's own matching pods (for hostname domains) are kept in
``NodeInfo.memo`` while its generation stands. A pod without constraints
(and no defaults) costs nothing: PreFilter and PreScore return SKIP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any, cast

import numpy as np
import orjson
from numpy.typing import NDArray

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.cache.columns import NAME_KEY, NodeColumns
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
from lasched.model.affinity import SpreadConstraint, parse_spread_constraints
from lasched.model.node import Node
from lasched.model.pod import PodInfo, PodKey
from lasched.plugins.interpodaffinity import (
    HOSTNAME,
    MEMO_LIMIT,
    Changes,
    DomainFilter,
    Part,
    Tallies,
    Tally,
    Tokens,
    node_changes,
    nominated_here,
    rejection,
)
from lasched.plugins.nodeaffinity import pod_matches_node, required_terms
from lasched.plugins.tainttoleration import untolerated

REASON = "node(s) didn't match pod topology spread constraints"
REASON_MISSING_LABEL = REASON + " (missing required label)"

ZONE = "topology.kubernetes.io/zone"

SYSTEM_DEFAULT_CONSTRAINTS: tuple[dict[str, Any], ...] = (
    {"topologyKey": HOSTNAME, "whenUnsatisfiable": "ScheduleAnyway", "maxSkew": 3},
    {"topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway", "maxSkew": 5},
)
"""kube-scheduler's ``systemDefaultConstraints``."""

DEFAULTED_KINDS = frozenset({"ReplicaSet", "StatefulSet", "ReplicationController"})
"""Controllers whose pods get the default constraints (kube-scheduler adds Services)."""

_PRE_FILTER = "PodTopologySpread/PreFilter"  # (pod key, SpreadFilterState or None: SKIP)
_OTHERS = "PodTopologySpread/PreFilter/others"
_PRE_SCORE = "PodTopologySpread/PreScore"
_IGNORED = -1  # Score of a node missing a topology key; NormalizeScore makes it 0

_MISSING_LABEL = unschedulable(REASON_MISSING_LABEL, unresolvable=True)

PodMatch = Callable[[PodInfo], bool]


def _no_pod(p: PodInfo) -> bool:
    return False


def _pod_matcher(c: SpreadConstraint) -> PodMatch:
    """Which placed pods a constraint counts (its own pod's match is ``c.selects``)."""
    if c.owner is not None:
        uid = c.owner
        return lambda p: p.controller is not None and p.controller[1] == uid
    if c.selector.everything:
        # kube-scheduler's countPodsMatchSelector counts nothing for an empty selector
        # (labelSelector: {}), though the pod still matches itself: such a constraint
        # never rejects a node for its skew.
        return _no_pod
    sel = c.selector.matches
    return lambda p: sel(p.labels)


class _Counter:
    """Counts per node for one pod and constraint list, remembered in ``NodeInfo.memo``."""

    __slots__ = ("_eligible", "_matchers", "_ns", "constraints", "key", "token")

    def __init__(
        self,
        pod: PodInfo,
        constraints: tuple[SpreadConstraint, ...],
        key: Hashable,
        token: object,
    ) -> None:
        self.constraints = constraints
        self.key = key  # what the counts depend on besides the node
        self._matchers = [_pod_matcher(c) for c in constraints]
        self._ns = pod.namespace
        self.token = token
        affinity = any(c.honor_node_affinity for c in constraints) and bool(
            pod.node_selector or required_terms(pod) is not None
        )
        taints = any(c.honor_node_taints for c in constraints)
        policies = [(c.honor_node_affinity and affinity, c.honor_node_taints) for c in constraints]
        tolerations = pod.tolerations

        def eligible(node: Node) -> tuple[bool, ...]:
            fits = not affinity or pod_matches_node(pod, node)
            clean = not taints or not node.taints or (
                untolerated(node.taints, tolerations, ("NoSchedule", "NoExecute")) is None
            )  # fmt: skip
            return tuple((fits or not a) and (clean or not t) for a, t in policies)

        self._eligible = eligible

    def count(self, pods: Mapping[PodKey, PodInfo]) -> tuple[int, ...]:
        """Matching pods (namespace, not terminating, selector) per constraint."""
        ns, matchers = self._ns, self._matchers
        counts = [0] * len(matchers)
        for p in pods.values():
            if p.namespace != ns or p.deleting:
                continue
            for j, m in enumerate(matchers):
                if m(p):
                    counts[j] += 1
        return tuple(counts)

    def node(self, ni: NodeInfo) -> tuple[tuple[int, ...], tuple[bool, ...]]:
        """(counts, eligible) per constraint for a node of the cache, remembered."""
        memo, gen = ni.memo, ni.generation
        hit = memo.get(self.token)
        if hit is not None and hit[0] == gen:
            return hit[1], hit[2]
        counts = self.count(ni.pods)
        eligible = self._eligible(ni.node)  # type: ignore[arg-type]
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        memo[self.token] = (gen, counts, eligible)
        return counts, eligible

    def eligible(self, node: Node) -> tuple[bool, ...]:
        return self._eligible(node)


class SpreadFilterState:
    """kube-scheduler's ``preFilterState``: per constraint, matching pods per domain.

    ``counts[i]`` maps each domain of constraint ``i`` to its matching pods and
    ``hist[i]`` each count to its number of domains (the global minimum is its
    smallest key); both may be a tally's, so they are copied before a change.
    """

    __slots__ = (
        "changed",
        "constraints",
        "counter",
        "counts",
        "hist",
        "low",
        "pod",
        "self_match",
        "shared",
    )

    def __init__(
        self,
        pod: PodInfo,
        counter: _Counter,
        counts: list[dict[str, int]],
        hist: list[dict[int, int]],
    ) -> None:
        self.pod = pod
        self.counter = counter
        self.constraints = counter.constraints
        uid = pod.controller[1] if pod.controller else None
        self.self_match = tuple(int(c.selects(pod.labels, uid)) for c in self.constraints)
        self.counts = counts
        self.hist = hist
        self.changed: Changes = {}
        self.shared = True
        self.low: list[int] = []
        self.refresh()

    def refresh(self) -> None:
        """The global minimum of each constraint (0 with fewer domains than minDomains)."""
        self.low = [
            min(h) if h and len(d) >= c.min_domains else 0
            for c, d, h in zip(self.constraints, self.counts, self.hist, strict=True)
        ]

    def add(self, i: int, domain: str, n: int) -> None:
        """``n`` more matching pods in constraint ``i``'s ``domain`` (add_pod / remove_pod)."""
        if self.shared:
            self.counts = [dict(d) for d in self.counts]
            self.hist = [dict(h) for h in self.hist]
            self.shared = False
        counts, hist = self.counts[i], self.hist[i]
        old = counts.get(domain)
        if old is not None:
            hist[old] -= 1
            if not hist[old]:
                del hist[old]
        new = counts[domain] = (old or 0) + n
        hist[new] = hist.get(new, 0) + 1

    def has_keys(self, labels: Mapping[str, str]) -> bool:
        return all(c.topology_key in labels for c in self.constraints)

    def delta(self, node: Node, removed: list[PodInfo], added: list[PodInfo]) -> list[int]:
        """Change of each constraint's count in ``node``'s domain (0 where not eligible)."""
        if not self.has_keys(node.labels):
            return [0] * len(self.constraints)
        gone, new = self.counter.count(_keyed(removed)), self.counter.count(_keyed(added))
        eligible = self.counter.eligible(node)
        return [n - g if ok else 0 for g, n, ok in zip(gone, new, eligible, strict=True)]

    def _low_with(self, i: int, domain: str, n: int, min_domains: int) -> int:
        """The global minimum were ``domain``'s count ``n``."""
        counts, hist = self.counts[i], self.hist[i]
        old = counts.get(domain)
        if len(counts) + (old is None) < min_domains:
            return 0
        others = [m for m, k in hist.items() if m != old or k > 1]
        return min(n, *others) if others else n

    def verdict(self, labels: Mapping[str, str], delta: Sequence[int] | None = None) -> Status:
        for i, c in enumerate(self.constraints):
            key = c.topology_key
            v = labels.get(key)
            if v is None:
                return _MISSING_LABEL
            n = self.counts[i].get(v, 0)
            d = delta[i] if delta is not None else 0
            if d:
                n += d
                low = self._low_with(i, v, n, c.min_domains)
            else:
                low = self.low[i]
            if n + self.self_match[i] - low > c.max_skew:
                return rejection(REASON, key, v, unresolvable=False)
        return SUCCESS


def _keyed(pods: list[PodInfo]) -> dict[PodKey, PodInfo]:
    return {p.key: p for p in pods}


class SpreadScoreState:
    """kube-scheduler's ``preScoreState``, with each constraint's part of a node's score.

    What PreScore keeps is cheap: the constraints, the tally of matching pods
    per domain (and, for hostname constraints, per node) and the candidate
    nodes. The per-node form's counts and weights over those candidates are
    worked out on first use (:meth:`prepare`); the column form works them out
    from the label columns instead.
    """

    __slots__ = (
        "constraints",
        "counter",
        "counts",
        "domains",
        "ignored",
        "keys",
        "nodes",
        "require_all",
        "tally",
        "terms",
        "weights",
    )

    def __init__(
        self,
        counter: _Counter,
        nodes: Sequence[NodeInfo],
        keys: list[str],
        require_all: bool,
        tally: Tally,
    ) -> None:
        self.counter = counter
        self.constraints = counter.constraints
        self.nodes = nodes
        self.keys = keys
        self.require_all = require_all
        self.tally = tally
        # Domains of hostname constraints are the nodes: counted per node.
        self.domains = [i for i, key in enumerate(keys) if key != HOSTNAME]
        self.counts: list[dict[str, int]] = []
        self.ignored: set[str] = set()
        self.weights: list[float] = []
        # (index, key, per node?, weight, maxSkew - 1) per constraint; None until prepared.
        self.terms: list[tuple[int, str, bool, float, int]] | None = None

    def prepare(self) -> list[tuple[int, str, bool, float, int]]:
        """The per-node form's terms: the candidates' domains, counted, and weights."""
        if self.terms is not None:
            return self.terms
        keys, domains, require_all = self.keys, self.domains, self.require_all
        counts: list[dict[str, int]] = [{} for _ in keys]
        ignored = self.ignored
        for ni in self.nodes:
            labels = ni.node.labels  # type: ignore[union-attr]
            if require_all and not all(k in labels for k in keys):
                ignored.add(ni.name)
                continue
            for i in domains:
                counts[i].setdefault(labels.get(keys[i], ""), 0)
        scored = len(self.nodes) - len(ignored)
        self.weights = weights = [
            math.log((scored if key == HOSTNAME else len(counts[i])) + 2)
            for i, key in enumerate(keys)
        ]
        for i in domains:
            sums = cast("dict[str, int]", self.tally.sums.get(i, {}))
            counts[i] = {v: sums.get(v, 0) for v in counts[i]}  # the candidates' domains
        self.counts = counts
        self.terms = [
            (i, c.topology_key, c.topology_key == HOSTNAME, weights[i], c.max_skew - 1)
            for i, c in enumerate(self.constraints)
        ]
        return self.terms

    def score(self, node: NodeInfo) -> int:
        """kube-scheduler's Score: ``scoreForCount`` summed, rounded half away from zero."""
        terms = self.prepare()
        if node.name in self.ignored:
            return _IGNORED
        labels = node.node.labels  # type: ignore[union-attr]
        total = 0.0
        own: tuple[int, ...] | None = None
        for i, key, per_node, weight, base in terms:
            v = labels.get(key)
            if v is None:
                continue
            if per_node:
                if own is None:
                    own = self.counter.node(node)[0]
                n = own[i]
            else:
                n = self.counts[i].get(v, 0)
            total += n * weight + base
        return math.floor(total + 0.5)


class PodTopologySpread(DomainFilter[SpreadFilterState], Batchable):
    """PreFilter, Filter, PreScore, Score for topologySpreadConstraints.

    ``default_constraints`` and ``defaulting_type`` are kube-scheduler's
    ``PodTopologySpreadArgs`` (``defaultConstraints``, ``defaultingType``:
    System or List); a bad one raises ValueError naming it.

    Batchable only for the pods :meth:`sign_pod` signs (those it leaves
    alone): each placement of a constrained pod changes the next one's counts.
    """

    name = "PodTopologySpread"
    _pre_filter_key = _PRE_FILTER
    _others_key = _OTHERS

    def __init__(
        self,
        cache: SchedulerCache,
        *,
        default_constraints: Sequence[Mapping[str, Any]] = (),
        defaulting_type: str = "System",
    ) -> None:
        if defaulting_type not in ("System", "List"):
            raise ValueError(f"defaultingType must be System or List, not {defaulting_type!r}")
        if defaulting_type == "System" and default_constraints:
            raise ValueError('defaultConstraints must be empty when defaultingType is "System"')
        raw = SYSTEM_DEFAULT_CONSTRAINTS if defaulting_type == "System" else default_constraints
        parsed, problem = parse_spread_constraints(
            list(raw), labels={}, where="defaultConstraints", defaults=True
        )
        if problem:
            raise ValueError(problem)
        self._cache = cache
        self._defaults = parsed
        self._system_defaulted = defaulting_type == "System"
        self._tokens = Tokens()
        self._tallies = Tallies()

    @classmethod
    def from_args(cls, cache: SchedulerCache, args: Mapping[str, Any]) -> PodTopologySpread:
        """From kube-scheduler's ``PodTopologySpreadArgs``."""
        unknown = set(args) - {"defaultConstraints", "defaultingType"}
        if unknown:
            raise ValueError(f"PodTopologySpread: unknown argument(s) {sorted(unknown)}")
        defaults = args.get("defaultConstraints") or ()
        if not isinstance(defaults, (list, tuple)):
            raise ValueError(f"defaultConstraints must be a list, not {defaults!r}")
        return cls(
            cache,
            default_constraints=defaults,
            defaulting_type=args.get("defaultingType", "System"),
        )

    def constraints(self, pod: PodInfo, *, hard: bool) -> tuple[SpreadConstraint, ...]:
        """The pod's DoNotSchedule (``hard``) or ScheduleAnyway constraints, defaults applied."""
        if pod.spread_constraints:
            return tuple(c for c in pod.spread_constraints if c.hard == hard)
        if not self._defaults or pod.controller is None:
            return ()
        kind, uid = pod.controller
        if kind not in DEFAULTED_KINDS:
            return ()
        return tuple(replace(c, owner=uid) for c in self._defaults if c.hard == hard)

    def events_to_register(self) -> list[ClusterEventWithHint]:
        """A placed pod a constraint counts came, went or was relabelled; a node with a
        constraint's topology key came, went or changed labels or taints (kube-scheduler's)."""
        return [
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.ASSIGNED_POD,
                    ActionType.ADD | ActionType.DELETE | ActionType.UPDATE_POD_LABEL,
                ),
                self._pod_changed,
            ),
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.NODE,
                    ActionType.ADD
                    | ActionType.DELETE
                    | ActionType.UPDATE_NODE_LABEL
                    | ActionType.UPDATE_NODE_TAINT,
                ),
                self._node_changed,
            ),
        ]

    def _all_constraints(self, pod: PodInfo) -> tuple[SpreadConstraint, ...]:
        return (*self.constraints(pod, hard=True), *self.constraints(pod, hard=False))

    def _pod_changed(self, pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
        cs = self._all_constraints(pod)
        for other in (old, new):
            if not isinstance(other, PodInfo) or other.namespace != pod.namespace:
                continue
            uid = other.controller[1] if other.controller else None
            if any(c.selects(other.labels, uid) for c in cs):
                return events.QUEUE
        return events.SKIP

    def _node_changed(self, pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
        keys = {c.topology_key for c in self._all_constraints(pod)}
        for node in (old, new):
            if isinstance(node, Node) and any(k in node.labels for k in keys):
                return events.QUEUE
        return events.SKIP

    def sign_pod(self, pod: PodInfo) -> tuple[Hashable, ...] | None:
        """None (do not batch) when the pod has constraints, its own or defaulted:
        each placement changes the next alike pod's counts."""
        if pod.spread_error or pod.spread_constraints:
            return None
        if self._defaults and pod.controller is not None and pod.controller[0] in DEFAULTED_KINDS:
            return None
        return ()

    def _counter(self, pod: PodInfo, cs: tuple[SpreadConstraint, ...]) -> _Counter:
        """Counts for ``cs``; the memo key holds what they depend on besides the node."""
        affinity: bytes | None = None
        if any(c.honor_node_affinity for c in cs):
            na = pod.affinity.get("nodeAffinity") or {}
            affinity = orjson.dumps(
                [pod.node_selector, na.get("requiredDuringSchedulingIgnoredDuringExecution")],
                option=orjson.OPT_SORT_KEYS,
            )
        tolerations: bytes | None = None
        if any(c.honor_node_taints for c in cs):
            tolerations = orjson.dumps(pod.tolerations, option=orjson.OPT_SORT_KEYS)
        key = ("PTS", pod.namespace, cs, affinity, tolerations)
        return _Counter(pod, cs, key, self._tokens(key))

    # ---- PreFilter / Filter ------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        st = self._compute(pod)
        if isinstance(st, Status):
            return st
        state.data[_PRE_FILTER] = (pod.key, st)
        return SKIP if st is None else SUCCESS

    def _compute(self, pod: PodInfo) -> SpreadFilterState | Status | None:
        if pod.spread_error:
            return unschedulable(pod.spread_error, unresolvable=True)
        cs = self.constraints(pod, hard=True)
        if not cs:
            return None
        counter = self._counter(pod, cs)
        keys = [c.topology_key for c in cs]

        def part(ni: NodeInfo) -> Part:
            labels = ni.node.labels  # type: ignore[union-attr]
            if not all(k in labels for k in keys):
                return ()  # a node without every key is no domain of any constraint
            counts = counter.count(ni.pods)
            eligible = counter.eligible(ni.node)  # type: ignore[arg-type]
            return tuple((i, labels[k], counts[i]) for i, k in enumerate(keys) if eligible[i])

        tally = self._tallies.get(("filter", counter.key), self._cache, part)
        counts = [cast("dict[str, int]", tally.sums.get(i, {})) for i in range(len(cs))]
        hist = [tally.hist.get(i, {}) for i in range(len(cs))]
        return SpreadFilterState(pod, counter, counts, hist)

    def _check(self, st: SpreadFilterState, pod: PodInfo, ni: NodeInfo) -> Status:
        node = ni.node
        assert node is not None
        real = self._cache.node_info(ni.name)
        changed = st.changed.get(ni.name)
        nominated = nominated_here(ni, pod)
        if real is ni and not changed and not nominated:
            return st.verdict(node.labels)
        removed, added = node_changes(ni, real, changed)
        if nominated:
            # kube-scheduler filters with the nominated pods placed, then without them.
            verdict = st.verdict(node.labels, st.delta(node, removed, [*added, *nominated]))
            if not verdict.ok:
                return verdict
        return st.verdict(node.labels, st.delta(node, removed, added))

    # ---- PreFilterExtensions (preemption's what-if) --------------------------------

    def add_pod(
        self, state: CycleState, pod_to_schedule: PodInfo, pod: PodInfo, node: NodeInfo
    ) -> Status:
        """Count ``pod`` as running on ``node`` in ``pod_to_schedule``'s state of this cycle."""
        return self._update(state, pod_to_schedule, pod, node, added=True)

    def remove_pod(
        self, state: CycleState, pod_to_schedule: PodInfo, pod: PodInfo, node: NodeInfo
    ) -> Status:
        """Count ``pod`` as gone from ``node`` in ``pod_to_schedule``'s state of this cycle."""
        return self._update(state, pod_to_schedule, pod, node, added=False)

    def _update(
        self, state: CycleState, owner: PodInfo, pod: PodInfo, node: NodeInfo, *, added: bool
    ) -> Status:
        st = self._state(state, owner)  # the state of the pod being scheduled
        if st is None or isinstance(st, Status) or node.node is None:
            return SUCCESS
        delta = st.delta(node.node, [] if added else [pod], [pod] if added else [])
        labels = node.node.labels
        for i, d in enumerate(delta):
            if d:
                st.add(i, labels[st.constraints[i].topology_key], d)
        st.refresh()
        st.changed.setdefault(node.name, {})[pod.key] = pod if added else None
        return SUCCESS

    # ---- PreScore / Score ------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        state.data[_PRE_SCORE] = None
        if pod.spread_error or not nodes:
            return SKIP
        cs = self.constraints(pod, hard=False)
        if not cs:
            return SKIP
        # Only non-default constraints need every key on a node: without a zone
        # label a node still gets the hostname spreading (kube-scheduler's rule).
        require_all = bool(pod.spread_constraints) or not self._system_defaulted
        keys = [c.topology_key for c in cs]
        counter = self._counter(pod, cs)

        def part(ni: NodeInfo) -> Part:
            """Matching pods per domain (eligible nodes), and per node for hostname ones."""
            labels = ni.node.labels  # type: ignore[union-attr]
            if require_all and not all(k in labels for k in keys):
                return ()
            node_counts = counter.count(ni.pods)
            eligible = counter.eligible(ni.node)  # type: ignore[arg-type]
            out: list[tuple[Hashable, Hashable, int]] = []
            for i, key in enumerate(keys):
                if key == HOSTNAME:
                    if node_counts[i]:
                        out.append((("node", i), ni.name, node_counts[i]))
                elif eligible[i]:
                    out.append((i, labels.get(key, ""), node_counts[i]))
            return tuple(out)

        tally = self._tallies.get(("score", counter.key, require_all), self._cache, part)
        state.data[_PRE_SCORE] = SpreadScoreState(counter, nodes, keys, require_all, tally)
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """Matching pods in the node's domains, weighted (normalize reverses it)."""
        st: SpreadScoreState | None = state.data.get(_PRE_SCORE)
        if st is None:
            return 0
        return st.score(node)

    def score_all(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """``[score(state, pod, n) for n in nodes]``."""
        st: SpreadScoreState | None = state.data.get(_PRE_SCORE)
        if st is None:
            return [0] * len(nodes)
        # SpreadScoreState.score inlined: this runs for every candidate of every cycle
        # of a pod with constraints, which with the defaults is most pods.
        terms = st.prepare()
        ignored, counts = st.ignored, st.counts
        token, node_counts_of = st.counter.token, st.counter.node
        floor = math.floor
        out: list[int] = []
        append = out.append
        for ni in nodes:
            if ignored and ni.name in ignored:
                append(_IGNORED)
                continue
            labels = ni.node.labels  # type: ignore[union-attr]
            total = 0.0
            own: tuple[int, ...] | None = None
            for i, key, per_node, weight, base in terms:
                v = labels.get(key)
                if v is None:
                    continue
                if per_node:
                    if own is None:
                        hit = ni.memo.get(token)
                        if hit is not None and hit[0] == ni.generation:
                            own = hit[1]
                        else:
                            own = node_counts_of(ni)[0]
                    n = own[i]
                else:
                    n = counts[i].get(v, 0)
                total += n * weight + base
            append(floor(total + 0.5))
        return out

    def score_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> NDArray[np.int64] | None:
        """``score`` of the nodes at ``rows``, then ``normalize``, from the label columns
        and the tally's counts by label value id (and, for hostname constraints, by
        node), in the per-node form's float arithmetic."""
        st: SpreadScoreState | None = state.data.get(_PRE_SCORE)
        n = len(rows)
        if st is None:
            return np.zeros(n, dtype=np.int64)
        ids: list[NDArray[np.int32]] = []
        for key in st.keys:
            column = columns.label(key)
            if column is None:
                return None
            ids.append(column.take(rows))
        names: NDArray[np.int32] | None = None
        if HOSTNAME in st.keys:
            column = columns.label(NAME_KEY)
            if column is None:
                return None
            names = column.take(rows)
        ignored = np.zeros(n, dtype=np.bool_)
        if st.require_all:
            for vids in ids:
                ignored |= vids == 0
        valid = ~ignored
        scored = int(valid.sum())
        total = np.zeros(n, dtype=np.float64)
        for i, c in enumerate(st.constraints):
            key, vids = c.topology_key, ids[i]
            if key == HOSTNAME:
                assert names is not None
                weight = math.log(scored + 2)
                counts = st.tally.by_value(("node", i), columns, NAME_KEY).take(names)
            else:
                # The candidates' domains; a node without the key is in the domain "".
                empty = columns.label_id(key, "")
                domains = vids if empty < 0 else np.where(vids == 0, empty, vids)
                weight = math.log(len(np.unique(domains[valid])) + 2)
                counts = st.tally.by_value(i, columns, key).take(vids)
            total += np.where(vids != 0, counts * weight + (c.max_skew - 1), 0.0)
        raw = np.floor(total + 0.5).astype(np.int64)
        out = np.zeros(n, dtype=np.int64)
        if scored:
            mine = raw[valid]
            lo, hi = int(mine.min()), int(mine.max())
            out[valid] = MAX_NODE_SCORE if hi == 0 else MAX_NODE_SCORE * (hi + lo - mine) // hi
        return out

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Fewer matching pods is better: ``100 * (max + min - s) / max``; ignored nodes 0."""
        if state.data.get(_PRE_SCORE) is None:
            return
        valid = [s for s in scores if s != _IGNORED]
        lo = min(valid, default=0)
        hi = max(valid, default=0)
        for i, s in enumerate(scores):
            if s == _IGNORED:
                scores[i] = 0
            elif hi == 0:
                scores[i] = MAX_NODE_SCORE
            else:
                scores[i] = MAX_NODE_SCORE * (hi + lo - s) // hi
