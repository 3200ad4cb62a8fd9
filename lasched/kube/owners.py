"""The size a pod group's controller gives it: one GET of the controller, cached.

A group declared without a size (the ``pod-group`` annotation) takes its size
from its members' controller (lasched.model.podgroup.owner_size). The gang
plugin asks :meth:`OwnerSizes.lookup` from the scheduling loop, which must not
await: the first ask starts a GET beside the loop and answers None ("being
read"); when the answer arrives, ``on_read`` tells the scheduler, which
rechecks the group's gated members.

Why a GET and not informers: only groups without a declared size need it, a
handful of objects, while watching every Job, ReplicaSet and StatefulSet of a
cluster would hold thousands of objects (a Deployment keeps ten old
ReplicaSets) in memory for them. An answer is kept for :data:`REREAD_SECONDS`
and then read again on the next ask, still answering with the old one
meanwhile: a scaled Job or ReplicaSet changes its group's size within that
time. Invariant: at most one read per controller is in flight, and every read
ends in an answer (a failed read answers "no size", so the group falls back to
the lull instead of waiting forever).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from lasched.kube.client import ApiError, KubeClient
from lasched.model.podgroup import OWNER_APIS, OwnerRef, OwnerSize, owner_size
from lasched.tasks import TaskSet

log = logging.getLogger(__name__)

REREAD_SECONDS = 30.0
READS_IN_FLIGHT = 4
MAX_ENTRIES = 4096  # beyond it, answers older than REREAD_SECONDS are dropped


@dataclass(slots=True)
class _Entry:
    answer: OwnerSize | None  # None until the first read ends
    read_at: float = 0.0
    reading: bool = False


class OwnerSizes:
    """Controllers' answers about their groups' sizes, read on demand and cached."""

    def __init__(
        self,
        client: KubeClient,
        *,
        on_read: Callable[[str, OwnerRef], None],
        clock: Callable[[], float] = time.monotonic,
        reread_seconds: float = REREAD_SECONDS,
    ) -> None:
        self._client = client
        self._on_read = on_read
        self._clock = clock
        self._reread = reread_seconds
        self._entries: dict[tuple[str, str], _Entry] = {}  # (namespace, uid)
        self.reads = TaskSet("owner-size", READS_IN_FLIGHT)

    def lookup(self, namespace: str, ref: OwnerRef) -> OwnerSize | None:
        """The controller's answer; None while it is read the first time. Never awaits."""
        path = OWNER_APIS.get(ref.kind)
        if path is None:
            return OwnerSize(
                None, f"{ref.shown(namespace)} says no size (annotate its pods with pod-group-size)"
            )
        key = (namespace, ref.uid)
        e = self._entries.get(key)
        if e is None:
            if len(self._entries) >= MAX_ENTRIES:
                self._prune()
            e = self._entries[key] = _Entry(None)
        if not e.reading and (e.answer is None or self._clock() - e.read_at >= self._reread):
            e.reading = True
            url = path.format(namespace=namespace, name=ref.name)
            self.reads.spawn(self._read(key, namespace, ref, url), name=ref.shown(namespace))
        return e.answer

    def _prune(self) -> None:
        """Drop the answers that would be read again anyway (their groups are likely gone)."""
        old = self._clock() - self._reread
        for key, e in list(self._entries.items()):
            if not e.reading and e.read_at < old:
                del self._entries[key]

    async def _read(self, key: tuple[str, str], namespace: str, ref: OwnerRef, url: str) -> None:
        """GET the controller; cancelling is safe (the next ask reads again)."""
        who = ref.shown(namespace)
        try:
            obj = await self._client.get(url)
        except asyncio.CancelledError:
            self._entries.pop(key, None)
            raise
        except ApiError as e:
            if e.not_found:
                answer = OwnerSize(None, f"{who} was not found")
            else:
                if e.status == 403:
                    log.warning("cannot read %s for its pod group's size (RBAC: get %s): %s",
                                who, ref.kind, e.message)  # fmt: skip
                answer = OwnerSize(None, f"{who} could not be read ({e.status} {e.reason})")
        except Exception as e:  # a connection error, a malformed answer: fall back, say why
            log.warning("reading %s for its pod group's size failed: %s", who, e)
            answer = OwnerSize(None, f"{who} could not be read ({type(e).__name__})")
        else:
            if obj.get("metadata", {}).get("uid") not in (None, ref.uid):
                answer = OwnerSize(None, f"{who} was replaced by another object of that name")
            else:
                answer = owner_size(namespace, ref, obj)
            if answer.problem:
                log.warning("pod group size: %s", answer.problem)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(None)
        changed = entry.answer != answer
        entry.answer, entry.read_at, entry.reading = answer, self._clock(), False
        if changed:
            self._on_read(namespace, ref)
