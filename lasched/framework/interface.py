"""The plugin interface: Status and the extension points.

Mirrors kube-scheduler's framework. A plugin returns a :class:`Status` whose
``reasons`` are short and human ("Insufficient cpu"); the runtime aggregates
them into the FailedScheduling summary. An exception raised by a plugin is a
bug in that plugin: the runtime reports it as an error with the plugin's name,
and the pod is retried with backoff.

The scheduling cycle calls every extension point synchronously, so plugins
must not do I/O; the binding cycle (Permit waiting, PreBind, Bind) is asynchronous.

What a plugin can do is declared, never guessed: the extension points are the
runtime-checkable Protocols it implements (kube-scheduler's
``getExtensionPoints``), the fast forms of Filter and Score are Protocols too
(:class:`FilterAllPlugin`, :class:`ScoreAllPlugin`), as is a Filter that
judges the feasible nodes together (:class:`FilterFeasiblePlugin`), and so are the
column forms that judge every candidate node in a few numpy operations
(:class:`FilterColumnsPlugin`, :class:`ScoreColumnsPlugin`, reading the
cache's lasched/cache/columns.py); and what opportunistic
batching needs to know is a trait the class inherits (:class:`Batchable`,
:class:`ScoreReadsNodePods`). The runtime looks each up once, when a
framework is built, never per cycle.

A plugin that rejects pods (PreEnqueue, PreFilter, Filter, Reserve, Permit, PreBind)
says which cluster events can help them by implementing
:class:`EnqueueExtensions` (lasched.framework.events); one that does not is
taken to be helped by every event.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from lasched.cache.cache import NodeInfo
    from lasched.cache.columns import NodeColumns
    from lasched.framework.events import ClusterEventWithHint
    from lasched.model.pod import PodInfo
    from lasched.queue.queue import QueuedPod

MAX_NODE_SCORE = 100
MIN_NODE_SCORE = 0


class Code(enum.Enum):
    SUCCESS = "Success"
    ERROR = "Error"
    UNSCHEDULABLE = "Unschedulable"
    # Unschedulable, and preempting pods on this node would not help either.
    UNSCHEDULABLE_AND_UNRESOLVABLE = "UnschedulableAndUnresolvable"
    WAIT = "Wait"
    SKIP = "Skip"


@dataclass(frozen=True, slots=True)
class Status:
    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""
    timeout: float = 0.0  # for WAIT: how long Permit may hold the pod

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return Status(self.code, self.reasons, plugin, self.timeout)


SUCCESS = Status()
SKIP = Status(Code.SKIP)


def unschedulable(*reasons: str, unresolvable: bool = False) -> Status:
    code = Code.UNSCHEDULABLE_AND_UNRESOLVABLE if unresolvable else Code.UNSCHEDULABLE
    return Status(code, reasons)


def error(reason: str) -> Status:
    return Status(Code.ERROR, (reason,))


def wait(timeout: float, reason: str = "") -> Status:
    """Permit: hold the pod (reserved) for up to ``timeout`` seconds."""
    return Status(Code.WAIT, (reason,) if reason else (), timeout=timeout)


@dataclass(frozen=True, slots=True)
class PostFilterResult:
    """What a PostFilter (preemption) decided: the node to free for the pod, and
    the pods to evict from it (the scheduler evicts them: plugins do no I/O)."""

    nominated_node: str
    victims: tuple[PodInfo, ...] = ()
    # Other pods to nominate with it (the rest of a pod group).
    nominations: tuple[tuple[PodInfo, str], ...] = ()


@dataclass(slots=True)
class CycleState:
    """Per-pod, per-cycle scratch space that plugins share (PreFilter -> Filter)."""

    data: dict[str, Any] = field(default_factory=dict)


class Plugin(Protocol):
    name: str


@runtime_checkable
class QueueSortPlugin(Plugin, Protocol):
    def sort_key(self, qp: QueuedPod, now: float) -> tuple[float, ...]:
        """activeQ pops the smallest key first."""
        ...


@runtime_checkable
class PreEnqueuePlugin(Plugin, Protocol):
    def pre_enqueue(self, pod: PodInfo) -> Status:
        """Not SUCCESS: the pod is gated and waits outside activeQ until an event."""
        ...


@runtime_checkable
class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status: ...


@runtime_checkable
class FilterPlugin(Plugin, Protocol):
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status: ...


@runtime_checkable
class FilterAllPlugin(FilterPlugin, Protocol):
    """A Filter that also checks many nodes in one call, for the hot path."""

    def filter_all(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[Status]:
        """Exactly ``[self.filter(state, pod, n) for n in nodes]``."""
        ...


@runtime_checkable
class FilterFeasiblePlugin(FilterPlugin, Protocol):
    """A Filter that also judges the feasible nodes together, after every Filter passed
    them: a node may be dropped for what the others are (a tier: cloud nodes only when
    no edge node fits). kube-scheduler has no such point; lasched runs it on the nodes
    a cycle found feasible, before PreScore, and ``lasched explain`` shows its verdicts.
    """

    def filter_feasible(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[Status] | None:
        """A verdict per node of ``nodes``, or None to keep them all. Must keep at
        least one node: a tier orders nodes, it never makes a pod unschedulable."""
        ...


@dataclass(frozen=True, slots=True)
class ColumnVerdicts:
    """A Filter's verdicts on many nodes at once, as :meth:`FilterColumnsPlugin.filter_columns`
    gives them: ``codes[i]`` is 0 when node ``i`` passes, ``k > 0`` when it is rejected
    with ``statuses[k - 1]``, and -1 when only the per-node ``filter`` can tell (which
    ``settled`` False must announce)."""

    codes: NDArray[np.int64]
    statuses: tuple[Status, ...] = ()
    settled: bool = True


@runtime_checkable
class FilterColumnsPlugin(FilterPlugin, Protocol):
    """A Filter that also judges every candidate node at once from the cache's columns."""

    def filter_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> ColumnVerdicts | None:
        """The verdicts of ``filter`` on the nodes at ``rows`` of ``columns``, or None
        when this pod needs the per-node form.

        The same verdicts and statuses as ``filter``; reads nothing ``filter``
        would not and changes nothing, so the runtime may ask about more nodes
        than one-at-a-time filtering would reach.
        """
        ...


