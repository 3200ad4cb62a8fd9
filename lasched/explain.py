"""Why a pod is where it is, or why it waits: the answer behind ``lasched explain``.

:func:`explain` asks the scheduler's own plugins about one pod, now: the
profile's PreEnqueue, every PreFilter, every Filter on every node (not only up
to the first rejection, and not only the share of nodes a cycle samples), and
for the feasible nodes PreScore and Score. It reads the queue (where the pod
waits, since when, how often it was tried), the waiting room (Permit) and the
gang state (group, placed of required, holder, deadline).

Invariant: explaining changes nothing. It runs on a fresh ``CycleState``,
never assumes, reserves or nominates, records no metric, and moves no pod. It
is one synchronous call on the event loop, so, as in a scheduling cycle, no
informer event changes the cache or the queue while it runs. For a pod that
is already bound, its own node is filtered and scored as if the pod were not
on it (a copy of that node without the pod): the scores then say which node
would win now, a *re-evaluation*, not a record of the decision made then
(the ``Scheduled`` event keeps that).

The answer is plain JSON (camelCase keys) so the HTTP endpoint can send it
as it is; every time is a number of seconds relative to now, and Unix
wall-clock times are given beside them where a person may want a date.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import Code, CycleState, Status
from lasched.framework.runtime import Framework
from lasched.framework.waiting import WaitingRoom
from lasched.latency.cache import LatencyCache
from lasched.model.pod import PodInfo, PodKey
from lasched.plugins.coscheduling import Coscheduling
from lasched.plugins.latency import LatencyFilter
from lasched.profiles import Profile
from lasched.queue.queue import SchedulingQueue

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Sources:
    """What explaining reads, the scheduler's own live parts (read, never changed)."""

    pod: Callable[[PodKey], PodInfo | None]
    """The pod as the informer last saw it (None: unknown, or finished)."""
    profiles: Mapping[str, Profile]
    cache: SchedulerCache
    queue: SchedulingQueue
    waiting: WaitingRoom
    gang: Coscheduling
    latency_filter: LatencyFilter


def explain(s: Sources, key: PodKey, *, now: float | None = None) -> JSON | None:
    """What lasched knows and thinks of pod ``key`` (``namespace/name``); None if unknown.

    ``now`` is the scheduler's monotonic clock (``time.monotonic()`` by default).
    """
    pod = s.pod(key)
    if pod is None:
        return None
    mono = time.monotonic() if now is None else now
    wall = time.time()
    profile = s.profiles.get(pod.scheduler_name)
    node = pod.node_name or s.cache.node_of(pod.key) or ""
    out: JSON = {
        "pod": pod.key,
        "uid": pod.uid,
        "schedulerName": pod.scheduler_name,
        "profile": profile.name if profile is not None else None,
        "priority": pod.priority,
        "state": _state(s, pod),
        "node": node or None,
        "nominatedNode": s.cache.nominated_node(pod.key) or pod.nominated_node_name or None,
        "problems": [
            p
            for p in (
                pod.priority_error,
                pod.group_error,
                pod.latency_error,
                pod.affinity_error,
                pod.spread_error,
            )
            if p
        ],
        "queue": _queue(s, pod.key, mono, wall),
        "permit": _permit(s, pod.key, mono),
        "gang": _gang(s, pod, mono),
        "latency": None,
        "preEnqueue": None,
        "preFilter": [],
        "filter": None,
        "scores": None,
        "now": wall,
    }
    if profile is None:
        return out
    fw = profile.framework
    if node and pod.latency is not None:
        out["latency"] = s.latency_filter.explain(pod, node) or None
    out["preEnqueue"] = _pre_enqueue(fw, pod)
    state = CycleState()
    pre, skip, blocked = _pre_filters(fw, state, pod)
    out["preFilter"] = pre
    nodes = _candidate_nodes(s, pod, node)
    verdicts, feasible = _filters(
        fw, state, pod, nodes, skip=skip | blocked, latency=s.latency_filter
    )
    out["filter"] = {
        "nodes": verdicts,
        "evaluated": len(nodes),
        "feasible": len(feasible),
        "summary": _summary(len(nodes), verdicts),
        "stoppedAtPreFilter": bool(blocked),
    }
    if feasible and not blocked:
        out["scores"] = _scores(fw, state, pod, feasible, reevaluation=bool(node), current=node)
    return out


