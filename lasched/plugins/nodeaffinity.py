"""NodeAffinity: ``nodeSelector`` and required node affinity filter; preferred
node affinity scores. Matching follows ``k8s.io/component-helpers``'
NodeSelector: terms are ORed, the requirements of a term ANDed, and an empty
term matches nothing. A pod it rejected is worth another try when a node
that matches it is added, or comes to match it by a label change.

The column forms judge every candidate node at once from the cache's label
columns, a verdict per distinct label value (lasched/plugins/labelcolumns.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lasched.cache.cache import NodeInfo
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
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.plugins import labelcolumns

REASON = "node(s) didn't match Pod's node affinity/selector"
_REJECTED = unschedulable(REASON, unresolvable=True)


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def match_expression(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """One NodeSelectorRequirement against a node's labels."""
    key = req.get("key", "")
    op = req.get("operator", "")
    values: Sequence[str] = req.get("values") or ()
    present = key in labels
    value = labels.get(key, "")
    if op == "In":
        return present and value in values
    if op == "NotIn":
        return not present or value not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        if not present or len(values) != 1:
            return False
        have, want = _int(value), _int(values[0])
        if have is None or want is None:
            return False
        return have > want if op == "Gt" else have < want
    return False


def match_field(req: Mapping[str, Any], node: Node) -> bool:
    """matchFields supports only metadata.name with In / NotIn."""
    return match_field_name(req, node.name)


def match_field_name(req: Mapping[str, Any], name: str) -> bool:
    """:func:`match_field` for a node called ``name``."""
    if req.get("key") != "metadata.name":
        return False
    values = req.get("values") or ()
    if req.get("operator") == "In":
        return name in values
    if req.get("operator") == "NotIn":
        return name not in values
    return False


def match_term(term: Mapping[str, Any], node: Node) -> bool:
    exprs = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not exprs and not fields:
        return False
    return all(match_expression(e, node.labels) for e in exprs) and all(
        match_field(f, node) for f in fields
    )


def required_terms(pod: PodInfo) -> list[Mapping[str, Any]] | None:
    na = pod.affinity.get("nodeAffinity") or {}
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution")
    if req is None:
        return None
    return list(req.get("nodeSelectorTerms") or ())


def pod_matches_node(pod: PodInfo, node: Node) -> bool:
    """``nodeSelector`` and every required term set, as kube-scheduler checks them."""
    for k, v in pod.node_selector.items():
        if node.labels.get(k) != v:
            return False
    terms = required_terms(pod)
    if terms is None:
        return True
    return any(match_term(t, node) for t in terms)


_MATCHERS = labelcolumns.Matchers(match_expression, match_field_name)


def _node_now_matches(pod: PodInfo, old: Any, new: Any) -> events.QueueingHint:
    """A node that matches the pod, and did not before (or is new)."""
    if not isinstance(new, Node) or not pod_matches_node(pod, new):
        return events.SKIP
    if isinstance(old, Node) and pod_matches_node(pod, old):
        return events.SKIP
    return events.QUEUE


class NodeAffinity(Batchable):
    name = "NodeAffinity"

    def events_to_register(self) -> list[ClusterEventWithHint]:
        return [
            ClusterEventWithHint(
                ClusterEvent(EventResource.NODE, ActionType.ADD | ActionType.UPDATE_NODE_LABEL),
                _node_now_matches,
            )
        ]

    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status:
        """Nothing to check without a selector or required terms: skip Filter."""
        if not pod.node_selector and required_terms(pod) is None:
            return SKIP
        return SUCCESS

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        na = pod.affinity.get("nodeAffinity") or {}
        if not na.get("preferredDuringSchedulingIgnoredDuringExecution"):
            return SKIP
        return SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        assert node.node is not None
        if pod_matches_node(pod, node.node):
            return SUCCESS
        return _REJECTED

    def filter_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> ColumnVerdicts | None:
        """``filter`` of every node at ``rows``, from its label values' verdicts."""
        mask = labelcolumns.selector_mask(columns, rows, pod.node_selector)
        if mask is None:
            return None
        terms = required_terms(pod)
        if terms is not None:
            matched = labelcolumns.terms_mask(_MATCHERS, columns, rows, terms)
            if matched is None:
                return None
            mask &= matched
        return ColumnVerdicts((~mask).astype(np.int64), (_REJECTED,))

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        assert node.node is not None
        na = pod.affinity.get("nodeAffinity") or {}
        total = 0
        for pref in na.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
            weight = int(pref.get("weight") or 0)
            if weight and match_term(pref.get("preference") or {}, node.node):
                total += weight
        return total

    def score_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> NDArray[np.int64] | None:
        """``score`` of every node at ``rows``, then ``normalize``."""
        na = pod.affinity.get("nodeAffinity") or {}
        prefs = labelcolumns.weights(
            na.get("preferredDuringSchedulingIgnoredDuringExecution") or ()
        )
        if prefs is None:
            return None
        total = np.zeros(len(rows), dtype=np.int64)
        for weight, term in prefs:
            if weight:
                matched = labelcolumns.term_mask(_MATCHERS, columns, rows, term)
                if matched is None:
                    return None
                total += matched * weight
        top = int(total.max()) if total.size else 0
        if top == 0:
            return total
        out: NDArray[np.int64] = total * MAX_NODE_SCORE // top
        return out

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Scale so the best node gets 100 (kube-scheduler's DefaultNormalizeScore)."""
        top = max(scores, default=0)
        if top == 0:
            return
        for i, s in enumerate(scores):
            scores[i] = s * MAX_NODE_SCORE // top
