"""The framework runtime: runs a profile's plugins for one pod.

Filtering and scoring follow kube-scheduler's ``schedulePod``: filter nodes,
starting where the previous cycle stopped, until enough feasible nodes are
found (``percentageOfNodesToScore``), score those, and pick the best; ties are
broken at random so that equal nodes share the load.

With enough nodes, and the nodes the cache's own, the Filter and Score
plugins that offer column forms judge every candidate node at once
(lasched/framework/columnar.py); the decisions, the nodes evaluated and the
random numbers the tie-break draws are those of the per-node form.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from prometheus_client import Histogram

from lasched import metrics
from lasched.cache.cache import NodeInfo
from lasched.cache.columns import NodeColumns
from lasched.framework import batching
from lasched.framework.batching import Batch
from lasched.framework.columnar import FilterFailed, FilterStep, NodeView, find_feasible
from lasched.framework.events import EVERY_EVENT, ClusterEventWithHint, QueueingHints
from lasched.framework.interface import (
    MAX_NODE_SCORE,
    SUCCESS,
    Batchable,
    BindPlugin,
    Code,
    CycleState,
    EnqueueExtensions,
    FilterAllPlugin,
    FilterColumnsPlugin,
    FilterFeasiblePlugin,
    FilterPlugin,
    PermitPlugin,
    Plugin,
    PodSigner,
    PostFilterPlugin,
    PostFilterResult,
    PreBindPlugin,
    PreEnqueuePlugin,
    PreFilterPlugin,
    PreScorePlugin,
    QueueSortPlugin,
    ReservePlugin,
    ScoreAllPlugin,
    ScoreColumnsPlugin,
    ScorePlugin,
    ScoreReadsNodePods,
    Status,
    error,
)
from lasched.model.pod import PodInfo

log = logging.getLogger(__name__)

_UNSCHEDULABLE = Status(Code.UNSCHEDULABLE)

ScoreAll = Callable[[CycleState, PodInfo, Sequence[NodeInfo]], list[int]]
ScoreColumns = Callable[
    [CycleState, PodInfo, NodeColumns, NDArray[np.intp]], NDArray[np.int64] | None
]

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5

COLUMNS_MIN_NODES = 64
"""Below this many nodes, numpy's cost per call outweighs a Python loop: judge per node."""


@dataclass(slots=True)
class FitError:
    """Why no node fits: each node's rejecting Status, summarised kube-scheduler style."""

    num_all_nodes: int
    node_statuses: dict[str, Status] = field(default_factory=dict)
    pre_filter: Status | None = None
    post_filter_message: str = ""

    def summary(self) -> str:
        if self.pre_filter is not None:
            text = f"0/{self.num_all_nodes} nodes are available: {self.pre_filter.message}."
        else:
            counts: Counter[str] = Counter()
            for st in self.node_statuses.values():
                for r in st.reasons:
                    counts[r] += 1
            parts = [f"{n} {r}" for r, n in sorted(counts.items())]
            text = f"0/{self.num_all_nodes} nodes are available: {', '.join(parts)}."
        if self.post_filter_message:
            text += f" {self.post_filter_message}"
        return text

    @property
    def unschedulable_plugins(self) -> frozenset[str]:
        """The plugins that rejected the pod (kube-scheduler's ``UnschedulablePlugins``):
        only the events they registered may move it back."""
        if self.pre_filter is not None:
            return frozenset((self.pre_filter.plugin,)) - {""}
        return frozenset(st.plugin for st in self.node_statuses.values() if st.plugin)


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    node: str
    evaluated: int
    feasible: int
    scores: Mapping[str, int]


class NodeScores(Mapping[str, int]):
    """Each feasible node's total score by name, made a dict only when first read
    (the cycle itself needs the best one alone)."""

    __slots__ = ("_dict", "_nodes", "_totals")

    def __init__(self, nodes: Sequence[NodeInfo], totals: NDArray[np.int64]) -> None:
        self._nodes, self._totals = nodes, totals
        self._dict: dict[str, int] | None = None

    def _scores(self) -> dict[str, int]:
        if self._dict is None:
            self._dict = dict(
                zip((ni.name for ni in self._nodes), self._totals.tolist(), strict=True)
            )
        return self._dict

    def __getitem__(self, name: str) -> int:
        return self._scores()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._scores())

    def __len__(self) -> int:
        return len(self._scores())


