"""The plugin interface: Status and the extension points.

Mirrors kube-scheduler's framework. A plugin returns a :class:`Status` whose
``reasons`` are short and human ("Insufficient cpu"); the runtime aggregates
them into the FailedScheduling summary. An exception raised by a plugin is a
bug in that plugin: the runtime reports it as an error with the plugin's name,
and the pod is retried with backoff.

The scheduling cycle calls every extension point synchronously, so plugins
must not do I/O; the binding cycle (Permit waiting, Bind) is asynchronous.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from lasched.cache.cache import NodeInfo
    from lasched.model.pod import PodInfo

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

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def message(self) -> str:
        return ", ".join(self.reasons)

    def with_plugin(self, plugin: str) -> Status:
        return Status(self.code, self.reasons, plugin)


SUCCESS = Status()


def unschedulable(*reasons: str, unresolvable: bool = False) -> Status:
    code = Code.UNSCHEDULABLE_AND_UNRESOLVABLE if unresolvable else Code.UNSCHEDULABLE
    return Status(code, reasons)


def error(reason: str) -> Status:
    return Status(Code.ERROR, (reason,))


@dataclass(slots=True)
class CycleState:
    """Per-pod, per-cycle scratch space that plugins share (PreFilter -> Filter)."""

    data: dict[str, Any] = field(default_factory=dict)


class Plugin(Protocol):
    name: str


@runtime_checkable
class PreFilterPlugin(Plugin, Protocol):
    def pre_filter(self, state: CycleState, pod: PodInfo) -> Status: ...


@runtime_checkable
class FilterPlugin(Plugin, Protocol):
    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status: ...


@runtime_checkable
class ScorePlugin(Plugin, Protocol):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        """A raw score; :meth:`normalize` maps the cycle's scores into 0..100."""
        ...

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Rewrite ``scores`` in place to 0..100 (no-op if already in range)."""
        ...
