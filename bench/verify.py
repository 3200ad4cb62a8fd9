"""Placement checks on a cluster's state as the apiserver holds it.

After each peer's phase a benchmark lists the nodes and pods and hands them
here. Nothing the scheduler says about itself is read: every rule is checked
again on the objects, written from the Kubernetes API's own definitions, not
from lasched's code.

Rules (each a name in :data:`RULES`; a scenario passes the ones it holds a
peer to):

- ``capacity``: no node's bound pods request more cpu, memory or pods than
  its allocatable (terminating pods count until they are gone, as in a
  kubelet's admission);
- ``bound``: every pod the workload expects bound is bound, to a node that
  exists;
- ``bound-once``: no pod was seen bound to a second node, nor named in a
  ``Scheduled`` Event to a node other than its own;
- ``node-selector``, ``node-affinity`` (required terms), ``taints``
  (NoSchedule and NoExecute taints tolerated; an unschedulable node only
  with a toleration of ``node.kubernetes.io/unschedulable``);
- ``pod-affinity`` and ``pod-anti-affinity`` (required terms, per topology
  key; every pod's terms are checked against every other pod, so an existing
  pod's anti-affinity toward a newcomer is caught too). A pod alone in its
  domain passes its affinity only if it matches its own term and no pod
  matching the term was bound before it;
- ``topology-spread``: every ``DoNotSchedule`` constraint, on the final
  state: the pod's domain holds at most ``maxSkew`` more matching pods than
  the least-loaded eligible domain (no domain counted below zero when fewer
  than ``minDomains`` exist). With no pod deleted meanwhile, a placement that
  broke the constraint when it was made still breaks it here;
- ``max-rtt``: ``lasched.io/max-rtt`` limits, against an RTT table the
  scenario provides (an unknown RTT breaks the limit, as lasched fails
  closed), and a pod group's ``lasched.io/group-max-rtt`` between every two
  of its bound members (the group: the ``lasched.io/pod-group`` label);
- ``room``: a pod left pending although some node would take it under every
  rule above (the workload does not expect it bound, so ``bound`` does not
  apply, but a scheduler that sees it should have placed it). A member of a
  group with a ``group-max-rtt`` of which no member is bound is judged with
  its group: all or nothing, so the group has room when its min-available
  members (``lasched.io/min-available``, else all) fit together within the
  budget, found by placing them one by one around each node in turn (a
  first fit: a group it finds no room for may still have some).

Every violation names the rule, the pod, the node and what was found.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from lasched.kube.client import KubeClient

CAPACITY = "capacity"
BOUND = "bound"
BOUND_ONCE = "bound-once"
NODE_SELECTOR = "node-selector"
NODE_AFFINITY = "node-affinity"
TAINTS = "taints"
POD_AFFINITY = "pod-affinity"
POD_ANTI_AFFINITY = "pod-anti-affinity"
TOPOLOGY_SPREAD = "topology-spread"
MAX_RTT = "max-rtt"
ROOM = "room"

RULES: frozenset[str] = frozenset(
    {
        CAPACITY,
        BOUND,
        BOUND_ONCE,
        NODE_SELECTOR,
        NODE_AFFINITY,
        TAINTS,
        POD_AFFINITY,
        POD_ANTI_AFFINITY,
        TOPOLOGY_SPREAD,
        MAX_RTT,
        ROOM,
    }
)
"""Every rule."""

KUBERNETES_RULES = RULES - {MAX_RTT}
"""The rules of the Kubernetes API alone."""

MAX_RTT_ANNOTATION = "lasched.io/max-rtt"
GROUP_LABEL = "lasched.io/pod-group"
GROUP_MIN_LABEL = "lasched.io/min-available"
GROUP_MAX_RTT_ANNOTATION = "lasched.io/group-max-rtt"
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"

RttTable = Callable[[str, str], float | None]
"""(node, place) -> RTT in ms, or None when unknown."""


# ---- quantities -------------------------------------------------------------------------

_SUFFIXES = {
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def quantity(text: object) -> Decimal:
    """A Kubernetes quantity (``"100m"``, ``"1.5Gi"``, ``"2e3"``, ``4``) as a number."""
    if isinstance(text, int | float):
        return Decimal(str(text))
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"not a quantity: {text!r}")
    try:
        return Decimal(m.group(1)) * _SUFFIXES[m.group(2)]
    except InvalidOperation:
        raise ValueError(f"not a quantity: {text!r}") from None


def milli(text: object) -> int:
    """A quantity in thousandths, rounded up (cpu: millicores)."""
    return math.ceil(quantity(text) * 1000)


def whole(text: object) -> int:
    """A quantity rounded up to a whole number (memory: bytes; pods)."""
    return math.ceil(quantity(text))


# ---- the objects -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    cpu_milli: int = 0
    memory: int = 0  # bytes
    pods: int = 110


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    node: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    cpu_milli: int = 0
    memory: int = 0
    node_selector: Mapping[str, str] = field(default_factory=dict)
    node_terms: tuple[Mapping[str, Any], ...] | None = None  # required nodeSelectorTerms
    affinity: tuple[Mapping[str, Any], ...] = ()  # required podAffinity terms
    anti_affinity: tuple[Mapping[str, Any], ...] = ()  # required podAntiAffinity terms
    tolerations: tuple[Mapping[str, Any], ...] = ()
    spread: tuple[Mapping[str, Any], ...] = ()  # topologySpreadConstraints, all of them
    priority: int = 0
    bound_at: float | None = None  # when a watch first saw it bound, if known
    terminating: bool = False
    finished: bool = False  # phase Succeeded or Failed: holds no resources

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def holds(self) -> bool:
        """Counts against its node's allocatable."""
        return self.node is not None and not self.finished


