"""Per-node state in columns, one row per node the cache holds, for whole-cluster math.

The scheduling cycle's common filters and scores read a few numbers of each
node (allocatable, requested, pod count, cordon, readiness, taints, some
labels). Read from :class:`~lasched.cache.cache.NodeInfo` objects one node at
a time, that is a Python loop over hundreds of nodes per pod; kept here in
numpy arrays, a plugin judges every candidate node with a few array
operations per cycle (``filter_columns`` / ``score_columns`` in
lasched/framework/interface.py).

The cache keeps the columns in step: every NodeInfo it holds owns a row
(``NodeInfo.row``) and writes its changes through (its node set, a pod
added or removed, assumed or forgotten) and the cache writes nominations, so
reading the columns costs nothing per node. A NodeInfo the cache does not
hold (preemption's simulations, the extender's) has no row, and the
framework judges it one node at a time as before.

Values that identify something (a node's taint set, a label's value) are
interned to small integers, so that a verdict computed once per distinct
taint set or label value stands for every node that has it.

Integers stay exact: int64 (and float64, where the per-node form divides)
give exactly what Python's integers give only for values in ``[0, 2**52)``,
so a row holding another (a malformed quantity) counts in
:attr:`NodeColumns.irregular`, and the plugins judge one node at a time
while any does.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lasched.model.node import Node, Taint
from lasched.model.resources import Resources

LIMIT = 1 << 52
"""Values in ``[0, LIMIT)`` (and sums of two) are exact in int64 and float64 alike."""

NAME_KEY = "\x00metadata.name"
"""The pseudo label holding the node's name (matchFields); no label key holds NUL."""

MAX_LABEL_KEYS = 256
"""Label keys kept as columns; a selector on more keys is judged node by node."""

# Rows of the ``free`` block: what a pod may still take (allocatable minus requested).
PODS, CPU, MEMORY, EPHEMERAL = 0, 1, 2, 3
# Rows of the ``load`` block: what the scores read.
ALLOC_CPU, ALLOC_MEMORY, NONZERO_CPU, NONZERO_MEMORY = 0, 1, 2, 3
# Bits of ``condition``.
NOT_READY, CORDONED = 1, 2

_INITIAL_ROWS = 64
_SLACK = 1024  # interned values beyond 4 per row (plus this) start the tables afresh

Ints = NDArray[np.int64]
Ids = NDArray[np.int32]
TaintKey = tuple[tuple[str, str, str], ...]


def regular(*values: int) -> bool:
    """May every value take part in column math? (Within ``[0, LIMIT)``: requests and
    allocatable always are, save for a malformed quantity.)"""
    return all(0 <= v < LIMIT for v in values)


