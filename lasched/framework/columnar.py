"""Filtering over the cache's columns: every candidate node judged in a few array operations.

:meth:`Framework.schedule <lasched.framework.runtime.Framework.schedule>`
comes here when the nodes it is given are the cache's own (each has a row in
its :class:`~lasched.cache.columns.NodeColumns`) and there are enough of
them for numpy's per-call cost to pay. The outcome is exactly that of
filtering one node at a time, plugin after plugin, from the round-robin
start until enough nodes are feasible: the same feasible nodes in the same
order, the same nodes evaluated, the same rejections in node order.

* A :class:`~lasched.framework.interface.FilterColumnsPlugin` gives its
  verdicts as codes for a *window* of nodes at a time (positions counted
  from the start); a code of -1 is settled by its per-node ``filter``. Such
  a plugin reads and changes nothing beyond what ``filter`` would, so asking
  it about nodes past the last one evaluated changes nothing.
* When every Filter of the cycle answers so, the feasible nodes are the
  first ones every plugin passed; the nodes evaluated run up to the last
  one wanted (exactly where one-at-a-time filtering stops).
* Otherwise the nodes go in chunks as in
  :meth:`~lasched.framework.runtime.Framework._find_feasible`, each chunk no
  longer than the number of feasible nodes still wanted; a column plugin's
  verdicts on the chunk are looked up, and any other plugin is called on the
  nodes the plugins before it kept, as it always was.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lasched.cache.cache import NodeInfo
from lasched.cache.columns import NodeColumns
from lasched.framework.interface import (
    SUCCESS,
    Code,
    ColumnVerdicts,
    CycleState,
    FilterPlugin,
    Status,
)
from lasched.model.pod import PodInfo

FilterAll = Callable[[CycleState, PodInfo, Sequence[NodeInfo]], list[Status]]
FilterColumns = Callable[
    [CycleState, PodInfo, NodeColumns, NDArray[np.intp]], ColumnVerdicts | None
]

Positions = NDArray[np.intp]


class FilterFailed(Exception):  # a signal to the runtime, which raises PluginError
    """A plugin raised, or returned an error Status, while filtering."""

    def __init__(self, plugin: str, *, status: Status | None = None, exc: Exception | None = None):
        super().__init__(plugin)
        self.plugin, self.status, self.exc = plugin, status, exc


class NodeView:
    """A node list's rows in its cache's columns, kept while the list and the layout stand.

    The arrays are the list twice over, so that the nodes from any start
    position on, wrapping round, are one slice.
    """

    __slots__ = ("columns", "layout", "nodes", "objs", "rows", "size")

    def __init__(
        self, nodes: Sequence[NodeInfo], columns: NodeColumns, rows: NDArray[np.intp]
    ) -> None:
        self.nodes = nodes
        self.size = len(nodes)
        self.columns = columns
        self.layout = columns.layout
        self.rows: NDArray[np.intp] = np.concatenate((rows, rows))
        objs = np.empty(2 * self.size, dtype=object)
        objs[: self.size] = objs[self.size :] = nodes
        self.objs: NDArray[np.object_] = objs

    @classmethod
    def of(cls, nodes: Sequence[NodeInfo]) -> NodeView | None:
        """The view of ``nodes``; None unless each is a node the same cache holds."""
        columns = nodes[0].columns if nodes else None
        if columns is None or any(ni.columns is not columns for ni in nodes):
            return None
        rows = np.fromiter((ni.row for ni in nodes), dtype=np.intp, count=len(nodes))
        if not bool(columns.exists[rows].all()):
            return None  # a node deleted while its pods remain: only the per-node form fails it
        return cls(nodes, columns, rows)

    def fresh(self, nodes: Sequence[NodeInfo]) -> bool:
        """Still the view of ``nodes``? (The cycle's node list is replaced, never edited.)"""
        return (
            nodes is self.nodes and len(nodes) == self.size and self.layout == self.columns.layout
        )

    def infos(self, start: int, positions: Positions) -> list[NodeInfo]:
        """The NodeInfos at ``positions`` counted from ``start``."""
        out: list[NodeInfo] = self.objs.take(positions + start if start else positions).tolist()
        return out


@dataclass(slots=True)
class FilterStep:
    """One Filter plugin of the cycle, with the fast forms it offers."""

    plugin: FilterPlugin
    filter_all: FilterAll | None
    columns: FilterColumns | None


class _Verdicts:
    """The column plugins' codes for the nodes from ``start`` on, a window at a time.

    ``codes[i][p]`` is plugin ``i``'s code for position ``p`` (None: plugin
    ``i`` judges node by node this cycle): 0 passes, ``k > 0`` rejects with
    ``tables[i][k - 1]``; the -1s are settled as they arrive.
    """

    def __init__(
        self,
        state: CycleState,
        pod: PodInfo,
        view: NodeView,
        start: int,
        steps: Sequence[FilterStep],
    ) -> None:
        self.state, self.pod, self.view, self.start = state, pod, view, start
        self.steps = steps
        self.upto = 0
        self.codes: list[NDArray[np.int64] | None] = [None] * len(steps)
        self.tables: list[list[Status]] = [[] for _ in steps]
        self._tagged: dict[tuple[int, int], Status] = {}

    def extend(self, upto: int) -> None:
        """Codes for every position below ``upto``.

        A plugin that answers None for the first window judges node by node
        for the rest of the cycle; one that answers None later breaks its
        contract (the answer may depend on the pod alone).
        """
        lo, hi = self.upto, upto
        if hi <= lo:
            return
        view = self.view
        rows = view.rows[self.start + lo : self.start + hi]
        for i, step in enumerate(self.steps):
            if step.columns is None or (lo and self.codes[i] is None):
                continue
            name = step.plugin.name
            try:
                verdicts = step.columns(self.state, self.pod, view.columns, rows)
            except Exception as e:
                raise FilterFailed(name, exc=e) from e
            if verdicts is None:
                if lo:
                    raise FilterFailed(name, exc=RuntimeError("filter_columns gave up mid-cycle"))
                continue
            window = verdicts.codes
            if window.shape != (hi - lo,):
                wrong = ValueError(f"{window.shape} codes for {hi - lo} nodes")
                raise FilterFailed(name, exc=wrong)
            table = self.tables[i]
            if table and verdicts.statuses:
                window = np.where(window > 0, window + len(table), window)
            table.extend(verdicts.statuses)
            if not verdicts.settled:
                window = window.copy()
                self._settle(i, window, lo)
            before = self.codes[i]
            self.codes[i] = window if before is None else np.concatenate((before, window))
        self.upto = hi

    def _settle(self, i: int, window: NDArray[np.int64], lo: int) -> None:
        """Ask the per-node ``filter`` about the nodes whose code is -1."""
        plugin = self.steps[i].plugin
        table = self.tables[i]
        at = np.flatnonzero(window < 0)
        try:
            for p, ni in zip(at.tolist(), self.view.infos(self.start + lo, at), strict=True):
                st = plugin.filter(self.state, self.pod, ni)
                if st is SUCCESS or st.code is Code.SUCCESS:
                    window[p] = 0
                elif st.code is Code.ERROR:
                    raise FilterFailed(plugin.name, status=st.with_plugin(plugin.name))
                else:
                    table.append(st)
                    window[p] = len(table)
        except FilterFailed:
            raise
        except Exception as e:
            raise FilterFailed(plugin.name, exc=e) from e

    def status(self, i: int, code: int) -> Status:
        """Plugin ``i``'s rejection ``code``, naming the plugin (one object per code)."""
        st = self._tagged.get((i, code))
        if st is None:
            st = self._tagged[(i, code)] = self.tables[i][code - 1].with_plugin(
                self.steps[i].plugin.name
            )
        return st


def find_feasible(
    state: CycleState,
    pod: PodInfo,
    view: NodeView,
    steps: Sequence[FilterStep],
    *,
    start: int,
    want: int,
) -> tuple[list[NodeInfo], Positions, dict[str, Status], int]:
    """Feasible nodes, their positions in ``view`` (from ``start`` on, so below twice
    its size), rejections by node name, and the number of nodes evaluated: exactly
    what filtering one node at a time gives.

    The rejections are what the cycle reports when no node is feasible; when
    every plugin answered from the columns and some node is feasible, nobody
    reads them, and they are left out (a few hundred rejected nodes a cycle
    is what a pod with anti-affinity meets on a full cluster).
    """
    n = view.size
    verdicts = _Verdicts(state, pod, view, start, steps)
    verdicts.extend(min(n, want + want // 8 + 16))  # room for a few rejections
    if all(c is not None for c in verdicts.codes):
        found, failed, evaluated = _all_columns(verdicts, want)
    else:
        found, failed, evaluated = _chunks(verdicts, want)
    found += start
    return view.infos(0, found), found, failed, evaluated


def _all_columns(v: _Verdicts, want: int) -> tuple[Positions, dict[str, Status], int]:
    """Every plugin answered from the columns: the first ``want`` nodes all pass."""
    n = v.view.size
    if not v.steps:  # no Filter this cycle: the first nodes wanted are feasible
        evaluated = min(n, want)
        return np.arange(evaluated, dtype=np.intp), {}, evaluated
    while True:
        codes = [c for c in v.codes if c is not None]
        # Codes are never negative once settled: their OR is 0 where every plugin passes.
        rejected = functools.reduce(operator.or_, codes)
        found = (rejected == 0).nonzero()[0]
        if len(found) >= want or v.upto == n:
            break
        v.extend(min(n, 2 * v.upto))
    if len(found) >= want:
        found = found[:want]
        evaluated = int(found[-1]) + 1
    else:
        evaluated = n
    failed: dict[str, Status] = {}
    if not len(found):
        failed = _rejections(v, rejected[:evaluated].nonzero()[0])
    return found, failed, evaluated


def _rejections(v: _Verdicts, at: Positions) -> dict[str, Status]:
    """The nodes at positions ``at`` (ascending), each with the first plugin's rejection.

    Few nodes are rejected in a cycle that finds room: a loop over them is cheaper
    than more array operations.
    """
    codes = [(i, c.take(at).tolist()) for i, c in enumerate(v.codes) if c is not None]
    failed: dict[str, Status] = {}
    for j, ni in enumerate(v.view.infos(v.start, at)):
        for i, mine in codes:
            code = mine[j]
            if code:
                failed[ni.name] = v.status(i, code)
                break
    return failed


def _chunks(v: _Verdicts, want: int) -> tuple[Positions, dict[str, Status], int]:
    """Some plugin judges node by node: chunk by chunk, as the per-node runtime does."""
    view = v.view
    n = view.size
    evaluated = 0
    found: list[Positions] = []
    wanted = want
    failed: dict[str, Status] = {}
    while evaluated < n and wanted > 0:
        end = min(n, evaluated + wanted)
        if end > v.upto:
            v.extend(min(n, max(end, 2 * v.upto)))
        alive: Positions = np.arange(evaluated, end, dtype=np.intp)
        evaluated = end
        rejected: dict[int, Status] = {}
        for i, step in enumerate(v.steps):
            if not alive.size:
                break
            codes = v.codes[i]
            if codes is None:
                alive = _per_node(v, step, alive, rejected)
                continue
            mine = codes[alive]
            bad = mine != 0
            if bad.any():
                for p, code in zip(alive[bad].tolist(), mine[bad].tolist(), strict=True):
                    rejected[p] = v.status(i, code)
                alive = alive[~bad]
        found.append(alive)
        wanted -= alive.size
        if rejected:
            at = sorted(rejected)
            for ni, p in zip(view.infos(v.start, np.array(at, dtype=np.intp)), at, strict=True):
                failed[ni.name] = rejected[p]
    positions = np.concatenate(found) if found else np.empty(0, dtype=np.intp)
    return positions, failed, evaluated


def _per_node(
    v: _Verdicts, step: FilterStep, alive: Positions, rejected: dict[int, Status]
) -> Positions:
    """Run a plugin without a column form on the nodes at ``alive``; record its rejections
    in ``rejected`` and return the positions it kept."""
    plugin = step.plugin
    nodes = v.view.infos(v.start, alive)
    try:
        if step.filter_all is not None:
            statuses = step.filter_all(v.state, v.pod, nodes)
        else:
            check = plugin.filter
            statuses = [check(v.state, v.pod, ni) for ni in nodes]
    except Exception as e:
        raise FilterFailed(plugin.name, exc=e) from e
    ok = SUCCESS
    if statuses[0] is ok and statuses.count(ok) == len(statuses):
        return alive
    keep = np.ones(alive.size, dtype=np.bool_)
    named: dict[int, Status] = {}  # a plugin may return one Status for many nodes
    for j, st in enumerate(statuses):
        if st is ok or st.code is Code.SUCCESS:
            continue
        if st.code is Code.ERROR:
            raise FilterFailed(plugin.name, status=st.with_plugin(plugin.name))
        tagged = named.get(id(st))
        if tagged is None:
            tagged = named[id(st)] = st.with_plugin(plugin.name)
        rejected[int(alive[j])] = tagged
        keep[j] = False
    out: Positions = alive[keep]
    return out
