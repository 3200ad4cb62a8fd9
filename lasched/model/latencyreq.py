"""A pod's latency requirements, from its labels and annotations (docs/workload-api.md).

Hard limits (the node is filtered when they are not met, and unknown or
stale RTTs fail closed):

- ``delay_<place>: "<ms>"`` labels, the earlier edge scheduler's spelling;
- ``lasched.io/max-rtt: "users-eu=30ms, edge-1=10"``: RTT between the node
  and each named place (a node or a configured endpoint);
- ``lasched.io/peer-selector`` with ``lasched.io/peer-max-rtt``: RTT to the
  nodes of every pod (same namespace) matching the selector;
- ``lasched.io/group-max-rtt``: pairwise RTT between all members of the
  pod's group.

Soft preferences (scored; a missing measurement falls back to an estimate):

- ``lasched.io/prefer-low-rtt: "users-eu, edge-1=3"`` (optional weight 1..10);
- ``lasched.io/peer-selector`` alone: be close to those pods.

A malformed value never crashes anything: parsing returns an error text
naming the key and the value, the pod stays pending with it as its reason,
and a Warning Event carries it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lasched.model.delay import DelayConstraint, delay_constraints

MAX_RTT = "lasched.io/max-rtt"
PREFER_LOW_RTT = "lasched.io/prefer-low-rtt"
PEER_SELECTOR = "lasched.io/peer-selector"
PEER_MAX_RTT = "lasched.io/peer-max-rtt"
GROUP_MAX_RTT = "lasched.io/group-max-rtt"

MAX_PREFERENCE_WEIGHT = 10


class RequirementError(ValueError):
    """A label or annotation that cannot be read; the message names it."""


@dataclass(frozen=True, slots=True)
class RttLimit:
    place: str  # a node name or an endpoint name
    max_ms: float
    origin: str  # the label or annotation that asked, for messages


@dataclass(frozen=True, slots=True)
class Preference:
    place: str
    weight: int


@dataclass(frozen=True, slots=True)
class PeerRule:
    text: str  # the selector as written, for messages
    selector: Mapping[str, Any]  # a metav1.LabelSelector
    max_ms: float | None  # None: a soft preference


@dataclass(frozen=True, slots=True)
class LatencyRequirements:
    limits: tuple[RttLimit, ...] = ()
    preferences: tuple[Preference, ...] = ()
    peers: PeerRule | None = None
    group_max_ms: float | None = None

    @property
    def hard(self) -> bool:
        return bool(
            self.limits
            or (self.peers is not None and self.peers.max_ms is not None)
            or self.group_max_ms is not None
        )

    @property
    def soft(self) -> bool:
        return bool(self.preferences or (self.peers is not None and self.peers.max_ms is None))


def parse_requirements(
    labels: Mapping[str, str], annotations: Mapping[str, str]
) -> tuple[LatencyRequirements | None, str | None]:
    """The pod's requirements (None if it has none), and an error text if any is malformed."""
    delays, err = delay_constraints(labels)
    if err:
        return None, err
    try:
        req = _parse(delays, annotations)
    except RequirementError as e:
        return None, str(e)
    if not (req.hard or req.soft):
        return None, None
    return req, None


def _parse(delays: tuple[DelayConstraint, ...], ann: Mapping[str, str]) -> LatencyRequirements:
    limits = [RttLimit(d.source, d.max_ms, d.label) for d in delays]
    if MAX_RTT in ann:
        for place, value in _pairs(MAX_RTT, ann[MAX_RTT], need_value=True):
            limits.append(RttLimit(place, parse_ms(MAX_RTT, value or ""), MAX_RTT))
    preferences = []
    if PREFER_LOW_RTT in ann:
        for place, value in _pairs(PREFER_LOW_RTT, ann[PREFER_LOW_RTT], need_value=False):
            weight = 1
            if value is not None:
                if not value.isdigit() or not 1 <= int(value) <= MAX_PREFERENCE_WEIGHT:
                    raise RequirementError(
                        f'annotation {PREFER_LOW_RTT}="{ann[PREFER_LOW_RTT]}": weight of {place} '
                        f"must be an integer from 1 to {MAX_PREFERENCE_WEIGHT}, not {value!r}"
                    )
                weight = int(value)
            preferences.append(Preference(place, weight))
    peers = None
    if PEER_SELECTOR in ann:
        text = ann[PEER_SELECTOR]
        max_ms = parse_ms(PEER_MAX_RTT, ann[PEER_MAX_RTT]) if PEER_MAX_RTT in ann else None
        peers = PeerRule(text, parse_selector(PEER_SELECTOR, text), max_ms)
    elif PEER_MAX_RTT in ann:
        raise RequirementError(f"annotation {PEER_MAX_RTT} needs {PEER_SELECTOR} beside it")
    group_max = parse_ms(GROUP_MAX_RTT, ann[GROUP_MAX_RTT]) if GROUP_MAX_RTT in ann else None
    return LatencyRequirements(tuple(limits), tuple(preferences), peers, group_max)


