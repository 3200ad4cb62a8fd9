"""Pod-group (gang) declarations, in every spelling lasched accepts.

A pod belongs to at most one group, named within its namespace. Spellings,
first match wins:

==========================================  ===========================================
lasched labels                              ``lasched.io/pod-group: <name>``,
                                            ``lasched.io/min-available: "<n>"``,
                                            ``lasched.io/timeout-seconds: "<s>"`` (optional)
scheduler-plugins (coscheduling)            ``scheduling.x-k8s.io/pod-group: <name>`` and a
                                            ``PodGroup`` object of that name (minMember,
                                            scheduleTimeoutSeconds)
KubeNexus labels                            ``pod-group.scheduling.kubenexus.io/name``,
                                            ``pod-group.scheduling.kubenexus.io/min-available``
the earlier Python scheduler's annotation   ``pod-group: <name>``; optional
                                            ``pod-group-size: "<n>"``
==========================================  ===========================================

For the ``pod-group`` annotation without a declared size, the group is
all-or-nothing over the members that exist: min-available is the number of
members seen once no new member has arrived for
:data:`ANNOTATION_SETTLE_SECONDS`, so a group created pod by pod is not
mistaken for a group of one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LASCHED_GROUP = "lasched.io/pod-group"
LASCHED_MIN = "lasched.io/min-available"
LASCHED_TIMEOUT = "lasched.io/timeout-seconds"
PODGROUP_LABEL = "scheduling.x-k8s.io/pod-group"
KUBENEXUS_GROUP = "pod-group.scheduling.kubenexus.io/name"
KUBENEXUS_MIN = "pod-group.scheduling.kubenexus.io/min-available"
ANNOTATION_GROUP = "pod-group"
ANNOTATION_SIZE = "pod-group-size"

ANNOTATION_SETTLE_SECONDS = 2.0
DEFAULT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class GroupDecl:
    """What one pod says about its group."""

    key: str  # namespace/name
    min_available: int | None  # None: all members seen (annotation without a size)
    timeout_seconds: float | None
    source: str


class GroupError(ValueError):
    """A group declaration that cannot be honoured; the message names the value."""


def _positive_int(value: str, what: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise GroupError(f'{what}="{value}" is not a positive integer') from None
    if n < 1:
        raise GroupError(f'{what}="{value}" is not a positive integer')
    return n


def _timeout(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        t = float(value)
    except ValueError:
        raise GroupError(f'{LASCHED_TIMEOUT}="{value}" is not a number of seconds') from None
    if not t > 0:
        raise GroupError(f'{LASCHED_TIMEOUT}="{value}" must be positive')
    return t


def declared_group(
    namespace: str, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> GroupDecl | None:
    """The pod's group declaration, None if it has none; GroupError if it is invalid."""
    if LASCHED_GROUP in labels:
        if LASCHED_MIN not in labels:
            raise GroupError(f"label {LASCHED_GROUP} needs {LASCHED_MIN} beside it")
        return GroupDecl(
            key=f"{namespace}/{labels[LASCHED_GROUP]}",
            min_available=_positive_int(labels[LASCHED_MIN], f"label {LASCHED_MIN}"),
            timeout_seconds=_timeout(labels.get(LASCHED_TIMEOUT)),
            source="lasched",
        )
    if PODGROUP_LABEL in labels:
        # min-available and timeout come from the PodGroup object.
        return GroupDecl(
            key=f"{namespace}/{labels[PODGROUP_LABEL]}",
            min_available=None,
            timeout_seconds=None,
            source="podgroup",
        )
    if KUBENEXUS_GROUP in labels:
        if KUBENEXUS_MIN not in labels:
            raise GroupError(f"label {KUBENEXUS_GROUP} needs {KUBENEXUS_MIN} beside it")
        return GroupDecl(
            key=f"{namespace}/{labels[KUBENEXUS_GROUP]}",
            min_available=_positive_int(labels[KUBENEXUS_MIN], f"label {KUBENEXUS_MIN}"),
            timeout_seconds=None,
            source="kubenexus",
        )
    if ANNOTATION_GROUP in annotations:
        name = annotations[ANNOTATION_GROUP].strip()
        if not name:
            raise GroupError(f'annotation {ANNOTATION_GROUP}="" names no group')
        size = annotations.get(ANNOTATION_SIZE)
        return GroupDecl(
            key=f"{namespace}/{name}",
            min_available=(
                _positive_int(size, f"annotation {ANNOTATION_SIZE}") if size is not None else None
            ),
            timeout_seconds=None,
            source="annotation",
        )
    return None


class PodGroup:
    """A scheduler-plugins ``PodGroup`` object (scheduling.x-k8s.io/v1alpha1)."""

    __slots__ = ("key", "min_member", "resource_version", "timeout_seconds")

    def __init__(self, obj: Mapping[str, object]) -> None:
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        assert isinstance(meta, dict) and isinstance(spec, dict)
        self.key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        self.resource_version: str = str(meta.get("resourceVersion", ""))
        self.min_member: int = int(spec.get("minMember") or 1)
        timeout = spec.get("scheduleTimeoutSeconds")
        self.timeout_seconds: float | None = float(timeout) if timeout else None