@dataclass(slots=True)
class State:
    nodes: dict[str, Node]
    pods: list[Pod]
    namespace_labels: dict[str, Mapping[str, str]] = field(default_factory=dict)


def node_from_api(obj: Mapping[str, Any]) -> Node:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    alloc = status.get("allocatable") or status.get("capacity") or {}
    return Node(
        name=meta["name"],
        labels=dict(meta.get("labels") or {}),
        taints=tuple(
            Taint(t["key"], t.get("value", ""), t.get("effect", "NoSchedule"))
            for t in spec.get("taints") or ()
        ),
        unschedulable=bool(spec.get("unschedulable")),
        cpu_milli=milli(alloc.get("cpu", 0)),
        memory=whole(alloc.get("memory", 0)),
        pods=whole(alloc.get("pods", 110)),
    )


def _requests(spec: Mapping[str, Any]) -> tuple[int, int]:
    def of(c: Mapping[str, Any]) -> tuple[int, int]:
        req = (c.get("resources") or {}).get("requests") or {}
        return milli(req.get("cpu", 0)), whole(req.get("memory", 0))

    cpu = mem = 0
    for c in spec.get("containers") or ():
        a, b = of(c)
        cpu, mem = cpu + a, mem + b
    for c in spec.get("initContainers") or ():
        a, b = of(c)
        cpu, mem = max(cpu, a), max(mem, b)
    overhead = spec.get("overhead") or {}
    return cpu + milli(overhead.get("cpu", 0)), mem + whole(overhead.get("memory", 0))


def pod_from_api(obj: Mapping[str, Any], *, bound_at: float | None = None) -> Pod:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    affinity = spec.get("affinity") or {}
    node_aff = (affinity.get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    )
    required = "requiredDuringSchedulingIgnoredDuringExecution"
    cpu, mem = _requests(spec)
    phase = (obj.get("status") or {}).get("phase")
    return Pod(
        namespace=meta.get("namespace", "default"),
        name=meta["name"],
        node=spec.get("nodeName") or None,
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        cpu_milli=cpu,
        memory=mem,
        node_selector=dict(spec.get("nodeSelector") or {}),
        node_terms=None if node_aff is None else tuple(node_aff.get("nodeSelectorTerms") or ()),
        affinity=tuple((affinity.get("podAffinity") or {}).get(required) or ()),
        anti_affinity=tuple((affinity.get("podAntiAffinity") or {}).get(required) or ()),
        tolerations=tuple(spec.get("tolerations") or ()),
        spread=tuple(spec.get("topologySpreadConstraints") or ()),
        priority=int(spec.get("priority") or 0),
        bound_at=bound_at,
        terminating=bool(meta.get("deletionTimestamp")),
        finished=phase in ("Succeeded", "Failed"),
    )