def latency_matrix(
    cache: LatencyCache,
    *,
    nodes: Iterable[str],
    endpoints: Iterable[str],
    agents: list[str],
    topology: JSON | None = None,
) -> JSON:
    """Every measured pair with its freshness, as ``/debug/latency`` serves it.

    ``nodes``: the nodes the scheduler knows; ``endpoints``: the configured
    latency endpoints' names; ``agents``: the nodes with a connected agent;
    ``topology``: the inferred sites (``SiteTask.describe``), None when off.
    """
    pairs = [
        {
            "src": src,
            "dst": dst,
            "ms": round(rtt.ms, 3),
            "p90Ms": None if rtt.p90_ms is None else round(rtt.p90_ms, 3),
            "loss": rtt.loss,
            "ageSeconds": round(rtt.age_s, 3),
            "stale": rtt.stale,
            "source": rtt.source,
        }
        for src, dst, rtt in cache.pairs()
    ]
    return {
        "ttlSeconds": cache.ttl,
        "nodes": sorted(nodes),
        "endpoints": list(endpoints),
        "agents": agents,
        "pairs": pairs,
        "topology": topology,
        "now": time.time(),
    }


# ---- pieces -----------------------------------------------------------------


def _state(s: Sources, pod: PodInfo) -> str:
    if pod.deleting:
        return "deleting"
    if pod.node_name:
        return "bound"
    if s.waiting.get(pod.key) is not None:
        return "waiting"  # reserved, held at Permit
    if s.cache.is_assumed(pod.key):
        return "binding"
    if pod.scheduler_name not in s.profiles:
        return "not-ours"
    return "pending"


def _queue(s: Sources, key: PodKey, mono: float, wall: float) -> JSON | None:
    qp = s.queue.get(key)
    if qp is None:
        return None
    backoff = qp.backoff_until - mono if qp.backoff_until > mono else None
    since = mono - qp.unschedulable_since if qp.unschedulable_since is not None else None
    return {
        "where": qp.where,
        "attempts": qp.attempts,
        "reason": qp.reason or None,
        "inQueueSeconds": round(mono - qp.first_seen, 3),
        "backoffRemainingSeconds": None if backoff is None else round(backoff, 3),
        "backoffUntil": None if backoff is None else wall + backoff,
        "unschedulableForSeconds": None if since is None else round(since, 3),
        "unschedulableSince": None if since is None else wall - since,
    }


def _permit(s: Sources, key: PodKey, mono: float) -> JSON | None:
    wp = s.waiting.get(key)
    if wp is None:
        return None
    return {
        "node": wp.node,
        "waitingFor": [
            {"plugin": p, "deadlineInSeconds": round(d - mono, 3)}
            for p, d in sorted(wp.pending.items())
        ],
    }


def _gang(s: Sources, pod: PodInfo, mono: float) -> JSON | None:
    gang = s.gang
    g = gang.group_of(pod)
    if g is None:
        return None
    members = []
    for key, member in sorted(g.members.items()):
        qp = s.queue.get(key)
        on = member.node_name or s.cache.node_of(key)
        where = "bound" if member.node_name else "reserved" if on else qp.where if qp else "?"
        members.append({"pod": key, "node": on or None, "state": where})
    deadline = g.deadline - mono if g.deadline is not None else None
    backoff = g.backoff_until - mono if g.backoff_until > mono else None
    return {
        "group": g.key,
        "members": members,
        "placed": gang.placed(g),
        "required": gang.required(g),
        "allOrNothing": gang.all_or_nothing(g),
        "sizeSource": gang.size_source(g),
        "permitted": g.permitted,
        "holder": gang.holder,
        "deadlineInSeconds": None if deadline is None else round(deadline, 3),
        "backoffRemainingSeconds": None if backoff is None else round(backoff, 3),
        "failedRounds": g.failures,
    }


def _status(st: Status, plugin: str) -> JSON:
    return {"plugin": plugin, "code": st.code.value, "reason": st.message or None}


def _pre_enqueue(fw: Framework, pod: PodInfo) -> JSON:
    """The first PreEnqueue plugin that gates the pod, or success."""
    for p in fw.pre_enqueue:
        st = p.pre_enqueue(pod)
        if not st.ok:
            return _status(st, p.name)
    return {"plugin": None, "code": Code.SUCCESS.value, "reason": None}


