"""ImageLocality: prefer nodes that already hold the pod's container images.

kube-scheduler's plugin, to the integer. Each init container's and
container's image (normalized: lasched/model/images.py) that a node lists
adds the image's size scaled by its spread, ``size * nodes holding it /
all nodes``, so an image present everywhere does not pull every pod to the
same few nodes. The sum, clamped to ``[23 MiB, 1000 MiB x containers]``,
maps linearly onto 0..100.

kube-scheduler scales each image once per node; the scaled size depends on
the image alone, so PreScore computes it once per pod from the cache's image
counts (lasched/cache/images.py), and Score only looks the pod's images up in
each node's. When no node could reach the lower bound (the scaled sizes of
all the pod's images add up to 23 MiB or less, such as when no node holds
any of them) every node would score 0, and PreScore skips the plugin for the
cycle: the totals are the same, and most pods cost one lookup per container.
(kube-scheduler's plugin has no PreScore; lasched's is only this shortcut.)

Batching: the score reads the pod's images (:meth:`ImageLocality.sign_pod`
adds them to the signature), the node's images (part of the Node object)
and the cluster's image counts; a change in those counts on a node outside
a batch's list is among what a batch cannot see for its 500 ms.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from lasched.cache.cache import NodeInfo
from lasched.cache.images import ImageStates
from lasched.framework.interface import (
    MAX_NODE_SCORE,
    SKIP,
    SUCCESS,
    Batchable,
    CycleState,
    Status,
)
from lasched.model.pod import PodInfo

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB

_STATE = "ImageLocality/scaled"

Scaled = tuple[tuple[str, int], ...]
"""Per container of the pod, in order, with a nonzero scaled size: (image, scaled size)."""


def calculate_priority(sum_scores: int, num_containers: int) -> int:
    """kube-scheduler's ``calculatePriority``: the clamped sum mapped onto 0..100."""
    max_threshold = MAX_CONTAINER_THRESHOLD * num_containers
    if sum_scores < MIN_THRESHOLD:
        sum_scores = MIN_THRESHOLD
    elif sum_scores > max_threshold:
        sum_scores = max_threshold
    # Go's integer division truncates; both operands are >= 0 save for a pod without
    # containers, where the numerator is 0.
    return MAX_NODE_SCORE * (sum_scores - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


def scaled_image_score(size: int, num_nodes: int, total_nodes: int) -> int:
    """kube-scheduler's ``scaledImageScore``: the size times the spread, in float64,
    truncated (Python's float is Go's float64, and int() truncates as Go's conversion)."""
    spread = num_nodes / total_nodes
    return int(size * spread)


def scaled_images(images: ImageStates, pod: PodInfo) -> Scaled:
    """The scaled size of each of the pod's images some node holds."""
    total = images.node_count
    out: list[tuple[str, int]] = []
    for name in pod.images:
        state = images.get(name)
        if state is not None:
            scaled = scaled_image_score(state[0], state[1], total)
            if scaled:
                out.append((name, scaled))
    return tuple(out)


def _all_zero(scaled: Scaled) -> bool:
    """Does every node score 0? (Not even all the pod's images together pass the lower bound.)"""
    return sum(s for _, s in scaled) <= MIN_THRESHOLD


class ImageLocality(Batchable):
    """Score: the pod's images already on the node, by size and spread (0..100)."""

    name = "ImageLocality"

    def __init__(self, images: ImageStates) -> None:
        self._images = images

    def sign_pod(self, pod: PodInfo) -> Hashable | None:
        """The pod's images: the score reads them."""
        return pod.images

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        scaled = state.data[_STATE] = scaled_images(self._images, pod)
        return SKIP if _all_zero(scaled) else SUCCESS

    def _scaled(self, state: CycleState, pod: PodInfo) -> Scaled:
        """The pod's scaled image sizes, from PreScore (or now, for a caller without it)."""
        scaled: Scaled | None = state.data.get(_STATE)
        if scaled is None:
            scaled = state.data[_STATE] = scaled_images(self._images, pod)
        return scaled

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        n = node.node
        assert n is not None
        held = n.images
        total = sum(s for name, s in self._scaled(state, pod) if name in held)
        return calculate_priority(total, len(pod.images))

    def score_all(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """``[score(state, pod, n) for n in nodes]``, the pod's scaled sizes read once."""
        scaled = self._scaled(state, pod)
        if _all_zero(scaled):
            return [0] * len(nodes)
        containers = len(pod.images)
        out: list[int] = []
        append = out.append
        for ni in nodes:
            held = ni.node.images  # type: ignore[union-attr]
            append(calculate_priority(sum(s for name, s in scaled if name in held), containers))
        return out

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        return None