def state_from_api(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    *,
    bound_at: Mapping[str, float] | None = None,
    namespaces: Iterable[Mapping[str, Any]] = (),
) -> State:
    """From list answers; ``bound_at`` maps ``namespace/name`` to when a watch saw it bound."""
    stamps = bound_at or {}
    out = []
    for p in pods:
        key = f"{p['metadata'].get('namespace', 'default')}/{p['metadata']['name']}"
        out.append(pod_from_api(p, bound_at=stamps.get(key)))
    return State(
        nodes={n.name: n for n in map(node_from_api, nodes)},
        pods=out,
        namespace_labels={
            ns["metadata"]["name"]: dict(ns["metadata"].get("labels") or {}) for ns in namespaces
        },
    )


# ---- matching -------------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector: None matches nothing, ``{}`` everything."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or ():
        key, op, values = e["key"], e["operator"], e.get("values") or ()
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _requirement(expr: Mapping[str, Any], value: str | None) -> bool:
    op = expr["operator"]
    values: list[str] = list(expr.get("values") or ())
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt"):
        try:
            have, want = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return have > want if op == "Gt" else have < want
    return False


def node_term_matches(term: Mapping[str, Any], node: Node) -> bool:
    """One nodeSelectorTerm: its expressions and fields all hold; an empty term matches nothing."""
    exprs, fields = term.get("matchExpressions") or (), term.get("matchFields") or ()
    if not exprs and not fields:
        return False
    if not all(_requirement(e, node.labels.get(e["key"])) for e in exprs):
        return False
    return all(_requirement(f, node.name if f["key"] == "metadata.name" else None) for f in fields)


def node_selector_ok(pod: Pod, node: Node) -> bool:
    return all(node.labels.get(k) == v for k, v in pod.node_selector.items())


def node_affinity_ok(pod: Pod, node: Node) -> bool:
    if pod.node_terms is None:
        return True
    return any(node_term_matches(t, node) for t in pod.node_terms)


def tolerates(toleration: Mapping[str, Any], taint: Taint) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    op = toleration.get("operator") or "Equal"
    if key != taint.key and not (key == "" and op == "Exists"):
        return False
    if op == "Exists":
        return True
    return bool((toleration.get("value") or "") == taint.value)


def untolerated(pod: Pod, node: Node) -> Taint | None:
    """The first NoSchedule or NoExecute taint of ``node`` that ``pod`` does not tolerate."""
    taints = list(node.taints)
    if node.unschedulable:
        taints.append(Taint(UNSCHEDULABLE_TAINT, "", "NoSchedule"))
    for t in taints:
        if t.effect == "PreferNoSchedule":
            continue
        if not any(tolerates(tol, t) for tol in pod.tolerations):
            return t
    return None


def term_namespaces(term: Mapping[str, Any], pod: Pod, state: State) -> set[str] | None:
    """The namespaces a pod affinity term looks in; None for all of them."""
    names = set(term.get("namespaces") or ())
    selector = term.get("namespaceSelector")
    if selector is not None:
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            return None
        names |= {
            ns for ns, lab in state.namespace_labels.items() if selector_matches(selector, lab)
        }
    elif not names:
        names = {pod.namespace}
    return names


def term_matches(term: Mapping[str, Any], owner: Pod, other: Pod, state: State) -> bool:
    spaces = term_namespaces(term, owner, state)
    if spaces is not None and other.namespace not in spaces:
        return False
    selector = term.get("labelSelector")
    keys = term.get("matchLabelKeys") or ()
    if keys and selector is not None:
        extra = [
            {"key": k, "operator": "In", "values": [owner.labels[k]]}
            for k in keys
            if k in owner.labels
        ]
        selector = {
            **selector,
            "matchExpressions": [*(selector.get("matchExpressions") or ()), *extra],
        }
    return selector_matches(selector, other.labels)


def parse_max_rtt(value: str) -> list[tuple[str, float]]:
    """``"users-eu=10ms, edge-1=2.5"`` -> [(place, ms), ...]; units ms (default), s, us."""
    out = []
    for item in value.split(","):
        part = item.strip()
        if not part:
            continue
        place, _, limit = part.partition("=")
        out.append((place.strip(), parse_ms(limit)))
    return out


