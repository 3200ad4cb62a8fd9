"""Builders of pod and node JSON for unit tests."""

from __future__ import annotations

from typing import Any

from lasched.model.node import Node
from lasched.model.pod import PodInfo


def pod_json(
    name: str,
    *,
    namespace: str = "default",
    cpu: str | None = None,
    memory: str | None = None,
    node: str = "",
    priority: int | None = None,
    scheduler: str = "lasched",
    uid: str | None = None,
    rv: str = "1",
    labels: dict[str, str] | None = None,
    controller: tuple[str, str] | None = None,
    deleting: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    """A pod; ``controller`` is the (kind, uid) of its controlling ownerReference."""
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid or f"uid-{namespace}-{name}",
            "resourceVersion": rv,
        },
        "spec": {
            "schedulerName": scheduler,
            "containers": [{"name": "c", "resources": {"requests": requests}}],
            **spec,
        },
        "status": {"phase": "Pending"},
    }
    if labels:
        body["metadata"]["labels"] = labels
    if controller is not None:
        kind, owner_uid = controller
        body["metadata"]["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": kind, "name": owner_uid, "uid": owner_uid,
             "controller": True}
        ]  # fmt: skip
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    if node:
        body["spec"]["nodeName"] = node
    if priority is not None:
        body["spec"]["priority"] = priority
    return body


def make_pod(name: str, **kwargs: Any) -> PodInfo:
    return PodInfo(pod_json(name, **kwargs))


def node_json(
    name: str,
    *,
    cpu: str = "8",
    memory: str = "32Gi",
    pods: str = "110",
    ready: bool = True,
    unschedulable: bool = False,
    taints: list[dict[str, str]] | None = None,
    labels: dict[str, str] | None = None,
    extended: dict[str, str] | None = None,
    images: list[tuple[list[str], int]] | None = None,
    rv: str = "1",
) -> dict[str, Any]:
    """A node; ``images`` are its ``status.images``, each (names, sizeBytes)."""
    alloc = {"cpu": cpu, "memory": memory, "pods": pods, **(extended or {})}
    body: dict[str, Any] = {
        "metadata": {"name": name, "labels": labels or {}, "resourceVersion": rv},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {
            "allocatable": alloc,
            "capacity": alloc,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }
    if images is not None:
        body["status"]["images"] = [{"names": names, "sizeBytes": size} for names, size in images]
    return body


def make_node(name: str, **kwargs: Any) -> Node:
    return Node(node_json(name, **kwargs))
