"""One copy of what many pods repeat, kept by reference from each PodInfo.

A cluster's pods repeat the same short strings (namespace, node, phase,
scheduler name, label values) and the same tolerations: admission gives
every pod the two ``NoExecute`` tolerations for ``not-ready`` and
``unreachable``. Decoded from JSON, each pod holds its own copies, about
1.3 KB of a pod's 2.7 KB at 30,000 pods (bench/results/memory.md).
Sharing them keeps one copy each. Everything handed out here is shared:
a PodInfo never mutates it (PodInfo is immutable by contract).
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Mapping
from typing import Any, Generic, TypeVar

import orjson

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """The first value handed in for each key, for everyone who hands in an equal key.

    At most ``limit`` keys: past it the memo starts again, so a cluster whose
    values never repeat costs a bounded table, not a growing one.
    """

    __slots__ = ("_limit", "_values")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._values: dict[K, V] = {}

    def share(self, key: K, value: V) -> V:
        """The value kept for ``key``; ``value`` (kept from now on) if there is none."""
        shared = self._values.get(key)
        if shared is None:
            if len(self._values) >= self._limit:
                self._values.clear()
            shared = self._values[key] = value
        return shared

    def __len__(self) -> int:
        return len(self._values)


EMPTY: Mapping[str, Any] = {}
"""The one empty mapping of every pod without labels, annotations, selector or affinity: a
dict, since lookups in it are the hot path (a MappingProxyType's cost 3x), typed as a
Mapping so that mypy refuses a write."""

_TOLERATIONS_KEPT = 1024
"""Distinct toleration lists remembered; beyond it the memo starts again (a cluster has a
handful: its workloads' few, each with admission's two defaults)."""

_tolerations: Memo[bytes, list[dict[str, Any]]] = Memo(_TOLERATIONS_KEPT)


def shared_str(value: str) -> str:
    """The one copy of ``value``, if it is a string (anything else unchanged)."""
    return sys.intern(value) if type(value) is str else value


def shared_values(strings: Mapping[str, str] | None) -> Mapping[str, str]:
    """``strings`` (a decoded labels or selector map) with its values shared, in place;
    :data:`EMPTY` if there are none. The keys are shared already (orjson keeps one copy
    of each short key it decodes)."""
    if not strings:
        return EMPTY
    if type(strings) is dict:
        for key, value in strings.items():
            if type(value) is str:
                strings[key] = sys.intern(value)
    return strings


def shared_tolerations(tolerations: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One list for every pod whose tolerations are the same JSON (the apiserver writes
    a toleration's fields in one order, so equal lists encode alike).

    A list that does not encode (which decoded JSON always does) is kept as it is.
    """
    if not tolerations:
        return _NONE
    try:
        key = orjson.dumps(tolerations)
    except TypeError:
        return tolerations
    return _tolerations.share(key, tolerations)


_NONE: list[dict[str, Any]] = []
"""The tolerations of a pod without any (shared: never appended to)."""