def parse_ms(text: str) -> float:
    """``"9ms"``, ``"2.5"``, ``"1s"``, ``"300us"`` -> milliseconds."""
    limit = text.strip()
    scale = 1.0
    for unit, k in (("ms", 1.0), ("us", 1e-3), ("µs", 1e-3), ("s", 1000.0)):
        if limit.endswith(unit):
            limit, scale = limit[: -len(unit)], k
            break
    return float(limit) * scale


def group_budget(pod: Pod) -> float | None:
    """The pod's ``group-max-rtt`` in ms when it is in a group, else None."""
    text = pod.annotations.get(GROUP_MAX_RTT_ANNOTATION)
    if not text or not pod.labels.get(GROUP_LABEL):
        return None
    return parse_ms(text)


def same_group(a: Pod, b: Pod) -> bool:
    return (
        a.key != b.key
        and a.namespace == b.namespace
        and a.labels.get(GROUP_LABEL) == b.labels.get(GROUP_LABEL)
    )


# ---- the checks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    pod: str | None
    node: str | None
    detail: str

    def __str__(self) -> str:
        where = []
        if self.pod:
            where.append(f"pod {self.pod}")
        if self.node:
            where.append(f"node {self.node}")
        return f"{self.rule}: {' on '.join(where) or '-'}: {self.detail}"


@dataclass(slots=True)
class Verdict:
    violations: list[Violation]
    pods_checked: int
    nodes_checked: int
    rules: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def counts(self) -> dict[str, int]:
        return dict(Counter(v.rule for v in self.violations))

    def to_json(self, limit: int = 50) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rules": list(self.rules),
            "pods_checked": self.pods_checked,
            "nodes_checked": self.nodes_checked,
            "violations": len(self.violations),
            "by_rule": self.counts(),
            "first": [
                {"rule": v.rule, "pod": v.pod, "node": v.node, "detail": v.detail}
                for v in self.violations[:limit]
            ],
        }

    def summary(self, limit: int = 5) -> str:
        if self.ok:
            return f"ok ({self.pods_checked} pods, {self.nodes_checked} nodes)"
        by = ", ".join(f"{r} {n}" for r, n in sorted(self.counts().items()))
        lines = [f"{len(self.violations)} violation(s): {by}"]
        lines += [f"  {v}" for v in self.violations[:limit]]
        return "\n".join(lines)


