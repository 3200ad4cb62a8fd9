"""Node selectors judged over the cache's label columns: NodeAffinity's column forms.

A requirement (``matchExpressions`` or ``matchFields``) reads one label of a
node (or its name), so its verdict is a function of that label's value: it
is worked out once per distinct value, with NodeAffinity's own per-node
functions (:class:`Matchers`, handed in), and kept in the columns'
``derived`` (extended as new values appear); a node's verdict is then a
lookup by the id of its value. Terms AND their requirements and OR each
other, as ``match_term`` and ``pod_matches_node`` do.

Only plain selectors go this way: anything shaped otherwise than the API
allows (a requirement that is not an object, values that are not a list of
strings, ...) gives None, and NodeAffinity judges node by node, raising
where it always did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
import orjson
from numpy.typing import NDArray

from lasched.cache.columns import NAME_KEY, NodeColumns

Flags = NDArray[np.bool_]


class Matchers(NamedTuple):
    """The per-node verdicts the tables are made of (NodeAffinity's)."""

    expression: Callable[[Mapping[str, Any], Mapping[str, str]], bool]
    """A matchExpressions requirement against a node's labels."""
    field: Callable[[Mapping[str, Any], str], bool]
    """A matchFields requirement against a node's name."""


_DERIVED_LIMIT = 4096  # requirements kept; then they are judged afresh


def selector_mask(
    columns: NodeColumns, rows: NDArray[np.intp], selector: Mapping[str, Any]
) -> Flags | None:
    """Does each node at ``rows`` have every label of ``selector`` (``nodeSelector``)?"""
    mask = np.ones(len(rows), dtype=np.bool_)
    for key, value in selector.items():
        column = columns.label(key) if isinstance(key, str) else None
        if column is None:
            return None
        if value is None:  # labels.get(key) != None: only a node without the label passes
            mask &= column.take(rows) == 0
        elif isinstance(value, str):
            mask &= column.take(rows) == columns.label_id(key, value)
        else:  # a label value is a string: never equal
            mask[:] = False
    return mask


def terms_mask(
    match: Matchers, columns: NodeColumns, rows: NDArray[np.intp], terms: list[Any]
) -> Flags | None:
    """Does each node at ``rows`` match any of the NodeSelectorTerms ``terms``?"""
    mask = np.zeros(len(rows), dtype=np.bool_)
    for term in terms:
        matched = term_mask(match, columns, rows, term)
        if matched is None:
            return None
        mask |= matched
    return mask


def term_mask(
    match: Matchers, columns: NodeColumns, rows: NDArray[np.intp], term: Any
) -> Flags | None:
    """Does each node at ``rows`` match the NodeSelectorTerm ``term``? (``match_term``)"""
    if not isinstance(term, Mapping):
        return None
    exprs = term.get("matchExpressions") or ()
    fields = term.get("matchFields") or ()
    if not isinstance(exprs, list | tuple) or not isinstance(fields, list | tuple):
        return None
    if not exprs and not fields:
        return np.zeros(len(rows), dtype=np.bool_)  # an empty term matches nothing
    mask = np.ones(len(rows), dtype=np.bool_)
    for req, field in [*((e, False) for e in exprs), *((f, True) for f in fields)]:
        matched = _requirement_mask(match, columns, rows, req, field=field)
        if matched is None:
            return None
        mask &= matched
    return mask


_MAX_WEIGHT = 1 << 40  # (the API allows 1 to 100) so that sums times 100 stay in int64


def weights(preferences: Any) -> list[tuple[int, Any]] | None:
    """(weight, preference term) of each preferred term, the weight as ``score`` reads it;
    None unless they are plain (then ``score`` raises, or not, where it always did)."""
    if not isinstance(preferences, list | tuple) or len(preferences) > 1024:
        return None
    out = []
    for pref in preferences:
        if not isinstance(pref, Mapping):
            return None
        try:
            weight = int(pref.get("weight") or 0)
        except (TypeError, ValueError):
            return None
        if not -_MAX_WEIGHT < weight < _MAX_WEIGHT:
            return None
        out.append((weight, pref.get("preference") or {}))
    return out


def _requirement_mask(
    match: Matchers, columns: NodeColumns, rows: NDArray[np.intp], req: Any, *, field: bool
) -> Flags | None:
    if not isinstance(req, Mapping) or not _plain(req):
        return None
    key: str = NAME_KEY if field else req.get("key", "")
    column = columns.label(key)
    if column is None:
        return None

    def verdict(value: str | None) -> bool:
        """The requirement on a node whose label ``key`` (or name) is ``value``."""
        if field:
            return value is not None and match.field(req, value)
        return match.expression(req, {} if value is None else {key: value})

    table = _table(columns, key, req, verdict)
    if table is None:
        return None
    out: Flags = table.take(column.take(rows))
    return out


def _plain(req: Mapping[str, Any]) -> bool:
    """Shaped as the API allows: string key and operator, a list of string values."""
    values = req.get("values")
    return (
        isinstance(req.get("key", ""), str)
        and isinstance(req.get("operator", ""), str)
        and (values is None or isinstance(values, list | tuple))
        and all(isinstance(v, str) for v in values or ())
    )


def _table(
    columns: NodeColumns,
    key: str,
    req: Mapping[str, Any],
    verdict: Callable[[str | None], bool],
) -> Flags | None:
    """The requirement's verdict for each value id of label ``key`` (kept, and extended
    as the label takes new values)."""
    values = columns.label_values(key)
    try:
        dk = ("NodeAffinity", key, orjson.dumps(req, option=orjson.OPT_SORT_KEYS))
    except TypeError:  # not JSON: no key to keep it under
        return None
    derived = columns.derived
    table: Flags | None = derived.get(dk)
    if table is not None and len(table) == len(values):
        return table
    done = 0 if table is None else len(table)
    fresh = np.fromiter((verdict(v) for v in values[done:]), dtype=np.bool_)
    table = fresh if table is None else np.concatenate((table, fresh))
    if len(derived) >= _DERIVED_LIMIT:
        derived.clear()
    derived[dk] = table
    return table
