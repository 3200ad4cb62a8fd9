"""Delay constraints from pod labels ``delay_<node>: "<ms>"``.

The earlier edge scheduler's spelling, kept as it was: the pod must land on a
node whose RTT from ``<node>`` is at most that many milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
            return (), f'label {key}="{value}" names no node after "{PREFIX}"'
        try:
            ms = float(value)
        except ValueError:
            return (), f'label {key}="{value}" is not a number of milliseconds'
        if not ms > 0:
            return (), f'label {key}="{value}" must be a positive number of milliseconds'
        out.append(DelayConstraint(source, ms, key))
    return tuple(out), None
