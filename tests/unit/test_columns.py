"""The cache's node columns stay in step with its NodeInfos through every change.

Each test compares the columns with what a node's NodeInfo says now: the
free room, the scores' loads, readiness and cordon, the taint set, the
nominated count, any label column, after nodes come, change and go and pods
are added, removed, assumed, forgotten and nominated, and after a rebuild.
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.cache.columns import (
    ALLOC_CPU,
    ALLOC_MEMORY,
    CORDONED,
    CPU,
    EPHEMERAL,
    MEMORY,
    NAME_KEY,
    NONZERO_CPU,
    NONZERO_MEMORY,
    NOT_READY,
    PODS,
    NodeColumns,
)
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from tests.unit import columns_gen
from tests.unit.factories import make_node, make_pod, node_json

LABEL_KEYS = ["topology.kubernetes.io/zone", "tier", NAME_KEY]


def check(cache: SchedulerCache) -> None:
    """Every NodeInfo the cache holds owns a row that says what the NodeInfo says."""
    cols = cache.columns
    rows = set()
    for name, ni in cache._nodes.items():
        assert ni.columns is cols, name
        assert ni.row >= 0 and ni.row not in rows, name
        rows.add(ni.row)
        check_row(cols, ni)
    assert cols.rows_used == len(rows)
    assert cols.nominated_rows == sum(1 for ni in cache._nodes.values() if ni.nominated)
    assert cols.irregular == 0


def check_row(cols: NodeColumns, ni: NodeInfo) -> None:
    r, n, used = ni.row, ni.node, ni.requested
    assert bool(cols.exists[r]) is (n is not None)
    alloc = n.allocatable if n is not None else None
    a = (
        (alloc.pods, alloc.milli_cpu, alloc.memory, alloc.ephemeral_storage)
        if alloc is not None
        else (0, 0, 0, 0)
    )
    free = cols.free[:, r].tolist()
    assert free[PODS] == a[0] - used.pods
    assert free[CPU] == a[1] - used.milli_cpu
    assert free[MEMORY] == a[2] - used.memory
    assert free[EPHEMERAL] == a[3] - used.ephemeral_storage
    load = cols.load[:, r].tolist()
    assert load[ALLOC_CPU] == a[1] and load[ALLOC_MEMORY] == a[2]
    assert load[NONZERO_CPU] == ni.non_zero_cpu and load[NONZERO_MEMORY] == ni.non_zero_mem
    assert int(cols.nominated[r]) == len(ni.nominated)
    if n is None:
        return
    condition = int(cols.condition[r])
    assert bool(condition & NOT_READY) is (not n.ready)
    assert bool(condition & CORDONED) is n.unschedulable
    taints = cols.taint_sets[int(cols.taints[r])]
    assert [(t.key, t.value, t.effect) for t in taints] == [
        (t.key, t.value, t.effect) for t in n.taints
    ]
    for key in LABEL_KEYS:
        column = cols.label(key)
        assert column is not None
        want = n.name if key == NAME_KEY else n.labels.get(key)
        assert cols.label_values(key)[int(column[r])] == want


def test_rows_follow_nodes_and_pods() -> None:
    """Add, update, remove a node; add, remove, assume, forget and nominate pods."""
    cache = SchedulerCache()
    cache.add_node(make_node("a", cpu="4", labels={"tier": "1"}))
    cache.add_node(make_node("b", cpu="2", unschedulable=True))
    check(cache)
    cache.add_pod(make_pod("x", cpu="1", memory="1Gi", node="a"))
    check(cache)
    assumed = cache.assume(make_pod("y", cpu="500m"), "b")
    check(cache)
    cache.forget(assumed)
    check(cache)
    cache.nominate(make_pod("p", cpu="1"), "a")
    check(cache)
    taint = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    cache.update_node(make_node("a", cpu="8", ready=False, taints=taint, labels={"tier": "5"}))
    check(cache)
    cache.remove_node("a")  # its pod stays counted, the node object goes
    check(cache)
    assert not cache.columns.exists[cache._nodes["a"].row]
    cache.remove_pod(make_pod("x").key)
    cache.clear_nomination(make_pod("p").key)
    check(cache)
    cache.remove_node("b")
    assert "b" not in cache._nodes
    check(cache)


def test_a_pod_before_its_node() -> None:
    """A pod whose node is not known yet gets a row without a node; the node fills it."""
    cache = SchedulerCache()
    cache.add_pod(make_pod("x", cpu="1", node="late"))
    check(cache)
    cache.add_node(make_node("late"))
    check(cache)


def test_layout_changes_when_rows_or_nodes_come_and_go() -> None:
    """A view of a node list is rebuilt after a node is added, removed, or loses its node."""
    cache = SchedulerCache()
    cache.add_node(make_node("a"))
    before = cache.columns.layout
    cache.add_pod(make_pod("x", node="a"))
    cache.update_node(make_node("a", cpu="2"))
    assert cache.columns.layout == before  # pods and updates leave the rows where they are
    cache.remove_node("a")
    assert cache.columns.layout != before


def test_rebuild_starts_the_columns_afresh() -> None:
    """After a rebuild only the new NodeInfos have rows; the old ones have none."""
    cache = SchedulerCache()
    cache.add_node(make_node("a"))
    old = cache._nodes["a"]
    assumed = cache.assume(make_pod("y", cpu="1"), "a")
    cache.rebuild([make_node("a"), make_node("b")], [])
    assert old.columns is None and old.row == -1
    assert cache.is_assumed(assumed.key)
    check(cache)


def test_rows_are_reused_and_columns_grow() -> None:
    """Freed rows are taken again; more nodes than rows grow the columns."""
    cache = SchedulerCache()
    for i in range(200):
        cache.add_node(make_node(f"n{i}", labels={"tier": str(i % 3)}))
    cache.columns.label("tier")
    for i in range(0, 200, 2):
        cache.remove_node(f"n{i}")
    for i in range(300, 400):
        cache.add_node(make_node(f"n{i}", labels={"tier": "9"}))
    assert cache.columns.capacity >= 200
    assert cache.columns.rows_used == 200
    check(cache)


def test_irregular_values_are_counted() -> None:
    """A quantity beyond exact arithmetic marks the row until it goes."""
    cache = SchedulerCache()
    cache.add_node(Node(node_json("big", memory="100Pi")))  # 1.1e17 bytes
    assert cache.columns.irregular == 1
    cache.update_node(make_node("big"))
    assert cache.columns.irregular == 0
    cache.add_pod(make_pod("x", memory="100Pi", node="big"))
    assert cache.columns.irregular == 1
    cache.remove_pod(make_pod("x").key)
    assert cache.columns.irregular == 0


def test_interned_values_start_afresh_when_they_pile_up() -> None:
    """A label that takes ever new values re-interns from the nodes held now."""
    cache = SchedulerCache()
    cache.add_node(make_node("a", labels={"tier": "0"}))
    cols = cache.columns
    cols.label("tier")
    cols.derived["x"] = 1
    epoch = cols.epoch
    for i in range(3000):
        cache.update_node(make_node("a", labels={"tier": str(i)}))
    assert cols.epoch > epoch and "x" not in cols.derived
    assert len(cols.label_values("tier")) < 2000
    check(cache)


@settings(max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), ops=st.integers(1, 120))
def test_columns_follow_any_sequence_of_changes(seed: int, ops: int) -> None:
    """Random changes of every kind, checked after each one."""
    rng = random.Random(seed)
    cache = SchedulerCache()
    pods: list[PodInfo] = []
    assumed: list[PodInfo] = []
    for step in range(ops):
        name = f"n{rng.randrange(12)}"
        what = rng.randrange(9)
        if what <= 1:
            cache.add_node(columns_gen.node(rng, int(name[1:])))
        elif what == 2:
            cache.remove_node(name)
        elif what == 3:
            p = columns_gen.pod(rng, f"p{step}", node=name)
            cache.add_pod(p)
            pods.append(p)
        elif what == 4 and pods:
            cache.remove_pod(pods.pop(rng.randrange(len(pods))).key)
        elif what == 5 and cache.node_info(name) is not None:
            assumed.append(cache.assume(columns_gen.pod(rng, f"a{step}"), name))
        elif what == 6 and assumed:
            cache.forget(assumed.pop(rng.randrange(len(assumed))))
        elif what == 7:
            cache.nominate(columns_gen.pod(rng, f"m{step % 5}"), name)
        elif what == 8:
            cache.clear_nomination(make_pod(f"m{step % 5}").key)
        check(cache)
    nodes = [n for ni in cache.node_infos() if (n := ni.node) is not None]
    cache.rebuild(nodes, pods)
    check(cache)
    assert np.all(cache.columns.nominated >= 0)
