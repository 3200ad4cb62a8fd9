"""Pod (anti-)affinity and topology spread constraints, parsed once per pod version.

A :class:`PodInfo` parses ``spec.affinity.podAffinity``,
``spec.affinity.podAntiAffinity`` and ``spec.topologySpreadConstraints``
when it is decoded; the plugins never read that JSON again. Parsing never
raises: a value the apiserver would refuse (an unknown operator, a label
value that is not one, ``maxSkew: -1``) makes the pod's ``affinity_error``
or ``spread_error`` a text that names the field, the value and the rule,
and the plugin's PreFilter rejects the pod with it.

Semantics follow kube-scheduler's ``framework.AffinityTerm`` and
``metav1.LabelSelectorAsSelector``:

* a missing ``labelSelector`` matches no pod; an empty one (``{}``) matches
  every pod;
* a term's namespaces are ``namespaces`` plus those ``namespaceSelector``
  selects; with neither, the pod's own namespace; an empty
  ``namespaceSelector`` (``{}``) selects every namespace;
* ``matchLabelKeys`` / ``mismatchLabelKeys`` add ``key in (value)`` /
  ``key notin (value)`` for each key the owning pod has a label for (the
  apiserver merges them on create too; merging again changes nothing).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lasched.model.strict import integer, shown, shown_json

NamespaceLabels = Callable[[str], Mapping[str, str] | None]
"""A namespace's labels by name; None for a namespace that is not known."""


def no_namespace_labels(ns: str) -> Mapping[str, str] | None:
    """Where no Namespace informer runs: every namespace is unknown."""
    return None


"""A namespace's labels, or None when it is not known (then: no labels)."""

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")


class _Invalid(Exception):
    """A malformed field: caught by the parse functions, never raised out of them."""


def _must(where: str, rule: str, value: object) -> _Invalid:
    return _Invalid(f"{where}: must be {rule}, not {shown_json(value)}")


