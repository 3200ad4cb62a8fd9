"""Opportunistic batching: reuse one pod's filtering and scoring for the next like it.

kube-scheduler's OpportunisticBatching (KEP-5598, beta since v1.35) keeps the
sorted, scored feasible nodes of a pod with a *signature* (the parts of the
pod that filtering and scoring read) and offers the best remaining node as a
hint to the next pod with the same signature, in the very next scheduling
cycle, for at most 500 ms. The hint is still filtered; if it fails, the pod
gets a full cycle.

kube-scheduler reuses the list only when the node just chosen no longer fits
the next pod (one pod per node); its newer rescore path covers the other
case, and so does this: a chosen node that still fits is scored again, with
only the plugins whose scores read the node's pods (those declared
``ScoreReadsNodePods``: NodeResourcesFit, BalancedAllocation), and goes
back into the list. A profile batches only if every plugin that filters,
scores, reserves or permits is declared ``Batchable``. The other plugins' scores
depend on the node object and the pod's signature alone, so the full cycle's
values stand.

A node whose generation changed since it was scored (an informer event, a
pod assumed by another profile) ends the batch: the next pod gets a full
cycle. What a batch cannot see are nodes outside its list that became
better in the meantime (a pod deleted elsewhere): the 500 ms bound is
kube-scheduler's answer to that, and lasched's too.

The framework builds a batch only for a pod that follows one with its
signature (``Framework.schedule``): a batch is a heap over every feasible
node, wasted when the next pod is unlike, as it mostly is in a mix of shapes.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Hashable, Sequence

import orjson

from lasched.cache.cache import NodeInfo
from lasched.model.pod import PodInfo

MAX_BATCH_AGE = 0.5  # seconds, as kube-scheduler's maxBatchAge


def signature(pod: PodInfo) -> Hashable | None:
    """What filtering and scoring read from ``pod``; None if more than that matters.

    Pods with latency requirements (their scores read the latency cache and
    other pods' places), pod-group members (Permit and reservations), pods
    with a nominated node (evaluated there first), and pods with a malformed
    declaration are never batched.
    """
    if (
        pod.latency is not None
        or pod.latency_error is not None
        or pod.group is not None
        or pod.group_error is not None
        or pod.priority_error is not None
        or pod.nominated_node_name
    ):
        return None
    r = pod.requests
    return (
        pod.scheduler_name,
        pod.priority,  # nominated pods of at least this priority count on a node
        r.milli_cpu,
        r.memory,
        r.ephemeral_storage,
        r.pods,
        tuple(sorted(r.scalar.items())),
        pod.non_zero,
        pod.host_ports,
        orjson.dumps(pod.node_selector, option=orjson.OPT_SORT_KEYS),
        orjson.dumps(pod.affinity, option=orjson.OPT_SORT_KEYS),
        orjson.dumps(pod.tolerations, option=orjson.OPT_SORT_KEYS),
    )


class Batch:
    """The scored nodes of one pod, best first, for the pods after it."""

    __slots__ = ("_chosen", "_chosen_static", "_heap", "created", "cycle", "signature", "skip")

    def __init__(
        self,
        *,
        signature: Hashable,
        cycle: int,
        skip: frozenset[str],
        chosen: NodeInfo,
        feasible: Sequence[NodeInfo],
        totals: Sequence[int],
        static: Sequence[int],
        rng: random.Random,
        now: float | None = None,
    ) -> None:
        """``totals`` and ``static`` (the weighted scores that do not read a node's pods)
        are per node of ``feasible``, in its order."""
        self.signature = signature
        self.cycle = cycle
        self.skip = skip  # score plugins PreScore skipped, the same for every pod of the batch
        self.created = time.monotonic() if now is None else now
        self._chosen = chosen
        self._chosen_static = 0
        # A random second key: among equal totals the order is uniform, as kube-scheduler's
        # selection among equal scores is. (It is unique, so the static score and the
        # node after it are never compared.)
        heap: list[tuple[int, float, int, int, NodeInfo]] = []
        append, draw = heap.append, rng.random
        for ni, total, fixed in zip(feasible, totals, static, strict=True):
            if ni is chosen:
                self._chosen_static = fixed
            else:
                append((-total, draw(), ni.generation, fixed, ni))
        heapq.heapify(heap)
        self._heap = heap

    def usable(self, sig: Hashable, cycle: int, now: float) -> bool:
        return (
            sig == self.signature
            and cycle == self.cycle + 1
            and now - self.created <= MAX_BATCH_AGE
        )

    def hint(
        self,
        *,
        cycle: int,
        fits: Callable[[NodeInfo], bool],
        rescore: Callable[[NodeInfo], int],
        rng: random.Random,
    ) -> NodeInfo | None:
        """The best node for the next pod, or None when only a full cycle can tell.

        ``fits`` runs every Filter on a node; ``rescore`` gives the weighted
        scores that read the node's pods.
        """
        last, fixed = self._chosen, self._chosen_static
        if last.node is not None and fits(last):
            total = fixed + rescore(last)
            heapq.heappush(self._heap, (-total, rng.random(), last.generation, fixed, last))
        while self._heap:
            _, _, generation, fixed, ni = heapq.heappop(self._heap)
            if ni.generation != generation or ni.node is None:
                return None  # changed since it was scored
            if fits(ni):
                self._chosen, self._chosen_static, self.cycle = ni, fixed, cycle
                return ni
            return None  # unchanged, yet it does not fit: something the batch cannot see
        return None

    def __len__(self) -> int:
        return len(self._heap)
