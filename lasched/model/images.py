"""Container images: the names a pod's containers use and the images a node holds.

ImageLocality (lasched/plugins/imagelocality.py) compares the two as
kube-scheduler does: a pod's image reference without a tag gets ``:latest``
(:func:`normalized_image_name`, its ``normalizedImageName``) and is looked up
verbatim among the names a node's kubelet reports in ``status.images``. No
registry prefix is added (``nginx`` does not match ``docker.io/library/nginx``),
exactly as kube-scheduler leaves it.

Names are interned and a pod's tuple of images is shared between pods that
use the same images (a Deployment's replicas), so thousands of pods and nodes
keep one copy of each string.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from lasched.model.sharing import Memo

NO_IMAGES: Mapping[str, int] = {}
"""The images of a node that reports none (shared, never written)."""

_SHARED_LIMIT = 4096  # distinct image tuples kept for sharing; then the table starts afresh
_shared: Memo[tuple[str, ...], tuple[str, ...]] = Memo(_SHARED_LIMIT)


def normalized_image_name(name: str) -> str:
    """``name`` with ``:latest`` appended when it has no tag (a ``:`` after its last ``/``)."""
    if name.rfind(":") <= name.rfind("/"):
        name += ":latest"
    return name


def pod_images(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """The normalized image of each init container, then of each container, in order
    (a repeated image appears as often as its containers)."""
    names: list[str] = []
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or ():
            image = c.get("image") if isinstance(c, Mapping) else None
            names.append(sys.intern(normalized_image_name(image if isinstance(image, str) else "")))
    images = tuple(names)
    return _shared.share(images, images)


def node_images(status: Mapping[str, Any]) -> Mapping[str, int]:
    """Each name in ``status.images`` with the size of the first image that lists it
    (kube-scheduler's per-node ``ImageStates`` keys)."""
    images = status.get("images")
    if not images:
        return NO_IMAGES
    out: dict[str, int] = {}
    for image in images:
        if not isinstance(image, Mapping):
            continue
        size = image.get("sizeBytes")
        if isinstance(size, bool) or not isinstance(size, int):
            size = 0
        for name in image.get("names") or ():
            if isinstance(name, str) and name not in out:
                out[sys.intern(name)] = size
    return out or NO_IMAGES
