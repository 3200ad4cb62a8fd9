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
and a Warning Event carries it. Parsing is linear in the size of the
annotations (no backtracking pattern, no pairwise comparison), and values
are bounded before they are read: a duration at most
:data:`~lasched.model.strict.MAX_NUMBER_CHARS` characters, a list of places
or a selector at most :data:`MAX_LIST_CHARS`, a place name at most
:data:`~lasched.model.strict.MAX_NAME_CHARS`. Every limit is a positive,
finite number of milliseconds of at most
:data:`~lasched.model.strict.MAX_RTT_MS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lasched.model.delay import DelayConstraint, delay_constraints
from lasched.model.strict import MAX_NAME_CHARS, MAX_RTT_MS, decimal, integer, shown, too_long

MAX_RTT = "lasched.io/max-rtt"
PREFER_LOW_RTT = "lasched.io/prefer-low-rtt"
PEER_SELECTOR = "lasched.io/peer-selector"
PEER_MAX_RTT = "lasched.io/peer-max-rtt"
GROUP_MAX_RTT = "lasched.io/group-max-rtt"

MAX_PREFERENCE_WEIGHT = 10
MAX_LIST_CHARS = 4096
"""A list of places or a selector longer than this is an error."""


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
    for key in (MAX_RTT, PREFER_LOW_RTT, PEER_SELECTOR):
        if key in ann and (problem := too_long(ann[key], MAX_LIST_CHARS)):
            raise RequirementError(f"annotation {key}={shown(ann[key], length=False)}: {problem}")
    limits = [RttLimit(d.source, d.max_ms, d.label) for d in delays]
    if MAX_RTT in ann:
        for place, value in _pairs(MAX_RTT, ann[MAX_RTT], need_value=True):
            limits.append(RttLimit(place, parse_ms(MAX_RTT, value or ""), MAX_RTT))
    preferences = []
    if PREFER_LOW_RTT in ann:
        text = ann[PREFER_LOW_RTT]
        for place, value in _pairs(PREFER_LOW_RTT, text, need_value=False):
            weight = 1 if value is None else _weight(value)
            if weight is None:
                raise RequirementError(
                    f"annotation {PREFER_LOW_RTT}={shown(text)}: weight of {shown(place, quote='')}"
                    f" must be an integer from 1 to {MAX_PREFERENCE_WEIGHT},"
                    f" not {_quoted(value or '')}"
                )
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


def _weight(value: str) -> int | None:
    # isdigit() alone admits '²', which int() refuses: ASCII digits only, no sign.
    if not (value.isascii() and value.isdigit()):
        return None
    weight = integer(value)
    return weight if weight is not None and 1 <= weight <= MAX_PREFERENCE_WEIGHT else None


# Longest first: "ms" and "us" end in "s" too.
_UNITS = (("ms", 1.0), ("us", 0.001), ("µs", 0.001), ("s", 1000.0))


def parse_ms(key: str, value: str) -> float:
    """``"5"``, ``"5ms"``, ``"0.5s"`` or ``"800us"`` as milliseconds (within (0, 60 s]).

    Read by hand, not by a pattern: the number, then an optional unit, with
    blanks allowed around both.
    """
    if problem := too_long(value):
        raise RequirementError(f"annotation {key}={shown(value, length=False)}: {problem}")
    text = value.strip()
    factor = 1.0
    for unit, unit_factor in _UNITS:
        if text.endswith(unit):
            text, factor = text[: -len(unit)], unit_factor
            break
    number = decimal(text) if text.strip() else None
    if number is None:
        raise RequirementError(
            f'annotation {key}={shown(value)} is not a duration such as "5ms", "0.5s" or "5"'
        )
    ms = number * factor
    if not ms > 0:
        raise RequirementError(f"annotation {key}={shown(value)} must be a positive duration")
    if not ms <= MAX_RTT_MS:
        raise RequirementError(
            f"annotation {key}={shown(value)} must be at most {MAX_RTT_MS / 1000:g} s"
            f" ({MAX_RTT_MS:g} ms)"
        )
    return ms


def _pairs(key: str, text: str, *, need_value: bool) -> list[tuple[str, str | None]]:
    """``"a=1, b=2"`` (or ``"a, b=2"`` when values are optional) as pairs."""
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        place, sep, value = item.partition("=")
        place = place.strip()
        if not place or (sep and not value.strip()):
            raise RequirementError(f"annotation {key}={shown(text)}: cannot read {_quoted(item)}")
        if len(place) > MAX_NAME_CHARS:
            raise RequirementError(
                f"annotation {key}={shown(text, length=False)}: place name"
                f" {_quoted(place)} is too long (at most {MAX_NAME_CHARS} characters)"
            )
        if need_value and not sep:
            raise RequirementError(
                f"annotation {key}={shown(text)}: {_quoted(place)} needs a limit,"
                f' as in "{place}=10ms"'
            )
        if place in seen:
            raise RequirementError(f"annotation {key}={shown(text)} names {place} twice")
        seen.add(place)
        out.append((place, value.strip() if sep else None))
    if not out:
        raise RequirementError(f"annotation {key}={shown(text)} names no place")
    return out


def _quoted(text: str) -> str:
    return shown(text, quote="'")


# Used with fullmatch on one term. Neighbouring quantifiers never share a
# character (key characters, blanks, a keyword, a parenthesis), so a failing
# match backtracks at most once per character: linear time.
_SET_EXPR = re.compile(r"([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^()]*)\)")
_KEY = re.compile(r"[A-Za-z0-9./_-]+")


def parse_selector(key: str, text: str) -> dict[str, Any]:
    """kubectl's label selector syntax (``a=b,c!=d,e in (f,g),!h``) as a LabelSelector."""
    exprs: list[dict[str, Any]] = []
    labels: dict[str, str] = {}
    for term in _split_terms(text):
        t = term.strip()
        if m := _SET_EXPR.fullmatch(t):
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
        raise RequirementError(f"annotation {key}={shown(text)} is an empty selector")
    return {"matchLabels": labels, "matchExpressions": exprs}


def _key(key: str, text: str, k: str) -> str:
    k = k.strip()
    if not _KEY.fullmatch(k):
        raise RequirementError(f"annotation {key}={shown(text)}: {_quoted(k)} is not a label key")
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
