"""InterPodAffinity: required pod (anti-)affinity filters, preferred terms score.

kube-scheduler's plugin (``interpodaffinity/filtering.go``, ``scoring.go``).

PreFilter counts, per topology pair ``(topologyKey, value)``
(``preFilterState``):

* ``affinity``: existing pods that match *all* the incoming pod's required
  affinity terms, once per term whose key the pod's node carries;
* ``anti``: existing pods that match each required anti-affinity term;
* ``existing``: existing pods whose required anti-affinity terms match the
  incoming pod (the symmetric check). Only the pods the cache's affinity
  index lists are read, so a cluster with few such pods pays for few.

The first two are sums over every node of what each node's pods give, kept
in a :class:`Tally` by the terms: the cache's change journal names the nodes
changed since the last pod with those terms, and only those are recounted
(a Deployment's replicas cost the node the previous one went to). The
preferred terms' scores are kept the same way.

Filter is then a few dictionary reads per node. A node fails when a required
affinity term's domain holds no matching pod (unless *no* pod matches
anywhere and the pod matches its own terms: the first pod of a group that
wants to be together may go to any node that has the topology keys), when a
required anti-affinity term's domain holds a matching pod, or when the node
is in the domain of an existing pod's anti-affinity term that matches the
incoming pod. The reason is kube-scheduler's, followed by the domain
(``topology.kubernetes.io/zone=zone-a``) unless the domain is the node itself
(``kubernetes.io/hostname``).

A pod with no affinity terms in a cluster without required anti-affinity
costs one dictionary check: PreFilter returns SKIP at once.

Invariant: Filter judges a node by *its own* ``NodeInfo.pods``, the rest of
the cluster by the counts (plus any :meth:`add_pod` / :meth:`remove_pod`
made to them). When the NodeInfo it is given is not the cache's (preemption's
trimmed copy, ``lasched explain``'s node without the pod), or pods are
nominated to it, the node's own contribution is recounted from the
difference, as kube-scheduler's AddPod / RemovePod would have adjusted it.

Namespaces: ``namespace_labels`` gives a namespace's labels for
``namespaceSelector``; None (unknown, or no Namespace informer wired) is no
labels, as kube-scheduler treats a namespace its lister cannot find. An
empty ``namespaceSelector`` (``{}``) selects every namespace whatever it
returns.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.cache.columns import NodeColumns
from lasched.framework import events
from lasched.framework.events import ActionType, ClusterEvent, ClusterEventWithHint, EventResource
from lasched.framework.interface import (
    MAX_NODE_SCORE,
    SKIP,
    SUCCESS,
    Batchable,
    ColumnVerdicts,
    CycleState,
    Status,
    unschedulable,
)
from lasched.model.affinity import AffinityTerm, NamespaceLabels, no_namespace_labels
from lasched.model.node import Node
from lasched.model.pod import PodInfo, PodKey

HOSTNAME = "kubernetes.io/hostname"

REASON_AFFINITY = "node(s) didn't match pod affinity rules"
REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
REASON_EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"

_PRE_FILTER = "InterPodAffinity/PreFilter"  # (pod key, FilterState or None: SKIP)
_OTHERS = "InterPodAffinity/PreFilter/others"  # states of other pods filtered this cycle
_PRE_SCORE = "InterPodAffinity/PreScore"

Pair = tuple[str, str]
Ints = NDArray[np.int64]
Flags = NDArray[np.bool_]
Changes = dict[str, dict[PodKey, PodInfo | None]]

# ---- helpers shared with PodTopologySpread ---------------------------------------------

MEMO_LIMIT = 16  # entries per NodeInfo.memo before it starts afresh (as noderesources.py)


class Tokens:
    """Small memo keys: one object per distinct (hashable) description of a count.

    ``NodeInfo.memo`` lookups then hash an object id, not the constraints.
    """

    __slots__ = ("_limit", "_tokens")

    def __init__(self, limit: int = 1024) -> None:
        self._tokens: dict[Hashable, object] = {}
        self._limit = limit

    def __call__(self, key: Hashable) -> object:
        token = self._tokens.get(key)
        if token is None:
            if len(self._tokens) >= self._limit:
                self._tokens.clear()  # old tokens only miss in memos from now on
            token = self._tokens[key] = object()
        return token


Part = tuple[tuple[Hashable, Hashable, int], ...]
"""A node's contribution to a :class:`Tally`: ``(slot, key, amount)`` triples."""


_LOG_LIMIT = 4096  # a tally's changes remembered for by_value