_MS = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|us|µs)?\s*$")


def parse_ms(key: str, value: str) -> float:
    """``"5"``, ``"5ms"``, ``"0.5s"`` or ``"800us"`` as milliseconds (positive, finite)."""
    m = _MS.match(value)
    if not m:
        raise RequirementError(
            f'annotation {key}="{value}" is not a duration such as "5ms", "0.5s" or "5"'
        )
    number = float(m.group(1))
    unit = m.group(2) or "ms"
    ms = number * {"ms": 1.0, "s": 1000.0, "us": 0.001, "µs": 0.001}[unit]
    if not (ms > 0 and math.isfinite(ms)):
        raise RequirementError(f'annotation {key}="{value}" must be a positive duration')
    return ms


def _pairs(key: str, text: str, *, need_value: bool) -> list[tuple[str, str | None]]:
    """``"a=1, b=2"`` (or ``"a, b=2"`` when values are optional) as pairs."""
    out: list[tuple[str, str | None]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        place, sep, value = item.partition("=")
        place = place.strip()
        if not place or (sep and not value.strip()):
            raise RequirementError(f'annotation {key}="{text}": cannot read {item!r}')
        if need_value and not sep:
            raise RequirementError(
                f'annotation {key}="{text}": {place!r} needs a limit, as in "{place}=10ms"'
            )
        if any(p == place for p, _ in out):
            raise RequirementError(f'annotation {key}="{text}" names {place} twice')
        out.append((place, value.strip() if sep else None))
    if not out:
        raise RequirementError(f'annotation {key}="{text}" names no place')
    return out


_SET_EXPR = re.compile(r"^([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^()]*)\)$")
_KEY = re.compile(r"^[A-Za-z0-9./_-]+$")


def parse_selector(key: str, text: str) -> dict[str, Any]:
    """kubectl's label selector syntax (``a=b,c!=d,e in (f,g),!h``) as a LabelSelector."""
    exprs: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    for term in _split_terms(text):
        t = term.strip()
        if m := _SET_EXPR.match(t):
            values = [v.strip() for v in m.group(3).split(",") if v.strip()]
            op = "In" if m.group(2) == "in" else "NotIn"
            exprs.append({"key": m.group(1), "operator": op, "values": values})
        elif "!=" in t:
            k, _, v = t.partition("!=")
            exprs.append({"key": _key(key, text, k), "operator": "NotIn", "values": [v.strip()]})
        elif "=" in t:
            k, _, v = t.partition("==") if "==" in t else t.partition("=")
            labels[_key(key, text, k)] = v.strip()
        elif t.startswith("!"):
            exprs.append({"key": _key(key, text, t[1:]), "operator": "DoesNotExist"})
        else:
            exprs.append({"key": _key(key, text, t), "operator": "Exists"})
    if not labels and not exprs:
        raise RequirementError(f'annotation {key}="{text}" is an empty selector')
    return {"matchLabels": labels, "matchExpressions": exprs}


def _key(key: str, text: str, k: str) -> str:
    k = k.strip()
    if not _KEY.match(k):
        raise RequirementError(f'annotation {key}="{text}": {k!r} is not a label key')
    return k


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t for t in terms if t.strip()]