@runtime_checkable
class PostFilterPlugin(Plugin, Protocol):
    def post_filter(
        self, state: CycleState, pod: PodInfo, statuses: dict[str, Status]
    ) -> tuple[PostFilterResult | None, Status]:
        """Called when no node fits (preemption); ``statuses`` holds each node's rejection."""
        ...


@runtime_checkable
class PreScorePlugin(Plugin, Protocol):
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status: ...


@runtime_checkable
class ScorePlugin(Plugin, Protocol):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """A raw score; :meth:`normalize` maps the cycle's scores into 0..100."""
        ...

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Rewrite ``scores`` in place to 0..100 (no-op if already in range)."""
        ...


@runtime_checkable
class ScoreAllPlugin(ScorePlugin, Protocol):
    """A Score plugin that also scores many nodes in one call, once per cycle."""

    def score_all(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """Exactly ``[self.score(state, pod, n) for n in nodes]``."""
        ...


@runtime_checkable
class ScoreColumnsPlugin(ScorePlugin, Protocol):
    """A Score plugin that also scores every feasible node at once from the cache's columns."""

    def score_columns(
        self, state: CycleState, pod: PodInfo, columns: NodeColumns, rows: NDArray[np.intp]
    ) -> NDArray[np.int64] | None:
        """``score`` of the nodes at ``rows``, then ``normalize`` over them, in one call;
        None when this pod needs the per-node form."""
        ...


@runtime_checkable
class ReservePlugin(Plugin, Protocol):
    """Reserve runs right after the pod is assumed; Unreserve undoes it on any
    later failure. The runtime guarantees the pairing: every plugin whose
    ``reserve`` ran gets ``unreserve`` if the pod does not end up bound."""

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status: ...
    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None: ...


@runtime_checkable
class PermitPlugin(Plugin, Protocol):
    def permit(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        """SUCCESS binds now; WAIT (see :func:`wait`) holds the reserved pod until
        allowed, rejected or timed out; anything else rejects."""
        ...


@runtime_checkable
class PreBindPlugin(Plugin, Protocol):
    """Runs in the binding cycle, after Permit and before Bind (kube-scheduler's
    PreBind): the place for API writes a binding depends on, such as binding a
    pod's volumes. SUCCESS goes on to Bind; a rejection (UNSCHEDULABLE…) or an
    error unreserves and forgets the pod, which is tried again: a rejection
    waits for the events this plugin registered, an error backs off."""

    async def pre_bind(self, state: CycleState, pod: PodInfo, node: str) -> Status: ...


@runtime_checkable
class BindPlugin(Plugin, Protocol):
    """Writes the binding. The first binder that does not SKIP decides:

    * SUCCESS: the pod is bound to ``node``;
    * UNSCHEDULABLE_AND_UNRESOLVABLE: the pod is no longer ours to bind (bound
      elsewhere, or deleted): forget it, never rebind;
    * anything else: it is not bound; the pod is retried with backoff.

    It runs in the binding cycle, as PreBind does.
    """

    async def bind(self, state: CycleState, pod: PodInfo, node: str) -> Status: ...


@runtime_checkable
class EnqueueExtensions(Plugin, Protocol):
    """The cluster events that can make a pod this plugin rejected schedulable.

    kube-scheduler's ``EnqueueExtensions``. The queue moves such a pod on an
    event only when this plugin (or another that rejected it) registered the
    event and the hint says QUEUE. An empty list: no event helps, only the
    pod's own update and the queue's periodic safety flush retry it.
    """

    def events_to_register(self) -> list[ClusterEventWithHint]: ...


class Batchable:
    """Trait: for a pod that ``batching.signature`` accepts, this plugin's PreFilter,
    Filter, PreScore, Score, Reserve and Permit read from the pod only what the
    signature holds, and from a node only what changes its generation.

    Opportunistic batching (lasched/framework/batching.py) then may hand the
    next pod with the same signature the nodes this plugin judged for the
    previous one. A profile with one filtering, scoring, reserving or
    permitting plugin without this trait never batches.
    """

    __slots__ = ()


@runtime_checkable
class PodSigner(Protocol):
    """A :class:`Batchable` plugin that takes only some pods into a batch.

    ``sign_pod`` returns what this plugin reads of the pod beyond
    ``batching.signature`` (added to it), or None when a batch must not take
    the pod (kube-scheduler's ``SignPod``): InterPodAffinity for a pod with
    terms, PodTopologySpread for a pod with constraints, own or defaulted.
    """

    def sign_pod(self, pod: PodInfo) -> Hashable | None: ...


class ScoreReadsNodePods:
    """Trait of a Score plugin: its score of a node changes when the node's pods do.

    A batch scores the node its previous pod went to again with these plugins
    only; every other plugin's score depends on the node object and the pod's
    signature, so the full cycle's value stands.
    """

    __slots__ = ()