class Tally:
    """Per-node parts summed over the cache's nodes, kept in step with the cache.

    ``part(node_info)`` must depend only on that node (its labels, taints and
    pods) and on what the tally's owner keys it by. :meth:`refresh` recounts
    the nodes the cache's change journal lists since the last refresh (all of
    them the first time, or when the journal no longer reaches back), so a
    cycle costs the nodes that changed, not every node.

    After a refresh, ``sums[slot][key]`` is the sum of the amounts the nodes
    give ``key``; a key is there while some node gives it an amount, even 0
    (a topology domain exists while a node is in it). ``hist[slot]`` counts
    the keys of each sum and ``totals[slot]`` sums a slot. Readers must not
    change them.

    :meth:`by_value` gives a slot's sums as an array by the id of a label
    value in the cache's columns, kept from one cycle to the next: a cycle
    updates the few values its refresh changed.
    """

    __slots__ = (
        "_arrays",
        "_cache",
        "_givers",
        "_log",
        "_log_start",
        "_part",
        "_parts",
        "_present",
        "_version",
        "hist",
        "sums",
        "totals",
    )

    def __init__(
        self,
        cache: SchedulerCache,
        part: Callable[[NodeInfo], Part],
        givers: Callable[[], Iterable[NodeInfo]] | None = None,
    ) -> None:
        self._cache = cache
        self._part = part
        # The nodes a full count reads: every node, unless the owner knows that only
        # some can give anything (those with a pod that has affinity terms, say).
        self._givers = givers or cache.node_infos
        # The (slot, key) of every amount applied since _log_start (an absolute count),
        # and by_value's arrays with the count they are up to.
        self._log: list[tuple[Hashable, Hashable]] = []
        self._log_start = 0
        self._arrays: dict[tuple[Hashable, str, bool], tuple[Ints, int, int]] = {}
        self._parts: dict[str, Part] = {}
        self._present: dict[Hashable, dict[Hashable, int]] = {}
        self._version = -1
        self.sums: dict[Hashable, dict[Hashable, int]] = {}
        self.hist: dict[Hashable, dict[int, int]] = {}
        self.totals: dict[Hashable, int] = {}

    def refresh(self) -> None:
        cache = self._cache
        names = cache.changed_since(self._version)
        if names is None:
            self._parts.clear()
            self._present.clear()
            self.sums.clear()
            self.hist.clear()
            self.totals.clear()
            self._arrays.clear()
            for ni in self._givers():
                part = self._part(ni)
                if part:  # most nodes give nothing: keep only what to take back
                    self._parts[ni.name] = part
                    self._apply(part, 1)
        else:
            for name in names:
                old = self._parts.pop(name, None)
                if old:
                    self._apply(old, -1)
                node = cache.node_info(name)
                new = self._part(node) if node is not None else ()
                if new:
                    self._parts[name] = new
                    self._apply(new, 1)
        self._version = cache.version
        if len(self._log) > _LOG_LIMIT:  # the arrays are rebuilt when next asked for
            self._log_start += len(self._log)
            self._log.clear()

    def by_value(
        self, slot: Hashable, columns: NodeColumns, key: str, *, pairs: bool = False
    ) -> Ints:
        """``sums[slot]`` by the id of a value of label ``key`` in ``columns`` (whose
        column must exist): the slot's keys are values of that label or, with
        ``pairs``, ``(key, value)`` pairs (other pairs left out). Values no node has
        are left out too. Readers must not change the array."""
        n_ids = len(columns.label_values(key))
        sums = self.sums.get(slot, {})
        label_id = columns.label_id

        def value_id(k: Any) -> int:
            """The id of sum key ``k``'s value; -1 for another pair's key or no node's value."""
            if not pairs:
                return label_id(key, k)
            return label_id(key, k[1]) if k[0] == key else -1

        memo = (slot, key, pairs)
        got = self._arrays.get(memo)
        end = self._log_start + len(self._log)
        if got is None or got[1] != columns.epoch or got[2] < self._log_start:
            arr = np.zeros(n_ids, dtype=np.int64)
            for k, n in sums.items():
                if (vid := value_id(k)) >= 0:
                    arr[vid] = n
        else:
            arr = got[0]
            if len(arr) < n_ids:
                arr = np.concatenate((arr, np.zeros(n_ids - len(arr), dtype=np.int64)))
            for s, k in self._log[got[2] - self._log_start :]:
                if s == slot and (vid := value_id(k)) >= 0:
                    arr[vid] = sums.get(k, 0)
        self._arrays[memo] = (arr, columns.epoch, end)
        return arr

    def _apply(self, part: Part, sign: int) -> None:
        if self._arrays:  # (with no array kept, by_value builds afresh: nothing to log)
            self._log.extend((slot, key) for slot, key, _ in part)
        for slot, key, amount in part:
            sums = self.sums.get(slot)
            if sums is None:
                sums = self.sums[slot] = {}
                self._present[slot] = {}
                self.hist[slot] = {}
                self.totals[slot] = 0
            present, hist = self._present[slot], self.hist[slot]
            old = sums.get(key)
            if old is not None:
                left = hist[old] - 1
                if left:
                    hist[old] = left
                else:
                    del hist[old]
            nodes = present.get(key, 0) + sign
            self.totals[slot] += sign * amount
            if nodes:
                present[key] = nodes
                new = sums[key] = (old or 0) + sign * amount
                hist[new] = hist.get(new, 0) + 1
            else:
                del present[key], sums[key]


class Tallies:
    """The plugin's tallies by what they count; the least recently used goes first."""

    __slots__ = ("_limit", "_tallies")

    def __init__(self, limit: int = 16) -> None:
        # A tally holds a part per node that gives one: a few for affinity terms,
        # every node for default spreading (~300 bytes each).
        self._tallies: dict[Hashable, Tally] = {}
        self._limit = limit

    def get(
        self,
        key: Hashable,
        cache: SchedulerCache,
        part: Callable[[NodeInfo], Part],
        givers: Callable[[], Iterable[NodeInfo]] | None = None,
    ) -> Tally:
        """The tally for ``key`` (a new one counting with ``part`` if none), refreshed."""
        tally = self._tallies.pop(key, None)
        if tally is None:
            if len(self._tallies) >= self._limit:
                del self._tallies[next(iter(self._tallies))]
            tally = Tally(cache, part, givers)
        self._tallies[key] = tally
        tally.refresh()
        return tally


_STATUSES: dict[tuple[str, bool], Status] = {}