class _Index:
    """Bound pods by node and by topology domain, for the checks."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.on: dict[str, list[Pod]] = defaultdict(list)
        for p in state.pods:
            if p.holds and p.node is not None:
                self.on[p.node].append(p)
        # key -> domain -> its pods, built once per key: a check per pod over every node
        # would be pods x nodes (15,000 x 5,000 in scheduler_perf's affinity cases).
        self._domains: dict[str, dict[str, list[Pod]]] = {}
        self.spread_counts: dict[str, dict[str, int]] = {}  # see spread_counts()

    def domain(self, node: str | None, key: str) -> str | None:
        n = self.state.nodes.get(node or "")
        return None if n is None else n.labels.get(key)

    def in_domain(self, key: str, value: str) -> list[Pod]:
        """The bound pods, not terminating, on nodes whose label ``key`` is ``value``."""
        domains = self._domains.get(key)
        if domains is None:
            domains = self._domains[key] = defaultdict(list)
            for name, pods in self.on.items():
                d = self.domain(name, key)
                if d is not None:
                    domains[d] += [p for p in pods if not p.terminating]
        return domains.get(value, [])


def verify(
    state: State,
    *,
    expected: Iterable[str] = (),
    rules: Iterable[str] = KUBERNETES_RULES,
    subject: Callable[[Pod], bool] | None = None,
    rtt: RttTable | None = None,
    rebound: Mapping[str, Sequence[str]] | None = None,
) -> Verdict:
    """Check ``state``.

    ``expected``: ``namespace/name`` of the pods that must be bound. ``subject``:
    which pods' own rules are checked (default all; capacity is always checked over
    every pod). ``rtt``: the RTT table for ``max-rtt``. ``rebound``: pod -> every node
    it was seen bound to or named in a ``Scheduled`` Event for, when more than one.
    """
    active = frozenset(rules)
    unknown = active - RULES
    if unknown:
        raise ValueError(f"unknown rule(s): {', '.join(sorted(unknown))}")
    index = _Index(state)
    mine = [p for p in state.pods if subject is None or subject(p)]
    out: list[Violation] = []
    if CAPACITY in active:
        out += _capacity(state, index)
    if BOUND in active:
        out += _bound(state, set(expected))
    if BOUND_ONCE in active:
        keys = {p.key for p in mine}
        for key, where in sorted((rebound or {}).items()):
            if key in keys and len(set(where)) > 1:
                out.append(
                    Violation(
                        BOUND_ONCE, key, where[-1], f"bound or reported bound to {', '.join(where)}"
                    )
                )
    for pod in mine:
        if pod.node is None or pod.node not in state.nodes or not pod.holds:
            continue
        node = state.nodes[pod.node]
        out += _placement(pod, node, state, index, active=active, rtt=rtt)
    if ROOM in active:
        wanted = set(expected)
        pending = [p for p in mine if p.node is None and not p.terminating and p.key not in wanted]
        for pod, fit, what in rooms(pending, state, rules=active, rtt=rtt, index=index):
            out.append(Violation(ROOM, pod.key, fit, f"pending, but {what}"))
    return Verdict(out, len(mine), len(state.nodes), tuple(sorted(active)))


def rooms(
    pending: Iterable[Pod],
    state: State,
    *,
    rules: Iterable[str],
    rtt: RttTable | None = None,
    index: _Index | None = None,
) -> list[tuple[Pod, str, str]]:
    """The ``pending`` pods that have room, each with a node that takes it and why.

    A member of a group with a ``group-max-rtt`` (and an RTT table) of which no
    member is bound has room only with its group (see the module docstring).
    """
    active = frozenset(rules)
    idx = index or _Index(state)
    out: list[tuple[Pod, str, str]] = []
    groups: dict[tuple[str, str], list[Pod]] = defaultdict(list)
    for pod in pending:
        if (
            MAX_RTT in active
            and rtt is not None
            and group_budget(pod) is not None
            and not any(same_group(pod, q) for pods in idx.on.values() for q in pods)
        ):
            groups[(pod.namespace, pod.labels[GROUP_LABEL])].append(pod)
            continue
        fit = next(iter(feasible_nodes(pod, state, rules=active, rtt=rtt, index=idx)), None)
        if fit is not None:
            out.append((pod, fit, "this node takes it under every rule checked"))
    for (_, name), members in sorted(groups.items()):
        assert rtt is not None
        members.sort(key=lambda p: p.name)
        need = min(len(members), _min_available(members[0]) or len(members))
        anchor = _group_room(members[:need], state, rules=active, rtt=rtt)
        if anchor is not None:
            what = (
                f"pod group {name}'s {need} members fit together around this node "
                "under every rule checked"
            )
            out += [(m, anchor, what) for m in members]
    return out


def _min_available(pod: Pod) -> int | None:
    try:
        return int(pod.labels.get(GROUP_MIN_LABEL, ""))
    except ValueError:
        return None


def _group_room(
    members: Sequence[Pod], state: State, *, rules: frozenset[str], rtt: RttTable
) -> str | None:
    """A node around which ``members`` all fit within their budget, placed one by one
    (the first on it, each next on the nearest node that takes it), or None."""
    for anchor in sorted(state.nodes):
        trial = State(state.nodes, list(state.pods), state.namespace_labels)
        used: list[str] = []
        for m in members:
            idx = _Index(trial)
            order = [anchor] if not used else sorted(
                state.nodes, key=lambda n: (rtt(anchor, n) or math.inf, n)
            )  # fmt: skip
            spot = next(
                (
                    # fits() holds m to the budget against the members placed so far.
                    n for n in order
                    if fits(m, state.nodes[n], trial, rules=rules, rtt=rtt, index=idx)
                ),
                None,
            )  # fmt: skip
            if spot is None:
                break
            used.append(spot)
            trial.pods.append(dataclasses.replace(m, node=spot))
        else:
            return anchor
    return None


def _capacity(state: State, index: _Index) -> list[Violation]:
    out = []
    for name, pods in sorted(index.on.items()):
        node = state.nodes.get(name)
        if node is None:
            continue
        cpu = sum(p.cpu_milli for p in pods)
        mem = sum(p.memory for p in pods)
        over = []
        if cpu > node.cpu_milli:
            over.append(f"cpu {cpu}m of {node.cpu_milli}m")
        if mem > node.memory:
            over.append(f"memory {mem / 2**20:.0f}Mi of {node.memory / 2**20:.0f}Mi")
        if len(pods) > node.pods:
            over.append(f"{len(pods)} pods of {node.pods}")
        if over:
            last = max(pods, key=lambda p: (p.bound_at is not None, p.bound_at or 0.0, p.key))
            out.append(
                Violation(
                    CAPACITY,
                    last.key,
                    name,
                    f"requests {', '.join(over)} allocatable "
                    f"({len(pods)} pods on it; the last bound named)",
                )
            )
    return out


def _bound(state: State, expected: set[str]) -> list[Violation]:
    out = []
    by_key = {p.key: p for p in state.pods}
    for key in sorted(expected):
        pod = by_key.get(key)
        if pod is None:
            out.append(Violation(BOUND, key, None, "gone: the workload expects it bound"))
        elif pod.node is None:
            out.append(Violation(BOUND, key, None, "pending: the workload expects it bound"))
        elif pod.node not in state.nodes:
            out.append(Violation(BOUND, key, pod.node, "bound to a node that does not exist"))
    return out


def _placement(
    pod: Pod,
    node: Node,
    state: State,
    index: _Index,
    *,
    active: frozenset[str],
    rtt: RttTable | None,
) -> list[Violation]:
    out = []
    if NODE_SELECTOR in active and not node_selector_ok(pod, node):
        want = ", ".join(f"{k}={v}" for k, v in sorted(pod.node_selector.items()))
        out.append(Violation(NODE_SELECTOR, pod.key, node.name, f"nodeSelector {want} not met"))
    if NODE_AFFINITY in active and not node_affinity_ok(pod, node):
        out.append(
            Violation(
                NODE_AFFINITY, pod.key, node.name, "no required nodeSelectorTerm matches the node"
            )
        )
    if TAINTS in active and (t := untolerated(pod, node)) is not None:
        out.append(
            Violation(
                TAINTS, pod.key, node.name, f"taint {t.key}={t.value}:{t.effect} not tolerated"
            )
        )
    if POD_AFFINITY in active:
        out += _affinity(pod, node, state, index)
    if POD_ANTI_AFFINITY in active:
        out += _anti_affinity(pod, node, state, index)
    if TOPOLOGY_SPREAD in active:
        out += _spread(pod, node, state, index, final=True)
    if MAX_RTT in active and rtt is not None:
        out += _max_rtt(pod, node.name, rtt)
        out += _group_rtt(pod, node.name, rtt, index)
    return out


def _describe(term: Mapping[str, Any]) -> str:
    sel = term.get("labelSelector") or {}
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    parts += [
        f"{e['key']} {e['operator']} {e.get('values') or ''}".strip()
        for e in sel.get("matchExpressions") or ()
    ]
    return f"[{', '.join(parts) or 'everything'}] per {term.get('topologyKey')}"


def _affinity(pod: Pod, node: Node, state: State, index: _Index) -> list[Violation]:
    out = []
    for term in pod.affinity:
        key = term.get("topologyKey", "")
        value = node.labels.get(key)
        if value is None:
            out.append(
                Violation(
                    POD_AFFINITY,
                    pod.key,
                    node.name,
                    f"affinity {_describe(term)}: the node has no label {key}",
                )
            )
            continue
        if any(
            q.key != pod.key and term_matches(term, pod, q, state)
            for q in index.in_domain(key, value)
        ):
            continue
        # Alone: allowed only for the first of its kind, matching its own term.
        earlier = [
            q
            for q in state.pods
            if q.holds
            and q.key != pod.key
            and not q.terminating
            and term_matches(term, pod, q, state)
            and (pod.bound_at is None or q.bound_at is None or q.bound_at < pod.bound_at)
        ]
        if term_matches(term, pod, pod, state) and not earlier:
            continue
        where = f"; matching pods are elsewhere, e.g. {earlier[0].key}" if earlier else ""
        out.append(
            Violation(
                POD_AFFINITY,
                pod.key,
                node.name,
                f"affinity {_describe(term)}: no matching pod in {key}={value}{where}",
            )
        )
    return out


def _anti_affinity(pod: Pod, node: Node, state: State, index: _Index) -> list[Violation]:
    out = []
    for term in pod.anti_affinity:
        key = term.get("topologyKey", "")
        value = node.labels.get(key)
        if value is None:
            continue
        for q in index.in_domain(key, value):
            if q.key != pod.key and term_matches(term, pod, q, state):
                out.append(
                    Violation(
                        POD_ANTI_AFFINITY,
                        pod.key,
                        node.name,
                        f"anti-affinity {_describe(term)}: {q.key} is on {q.node}, "
                        f"also {key}={value}",
                    )
                )
                break
    return out


def _spread_selector(pod: Pod, c: Mapping[str, Any]) -> Mapping[str, Any] | None:
    selector = c.get("labelSelector")
    keys = c.get("matchLabelKeys") or ()
    if selector is None or not keys:
        return selector
    extra = [
        {"key": k, "operator": "In", "values": [pod.labels[k]]} for k in keys if k in pod.labels
    ]
    return {**selector, "matchExpressions": [*(selector.get("matchExpressions") or ()), *extra]}


def spread_counts(pod: Pod, c: Mapping[str, Any], state: State, index: _Index) -> dict[str, int]:
    """Matching pods per eligible domain of constraint ``c`` (every eligible domain present).

    The same for every pod that asks the same of the same namespace (a workload's pods
    all do): computed once per such question, as a pass over every node per pod would be
    pods x nodes."""
    hard = [k["topologyKey"] for k in pod.spread if k.get("whenUnsatisfiable") == "DoNotSchedule"]
    key = c["topologyKey"]
    honour_affinity = (c.get("nodeAffinityPolicy") or "Honor") == "Honor"
    honour_taints = (c.get("nodeTaintsPolicy") or "Ignore") == "Honor"
    selector = _spread_selector(pod, c)
    question = json.dumps(
        [
            pod.namespace, selector, key, hard,
            (pod.node_selector, pod.node_terms) if honour_affinity else None,
            pod.tolerations if honour_taints else None,
        ],
        sort_keys=True,
        default=list,
    )  # fmt: skip
    known = index.spread_counts.get(question)
    if known is not None:
        return dict(known)
    counts: dict[str, int] = {}
    for node in state.nodes.values():
        if not all(k in node.labels for k in hard) or key not in node.labels:
            continue
        if honour_affinity and not (node_selector_ok(pod, node) and node_affinity_ok(pod, node)):
            continue
        if honour_taints and untolerated(pod, node) is not None:
            continue
        value = node.labels[key]
        n = sum(
            1
            for q in index.on.get(node.name, ())
            if q.namespace == pod.namespace
            and not q.terminating
            and selector_matches(selector, q.labels)
        )
        counts[value] = counts.get(value, 0) + n
    index.spread_counts[question] = dict(counts)
    return counts


def _spread(pod: Pod, node: Node, state: State, index: _Index, *, final: bool) -> list[Violation]:
    """``final``: ``pod`` is bound on ``node`` and counted; otherwise it would be added."""
    out = []
    for c in pod.spread:
        if c.get("whenUnsatisfiable") != "DoNotSchedule":
            continue
        key, skew = c["topologyKey"], int(c.get("maxSkew", 1))
        value = node.labels.get(key)
        if value is None:
            out.append(
                Violation(
                    TOPOLOGY_SPREAD,
                    pod.key,
                    node.name,
                    f"spread per {key}: the node has no label {key}",
                )
            )
            continue
        counts = spread_counts(pod, c, state, index)
        if value not in counts:
            out.append(
                Violation(
                    TOPOLOGY_SPREAD,
                    pod.key,
                    node.name,
                    f"spread per {key}: the node is not eligible for the pod",
                )
            )
            continue
        least = min(counts.values())
        if len(counts) < int(c.get("minDomains") or 1):
            least = 0
        here = counts[value]
        if not final and selector_matches(_spread_selector(pod, c), pod.labels):
            here += 1
        if here - least > skew:
            spread = ", ".join(f"{d} {n}" for d, n in sorted(counts.items()))
            out.append(
                Violation(
                    TOPOLOGY_SPREAD,
                    pod.key,
                    node.name,
                    f"spread per {key}: {key}={value} holds {here} matching pods, "
                    f"the least eligible domain {least} (maxSkew {skew}; {spread})",
                )
            )
    return out


def _max_rtt(pod: Pod, node: str, rtt: RttTable) -> list[Violation]:
    text = pod.annotations.get(MAX_RTT_ANNOTATION)
    if not text:
        return []
    out = []
    for place, limit in parse_max_rtt(text):
        ms = rtt(node, place)
        if ms is None:
            out.append(
                Violation(MAX_RTT, pod.key, node, f"RTT to {place} unknown (limit {limit:g} ms)")
            )
        elif ms > limit:
            out.append(
                Violation(MAX_RTT, pod.key, node, f"RTT to {place} {ms:g} ms, limit {limit:g} ms")
            )
    return out


def _group_rtt(pod: Pod, node: str, rtt: RttTable, index: _Index) -> list[Violation]:
    """``group-max-rtt`` between ``node`` and each bound member of the pod's group."""
    budget = group_budget(pod)
    if budget is None:
        return []
    out = []
    for other in (q for pods in index.on.values() for q in pods if same_group(pod, q)):
        assert other.node is not None
        ms = rtt(node, other.node)
        if ms is None or ms > budget:
            what = "unknown" if ms is None else f"{ms:g} ms"
            out.append(
                Violation(
                    MAX_RTT, pod.key, node,
                    f"RTT to {other.node} (member {other.name}) {what}, "
                    f"group-max-rtt {budget:g} ms",
                )
            )  # fmt: skip
    return out


