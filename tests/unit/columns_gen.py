"""Seeded random clusters and pods for the column tests: the shapes the column forms
must judge exactly as the per-node ones do (taints, cordons, labels, selectors,
affinity terms, nominated pods, full nodes, request-less pods)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import SUCCESS, CycleState, FilterColumnsPlugin, Status
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from tests.unit.factories import node_json, pod_json

TAINTS = [
    {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
    {"key": "dedicated", "value": "db", "effect": "NoExecute"},
    {"key": "spot", "value": "", "effect": "PreferNoSchedule"},
    {"key": "edge", "value": "true", "effect": "PreferNoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "value": "", "effect": "NoSchedule"},
]
TOLERATIONS: list[dict[str, Any]] = [
    {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
    {"key": "dedicated", "operator": "Exists"},
    {"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"},
    {"operator": "Exists"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "edge", "value": "true"},
]
LABELS = {
    "topology.kubernetes.io/zone": ["z0", "z1", "z2"],
    "tier": ["1", "5", "10", "x", ""],
    "disk": ["ssd", "hdd"],
}
OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "Bogus"]


def node(rng: random.Random, i: int, *, roomy: bool = False) -> Node:
    """A node; a ``roomy`` one is large and seldom cordoned or tainted."""
    labels = {k: rng.choice(v) for k, v in LABELS.items() if rng.random() < 0.7}
    labels["kubernetes.io/hostname"] = f"n{i}"
    odd = 0.02 if roomy else 0.07
    return Node(
        node_json(
            f"n{i}",
            cpu=rng.choice(["8", "16"] if roomy else ["0", "500m", "1", "2", "4", "8"]),
            memory=rng.choice(["32Gi"] if roomy else ["0", "512Mi", "1Gi", "4Gi", "16Gi"]),
            pods=rng.choice(["110"] if roomy else ["0", "1", "2", "4", "110"]),
            ready=rng.random() > odd,
            unschedulable=rng.random() < odd,
            taints=rng.sample(
                TAINTS, k=0 if roomy and rng.random() < 0.9 else rng.choice([0, 1, 2])
            ),
            labels=labels,
            rv=str(rng.randrange(1000)),
        )
    )


def requirement(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.15:
        names = [f"n{rng.randrange(60)}" for _ in range(rng.randrange(1, 4))]
        return {
            "key": rng.choice(["metadata.name", "metadata.name", "other"]),
            "operator": rng.choice(["In", "NotIn", "Exists"]),
            "values": names,
        }
    key = rng.choice([*LABELS, "missing"])
    op = rng.choice(OPERATORS)
    pool = [*LABELS.get(key, ["a"]), "3", "7"]
    req: dict[str, Any] = {"key": key, "operator": op}
    if op not in ("Exists", "DoesNotExist") or rng.random() < 0.2:
        req["values"] = rng.sample(pool, k=rng.choice([1, 1, 2]))
    return req


def term(rng: random.Random) -> dict[str, Any]:
    t: dict[str, Any] = {}
    exprs = [requirement(rng) for _ in range(rng.choice([0, 1, 1, 2]))]
    fields = [r for r in exprs if r["key"] in ("metadata.name", "other")]
    exprs = [r for r in exprs if r not in fields]
    if exprs:
        t["matchExpressions"] = exprs
    if fields:
        t["matchFields"] = fields
    return t


def pod(rng: random.Random, name: str, *, node: str = "", priority: int = 0) -> PodInfo:
    cpu = rng.choice([None, "100m", "500m", "1", "3"])
    memory = rng.choice([None, "128Mi", "1Gi", "6Gi"])
    spec: dict[str, Any] = {}
    if not node:
        if rng.random() < 0.4:
            spec["tolerations"] = rng.sample(TOLERATIONS, k=rng.choice([1, 2]))
        if rng.random() < 0.25:
            key = rng.choice(list(LABELS))
            spec["nodeSelector"] = {key: rng.choice([*LABELS[key], "nope", None])}
        affinity: dict[str, Any] = {}
        if rng.random() < 0.3:
            affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
                "nodeSelectorTerms": [term(rng) for _ in range(rng.choice([1, 1, 2]))]
            }
        if rng.random() < 0.3:
            affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
                {"weight": rng.choice([1, 5, 50, 100]), "preference": term(rng)}
                for _ in range(rng.choice([1, 2]))
            ]
        if affinity:
            spec["affinity"] = {"nodeAffinity": affinity}
        if rng.random() < 0.05:
            spec["containers"] = [
                {
                    "name": "c",
                    "resources": {"requests": {"cpu": cpu or "0", "ephemeral-storage": "1Gi"}},
                    "ports": [{"containerPort": 80, "hostPort": 8080}],
                }
            ]
    return PodInfo(pod_json(name, cpu=cpu, memory=memory, node=node, priority=priority, **spec))


def cluster(rng: random.Random, nodes: int, *, roomy: float = 0.0) -> SchedulerCache:
    """A cache with ``nodes`` nodes (a share ``roomy`` of them roomy), some pods on them
    and a few nominated preemptors."""
    cache = SchedulerCache()
    for i in range(nodes):
        cache.add_node(node(rng, i, roomy=rng.random() < roomy))
    for i in range(rng.randrange(2 * nodes)):
        cache.add_pod(pod(rng, f"bound-{i}", node=f"n{rng.randrange(nodes)}"))
    for i in range(rng.randrange(4)):
        preemptor = pod(rng, f"nominated-{i}", priority=rng.randrange(3))
        cache.nominate(preemptor, f"n{rng.randrange(nodes)}")
    return cache


def rows_of(nodes: Sequence[NodeInfo]) -> np.ndarray[Any, np.dtype[np.intp]]:
    return np.array([ni.row for ni in nodes], dtype=np.intp)


def column_statuses(
    plugin: FilterColumnsPlugin,
    pod: PodInfo,
    cache: SchedulerCache,
    nodes: list[NodeInfo],
    state: CycleState | None = None,
) -> list[Status] | None:
    """What filter_columns says of each node, its -1s asked of filter() as the runtime does
    (with ``state``, the cycle's, or a fresh one)."""
    state = CycleState() if state is None else state
    verdicts = plugin.filter_columns(state, pod, cache.columns, rows_of(nodes))
    if verdicts is None:
        return None
    codes = verdicts.codes.tolist()
    assert len(codes) == len(nodes)
    if verdicts.settled:
        assert -1 not in codes
    return [
        SUCCESS
        if code == 0
        else plugin.filter(state, pod, ni)
        if code == -1
        else verdicts.statuses[code - 1]
        for code, ni in zip(codes, nodes, strict=True)
    ]