def rejection(reason: str, key: str | None, value: str, *, unresolvable: bool) -> Status:
    """``reason``, with the domain ``(key=value)`` unless it is the node itself.

    One shared Status per text, so the runtime groups equal verdicts cheaply.
    """
    text = reason if key is None or key == HOSTNAME else f"{reason} ({key}={value})"
    st = _STATUSES.get((text, unresolvable))
    if st is None:
        st = unschedulable(text, unresolvable=unresolvable)
        if len(_STATUSES) < 4096:  # domains of custom keys could be many
            _STATUSES[(text, unresolvable)] = st
    return st


def nominated_here(ni: NodeInfo, pod: PodInfo) -> list[PodInfo]:
    """Pods nominated to ``ni`` that kube-scheduler's filters treat as running there:
    priority at least the pod's, the pod itself excluded."""
    if not ni.nominated:
        return []
    return [p for k, p in ni.nominated.items() if k != pod.key and p.priority >= pod.priority]


def node_changes(
    ni: NodeInfo, real: NodeInfo | None, changed: Mapping[PodKey, PodInfo | None] | None
) -> tuple[list[PodInfo], list[PodInfo]]:
    """(removed, added): how ``ni.pods`` differs from what PreFilter counted for its node.

    PreFilter counted the cache's NodeInfo ``real`` (None: the node was not in
    the cache), then ``changed`` by add_pod / remove_pod (None: removed).
    """
    expected: Mapping[PodKey, PodInfo] = real.pods if real is not None else {}
    if changed:
        overlay = dict(expected)
        for key, p in changed.items():
            if p is None:
                overlay.pop(key, None)
            else:
                overlay[key] = p
        expected = overlay
    actual = ni.pods
    if actual is expected:
        return [], []
    removed = [p for k, p in expected.items() if actual.get(k) is not p]
    added = [p for k, p in actual.items() if expected.get(k) is not p]
    return removed, added


def namespace_lookup(source: NamespaceLabels) -> Callable[[str], Mapping[str, str]]:
    """``source`` remembered for one cycle, None read as no labels."""
    seen: dict[str, Mapping[str, str]] = {}

    def labels(ns: str) -> Mapping[str, str]:
        got = seen.get(ns)
        if got is None:
            got = seen[ns] = source(ns) or {}
        return got

    return labels


# ---- PreFilter state -------------------------------------------------------------------


class _Delta:
    """A node's recounted contribution, added to the PreFilter counts for its check."""

    __slots__ = ("aff", "aff_total", "anti", "existing")

    def __init__(self) -> None:
        self.aff: dict[Pair, int] = {}
        self.anti: dict[Pair, int] = {}
        self.existing: dict[Pair, int] = {}
        self.aff_total = 0

    def copy(self) -> _Delta:
        c = _Delta()
        c.aff, c.anti, c.existing = dict(self.aff), dict(self.anti), dict(self.existing)
        c.aff_total = self.aff_total
        return c


def _bump(counts: dict[Pair, int], pair: Pair, n: int) -> None:
    left = counts.get(pair, 0) + n
    if left:
        counts[pair] = left
    else:
        counts.pop(pair, None)


class FilterState:
    """kube-scheduler's ``preFilterState``: counts per topology pair (see the module doc)."""

    __slots__ = (
        "aff",
        "aff_terms",
        "aff_total",
        "anti",
        "anti_terms",
        "changed",
        "existing",
        "existing_keys",
        "match_aff",
        "match_anti",
        "ns_labels",
        "pod",
        "self_match",
        "tallies",
    )

    def __init__(self, pod: PodInfo, ns_labels: Callable[[str], Mapping[str, str]]) -> None:
        pa = pod.pod_affinity
        self.pod = pod
        self.ns_labels = ns_labels
        self.aff_terms: tuple[AffinityTerm, ...] = pa.required_affinity if pa else ()
        self.anti_terms: tuple[AffinityTerm, ...] = pa.required_anti_affinity if pa else ()
        aff_matchers = [t.matcher(ns_labels) for t in self.aff_terms]
        self.match_aff: Callable[[str, Mapping[str, str]], bool] | None = None
        if len(aff_matchers) == 1:
            self.match_aff = aff_matchers[0]
        elif aff_matchers:
            self.match_aff = lambda ns, labels: all(m(ns, labels) for m in aff_matchers)
        self.match_anti = tuple(t.matcher(ns_labels) for t in self.anti_terms)
        # kube-scheduler's podMatchesAllAffinityTerms(pod's own terms, pod).
        self.self_match = self.match_aff is not None and self.match_aff(pod.namespace, pod.labels)
        self.aff: dict[Pair, int] = {}
        self.anti: dict[Pair, int] = {}
        self.existing: dict[Pair, int] = {}
        self.aff_total = 0
        self.existing_keys: tuple[str, ...] = ()
        self.changed: Changes = {}
        # The tallies whose sums the counts are, by slot ("aff", "anti", "existing"):
        # shared, so copied before add_pod / remove_pod change them.
        self.tallies: dict[str, Tally] = {}

    def contribute(
        self, p: PodInfo, labels: Mapping[str, str], sign: int, into: _Delta | FilterState
    ) -> None:
        """Add ``sign`` times pod ``p``'s part (on a node with ``labels``) to ``into``'s counts."""
        if self.match_aff is not None and self.match_aff(p.namespace, p.labels):
            for t in self.aff_terms:
                v = labels.get(t.topology_key)
                if v is not None:
                    _bump(into.aff, (t.topology_key, v), sign)
                    into.aff_total += sign
        for t, m in zip(self.anti_terms, self.match_anti, strict=True):
            if m(p.namespace, p.labels):
                v = labels.get(t.topology_key)
                if v is not None:
                    _bump(into.anti, (t.topology_key, v), sign)
        pa = p.pod_affinity
        if pa is not None and pa.required_anti_affinity:
            me = self.pod
            own = self.ns_labels(me.namespace)
            for t in pa.required_anti_affinity:
                if t.matches(me.namespace, me.labels, own):
                    v = labels.get(t.topology_key)
                    if v is not None:
                        _bump(into.existing, (t.topology_key, v), sign)

    def refresh_keys(self) -> None:
        self.existing_keys = tuple(sorted({k for (k, _v), n in self.existing.items() if n > 0}))

    def verdict(self, labels: Mapping[str, str], d: _Delta | None = None) -> Status:
        """kube-scheduler's three checks on a node with ``labels``, counts plus ``d``."""
        if self.aff_terms:
            missing: Pair | None = None
            for t in self.aff_terms:
                k = t.topology_key
                v = labels.get(k)
                if v is None:  # all topology labels must exist on the node
                    return rejection(REASON_AFFINITY, None, "", unresolvable=True)
                n = self.aff.get((k, v), 0)
                if d is not None:
                    n += d.aff.get((k, v), 0)
                if n <= 0 and missing is None:
                    missing = (k, v)
            if missing is not None:
                total = self.aff_total + (d.aff_total if d is not None else 0)
                if not (total == 0 and self.self_match):
                    return rejection(REASON_AFFINITY, *missing, unresolvable=True)
        if self.anti or (d is not None and d.anti):
            for t in self.anti_terms:
                k = t.topology_key
                v = labels.get(k)
                if v is not None:
                    n = self.anti.get((k, v), 0)
                    if d is not None:
                        n += d.anti.get((k, v), 0)
                    if n > 0:
                        return rejection(REASON_ANTI_AFFINITY, k, v, unresolvable=False)
        keys = self.existing_keys
        if d is not None and d.existing:
            keys = tuple(sorted({*keys, *(k for k, _v in d.existing)}))
        for k in keys:
            v = labels.get(k)
            if v is not None:
                n = self.existing.get((k, v), 0)
                if d is not None:
                    n += d.existing.get((k, v), 0)
                if n > 0:
                    return rejection(REASON_EXISTING_ANTI_AFFINITY, k, v, unresolvable=False)
        return SUCCESS