def fits(
    pod: Pod,
    node: Node,
    state: State,
    *,
    rules: Iterable[str],
    rtt: RttTable | None = None,
    index: _Index | None = None,
) -> bool:
    """Whether ``node`` would take ``pod`` (not bound) now, under ``rules``."""
    active = frozenset(rules)
    idx = index or _Index(state)
    if CAPACITY in active:
        here = idx.on.get(node.name, [])
        if (
            sum(p.cpu_milli for p in here) + pod.cpu_milli > node.cpu_milli
            or sum(p.memory for p in here) + pod.memory > node.memory
            or len(here) + 1 > node.pods
        ):
            return False
    if NODE_SELECTOR in active and not node_selector_ok(pod, node):
        return False
    if NODE_AFFINITY in active and not node_affinity_ok(pod, node):
        return False
    if TAINTS in active and untolerated(pod, node) is not None:
        return False
    if (
        MAX_RTT in active
        and rtt is not None
        and (_max_rtt(pod, node.name, rtt) or _group_rtt(pod, node.name, rtt, idx))
    ):
        return False
    placed = dataclasses.replace(pod, node=node.name)
    if POD_ANTI_AFFINITY in active:
        if _anti_affinity(placed, node, state, idx):
            return False
        # Existing pods' anti-affinity toward it.
        for q in (q for pods in idx.on.values() for q in pods if q.anti_affinity):
            qn = state.nodes.get(q.node or "")
            for term in q.anti_affinity if qn is not None else ():
                key = term.get("topologyKey", "")
                value = qn.labels.get(key) if qn is not None else None
                if (
                    value is not None
                    and node.labels.get(key) == value
                    and term_matches(term, q, pod, state)
                ):
                    return False
    if POD_AFFINITY in active and _affinity(placed, node, state, idx):
        return False
    return not (TOPOLOGY_SPREAD in active and _spread(pod, node, state, idx, final=False))


def feasible_nodes(
    pod: Pod,
    state: State,
    *,
    rules: Iterable[str],
    rtt: RttTable | None = None,
    index: _Index | None = None,
) -> Iterable[str]:
    """The nodes that would take ``pod`` now, in name order."""
    active = frozenset(rules)
    idx = index or _Index(state)
    for name in sorted(state.nodes):
        if fits(pod, state.nodes[name], state, rules=active, rtt=rtt, index=idx):
            yield name


# ---- from a live cluster ------------------------------------------------------------------------


async def snapshot(kc: KubeClient, *, bound_at: Mapping[str, float] | None = None) -> State:
    """Every node, pod and namespace as the apiserver holds them now (``kc``: a KubeClient)."""
    nodes = await _list_all(kc, "/api/v1/nodes")
    pods = await _list_all(kc, "/api/v1/pods")
    namespaces = await _list_all(kc, "/api/v1/namespaces")
    return state_from_api(nodes, pods, bound_at=bound_at, namespaces=namespaces)


async def _list_all(kc: KubeClient, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        params: dict[str, str | int] = {"limit": 2000}
        if token:
            params["continue"] = token
        page = await kc.get(path, **params)
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return items
