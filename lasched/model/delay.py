"""Delay constraints from pod labels ``delay_<node>: "<ms>"``.

The earlier edge scheduler's spelling, kept as it was: the pod must land on a
node whose RTT from ``<node>`` is at most that many milliseconds. The value
is an ASCII decimal number (``25``, ``7.5``, ``2e1``) that must be positive
and at most :data:`~lasched.model.strict.MAX_RTT_MS`; ``inf``, ``nan`` and
exponents that overflow are refused, never read as "no limit".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from lasched.model.strict import MAX_RTT_MS, decimal, shown, spells_non_finite, too_long

PREFIX = "delay_"


@dataclass(frozen=True, slots=True)
class DelayConstraint:
    source: str  # the node (or endpoint) the RTT is measured from
    max_ms: float
    label: str


def delay_constraints(labels: Mapping[str, str]) -> tuple[tuple[DelayConstraint, ...], str | None]:
    """The pod's constraints, and an error text if a label is malformed."""
    out = []
    for key, value in labels.items():
        if not key.startswith(PREFIX):
            continue
        source = key[len(PREFIX) :]
        if not source:
            return (), f'label {key}={shown(value)} names no node after "{PREFIX}"'
        if problem := too_long(value):
            return (), f"label {key}={shown(value, length=False)}: {problem}"
        ms, problem = _milliseconds(value)
        if problem:
            return (), f"label {key}={shown(value)} {problem}"
        out.append(DelayConstraint(source, ms, key))
    return tuple(out), None


def _milliseconds(value: str) -> tuple[float, str | None]:
    ms = decimal(value, signed=True, exponent=True)
    if ms is None:
        if spells_non_finite(value):
            return 0.0, "is not a finite number of milliseconds"
        return 0.0, "is not a number of milliseconds"
    if not math.isfinite(ms):
        return 0.0, "is not a finite number of milliseconds"
    if not ms > 0:
        return 0.0, "must be a positive number of milliseconds"
    if ms > MAX_RTT_MS:
        return 0.0, f"must be at most {MAX_RTT_MS:g} milliseconds ({MAX_RTT_MS / 1000:g} s)"
    return ms, None