def _match_counts(
    pods: Iterable[PodInfo],
    match_aff: Callable[[str, Mapping[str, str]], bool] | None,
    match_anti: Sequence[Callable[[str, Mapping[str, str]], bool]],
) -> tuple[int, tuple[int, ...] | None]:
    """(pods matching every affinity term, pods matching each anti-affinity term or None)."""
    if match_aff is None and len(match_anti) == 1:  # the common anti-affinity pod
        (m,) = match_anti
        n = sum(1 for p in pods if m(p.namespace, p.labels))
        return 0, ((n,) if n else None)
    n_aff = 0
    counts = [0] * len(match_anti)
    for p in pods:
        ns, labels = p.namespace, p.labels
        if match_aff is not None and match_aff(ns, labels):
            n_aff += 1
        for j, m in enumerate(match_anti):
            if m(ns, labels):
                counts[j] += 1
    return n_aff, (tuple(counts) if any(counts) else None)


class ScoreState:
    """kube-scheduler's ``preScoreState.topologyScore`` (key -> value -> summed weight)
    as the sum of tallies' (slot: topology key, key: its value): the pod's own
    preferred terms', other pods' terms'. Shared: readers must not change them.
    """

    __slots__ = ("layers",)

    def __init__(self, layers: Sequence[Tally]) -> None:
        self.layers = layers


# ---- the column form ---------------------------------------------------------------------


class _Codes:
    """A window's codes, each node keeping the first rejection it meets."""

    __slots__ = ("_index", "codes", "open", "settled", "statuses")

    def __init__(self, n: int) -> None:
        self.codes = np.zeros(n, dtype=np.int64)
        self.open = np.ones(n, dtype=np.bool_)  # not rejected yet
        self.statuses: list[Status] = []
        self._index: dict[int, int] = {}  # id(status) -> code
        self.settled = True

    def _code(self, status: Status) -> int:
        code = self._index.get(id(status))
        if code is None:
            self.statuses.append(status)
            code = self._index[id(status)] = len(self.statuses)
        return code

    def reject(self, hit: Flags, status: Status) -> None:
        hit = hit & self.open
        if hit.any():
            self.codes[hit] = self._code(status)
            self.open &= ~hit

    def reject_domains(
        self,
        hit: Flags,
        vids: NDArray[np.int32],
        reason: str,
        key: str,
        columns: NodeColumns,
        *,
        unresolvable: bool,
    ) -> None:
        """Reject the open nodes of ``hit``, each naming its domain (its value of ``key``)."""
        hit = hit & self.open
        if not hit.any():
            return
        if key == HOSTNAME:  # the node itself: one text for all
            self.codes[hit] = self._code(rejection(reason, key, "", unresolvable=unresolvable))
        else:
            values = columns.label_values(key)
            at = np.flatnonzero(hit)
            domains = vids.take(at)
            for vid in np.unique(domains).tolist():
                status = rejection(reason, key, values[vid] or "", unresolvable=unresolvable)
                self.codes[at[domains == vid]] = self._code(status)
        self.open &= ~hit

    def defer(self, rows: Flags) -> None:
        """Leave the nodes of ``rows`` to the per-node filter, whatever was found."""
        if rows.any():
            self.codes[rows] = -1
            self.settled = False

    def verdicts(self) -> ColumnVerdicts:
        return ColumnVerdicts(self.codes, tuple(self.statuses), settled=self.settled)