class NodeColumns:
    """The cache's nodes as numpy columns, indexed by ``NodeInfo.row``.

    Blocks of several values per node are resource-major (``free[CPU]`` is
    every row's free CPU), so one ``take`` gathers a node list's values of
    them all and array operations run along contiguous rows:

    * ``free``: allocatable minus requested pods, CPU, memory and ephemeral
      storage (what NodeResourcesFit's filter compares a request with);
    * ``load``: allocatable CPU and memory, and the non-zero requests of the
      node's pods (what the resource scores read);
    * ``condition``: :data:`NOT_READY` and :data:`CORDONED` bits;
    * ``taints``: the id of the node's taint set in ``taint_sets``;
    * ``nominated``: how many preemptors hold room on the node;
    * label columns, made on first use by :meth:`label`.

    :attr:`version` grows with every write. A row is taken when the cache
    starts holding a NodeInfo and freed when it stops; :attr:`layout`
    changes whenever that happens or a row's node appears or goes (a node
    deleted while its pods remain), so what a node list's rows are stays
    valid while :attr:`layout` is unchanged.

    ``derived`` is scratch space for values computed from the interned
    tables (a toleration set's verdict per taint set, say); it is emptied
    whenever the tables start afresh (:attr:`epoch` changes).
    """

    free: Ints  # (4, rows)
    load: Ints  # (4, rows)
    condition: NDArray[np.int8]
    exists: NDArray[np.bool_]
    nominated: Ints
    taints: Ids

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # The counters carry on through clear(): a view or a derived value from before
        # must never match again.
        self.layout = getattr(self, "layout", 0) + 1
        self.epoch = getattr(self, "epoch", 0) + 1
        self.version = getattr(self, "version", 0) + 1  # grows with every write
        self.irregular = 0  # rows holding a value outside [0, LIMIT)
        self.nominated_rows = 0  # rows with a preemptor holding room
        self._free_rows: list[int] = []
        self._high = 0  # rows ever handed out
        self._nodes: list[Node | None] = []
        # Per row, as Python ints: the allocatable and requested (pods, cpu, memory,
        # ephemeral), and whether the node's and the pods' values are regular.
        self._alloc: list[tuple[int, int, int, int]] = []
        self._used: list[tuple[int, int, int, int]] = []
        self._odd_node: list[bool] = []
        self._odd_usage: list[bool] = []
        self.derived: dict[Hashable, Any] = {}
        self.taint_sets: list[tuple[Taint, ...]] = [()]
        self._taint_ids: dict[TaintKey, int] = {(): 0}
        self._labels: dict[str, Ids] = {}
        self._label_ids: dict[str, dict[str, int]] = {}
        self._label_values: dict[str, list[str | None]] = {}
        rows = _INITIAL_ROWS
        self.free = np.zeros((4, rows), dtype=np.int64)
        self.load = np.zeros((4, rows), dtype=np.int64)
        self.condition = np.zeros(rows, dtype=np.int8)
        self.exists = np.zeros(rows, dtype=np.bool_)
        self.nominated = np.zeros(rows, dtype=np.int64)
        self.taints = np.zeros(rows, dtype=np.int32)
        self._extend_lists(rows)

    def _extend_lists(self, rows: int) -> None:
        grow = rows - len(self._nodes)
        self._nodes.extend([None] * grow)
        self._alloc.extend([(0, 0, 0, 0)] * grow)
        self._used.extend([(0, 0, 0, 0)] * grow)
        self._odd_node.extend([False] * grow)
        self._odd_usage.extend([False] * grow)

    def _grow(self) -> None:
        """Twice the rows, keeping the values of those in use."""
        rows = 2 * self.capacity

        def grown(old: NDArray[Any]) -> NDArray[Any]:
            new = np.zeros((*old.shape[:-1], rows), dtype=old.dtype)
            new[..., : old.shape[-1]] = old
            return new

        self.free, self.load = grown(self.free), grown(self.load)
        self.condition, self.exists = grown(self.condition), grown(self.exists)
        self.nominated, self.taints = grown(self.nominated), grown(self.taints)
        for key, column in self._labels.items():
            self._labels[key] = grown(column)
        self._extend_lists(rows)

    @property
    def capacity(self) -> int:
        return len(self._nodes)

    def clear(self) -> None:
        """Every row free and every table empty: the cache starts again."""
        self._reset()

    # ---- rows -------------------------------------------------------------------

    def take_row(self) -> int:
        """A free row, zeroed; the caller writes its node and usage."""
        if self._free_rows:
            row = self._free_rows.pop()
        else:
            if self._high == self.capacity:
                self._grow()
            row = self._high
            self._high += 1
        self.layout += 1
        return row

    def free_row(self, row: int) -> None:
        self.write_node(row, None)
        self.write_usage(row, Resources(), 0, 0)
        self.write_nominated(row, 0)
        self._free_rows.append(row)
        self.layout += 1

    @property
    def rows_used(self) -> int:
        return self._high - len(self._free_rows)

    # ---- writes (NodeInfo and the cache call these) ----------------------------

    def write_node(self, row: int, node: Node | None) -> None:
        self.version += 1
        if (node is not None) != bool(self.exists[row]):
            self.layout += 1
        self._nodes[row] = node
        if node is None:
            alloc = (0, 0, 0, 0)
            self.exists[row] = False
            self.condition[row] = 0
            self.taints[row] = 0
        else:
            a = node.allocatable
            alloc = (a.pods, a.milli_cpu, a.memory, a.ephemeral_storage)
            self.exists[row] = True
            self.condition[row] = (0 if node.ready else NOT_READY) | (
                CORDONED if node.unschedulable else 0
            )
            self.taints[row] = self._taint_id(node.taints)
        for key, column in self._labels.items():
            column[row] = self._label_id(key, _label(node, key))
        odd = not regular(*alloc)
        if odd:
            alloc = (0, 0, 0, 0)  # never read while the row is irregular; keeps int64 safe
        self._alloc[row] = alloc
        self._write_free(row)
        self.load[ALLOC_CPU, row] = alloc[1]
        self.load[ALLOC_MEMORY, row] = alloc[2]
        self._set_odd(row, odd, self._odd_usage[row])

    def write_usage(self, row: int, requested: Resources, nz_cpu: int, nz_mem: int) -> None:
        # Every pod added, removed, assumed or forgotten comes here: kept to plain
        # comparisons and scalar stores.
        self.version += 1
        r = requested
        up, uc, um, ue = r.pods, r.milli_cpu, r.memory, r.ephemeral_storage
        odd = not (
            0 <= up < LIMIT and 0 <= uc < LIMIT and 0 <= um < LIMIT and 0 <= ue < LIMIT
            and 0 <= nz_cpu < LIMIT and 0 <= nz_mem < LIMIT
        )  # fmt: skip
        if odd:
            up = uc = um = ue = nz_cpu = nz_mem = 0
        self._used[row] = (up, uc, um, ue)
        ap, ac, am, ae = self._alloc[row]
        free, load = self.free, self.load
        free[PODS, row] = ap - up
        free[CPU, row] = ac - uc
        free[MEMORY, row] = am - um
        free[EPHEMERAL, row] = ae - ue
        load[NONZERO_CPU, row] = nz_cpu
        load[NONZERO_MEMORY, row] = nz_mem
        if odd or self._odd_usage[row]:
            self._set_odd(row, self._odd_node[row], odd)

    def _write_free(self, row: int) -> None:
        (ap, ac, am, ae), (up, uc, um, ue) = self._alloc[row], self._used[row]
        free = self.free
        free[PODS, row] = ap - up
        free[CPU, row] = ac - uc
        free[MEMORY, row] = am - um
        free[EPHEMERAL, row] = ae - ue

    def write_nominated(self, row: int, count: int) -> None:
        self.version += 1
        self.nominated_rows += int(count > 0) - int(self.nominated[row] > 0)
        self.nominated[row] = count

    def _set_odd(self, row: int, node: bool, usage: bool) -> None:
        was = self._odd_node[row] or self._odd_usage[row]
        self._odd_node[row], self._odd_usage[row] = node, usage
        self.irregular += (node or usage) - was

    # ---- interned values ------------------------------------------------------------

    def _taint_id(self, taints: tuple[Taint, ...]) -> int:
        if not taints:
            return 0
        key = tuple((t.key, t.value, t.effect) for t in taints)
        tid = self._taint_ids.get(key)
        if tid is None:
            if len(self.taint_sets) > 4 * self.rows_used + _SLACK:
                self._reintern()  # which may intern this very set (its row is written)
                tid = self._taint_ids.get(key)
                if tid is not None:
                    return tid
            tid = self._taint_ids[key] = len(self.taint_sets)
            self.taint_sets.append(taints)
        return tid

    def label(self, key: str) -> Ids | None:
        """Each row's id of its value of label ``key`` (0: the node lacks it), kept
        from now on; None when :data:`MAX_LABEL_KEYS` keys are kept already."""
        column = self._labels.get(key)
        if column is not None:
            return column
        if len(self._labels) >= MAX_LABEL_KEYS:
            return None
        self._label_ids[key] = {}
        self._label_values[key] = [None]
        column = np.zeros(self.capacity, dtype=np.int32)
        for row, node in enumerate(self._nodes):
            column[row] = self._label_id(key, _label(node, key))
        self._labels[key] = column
        return column

    def label_id(self, key: str, value: str) -> int:
        """The id of ``value`` in the column of ``key``; -1 when no node has it."""
        return self._label_ids[key].get(value, -1)

    def label_values(self, key: str) -> list[str | None]:
        """Label ``key``'s values by id (id 0, None: the node lacks the label)."""
        return self._label_values[key]

    def _label_id(self, key: str, value: str | None) -> int:
        if value is None:
            return 0
        ids = self._label_ids[key]
        vid = ids.get(value)
        if vid is None:
            values = self._label_values[key]
            if len(values) > 4 * self.rows_used + _SLACK:
                self._reintern()  # which may intern this very value (its row is written)
                ids, values = self._label_ids[key], self._label_values[key]
                vid = ids.get(value)
                if vid is not None:
                    return vid
            vid = ids[value] = len(values)
            values.append(value)
        return vid

    def _reintern(self) -> None:
        """Intern again from the nodes held now: values no node has any more go.

        Ids change, so whatever was derived from them goes too (``epoch``).
        """
        self.epoch += 1
        self.derived = {}
        self.taint_sets = [()]
        self._taint_ids = {(): 0}
        keys = list(self._labels)
        for key in keys:
            self._label_ids[key] = {}
            self._label_values[key] = [None]
        for row, node in enumerate(self._nodes):
            if node is None:
                continue
            self.taints[row] = self._taint_id(node.taints)
            for key in keys:
                self._labels[key][row] = self._label_id(key, _label(node, key))


def _label(node: Node | None, key: str) -> str | None:
    if node is None:
        return None
    if key == NAME_KEY:
        return node.name
    return node.labels.get(key)
