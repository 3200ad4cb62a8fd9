"""The framework runtime: runs a profile's plugins for one pod.

Filtering and scoring follow kube-scheduler's ``schedulePod``: filter nodes,
starting where the previous cycle stopped, until enough feasible nodes are
found (``percentageOfNodesToScore``), score those, and pick the best; ties are
broken at random so that equal nodes share the load.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from prometheus_client import Histogram

from lasched import metrics
from lasched.cache.cache import NodeInfo
from lasched.framework import batching
from lasched.framework.batching import Batch
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
    FilterPlugin,
    PermitPlugin,
    Plugin,
    PodSigner,
    PostFilterPlugin,
    PostFilterResult,
    PreEnqueuePlugin,
    PreFilterPlugin,
    PreScorePlugin,
    QueueSortPlugin,
    ReservePlugin,
    ScoreAllPlugin,
    ScorePlugin,
    ScoreReadsNodePods,
    Status,
    error,
)
from lasched.model.pod import PodInfo

log = logging.getLogger(__name__)

_UNSCHEDULABLE = Status(Code.UNSCHEDULABLE)

FilterAll = Callable[[CycleState, PodInfo, Sequence[NodeInfo]], list[Status]]
ScoreAll = Callable[[CycleState, PodInfo, Sequence[NodeInfo]], list[int]]

MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5


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
    scores: dict[str, int]


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
        self._compile()

    def _compile(self) -> None:
        """Look up, once, the declared capabilities the hot path uses."""
        self._filter_steps: tuple[tuple[FilterPlugin, FilterAll | None], ...] = tuple(
            (p, p.filter_all if isinstance(p, FilterAllPlugin) else None) for p in self._filters
        )
        self._score_steps: tuple[tuple[ScorePlugin, int, ScoreAll | None, bool], ...] = tuple(
            (
                p,
                w,
                p.score_all if isinstance(p, ScoreAllPlugin) else None,
                isinstance(p, ScoreReadsNodePods),
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
            *self._reserves, *self._permits,
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
            return FitError(num_all_nodes=num_all, pre_filter=pre)

        sig = batching.signature(pod) if self.batching and cycle is not None else None
        if sig is not None and self._signers:
            parts = tuple(p.sign_pod(pod) for p in self._signers)
            sig = None if None in parts else (sig, parts)
        if sig is not None and cycle is not None and self._batch is not None:
            hinted = self._hint(state, pod, sig, cycle)
            if hinted is not None:
                return hinted
        self._batch = None

        t0 = time.perf_counter()
        feasible, failed, evaluated = self._find_feasible(state, pod, nodes, skip)
        self._observe("Filter", SUCCESS if feasible else _UNSCHEDULABLE, t0)
        if not feasible:
            return FitError(num_all_nodes=num_all, node_statuses=failed)
        if len(feasible) == 1 or not self._scores:
            node = feasible[0] if len(feasible) == 1 else self._rng.choice(feasible)
            return ScheduleResult(node.name, evaluated, len(feasible), {})
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
        t0 = time.perf_counter()
        static: dict[str, int] | None = {} if sig is not None else None
        totals = self.score_nodes(state, pod, feasible, skip=skip_score, static=static)
        self._observe("Score", SUCCESS, t0)
        chosen = self._select(totals)
        if sig is not None and cycle is not None and static is not None:
            self._batch = Batch(
                signature=sig, cycle=cycle, skip=frozenset(skip_score),
                chosen=next(ni for ni in feasible if ni.name == chosen),
                feasible=feasible, totals=totals, static=static, rng=self._rng,
            )  # fmt: skip
        return ScheduleResult(chosen, evaluated, len(feasible), totals)

    def _hint(
        self, state: CycleState, pod: PodInfo, sig: Hashable, cycle: int
    ) -> ScheduleResult | None:
        """The batch's best node for ``pod`` if it still fits, else None (a full cycle)."""
        b = self._batch
        assert b is not None
        if not b.usable(sig, cycle, time.monotonic()):
            metrics.batch_attempts.labels("no_hint", self.profile).inc()
            return None
        t0 = time.perf_counter()
        dynamic = [
            (p, w) for p, w, _, reads_pods in self._score_steps
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
        filters = [step for step in self._filter_steps if step[0].name not in skip]
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
        for plugin, weight, score_all, reads_pods in self._score_steps:
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