def label_value_problem(value: str) -> str | None:
    """What makes ``value`` not a label value (``validation.IsValidLabelValue``), or None."""
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _VALUE.fullmatch(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return None


def label_key_problem(key: str) -> str | None:
    """What makes ``key`` not a label key (``validation.IsQualifiedName``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (
        not prefix
        or len(prefix) > 253
        or not all(_DNS_LABEL.fullmatch(part) for part in prefix.split("."))
    ):
        return "prefix part must be a lowercase DNS subdomain"
    if not name or len(name) > 63 or not _NAME.fullmatch(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', at most 63, "
            "and must start and end with an alphanumeric character"
        )
    return None


# ---- label selectors ---------------------------------------------------------------


Requirement = tuple[str, str, frozenset[str]]
"""``(key, operator, values)``; operator is In, NotIn, Exists or DoesNotExist."""


def _nothing(labels: Mapping[str, str]) -> bool:
    return False


def _everything(labels: Mapping[str, str]) -> bool:
    return True


def _compile(reqs: tuple[Requirement, ...]) -> Callable[[Mapping[str, str]], bool]:
    """A matcher for ``reqs``, specialised for the common one-label selector."""
    if not reqs:
        return _everything
    if len(reqs) == 1:
        key, op, values = reqs[0]
        if op == "In" and len(values) == 1:
            (want,) = values
            return lambda labels: labels.get(key) == want
        if op == "Exists":
            return lambda labels: key in labels

    def match(labels: Mapping[str, str]) -> bool:
        for key, op, values in reqs:
            if op == "In":
                if labels.get(key) not in values:
                    return False
            elif op == "NotIn":
                if key in labels and labels[key] in values:
                    return False
            elif op == "Exists":
                if key not in labels:
                    return False
            elif key in labels:  # DoesNotExist
                return False
        return True

    return match


class Selector:
    """A parsed ``metav1.LabelSelector``: its requirements ANDed.

    :data:`NOTHING` (a missing selector) matches no labels, :data:`EVERYTHING`
    (``{}``) all. Equal selectors compare and hash equal, whatever the order
    their requirements were written in.
    """

    __slots__ = ("_hash", "_key", "matches", "requirements")

    def __init__(self, requirements: tuple[Requirement, ...] | None) -> None:
        self.requirements = requirements
        self._key: tuple[tuple[str, str, tuple[str, ...]], ...] | None = (
            None
            if requirements is None
            else tuple(sorted((k, op, tuple(sorted(v))) for k, op, v in requirements))
        )
        self._hash = hash(self._key)
        self.matches: Callable[[Mapping[str, str]], bool] = (
            _nothing if requirements is None else _compile(requirements)
        )

    @property
    def nothing(self) -> bool:
        return self.requirements is None

    @property
    def everything(self) -> bool:
        return self.requirements == ()

    def merged(self, extra: Sequence[Requirement]) -> Selector:
        """This selector ANDed with ``extra``; NOTHING stays NOTHING."""
        if self.requirements is None or not extra:
            return self
        return Selector((*self.requirements, *extra))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selector) and self._key == other._key

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        if self.requirements is None:
            return "Selector(nothing)"
        parts = [f"{k} {op} {sorted(v)}" if v else f"{k} {op}" for k, op, v in self.requirements]
        return f"Selector({', '.join(parts)})"


NOTHING = Selector(None)
EVERYTHING = Selector(())


def parse_selector(raw: object, where: str) -> Selector:
    """``raw`` (decoded JSON) as a Selector; raises _Invalid naming ``where``."""
    if raw is None:
        return NOTHING
    if not isinstance(raw, Mapping):
        raise _must(where, "an object", raw)
    reqs: list[Requirement] = []
    match_labels = raw.get("matchLabels")
    if match_labels is not None:
        if not isinstance(match_labels, Mapping):
            raise _must(f"{where}.matchLabels", "an object", match_labels)
        for key, value in match_labels.items():
            _check_key(key, f"{where}.matchLabels")
            _check_value(value, f"{where}.matchLabels[{key}]")
            reqs.append((key, "In", frozenset((value,))))
    exprs = raw.get("matchExpressions")
    if exprs is not None:
        if not isinstance(exprs, list):
            raise _must(f"{where}.matchExpressions", "a list", exprs)
        for i, expr in enumerate(exprs):
            reqs.append(_requirement(expr, f"{where}.matchExpressions[{i}]"))
    return Selector(tuple(reqs))


def _requirement(expr: object, where: str) -> Requirement:
    if not isinstance(expr, Mapping):
        raise _must(where, "an object", expr)
    key = expr.get("key")
    _check_key(key, f"{where}.key")
    assert isinstance(key, str)
    op = expr.get("operator")
    if op not in _OPERATORS:
        raise _Invalid(f"{where}.operator: {shown_json(op)} is not a valid label selector operator")
    values = expr.get("values")
    if values is None:
        values = []
    if not isinstance(values, list):
        raise _must(f"{where}.values", "a list", values)
    if op in ("In", "NotIn") and not values:
        raise _Invalid(f"{where}.values: must be non-empty for operator {op}")
    if op in ("Exists", "DoesNotExist") and values:
        raise _Invalid(f"{where}.values: must be empty for operator {op}")
    for j, value in enumerate(values):
        _check_value(value, f"{where}.values[{j}]")
    return (key, str(op), frozenset(values))


def _check_key(key: object, where: str) -> None:
    if not isinstance(key, str):
        raise _Invalid(f"{where}: label key must be a string, not {shown_json(key)}")
    problem = label_key_problem(key)
    if problem:
        raise _Invalid(f"{where}: invalid label key {shown(key)}: {problem}")


def _check_value(value: object, where: str) -> None:
    if not isinstance(value, str):
        raise _Invalid(f"{where}: label value must be a string, not {shown_json(value)}")
    problem = label_value_problem(value)
    if problem:
        raise _Invalid(f"{where}: invalid label value {shown(value)}: {problem}")


def _label_keys(raw: object, where: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(k, str) for k in raw):
        raise _must(where, "a list of label keys", raw)
    for i, key in enumerate(raw):
        _check_key(key, f"{where}[{i}]")
    return raw


def _topology_key(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise _must(where, "a non-empty label key", raw)
    _check_key(raw, where)
    return raw


# ---- pod affinity ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AffinityTerm:
    """A parsed ``PodAffinityTerm`` (kube-scheduler's ``framework.AffinityTerm``)."""

    selector: Selector
    namespaces: frozenset[str]
    namespace_selector: Selector  # NOTHING when absent
    topology_key: str

    def matches(
        self, namespace: str, labels: Mapping[str, str], ns_labels: Mapping[str, str]
    ) -> bool:
        """Does a pod in ``namespace`` with ``labels`` match? ``ns_labels``: its namespace's."""
        if namespace in self.namespaces or self.namespace_selector.matches(ns_labels):
            return self.selector.matches(labels)
        return False

    @property
    def reads_namespace_labels(self) -> bool:
        """Does matching depend on namespace labels (a selector that is not NOTHING or all)?"""
        return bool(self.namespace_selector.requirements)

    def matcher(self, ns_labels: NamespaceLabels) -> Callable[[str, Mapping[str, str]], bool]:
        """``matches`` for pods of any namespace, its namespace labels looked up (once each)."""
        sel, nss, ns_sel = self.selector.matches, self.namespaces, self.namespace_selector
        if ns_sel.everything:
            return lambda ns, labels: sel(labels)
        if ns_sel.nothing:
            if len(nss) == 1:
                (only,) = nss
                return lambda ns, labels: ns == only and sel(labels)
            return lambda ns, labels: ns in nss and sel(labels)
        seen: dict[str, bool] = {}

        def match(ns: str, labels: Mapping[str, str]) -> bool:
            if ns not in nss:
                ok = seen.get(ns)
                if ok is None:
                    ok = seen[ns] = ns_sel.matches(ns_labels(ns) or {})
                if not ok:
                    return False
            return sel(labels)

        return match


@dataclass(frozen=True, slots=True)
class WeightedTerm:
    weight: int
    term: AffinityTerm


@dataclass(frozen=True, slots=True)
class PodAffinity:
    """A pod's inter-pod affinity terms; a pod with none has ``pod_affinity = None``."""

    required_affinity: tuple[AffinityTerm, ...] = ()
    required_anti_affinity: tuple[AffinityTerm, ...] = ()
    preferred_affinity: tuple[WeightedTerm, ...] = ()
    preferred_anti_affinity: tuple[WeightedTerm, ...] = ()


_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
_PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


def parse_pod_affinity(
    affinity: object, *, namespace: str, labels: Mapping[str, str]
) -> tuple[PodAffinity | None, str | None]:
    """``spec.affinity``'s pod (anti-)affinity: (terms or None if none, error text or None)."""
    if not isinstance(affinity, Mapping):
        return None, None
    pa, paa = affinity.get("podAffinity"), affinity.get("podAntiAffinity")
    if pa is None and paa is None:
        return None, None
    try:
        req_a, pref_a = _terms_of(pa, "spec.affinity.podAffinity", namespace, labels)
        req_aa, pref_aa = _terms_of(paa, "spec.affinity.podAntiAffinity", namespace, labels)
    except _Invalid as e:
        return None, str(e)
    if not (req_a or pref_a or req_aa or pref_aa):
        return None, None
    return PodAffinity(req_a, req_aa, pref_a, pref_aa), None


def _terms_of(
    raw: object, where: str, namespace: str, labels: Mapping[str, str]
) -> tuple[tuple[AffinityTerm, ...], tuple[WeightedTerm, ...]]:
    if raw is None:
        return (), ()
    if not isinstance(raw, Mapping):
        raise _must(where, "an object", raw)
    required = raw.get(_REQUIRED) or []
    preferred = raw.get(_PREFERRED) or []
    if not isinstance(required, list):
        raise _must(f"{where}.{_REQUIRED}", "a list", required)
    if not isinstance(preferred, list):
        raise _must(f"{where}.{_PREFERRED}", "a list", preferred)
    req = tuple(
        _term(t, f"{where}.{_REQUIRED}[{i}]", namespace, labels) for i, t in enumerate(required)
    )
    pref = []
    for i, w in enumerate(preferred):
        at = f"{where}.{_PREFERRED}[{i}]"
        if not isinstance(w, Mapping):
            raise _must(at, "an object", w)
        weight = w.get("weight")
        if isinstance(weight, str):
            weight = integer(weight)
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 100:
            raise _must(f"{at}.weight", "an integer in 1..100", w.get("weight"))
        term = _term(w.get("podAffinityTerm"), f"{at}.podAffinityTerm", namespace, labels)
        pref.append(WeightedTerm(weight, term))
    return req, tuple(pref)


def _term(raw: object, where: str, namespace: str, labels: Mapping[str, str]) -> AffinityTerm:
    if not isinstance(raw, Mapping):
        raise _must(where, "an object", raw)
    selector = parse_selector(raw.get("labelSelector"), f"{where}.labelSelector")
    extra: list[Requirement] = []
    for key in _label_keys(raw.get("matchLabelKeys"), f"{where}.matchLabelKeys"):
        if key in labels:
            extra.append((key, "In", frozenset((labels[key],))))
    for key in _label_keys(raw.get("mismatchLabelKeys"), f"{where}.mismatchLabelKeys"):
        if key in labels:
            extra.append((key, "NotIn", frozenset((labels[key],))))
    selector = selector.merged(extra)
    names = raw.get("namespaces")
    if names is None:
        names = []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _must(f"{where}.namespaces", "a list of names", names)
    ns_raw = raw.get("namespaceSelector")
    ns_selector = parse_selector(ns_raw, f"{where}.namespaceSelector")
    namespaces = frozenset(names) if names or ns_raw is not None else frozenset((namespace,))
    key = _topology_key(raw.get("topologyKey"), f"{where}.topologyKey")
    return AffinityTerm(selector, namespaces, ns_selector, key)


# ---- topology spread constraints -------------------------------------------------------

DO_NOT_SCHEDULE = "DoNotSchedule"
SCHEDULE_ANYWAY = "ScheduleAnyway"


@dataclass(frozen=True, slots=True)
class SpreadConstraint:
    """A parsed ``TopologySpreadConstraint``, matchLabelKeys merged into the selector.

    ``owner`` is set only on a system-default constraint: its pods are those
    with the same controller (``PodInfo.controller`` uid), in place of a selector.
    """

    max_skew: int
    topology_key: str
    hard: bool  # whenUnsatisfiable: DoNotSchedule
    selector: Selector
    min_domains: int = 1
    honor_node_affinity: bool = True  # nodeAffinityPolicy, Honor by default
    honor_node_taints: bool = False  # nodeTaintsPolicy, Ignore by default
    owner: str | None = None

    def selects(self, pod_labels: Mapping[str, str], pod_controller: str | None) -> bool:
        """Does a pod (of the right namespace) with these labels / controller uid count?"""
        if self.owner is not None:
            return pod_controller == self.owner
        return self.selector.matches(pod_labels)


_WHERE = "spec.topologySpreadConstraints"


def parse_spread_constraints(
    raw: object, *, labels: Mapping[str, str], where: str = _WHERE, defaults: bool = False
) -> tuple[tuple[SpreadConstraint, ...], str | None]:
    """``raw`` (a list of TopologySpreadConstraint) parsed: (constraints, error text or None).

    With ``defaults``, ``raw`` is the plugin's ``defaultConstraints``: they may
    not carry a selector (it is the pod's controller) and pairs of
    topologyKey and whenUnsatisfiable must be unique (kube-scheduler's
    ``ValidatePodTopologySpreadArgs``).
    """
    if raw is None:
        return (), None
    try:
        if not isinstance(raw, list):
            raise _must(where, "a list", raw)
        out = tuple(_constraint(c, f"{where}[{i}]", labels, defaults) for i, c in enumerate(raw))
        if defaults:
            seen: set[tuple[str, bool]] = set()
            for i, c in enumerate(out):
                if (c.topology_key, c.hard) in seen:
                    raise _Invalid(
                        f"{where}[{i}]: duplicate topologyKey and whenUnsatisfiable pair"
                    )
                seen.add((c.topology_key, c.hard))
    except _Invalid as e:
        return (), str(e)
    return out, None


def _constraint(
    raw: object, where: str, labels: Mapping[str, str], defaults: bool
) -> SpreadConstraint:
    if not isinstance(raw, Mapping):
        raise _must(where, "an object", raw)
    skew = raw.get("maxSkew")
    if isinstance(skew, str):
        skew = integer(skew)
    if not isinstance(skew, int) or isinstance(skew, bool) or skew < 1:
        raise _must(f"{where}.maxSkew", "an integer greater than zero", raw.get("maxSkew"))
    key = _topology_key(raw.get("topologyKey"), f"{where}.topologyKey")
    when = raw.get("whenUnsatisfiable")
    if when not in (DO_NOT_SCHEDULE, SCHEDULE_ANYWAY):
        raise _must(f"{where}.whenUnsatisfiable", "DoNotSchedule or ScheduleAnyway", when)
    hard = when == DO_NOT_SCHEDULE
    if defaults and raw.get("labelSelector") is not None:
        raise _Invalid(
            f"{where}.labelSelector: a default constraint must not define a selector, "
            "as it is deduced for each pod"
        )
    selector = parse_selector(raw.get("labelSelector"), f"{where}.labelSelector")
    keys = _label_keys(raw.get("matchLabelKeys"), f"{where}.matchLabelKeys")
    selector = selector.merged([(k, "In", frozenset((labels[k],))) for k in keys if k in labels])
    min_domains = 1
    if raw.get("minDomains") is not None:
        md = raw["minDomains"]
        if isinstance(md, str):
            md = integer(md)
        if not isinstance(md, int) or isinstance(md, bool) or md < 1:
            raise _must(f"{where}.minDomains", "an integer greater than zero", raw["minDomains"])
        if not hard:
            raise _Invalid(
                f"{where}.minDomains: may only be set with whenUnsatisfiable DoNotSchedule"
            )
        min_domains = md
    return SpreadConstraint(
        max_skew=skew,
        topology_key=key,
        hard=hard,
        selector=selector,
        min_domains=min_domains,
        honor_node_affinity=_policy(raw, "nodeAffinityPolicy", "Honor", where),
        honor_node_taints=_policy(raw, "nodeTaintsPolicy", "Ignore", where),
    )


def _policy(raw: Mapping[str, Any], field: str, default: str, where: str) -> bool:
    value = raw.get(field)
    value = default if value is None else value
    if value not in ("Honor", "Ignore"):
        raise _must(f"{where}.{field}", "Honor or Ignore", raw.get(field))
    return value == "Honor"


# ---- owner -----------------------------------------------------------------------------


def controller_of(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(kind, uid)`` of the ownerReference marked ``controller: true``, if any."""
    refs = meta.get("ownerReferences")
    if not isinstance(refs, list):
        return None
    for ref in refs:
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            kind, uid = ref.get("kind"), ref.get("uid")
            if isinstance(kind, str) and isinstance(uid, str) and uid:
                return kind, uid
    return None
