"""Node: the parts of a Node object the scheduler reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lasched.model.images import node_images
from lasched.model.resources import Resources


class Taint:
    __slots__ = ("effect", "key", "value")

    def __init__(self, key: str, value: str, effect: str) -> None:
        self.key = key
        self.value = value
        self.effect = effect

    def __repr__(self) -> str:
        return f"{{{self.key}: {self.value}}}" if self.value else f"{{{self.key}}}"


class Node:
    """A decoded node. Treat instances as immutable: a new event builds a new one."""

    __slots__ = (
        "addresses",
        "allocatable",
        "images",
        "labels",
        "name",
        "ready",
        "resource_version",
        "taints",
        "uid",
        "unschedulable",
    )

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        self.name: str = meta["name"]
        self.uid: str = meta.get("uid", "")
        self.resource_version: str = meta.get("resourceVersion", "")
        self.labels: dict[str, str] = meta.get("labels") or {}
        self.unschedulable: bool = bool(spec.get("unschedulable", False))
        self.taints: tuple[Taint, ...] = tuple(
            Taint(t.get("key", ""), t.get("value", ""), t.get("effect", ""))
            for t in spec.get("taints") or ()
        )
        self.allocatable = Resources.from_list(status.get("allocatable"))
        self.ready: bool = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or ()
        )
        # Image name -> size in bytes, for ImageLocality (kube-scheduler's ImageStates keys).
        self.images: Mapping[str, int] = node_images(status)
        self.addresses: dict[str, str] = {
            a.get("type", ""): a.get("address", "") for a in status.get("addresses") or ()
        }

    @property
    def key(self) -> str:
        return self.name

    @property
    def internal_ip(self) -> str | None:
        return self.addresses.get("InternalIP")

    def __repr__(self) -> str:
        return f"Node({self.name}, ready={self.ready}, rv={self.resource_version})"