# ---- the plugin --------------------------------------------------------------------------


class _Verdicts(Protocol):
    changed: Changes

    def verdict(self, labels: Mapping[str, str]) -> Status: ...


S = TypeVar("S", bound=_Verdicts)


class DomainFilter(Generic[S]):
    """Filter and filter_all of a plugin whose PreFilter counts per topology domain.

    The PreFilter state ``S`` answers for the cache's own, unchanged nodes
    from its counts (``verdict``); a node that is a copy (preemption's trimmed
    nodes, explain's), holds nominated pods or changed since the counts goes
    through the plugin's own ``_check``. ``_pre_filter_key`` and
    ``_others_key`` name the plugin's entries in the CycleState.
    """

    _cache: SchedulerCache
    _pre_filter_key: str
    _others_key: str

    def _compute(self, pod: PodInfo) -> S | Status | None:
        raise NotImplementedError

    def _check(self, st: S, pod: PodInfo, ni: NodeInfo) -> Status:
        raise NotImplementedError

    def _state(self, state: CycleState, pod: PodInfo) -> S | Status | None:
        """``pod``'s PreFilter state (a Status if PreFilter rejects it).

        Computed here when PreFilter did not run for this pod: a caller outside
        the cycle, or gang preemption filtering the other members of a group
        with the cycle's state; those are kept in the state for the cycle.
        """
        entry = state.data.get(self._pre_filter_key)
        if entry is not None and entry[0] == pod.key:
            got: S | None = entry[1]
            return got
        others: dict[PodKey, S | Status | None]
        others = state.data.setdefault(self._others_key, {})
        if pod.key not in others:
            others[pod.key] = self._compute(pod)
        return others[pod.key]

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        st = self._state(state, pod)
        if st is None or isinstance(st, Status):
            return st or SUCCESS
        return self._check(st, pod, node)

    def filter_all(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[Status]:
        """``[filter(state, pod, n) for n in nodes]``; the cache's own nodes read the counts."""
        st = self._state(state, pod)
        if st is None or isinstance(st, Status):
            return [st or SUCCESS] * len(nodes)
        node_info, changed, verdict = self._cache.node_info, st.changed, st.verdict
        out: list[Status] = []
        append = out.append
        for ni in nodes:
            if ni.nominated or changed or node_info(ni.name) is not ni:
                append(self._check(st, pod, ni))
            else:
                append(verdict(ni.node.labels))  # type: ignore[union-attr]
        return out


class InterPodAffinity(DomainFilter[FilterState], Batchable):
    """PreFilter, Filter, PreScore, Score for pod affinity and anti-affinity.

    ``hard_pod_affinity_weight`` (kube-scheduler's ``hardPodAffinityWeight``,
    default 1, 0..100) is what an existing pod's *required* affinity term that
    matches the incoming pod adds to its domain's score;
    ``ignore_preferred_terms_of_existing_pods`` skips scoring for pods without
    preferred terms of their own.

    Batchable only for the pods :meth:`sign_pod` signs: a pod with terms
    changes the next alike pod's counts once placed, so it never joins a batch.
    """

    name = "InterPodAffinity"
    _pre_filter_key = _PRE_FILTER
    _others_key = _OTHERS

    def __init__(
        self,
        cache: SchedulerCache,
        *,
        namespace_labels: NamespaceLabels = no_namespace_labels,
        hard_pod_affinity_weight: int = 1,
        ignore_preferred_terms_of_existing_pods: bool = False,
    ) -> None:
        if not 0 <= hard_pod_affinity_weight <= 100:
            raise ValueError(
                f"hardPodAffinityWeight must be in 0..100, not {hard_pod_affinity_weight!r}"
            )
        self._cache = cache
        self._namespace_labels = namespace_labels
        self._hard_weight = hard_pod_affinity_weight
        self._ignore_existing = ignore_preferred_terms_of_existing_pods
        self._tallies = Tallies()
        # Kept apart: the incoming pods' label sets must not push out the terms' tallies.
        self._existing = Tallies()

    @classmethod
    def from_args(
        cls,
        cache: SchedulerCache,
        args: Mapping[str, Any],
        *,
        namespace_labels: NamespaceLabels = no_namespace_labels,
    ) -> InterPodAffinity:
        """From kube-scheduler's ``InterPodAffinityArgs``; ValueError names a bad argument."""
        unknown = set(args) - {"hardPodAffinityWeight", "ignorePreferredTermsOfExistingPods"}
        if unknown:
            raise ValueError(f"InterPodAffinity: unknown argument(s) {sorted(unknown)}")
        weight = args.get("hardPodAffinityWeight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool):
            raise ValueError(f"hardPodAffinityWeight must be an integer, not {weight!r}")
        ignore = args.get("ignorePreferredTermsOfExistingPods", False)
        if not isinstance(ignore, bool):
            raise ValueError(
                f"ignorePreferredTermsOfExistingPods must be a boolean, not {ignore!r}"
            )
        return cls(
            cache,
            namespace_labels=namespace_labels,
            hard_pod_affinity_weight=weight,
            ignore_preferred_terms_of_existing_pods=ignore,
        )

    def events_to_register(self) -> list[ClusterEventWithHint]:
        """A placed pod that a term of the pending pod selects came, went or was
        relabelled; a node gained a topology key of its terms (kube-scheduler's)."""
        return [
            ClusterEventWithHint(
                ClusterEvent(
                    EventResource.ASSIGNED_POD,
                    ActionType.ADD | ActionType.DELETE | ActionType.UPDATE_POD_LABEL,
                ),
                self._pod_changed,
            ),
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL),
                _node_has_topology_key,
            ),
        ]

    def _pod_changed(self, pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
        """QUEUE when the changed pod matches a term of ``pod``, before or after, or when
        the changed pod's own required anti-affinity may have stood in the way."""
        terms = _all_terms(pod)
        for other in (old, new):
            if not isinstance(other, PodInfo):
                continue
            if other.pod_affinity is not None and other.pod_affinity.required_anti_affinity:
                return events.QUEUE  # the symmetric check: it may have kept ``pod`` out
            ns_labels = self._namespace_labels(other.namespace) or {}
            if any(t.matches(other.namespace, other.labels, ns_labels) for t in terms):
                return events.QUEUE
        return events.SKIP

    def sign_pod(self, pod: PodInfo) -> tuple[Hashable, ...] | None:
        """What scoring reads of ``pod`` beyond the batching signature; None: do not batch.

        A pod with affinity terms changes the scores of the next alike pod as
        soon as it is placed; one without is scored by other pods' terms on
        its namespace and labels.
        """
        if pod.pod_affinity is not None or pod.affinity_error is not None:
            return None
        return (pod.namespace, tuple(sorted(pod.labels.items())))

    # ---- PreFilter / Filter ------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        st = self._compute(pod)
        if isinstance(st, Status):
            return st
        state.data[_PRE_FILTER] = (pod.key, st)
        return SKIP if st is None else SUCCESS

    def _compute(self, pod: PodInfo) -> FilterState | Status | None:
        """The PreFilter state of ``pod``; None when Filter has nothing to check."""
        if pod.affinity_error:
            return unschedulable(pod.affinity_error, unresolvable=True)
        pa = pod.pod_affinity
        own_terms = pa is not None and bool(pa.required_affinity or pa.required_anti_affinity)
        if not own_terms and not self._cache.has_required_anti_affinity():
            return None
        st = FilterState(pod, namespace_lookup(self._namespace_labels))
        self._count_existing(st)
        if own_terms:
            self._count_incoming(st)
        if not st.existing and not own_terms:
            return None
        return st

    def _count_existing(self, st: FilterState) -> None:
        """Existing pods whose required anti-affinity matches the incoming pod.

        Kept in a tally by what the terms read of the incoming pod (its
        namespace, its labels and its namespace's labels), so the pods of one
        Deployment recount only the nodes changed since the last of them.
        """
        pod = st.pod
        ns, me = pod.namespace, pod.labels
        own = st.ns_labels(ns)

        def part(ni: NodeInfo) -> Part:
            if not ni.pods_with_required_anti_affinity:
                return ()
            labels = ni.node.labels  # type: ignore[union-attr]
            pairs: dict[Pair, int] = {}
            for p in ni.pods_with_required_anti_affinity.values():
                for t in p.pod_affinity.required_anti_affinity:  # type: ignore[union-attr]
                    if t.matches(ns, me, own):
                        v = labels.get(t.topology_key)
                        if v is not None:
                            pair = (t.topology_key, v)
                            pairs[pair] = pairs.get(pair, 0) + 1
            keys: dict[str, int] = {}
            for (k, _v), n in pairs.items():
                keys[k] = keys.get(k, 0) + n
            return (
                *(("existing", pair, n) for pair, n in pairs.items()),
                *(("existing-key", k, n) for k, n in keys.items()),
            )

        key = ("existing", ns, _sorted_items(me), _sorted_items(own))
        tally = self._existing.get(
            key, self._cache, part, self._cache.nodes_with_required_anti_affinity
        )
        st.existing = cast("dict[Pair, int]", tally.sums.get("existing", {}))
        st.existing_keys = tuple(sorted(cast("dict[str, int]", tally.sums.get("existing-key", {}))))
        st.tallies["existing"] = tally

    def _count_incoming(self, st: FilterState) -> None:
        """Existing pods matching the incoming pod's required terms, per topology pair.

        Kept in a tally by the terms, so alike pods recount only the nodes that
        changed; not when a term reads namespace labels (those change unseen).
        """
        aff_terms, anti_terms = st.aff_terms, st.anti_terms
        match_aff, match_anti = st.match_aff, st.match_anti

        def part(ni: NodeInfo) -> Part:
            n_aff, n_anti = _match_counts(ni.pods.values(), match_aff, match_anti)
            if not n_aff and n_anti is None:
                return ()
            labels = ni.node.labels  # type: ignore[union-attr]
            out: list[tuple[Hashable, Hashable, int]] = []
            if n_aff:
                for t in aff_terms:
                    v = labels.get(t.topology_key)
                    if v is not None:
                        out.append(("aff", (t.topology_key, v), n_aff))
            if n_anti is not None:
                for t, n in zip(anti_terms, n_anti, strict=True):
                    v = labels.get(t.topology_key)
                    if n and v is not None:
                        out.append(("anti", (t.topology_key, v), n))
            return tuple(out)

        tally = self._tally(("required", aff_terms, anti_terms), part, (*aff_terms, *anti_terms))
        st.aff = cast("dict[Pair, int]", tally.sums.get("aff", {}))
        st.anti = cast("dict[Pair, int]", tally.sums.get("anti", {}))
        st.aff_total = tally.totals.get("aff", 0)
        st.tallies["aff"] = st.tallies["anti"] = tally

    def _tally(
        self,
        key: Hashable,
        part: Callable[[NodeInfo], Part],
        terms: Iterable[AffinityTerm],
    ) -> Tally:
        """A refreshed tally of ``part``; a throwaway one if a term reads namespace labels."""
        if any(t.reads_namespace_labels for t in terms):
            tally = Tally(self._cache, part)
            tally.refresh()
            return tally
        return self._tallies.get(key, self._cache, part)

    def _check(self, st: FilterState, pod: PodInfo, ni: NodeInfo) -> Status:
        assert ni.node is not None
        labels = ni.node.labels
        real = self._cache.node_info(ni.name)
        changed = st.changed.get(ni.name)
        nominated = nominated_here(ni, pod)
        if real is ni and not changed and not nominated:
            return st.verdict(labels)
        removed, added = node_changes(ni, real, changed)
        d = _Delta()
        for p in removed:
            st.contribute(p, labels, -1, d)
        for p in added:
            st.contribute(p, labels, 1, d)
        if nominated:
            # kube-scheduler filters with the nominated pods placed, then without them.
            with_nominated = d.copy()
            for p in nominated:
                st.contribute(p, labels, 1, with_nominated)
            verdict = st.verdict(labels, with_nominated)
            if not verdict.ok:
                return verdict
        return st.verdict(labels, d)

    def filter_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> ColumnVerdicts | None:
        """``filter`` of the nodes at ``rows``, from the counts by each node's label value.

        The checks in :meth:`FilterState.verdict`'s order, each on the nodes the
        ones before it passed; a node with pods nominated to it is left to
        ``filter`` (-1). None (node by node) once add_pod / remove_pod changed
        the counts this cycle, or when a topology key has no label column.
        """
        st = self._state(state, pod)
        n = len(rows)
        if st is None:
            return ColumnVerdicts(np.zeros(n, dtype=np.int64))
        if isinstance(st, Status):
            return ColumnVerdicts(np.ones(n, dtype=np.int64), (st,))
        if not st.tallies:  # add_pod / remove_pod made the counts the state's own
            return None

        def counts(which: str, key: str) -> Ints:
            """The counts of ``which`` in ``key``'s domains, by label value id."""
            return st.tallies[which].by_value(which, columns, key, pairs=True)

        keys = {t.topology_key for t in (*st.aff_terms, *st.anti_terms)} | set(st.existing_keys)
        ids: dict[str, NDArray[np.int32]] = {}
        for k in keys:
            column = columns.label(k)
            if column is None:
                return None
            ids[k] = column.take(rows)
        out = _Codes(n)
        if st.aff_terms:
            absent = functools.reduce(
                operator.or_, (ids[t.topology_key] == 0 for t in st.aff_terms)
            )
            out.reject(absent, rejection(REASON_AFFINITY, None, "", unresolvable=True))
            if not (st.aff_total == 0 and st.self_match):
                for t in st.aff_terms:
                    k = t.topology_key
                    vids = ids[k]
                    out.reject_domains(
                        counts("aff", k).take(vids) <= 0,
                        vids, REASON_AFFINITY, k, columns, unresolvable=True,
                    )  # fmt: skip
        if st.anti:
            for t in st.anti_terms:
                k = t.topology_key
                vids = ids[k]
                hit = (vids != 0) & (counts("anti", k).take(vids) > 0)
                out.reject_domains(hit, vids, REASON_ANTI_AFFINITY, k, columns, unresolvable=False)
        for k in st.existing_keys:
            vids = ids[k]
            hit = (vids != 0) & (counts("existing", k).take(vids) > 0)
            out.reject_domains(
                hit, vids, REASON_EXISTING_ANTI_AFFINITY, k, columns, unresolvable=False
            )
        if columns.nominated_rows:
            out.defer(columns.nominated.take(rows) > 0)
        return out.verdicts()

    # ---- PreFilterExtensions (preemption's what-if) --------------------------------

    def add_pod(
        self, state: CycleState, pod_to_schedule: PodInfo, pod: PodInfo, node: NodeInfo
    ) -> Status:
        """Count ``pod`` as running on ``node`` in ``pod_to_schedule``'s state of this cycle."""
        return self._update(state, pod_to_schedule, pod, node, 1)

    def remove_pod(
        self, state: CycleState, pod_to_schedule: PodInfo, pod: PodInfo, node: NodeInfo
    ) -> Status:
        """Count ``pod`` as gone from ``node`` in ``pod_to_schedule``'s state of this cycle."""
        return self._update(state, pod_to_schedule, pod, node, -1)

    def _update(
        self, state: CycleState, owner: PodInfo, pod: PodInfo, node: NodeInfo, sign: int
    ) -> Status:
        st = self._state(state, owner)  # the state of the pod being scheduled
        if st is None or isinstance(st, Status) or node.node is None:
            return SUCCESS
        if "aff" in st.tallies:
            st.aff, st.anti = dict(st.aff), dict(st.anti)
        if "existing" in st.tallies:
            st.existing = dict(st.existing)
        st.tallies = {}
        st.contribute(pod, node.node.labels, sign, st)
        st.refresh_keys()
        st.changed.setdefault(node.name, {})[pod.key] = pod if sign > 0 else None
        return SUCCESS

    # ---- PreScore / Score ------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        state.data[_PRE_SCORE] = None
        if pod.affinity_error or not nodes:
            return SKIP
        pa = pod.pod_affinity
        pref = (
            [(w.term, w.weight) for w in pa.preferred_affinity]
            + [(w.term, -w.weight) for w in pa.preferred_anti_affinity]
            if pa is not None
            else []
        )
        if not pref and (self._ignore_existing or not self._cache.has_pod_affinity()):
            return SKIP
        ns_labels = namespace_lookup(self._namespace_labels)
        layers: list[Tally] = []
        if pref:
            # The pod's own preferred terms against every pod: a tally by the terms.
            incoming = [(t.topology_key, w, t.matcher(ns_labels)) for t, w in pref]

            def part(ni: NodeInfo) -> Part:
                labels = ni.node.labels  # type: ignore[union-attr]
                out: list[tuple[Hashable, Hashable, int]] = []
                for key, w, m in incoming:
                    v = labels.get(key)
                    if v is not None:
                        n = sum(1 for p in ni.pods.values() if m(p.namespace, p.labels))
                        if n:
                            out.append((key, v, w * n))
                return tuple(out)

            tally = self._tally(("preferred", tuple(pref)), part, (t for t, _ in pref))
            if any(tally.sums.values()):  # (a slot stays, empty, when its keys go)
                layers.append(tally)
        # kube-scheduler's ignorePreferredTermsOfExistingPods skips them only for a pod
        # without preferred terms of its own (it returned SKIP above).
        if self._cache.has_pod_affinity():
            existing = self._existing_scores(pod, ns_labels(pod.namespace))
            if any(existing.sums.values()):
                layers.append(existing)
        if not layers:
            return SKIP
        state.data[_PRE_SCORE] = ScoreState(layers)
        return SUCCESS

    def _existing_scores(self, pod: PodInfo, own: Mapping[str, str]) -> Tally:
        """Other pods' terms against ``pod``: summed weight by topology key and value.

        A tally by what the terms read of ``pod`` (as :meth:`_count_existing`),
        fed only by the nodes with pods that have terms.
        """
        ns, me, hard = pod.namespace, pod.labels, self._hard_weight

        def part(ni: NodeInfo) -> Part:
            labels = ni.node.labels  # type: ignore[union-attr]
            if not labels or not ni.pods_with_affinity:
                return ()
            sums: dict[tuple[str, str], int] = {}

            def add(key: str, weight: int) -> None:
                v = labels.get(key)
                if v is not None:
                    sums[(key, v)] = sums.get((key, v), 0) + weight

            for p in ni.pods_with_affinity.values():
                epa = p.pod_affinity
                if epa is None:
                    continue
                if hard > 0:
                    for t in epa.required_affinity:
                        if t.matches(ns, me, own):
                            add(t.topology_key, hard)
                for wt in epa.preferred_affinity:
                    if wt.term.matches(ns, me, own):
                        add(wt.term.topology_key, wt.weight)
                for wt in epa.preferred_anti_affinity:
                    if wt.term.matches(ns, me, own):
                        add(wt.term.topology_key, -wt.weight)
            return tuple((key, v, w) for (key, v), w in sums.items())

        key = ("scores", ns, _sorted_items(me), _sorted_items(own))
        return self._existing.get(key, self._cache, part, self._cache.nodes_with_pod_affinity)

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """The summed weights of the node's domains (negative: anti-affinity)."""
        st: ScoreState | None = state.data.get(_PRE_SCORE)
        if st is None:
            return 0
        labels = node.node.labels  # type: ignore[union-attr]
        total = 0
        for layer in st.layers:
            for key, values in layer.sums.items():
                v = labels.get(key)  # type: ignore[call-overload]
                if v is not None:
                    total += values.get(v, 0)
        return total

    def score_all(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """``[score(state, pod, n) for n in nodes]``."""
        return [self.score(state, pod, ni) for ni in nodes]

    def score_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> Ints | None:
        """``score`` of the nodes at ``rows``, then ``normalize``: each layer's sums by
        the id of the node's label value."""
        st: ScoreState | None = state.data.get(_PRE_SCORE)
        total = np.zeros(len(rows), dtype=np.int64)
        if st is None:
            return total
        for layer in st.layers:
            for key, values in layer.sums.items():
                if not values:
                    continue
                column = columns.label(key)  # type: ignore[arg-type]
                if column is None:
                    return None
                total += layer.by_value(key, columns, key).take(column.take(rows))  # type: ignore[arg-type]
        if len(total):
            lo = int(total.min())
            diff = int(total.max()) - lo
            if diff <= 0:
                return np.zeros(len(rows), dtype=np.int64)
            # As normalize: true division, then the product truncated (never negative).
            total = (MAX_NODE_SCORE * ((total - lo) / diff)).astype(np.int64)
        return total

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Min-max onto 0..100 (kube-scheduler's NormalizeScore, float then truncated)."""
        if state.data.get(_PRE_SCORE) is None or not scores:
            return
        lo, hi = min(scores), max(scores)
        diff = hi - lo
        for i, s in enumerate(scores):
            scores[i] = int(MAX_NODE_SCORE * ((s - lo) / diff)) if diff > 0 else 0


def _sorted_items(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items())) if labels else ()


def _all_terms(pod: PodInfo) -> list[AffinityTerm]:
    pa = pod.pod_affinity
    if pa is None:
        return []
    return [
        *pa.required_affinity,
        *pa.required_anti_affinity,
        *(w.term for w in pa.preferred_affinity),
        *(w.term for w in pa.preferred_anti_affinity),
    ]


def _node_has_topology_key(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """A node with a topology key of the pod's terms that it did not have (or is new)."""
    if not isinstance(new, Node):
        return events.SKIP
    keys = {t.topology_key for t in _all_terms(pod)}
    before = old.labels if isinstance(old, Node) else {}
    if any(k in new.labels and (k not in before or before[k] != new.labels[k]) for k in keys):
        return events.QUEUE
    return events.SKIP