class Framework:
    """One profile's plugins, in order, with score weights.

    Each extension point holds a tuple of plugins. What the hot path needs to
    know about them (which offer ``filter_all`` or ``score_all``, which scores
    read a node's pods, whether every plugin is :class:`Batchable`) is worked
    out when a point's plugins are set, at build, never per cycle; so are the
    profile's :attr:`queueing_hints`, the events its rejecting plugins
    registered (kube-scheduler's ``EnqueueExtensions`` of a framework).
    """

    def __init__(
        self,
        *,
        pre_filters: Sequence[PreFilterPlugin],
        filters: Sequence[FilterPlugin],
        scores: Sequence[tuple[ScorePlugin, int]],
        pre_enqueue: Sequence[PreEnqueuePlugin] = (),
        queue_sort: QueueSortPlugin | None = None,
        post_filters: Sequence[PostFilterPlugin] = (),
        pre_scores: Sequence[PreScorePlugin] = (),
        reserves: Sequence[ReservePlugin] = (),
        permits: Sequence[PermitPlugin] = (),
        pre_binds: Sequence[PreBindPlugin] = (),
        binders: Sequence[BindPlugin] = (),
        percentage_of_nodes_to_score: int = 0,
        rng: random.Random | None = None,
        profile: str = "",
        batching: bool = False,
    ) -> None:
        self.profile = profile
        self.queue_sort = queue_sort
        self._pre_enqueue: tuple[PreEnqueuePlugin, ...] = tuple(pre_enqueue)
        self.queueing_hints = QueueingHints()
        self.post_filters: tuple[PostFilterPlugin, ...] = tuple(post_filters)
        self.binders: tuple[BindPlugin, ...] = tuple(binders)
        self._pre_binds: tuple[PreBindPlugin, ...] = tuple(pre_binds)
        self._pre_filters = tuple(pre_filters)
        self._filters = tuple(filters)
        self._pre_scores = tuple(pre_scores)
        self._scores = tuple(scores)
        self._reserves = tuple(reserves)
        self._permits = tuple(permits)
        self._batching_wanted = batching
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        self._next_start = 0
        self._rng = rng or random.Random()
        self._durations: dict[tuple[str, Code], Histogram] = {}
        self._batch: Batch | None = None
        self._last_sig: Hashable | None = None  # the batching signature of the last pod
        # What a batch's age is read on; a replay (bench.hotpath) sets a clock of its own
        # so that which pods a batch serves does not depend on how fast the machine is.
        self.clock: Callable[[], float] = time.monotonic
        self.columns_min_nodes = COLUMNS_MIN_NODES
        self._view: NodeView | None = None  # of the last node list judged from the columns
        self._compile()

    def _compile(self) -> None:
        """Look up, once, the declared capabilities the hot path uses."""
        self._filter_steps: tuple[FilterStep, ...] = tuple(
            FilterStep(
                p,
                p.filter_all if isinstance(p, FilterAllPlugin) else None,
                p.filter_columns if isinstance(p, FilterColumnsPlugin) else None,
            )
            for p in self._filters
        )
        self._feasible_filters = tuple(
            p for p in self._filters if isinstance(p, FilterFeasiblePlugin)
        )
        self._score_steps: tuple[
            tuple[ScorePlugin, int, ScoreAll | None, bool, ScoreColumns | None], ...
        ] = tuple(
            (
                p,
                w,
                p.score_all if isinstance(p, ScoreAllPlugin) else None,
                isinstance(p, ScoreReadsNodePods),
                p.score_columns if isinstance(p, ScoreColumnsPlugin) else None,
            )
            for p, w in self._scores
        )
        # Opportunistic batching (lasched/framework/batching.py) needs every plugin that
        # filters, scores, reserves or permits to declare what it reads.
        involved = (
            *self._pre_filters, *self._filters, *self._pre_scores,
            *(p for p, _ in self._scores), *self._reserves, *self._permits,
        )  # fmt: skip
        self.batching = self._batching_wanted and all(isinstance(p, Batchable) for p in involved)
        # Each plugin once, though it may serve several points.
        self._signers = tuple({id(p): p for p in involved if isinstance(p, PodSigner)}.values())
        self._batch = None
        # The plugins that can reject a pod, each with the events that may help it again.
        registrations: dict[str, list[ClusterEventWithHint]] = {}
        rejecting: tuple[Plugin, ...] = (
            *self._pre_enqueue, *self._pre_filters, *self._filters,
            *self._reserves, *self._permits, *self._pre_binds,
        )  # fmt: skip
        for p in rejecting:
            if p.name not in registrations:
                registrations[p.name] = (
                    p.events_to_register() if isinstance(p, EnqueueExtensions)
                    else list(EVERY_EVENT)
                )  # fmt: skip
        self.queueing_hints.register(registrations)

    # Setting a point's plugins works out its capabilities again.

    @property
    def pre_enqueue(self) -> tuple[PreEnqueuePlugin, ...]:
        return self._pre_enqueue

    @pre_enqueue.setter
    def pre_enqueue(self, plugins: tuple[PreEnqueuePlugin, ...]) -> None:
        self._pre_enqueue = tuple(plugins)
        self._compile()

    @property
    def pre_filters(self) -> tuple[PreFilterPlugin, ...]:
        return self._pre_filters

    @pre_filters.setter
    def pre_filters(self, plugins: tuple[PreFilterPlugin, ...]) -> None:
        self._pre_filters = tuple(plugins)
        self._compile()

    @property
    def filters(self) -> tuple[FilterPlugin, ...]:
        return self._filters

    @filters.setter
    def filters(self, plugins: tuple[FilterPlugin, ...]) -> None:
        self._filters = tuple(plugins)
        self._compile()

    @property
    def pre_scores(self) -> tuple[PreScorePlugin, ...]:
        return self._pre_scores

    @pre_scores.setter
    def pre_scores(self, plugins: tuple[PreScorePlugin, ...]) -> None:
        self._pre_scores = tuple(plugins)
        self._compile()

    @property
    def scores(self) -> tuple[tuple[ScorePlugin, int], ...]:
        """Each Score plugin with its weight."""
        return self._scores

    @scores.setter
    def scores(self, plugins: tuple[tuple[ScorePlugin, int], ...]) -> None:
        self._scores = tuple(plugins)
        self._compile()

    @property
    def reserves(self) -> tuple[ReservePlugin, ...]:
        return self._reserves

    @reserves.setter
    def reserves(self, plugins: tuple[ReservePlugin, ...]) -> None:
        self._reserves = tuple(plugins)
        self._compile()

    @property
    def permits(self) -> tuple[PermitPlugin, ...]:
        return self._permits

    @permits.setter
    def permits(self, plugins: tuple[PermitPlugin, ...]) -> None:
        self._permits = tuple(plugins)
        self._compile()

    @property
    def pre_binds(self) -> tuple[PreBindPlugin, ...]:
        return self._pre_binds

    @pre_binds.setter
    def pre_binds(self, plugins: tuple[PreBindPlugin, ...]) -> None:
        self._pre_binds = tuple(plugins)
        self._compile()

    def num_feasible_nodes_to_find(self, num_all: int) -> int:
        """kube-scheduler's adaptive percentage: 50% at 100 nodes, 10% at 5,000."""
        if num_all < MIN_FEASIBLE_NODES_TO_FIND:
            return num_all
        pct = self.percentage_of_nodes_to_score
        if pct <= 0:
            pct = max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND, 50 - num_all // 125)
        if pct >= 100:
            return num_all
        return max(MIN_FEASIBLE_NODES_TO_FIND, num_all * pct // 100)

    def run_pre_enqueue(self, pod: PodInfo) -> Status:
        for p in self._pre_enqueue:
            try:
                st = p.pre_enqueue(pod)
            except Exception as e:
                raise PluginError.from_exception(p.name, e, point="PreEnqueue") from e
            if not st.ok:
                return st.with_plugin(p.name)
        return SUCCESS

    def run_post_filters(
        self, state: CycleState, pod: PodInfo, fit: FitError
    ) -> PostFilterResult | None:
        """The first PostFilter that frees a node wins (kube-scheduler's rule)."""
        t0 = time.perf_counter()
        for p in self.post_filters:
            try:
                result, st = p.post_filter(state, pod, fit.node_statuses)
            except Exception as e:
                raise PluginError.from_exception(p.name, e, point="PostFilter") from e
            if st.code is Code.ERROR:
                raise PluginError(st.with_plugin(p.name))
            if st.ok and result is not None:
                self._observe("PostFilter", SUCCESS, t0)
                return result
            if st.reasons:
                fit.post_filter_message = " ".join(
                    m for m in (fit.post_filter_message, st.message) if m
                )
        self._observe("PostFilter", _UNSCHEDULABLE, t0)
        return None

    def run_reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        """Reserve in order; on a failure, unreserve the plugins that had reserved."""
        for i, p in enumerate(self._reserves):
            try:
                st = p.reserve(state, pod, node)
            except Exception as e:
                st = PluginError.from_exception(p.name, e, point="Reserve").as_status()
            if not st.ok:
                self._unreserve(self._reserves[:i], state, pod, node)
                return st.with_plugin(p.name)
        return SUCCESS

    def run_unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        """Undo Reserve on every plugin, in reverse order."""
        self._unreserve(self._reserves, state, pod, node)

    @staticmethod
    def _unreserve(
        plugins: Sequence[ReservePlugin], state: CycleState, pod: PodInfo, node: str
    ) -> None:
        for p in reversed(plugins):
            try:
                p.unreserve(state, pod, node)
            except Exception as e:  # one plugin's bug must not skip the others
                PluginError.from_exception(p.name, e, point="Unreserve")

    def run_permit(
        self, state: CycleState, pod: PodInfo, node: str
    ) -> tuple[Status, dict[str, float]]:
        """SUCCESS, a rejection, or WAIT with each waiting plugin's timeout."""
        waits: dict[str, float] = {}
        for p in self._permits:
            try:
                st = p.permit(state, pod, node)
            except Exception as e:
                raise PluginError.from_exception(p.name, e, point="Permit") from e
            if st.code is Code.WAIT:
                waits[p.name] = st.timeout
            elif st.code is Code.ERROR:
                raise PluginError(st.with_plugin(p.name))
            elif not st.ok:
                return st.with_plugin(p.name), {}
        if waits:
            return Status(Code.WAIT), waits
        return SUCCESS, {}

    async def run_pre_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        """Every PreBind in order; the first that does not succeed decides (a SKIP
        counts as success). An error's message names the plugin, as kube-scheduler's
        ``running PreBind plugin "VolumeBinding": ...``."""
        if not self._pre_binds:
            return SUCCESS
        t0 = time.perf_counter()
        for p in self._pre_binds:
            try:
                st = await p.pre_bind(state, pod, node)
            except Exception as e:
                st = PluginError.from_exception(p.name, e, point="PreBind").as_status()
            if st.code is Code.ERROR:
                st = Status(Code.ERROR, (f'running PreBind plugin "{p.name}": {st.message}',))
            if st.code not in (Code.SUCCESS, Code.SKIP):
                self._observe("PreBind", st, t0)
                return st.with_plugin(p.name)
        self._observe("PreBind", SUCCESS, t0)
        return SUCCESS

    async def run_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        """The first binder that does not SKIP decides (see BindPlugin)."""
        t0 = time.perf_counter()
        for p in self.binders:
            try:
                st = await p.bind(state, pod, node)
            except Exception as e:
                st = PluginError.from_exception(p.name, e, point="Bind").as_status()
            if st.code is not Code.SKIP:
                self._observe("Bind", st, t0)
                return st.with_plugin(p.name)
        return Status(Code.ERROR, ("no bind plugin handled the pod",))

    def run_pre_filters(self, state: CycleState, pod: PodInfo) -> tuple[Status, set[str]]:
        """The PreFilter verdict, and the plugins whose Filter may be skipped (SKIP)."""
        skip: set[str] = set()
        for p in self._pre_filters:
            try:
                st = p.pre_filter(state, pod)
            except Exception as e:
                raise PluginError.from_exception(p.name, e, point="PreFilter") from e
            if st.code is Code.SKIP:
                skip.add(p.name)
            elif st.code is not Code.SUCCESS:
                return st.with_plugin(p.name), skip
        return SUCCESS, skip

    def filter_node(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        """Every Filter on one node (for callers outside the main loop, e.g. preemption)."""
        p = None
        try:
            for p in self._filters:
                st = p.filter(state, pod, node)
                if st is not SUCCESS and st.code is not Code.SUCCESS:
                    return st.with_plugin(p.name)
        except Exception as e:
            raise PluginError.from_exception(p.name if p else "?", e, point="Filter") from e
        return SUCCESS

    def schedule(
        self,
        state: CycleState,
        pod: PodInfo,
        nodes: Sequence[NodeInfo],
        *,
        cycle: int | None = None,
    ) -> ScheduleResult | FitError:
        """Filter, score and select; an error Status raises :class:`PluginError`.

        ``cycle`` is the queue's scheduling cycle: with it, and batching on, a
        pod like the one of the previous cycle may take a hint instead of a
        full cycle (lasched/framework/batching.py).
        """
        num_all = len(nodes)
        if num_all == 0:
            return FitError(num_all_nodes=0, pre_filter=Status(Code.UNSCHEDULABLE, ("no nodes",)))
        t0 = time.perf_counter()
        pre, skip = self.run_pre_filters(state, pod)
        self._observe("PreFilter", pre, t0)
        if pre.code is Code.ERROR:
            raise PluginError(pre)
        if pre.code is not Code.SUCCESS:
            self._batch = None
            self._last_sig = None
            return FitError(num_all_nodes=num_all, pre_filter=pre)

        sig = batching.signature(pod) if self.batching and cycle is not None else None
        if sig is not None and self._signers:
            parts = tuple(p.sign_pod(pod) for p in self._signers)
            sig = None if None in parts else (sig, parts)
        # A batch (a heap over every feasible node) serves only a next pod alike: build
        # one only after a pod that follows one alike. In a run of alike pods that
        # costs the run's second hint; in a mix of shapes, where the next pod is rarely
        # alike, it saves building a batch per cycle for nothing.
        follows = sig is not None and sig == self._last_sig
        self._last_sig = sig
        if sig is not None and cycle is not None and self._batch is not None:
            hinted = self._hint(state, pod, sig, cycle)
            if hinted is not None:
                return hinted
        self._batch = None
        if not follows:
            sig = None

        t0 = time.perf_counter()
        view = self._node_view(nodes)
        if view is not None:
            return self._schedule_columns(state, pod, view, skip=skip, sig=sig, cycle=cycle, t0=t0)
        feasible, failed, evaluated = self._find_feasible(state, pod, nodes, skip)
        if (kept := self.narrow(state, pod, feasible, failed, skip=skip)) is not None:
            feasible = [feasible[i] for i in kept]
        if (early := self._unscored(feasible, failed, evaluated, num_all, t0)) is not None:
            return early
        skip_score = self._run_pre_scores(state, pod, feasible)
        t0 = time.perf_counter()
        static: dict[str, int] | None = {} if sig is not None else None
        totals = self.score_nodes(state, pod, feasible, skip=skip_score, static=static)
        self._observe("Score", SUCCESS, t0)
        chosen = self._select(totals)
        if sig is not None and cycle is not None and static is not None:
            self._batch = Batch(
                signature=sig, cycle=cycle, skip=frozenset(skip_score),
                chosen=next(ni for ni in feasible if ni.name == chosen), feasible=feasible,
                totals=[totals[ni.name] for ni in feasible],
                static=[static[ni.name] for ni in feasible], rng=self._rng, now=self.clock(),
            )  # fmt: skip
        return ScheduleResult(chosen, evaluated, len(feasible), totals)

    def _unscored(
        self,
        feasible: list[NodeInfo],
        failed: dict[str, Status],
        evaluated: int,
        num_all: int,
        t0: float,
    ) -> ScheduleResult | FitError | None:
        """After Filter, on either path: the outcome when no scoring is needed (nothing
        fits, one node fits, or no Score plugin), else None."""
        self._observe("Filter", SUCCESS if feasible else _UNSCHEDULABLE, t0)
        if not feasible:
            return FitError(num_all_nodes=num_all, node_statuses=failed)
        if len(feasible) == 1 or not self._scores:
            node = feasible[0] if len(feasible) == 1 else self._rng.choice(feasible)
            return ScheduleResult(node.name, evaluated, len(feasible), {})
        return None

    def narrow(
        self,
        state: CycleState,
        pod: PodInfo,
        feasible: Sequence[NodeInfo],
        failed: dict[str, Status],
        *,
        skip: set[str] | frozenset[str] = frozenset(),
    ) -> list[int] | None:
        """The :class:`FilterFeasiblePlugin` verdicts on the feasible nodes together: the
        positions kept (None: all), each dropped node's Status added to ``failed``."""
        kept: list[int] | None = None
        for p in self._feasible_filters:
            if p.name in skip or not feasible:
                continue
            alive = feasible if kept is None else [feasible[i] for i in kept]
            try:
                verdicts = p.filter_feasible(state, pod, alive)
            except Exception as e:
                raise PluginError.from_exception(p.name, e, point="Filter") from e
            if verdicts is None:
                continue
            if len(verdicts) != len(alive):
                raise PluginError(error(f"{p.name} judged {len(verdicts)} of {len(alive)} nodes"))
            positions = list(range(len(feasible))) if kept is None else kept
            kept = []
            for at, st in zip(positions, verdicts, strict=True):
                if st.code is Code.SUCCESS:
                    kept.append(at)
                elif st.code is Code.ERROR:
                    raise PluginError(st.with_plugin(p.name))
                else:
                    failed[feasible[at].name] = st.with_plugin(p.name)
        return kept

    def _run_pre_scores(
        self, state: CycleState, pod: PodInfo, feasible: list[NodeInfo]
    ) -> set[str]:
        """The Score plugins whose PreScore said SKIP."""
        skip_score: set[str] = set()
        for p in self._pre_scores:
            try:
                st = p.pre_score(state, pod, feasible)
            except Exception as e:
                raise PluginError.from_exception(p.name, e, point="PreScore") from e
            if st.code is Code.SKIP:
                skip_score.add(p.name)
            elif st.code is not Code.SUCCESS:
                raise PluginError(st.with_plugin(p.name))
        return skip_score

    def _node_view(self, nodes: Sequence[NodeInfo]) -> NodeView | None:
        """The columns' view of ``nodes``, when the cycle should judge from the columns.

        Built once per node list (the cycle replaces its list when nodes come
        or go) and kept while the columns' layout is unchanged.
        """
        if len(nodes) < self.columns_min_nodes:
            return None
        view = self._view
        if view is not None and view.fresh(nodes):
            return view
        self._view = view = NodeView.of(nodes)
        return view

    def _schedule_columns(
        self,
        state: CycleState,
        pod: PodInfo,
        view: NodeView,
        *,
        skip: set[str],
        sig: Hashable | None,
        cycle: int | None,
        t0: float,
    ) -> ScheduleResult | FitError:
        """:meth:`schedule` from Filter on, judging from the columns where plugins can."""
        num_all = view.size
        start = self._next_start % num_all
        steps = [s for s in self._filter_steps if s.plugin.name not in skip]
        try:
            feasible, found, failed, evaluated = find_feasible(
                state, pod, view, steps, start=start,
                want=self.num_feasible_nodes_to_find(num_all),
            )  # fmt: skip
        except FilterFailed as f:
            if f.status is not None:
                raise PluginError(f.status) from None
            assert f.exc is not None
            raise PluginError.from_exception(f.plugin, f.exc, point="Filter") from f.exc
        self._next_start = (start + evaluated) % num_all
        if (kept := self.narrow(state, pod, feasible, failed, skip=skip)) is not None:
            feasible = [feasible[i] for i in kept]
            found = found[np.asarray(kept, dtype=np.intp)]
        if (early := self._unscored(feasible, failed, evaluated, num_all, t0)) is not None:
            return early
        skip_score = self._run_pre_scores(state, pod, feasible)
        t0 = time.perf_counter()
        totals, static = self._score_columns(
            state, pod, view, view.rows.take(found), feasible,
            skip=skip_score, with_static=sig is not None,
        )  # fmt: skip
        self._observe("Score", SUCCESS, t0)
        # The per-node form's choice, drawing the same random number: among the best, in
        # node order, rng.choice of a list as long.
        ties: list[int] = (totals == totals.max()).nonzero()[0].tolist()
        chosen = feasible[self._rng.choice(ties)]
        if sig is not None and cycle is not None and static is not None:
            self._batch = Batch(
                signature=sig, cycle=cycle, skip=frozenset(skip_score), chosen=chosen,
                feasible=feasible, totals=totals.tolist(), static=static.tolist(),
                rng=self._rng, now=self.clock(),
            )  # fmt: skip
        return ScheduleResult(chosen.name, evaluated, len(feasible), NodeScores(feasible, totals))

    def _score_columns(
        self,
        state: CycleState,
        pod: PodInfo,
        view: NodeView,
        rows: NDArray[np.intp],
        feasible: list[NodeInfo],
        *,
        skip: set[str],
        with_static: bool,
    ) -> tuple[NDArray[np.int64], NDArray[np.int64] | None]:
        """:meth:`score_nodes` as arrays: the weighted totals and, ``with_static``, the part
        of them from plugins that are not :class:`ScoreReadsNodePods`."""
        totals = np.zeros(len(feasible), dtype=np.int64)
        static = np.zeros(len(feasible), dtype=np.int64) if with_static else None
        for plugin, weight, score_all, reads_pods, score_columns in self._score_steps:
            if plugin.name in skip:
                continue
            raw: list[int] | None = None
            try:
                scores = (
                    score_columns(state, pod, view.columns, rows)
                    if score_columns is not None
                    else None
                )
                if scores is None:
                    if score_all is not None:
                        raw = score_all(state, pod, feasible)
                    else:
                        score = plugin.score
                        raw = [score(state, pod, n) for n in feasible]
                    plugin.normalize(state, pod, raw)
                else:
                    scores = np.asarray(scores, dtype=np.int64)
                    if scores.shape != (len(feasible),):
                        raise ValueError(f"{scores.shape} scores for {len(feasible)} nodes")
            except Exception as e:
                raise PluginError.from_exception(plugin.name, e, point="Score") from e
            if raw is not None:
                if raw and (min(raw) < 0 or max(raw) > MAX_NODE_SCORE):
                    bad = next(s for s in raw if not 0 <= s <= MAX_NODE_SCORE)
                    raise PluginError(error(f"{plugin.name} scored {bad}, outside 0..100"))
                scores = np.array(raw, dtype=np.int64)
            # Read as unsigned, a negative score is huge: one reduction checks both ends.
            elif scores is not None and scores.view(np.uint64).max() > MAX_NODE_SCORE:
                bad = int(scores[np.flatnonzero((scores < 0) | (scores > MAX_NODE_SCORE))[0]])
                raise PluginError(error(f"{plugin.name} scored {bad}, outside 0..100"))
            assert scores is not None
            weighted = scores * weight if weight != 1 else scores
            totals += weighted
            if static is not None and not reads_pods:
                static += weighted
        return totals, static

    def _hint(
        self, state: CycleState, pod: PodInfo, sig: Hashable, cycle: int
    ) -> ScheduleResult | None:
        """The batch's best node for ``pod`` if it still fits, else None (a full cycle)."""
        b = self._batch
        assert b is not None
        if not b.usable(sig, cycle, self.clock()):
            metrics.batch_attempts.labels("no_hint", self.profile).inc()
            return None
        t0 = time.perf_counter()
        dynamic = [
            (p, w) for p, w, _, reads_pods, _ in self._score_steps
            if reads_pods and p.name not in b.skip
        ]  # fmt: skip

        def fits(ni: NodeInfo) -> bool:
            return self.filter_node(state, pod, ni) is SUCCESS

        def rescore(ni: NodeInfo) -> int:
            try:
                return sum(w * p.score(state, pod, ni) for p, w in dynamic)
            except Exception as e:
                raise PluginError.from_exception("batch rescore", e, point="Score") from e

        node = b.hint(cycle=cycle, fits=fits, rescore=rescore, rng=self._rng)
        self._observe("Filter", SUCCESS if node else _UNSCHEDULABLE, t0)
        if node is None:
            metrics.batch_attempts.labels("no_hint", self.profile).inc()
            return None
        metrics.batch_attempts.labels("hint", self.profile).inc()
        return ScheduleResult(node.name, 1, len(b) + 1, {})

    def forget_batch(self) -> None:
        """The pod of the last cycle was not placed after all: the next one starts afresh."""
        self._batch = None

    def _find_feasible(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo], skip: set[str]
    ) -> tuple[list[NodeInfo], dict[str, Status], int]:
        """Filter nodes from where the last cycle stopped until enough are feasible.

        The same nodes, plugins and verdicts as filtering one node at a time,
        plugin after plugin, until the wanted number is feasible; but done a
        chunk at a time, each plugin over the chunk's remaining nodes in one
        call. A chunk is never longer than the number of feasible nodes still
        wanted, so no node is filtered that the one-at-a-time order would not
        have filtered. A :class:`FilterAllPlugin` checks the chunk in one call.
        """
        num_all = len(nodes)
        filters = [
            (step.plugin, step.filter_all)
            for step in self._filter_steps
            if step.plugin.name not in skip
        ]
        want = self.num_feasible_nodes_to_find(num_all)
        feasible: list[NodeInfo] = []
        failed: dict[str, Status] = {}
        start = self._next_start % num_all
        order = [*nodes[start:], *nodes[:start]]
        evaluated = 0
        plugin = None
        ok, success, err = SUCCESS, Code.SUCCESS, Code.ERROR
        try:
            while evaluated < num_all and len(feasible) < want:
                chunk = order[evaluated : evaluated + want - len(feasible)]
                evaluated += len(chunk)
                alive = chunk
                where: list[int] | None = None  # positions of ``alive`` in chunk, when not all
                rejected: dict[int, Status] = {}
                for plugin, filter_all in filters:
                    if not alive:
                        break
                    if filter_all is not None:
                        statuses: list[Status] = filter_all(state, pod, alive)
                    else:
                        check = plugin.filter
                        statuses = [check(state, pod, ni) for ni in alive]
                    # count() compares by identity first: cheap while all are SUCCESS.
                    if statuses[0] is ok and statuses.count(ok) == len(statuses):
                        continue
                    kept: list[NodeInfo] = []
                    kept_at: list[int] = []
                    named: dict[int, Status] = {}  # a plugin may return one Status for many nodes
                    for j, st in enumerate(statuses):
                        at = j if where is None else where[j]
                        if st is ok or st.code is success:
                            kept.append(alive[j])
                            kept_at.append(at)
                        elif st.code is err:
                            raise PluginError(st.with_plugin(plugin.name))
                        else:
                            tagged = named.get(id(st))
                            if tagged is None:
                                tagged = named[id(st)] = st.with_plugin(plugin.name)
                            rejected[at] = tagged
                    alive, where = kept, kept_at
                feasible.extend(alive)
                for at in sorted(rejected):  # in node order, as one at a time would give
                    failed[chunk[at].name] = rejected[at]
        except PluginError:
            raise
        except Exception as e:
            raise PluginError.from_exception(_name(plugin), e, point="Filter") from e
        self._next_start = (start + evaluated) % num_all
        return feasible, failed, evaluated

    def score_nodes(
        self,
        state: CycleState,
        pod: PodInfo,
        nodes: Sequence[NodeInfo],
        skip: set[str] | frozenset[str] = frozenset(),
        static: dict[str, int] | None = None,
    ) -> dict[str, int]:
        """Weighted sum of every Score plugin's normalized scores, per node name.

        A :class:`ScoreAllPlugin` scores every node in one call per cycle
        instead of one per node. ``static``, when given, receives the part of
        each total from plugins that are not :class:`ScoreReadsNodePods`.
        """
        totals: list[int] | None = None
        static_totals = [0] * len(nodes) if static is not None else None
        for plugin, weight, score_all, reads_pods, _ in self._score_steps:
            if plugin.name in skip:
                continue
            try:
                if score_all is not None:
                    raw: list[int] = score_all(state, pod, nodes)
                else:
                    score = plugin.score
                    raw = [score(state, pod, n) for n in nodes]
                plugin.normalize(state, pod, raw)
            except Exception as e:
                raise PluginError.from_exception(plugin.name, e, point="Score") from e
            if raw and (min(raw) < 0 or max(raw) > MAX_NODE_SCORE):
                bad = next(s for s in raw if not 0 <= s <= MAX_NODE_SCORE)
                raise PluginError(error(f"{plugin.name} scored {bad}, outside 0..100"))
            if totals is None:
                totals = [s * weight for s in raw] if weight != 1 else raw
            else:
                totals = [t + s * weight for t, s in zip(totals, raw, strict=True)]
            if static_totals is not None and not reads_pods:
                static_totals = [t + s * weight for t, s in zip(static_totals, raw, strict=True)]
        if static is not None and static_totals is not None:
            static.update((n.name, t) for n, t in zip(nodes, static_totals, strict=True))
        if totals is None:
            return {n.name: 0 for n in nodes}
        return {n.name: t for n, t in zip(nodes, totals, strict=True)}

    def _observe(self, point: str, status: Status, started: float) -> None:
        key = (point, status.code)
        child = self._durations.get(key)
        if child is None:
            # labels() costs a lock and a lookup: keep each child, several are used per cycle.
            child = self._durations[key] = metrics.framework_extension_point_duration.labels(
                point, status.code.value, self.profile
            )
        child.observe(time.perf_counter() - started)

    def _select(self, totals: dict[str, int]) -> str:
        """The highest total; among equals, a uniform random choice."""
        best = max(totals.values())
        return self._rng.choice([name for name, score in totals.items() if score == best])


def _name(plugin: Plugin | None) -> str:
    return plugin.name if plugin is not None else "?"


class PluginError(RuntimeError):
    """A plugin raised or returned an Error status: a bug, reported with its name."""

    def __init__(self, status: Status) -> None:
        super().__init__(f"plugin {status.plugin or '?'}: {status.message}")
        self.status = status

    @classmethod
    def from_exception(cls, plugin: str, exc: Exception, *, point: str) -> PluginError:
        """The one policy for a plugin's exception at any extension point: logged with its
        traceback, counted, and turned into an error Status that names the plugin."""
        log.error("plugin=%s raised %s at %s", plugin, type(exc).__name__, point, exc_info=exc)
        metrics.plugin_errors.labels(plugin, point).inc()
        return cls(Status(Code.ERROR, (f"{type(exc).__name__}: {exc}",), plugin))

    def as_status(self) -> Status:
        """An error Status whose message names the plugin (for points that return one)."""
        return Status(Code.ERROR, (str(self),), self.status.plugin)