def _pre_filters(
    fw: Framework, state: CycleState, pod: PodInfo
) -> tuple[list[JSON], set[str], set[str]]:
    """Every PreFilter's verdict (a cycle stops at the first rejection; this goes on).

    Returns the verdicts, the plugins whose Filter is skipped (SKIP) and those
    whose Filter cannot run because their own PreFilter rejected the pod.
    """
    verdicts: list[JSON] = []
    skip: set[str] = set()
    blocked: set[str] = set()
    for p in fw.pre_filters:
        st = p.pre_filter(state, pod)
        verdicts.append(_status(st, p.name))
        if st.code is Code.SKIP:
            skip.add(p.name)
        elif st.code is not Code.SUCCESS:
            blocked.add(p.name)
    return verdicts, skip, blocked


def _candidate_nodes(s: Sources, pod: PodInfo, node: str) -> list[NodeInfo]:
    """Every node; the pod's own node (if placed) as a copy without the pod."""
    out = []
    for ni in s.cache.node_infos():
        out.append(_without(ni, pod.key) if node and ni.name == node else ni)
    return out


def _without(ni: NodeInfo, key: PodKey) -> NodeInfo:
    copy = NodeInfo(ni.node)
    for k, p in ni.pods.items():
        if k != key:
            copy.add_pod(p)
    copy.nominated = {k: p for k, p in ni.nominated.items() if k != key}
    return copy


def _filters(
    fw: Framework,
    state: CycleState,
    pod: PodInfo,
    nodes: Sequence[NodeInfo],
    *,
    skip: set[str],
    latency: LatencyFilter,
) -> tuple[list[JSON], list[NodeInfo]]:
    """Each node's rejections by every Filter (the first is what a cycle reports)."""
    verdicts: list[JSON] = []
    feasible: list[NodeInfo] = []
    filters = [p for p in fw.filters if p.name not in skip]
    for ni in nodes:
        rejections = []
        for p in filters:
            st = p.filter(state, pod, ni)
            if st.code is Code.SUCCESS:
                continue
            entry = _status(st, p.name)
            if p is latency:
                entry["detail"] = latency.why_not(state, pod, ni.name) or None
            rejections.append(entry)
        verdicts.append({"node": ni.name, "feasible": not rejections, "rejections": rejections})
        if not rejections:
            feasible.append(ni)
    # A tier judges the feasible nodes together (a cycle's FilterFeasible step).
    dropped: dict[str, Status] = {}
    kept = fw.narrow(state, pod, feasible, dropped, skip=skip)
    if kept is None:
        return verdicts, feasible
    for v in verdicts:
        if (tier := dropped.get(v["node"])) is not None:
            v["feasible"] = False
            v["rejections"].append(_status(tier, tier.plugin))
    return verdicts, [feasible[i] for i in kept]


def _summary(total: int, verdicts: list[JSON]) -> str:
    """kube-scheduler's sentence, from each node's first rejection."""
    counts: Counter[str] = Counter()
    for v in verdicts:
        if v["rejections"]:
            first = v["rejections"][0]
            counts[first["reason"] or first["code"]] += 1
    feasible = sum(1 for v in verdicts if v["feasible"])
    if not counts:
        return f"{feasible}/{total} nodes are available."
    parts = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
    return f"{feasible}/{total} nodes are available: {parts}."


def _scores(
    fw: Framework,
    state: CycleState,
    pod: PodInfo,
    nodes: list[NodeInfo],
    *,
    reevaluation: bool,
    current: str,
) -> JSON:
    """PreScore, then each Score plugin's normalized score and weight, per node."""
    skipped = []
    for p in fw.pre_scores:
        st = p.pre_score(state, pod, nodes)
        if st.code is Code.SKIP:
            skipped.append(p.name)
    per_node: dict[str, dict[str, int]] = {ni.name: {} for ni in nodes}
    weights: dict[str, int] = {}
    for plugin, weight in fw.scores:
        if plugin.name in skipped:
            continue
        raw = [plugin.score(state, pod, ni) for ni in nodes]
        plugin.normalize(state, pod, raw)
        weights[plugin.name] = weight
        for ni, score in zip(nodes, raw, strict=True):
            per_node[ni.name][plugin.name] = score
    totals = {
        name: sum(score * weights[p] for p, score in scores.items())
        for name, scores in per_node.items()
    }
    order = sorted(totals, key=lambda name: (-totals[name], name))
    rows = [{"node": n, "total": totals[n], "plugins": per_node[n]} for n in order]
    best = totals[order[0]] if order else 0
    return {
        "reevaluation": reevaluation,
        "currentNode": current or None,
        "weights": weights,
        "skipped": skipped,
        "nodes": rows,
        "best": [n for n in order if totals[n] == best],
    }
