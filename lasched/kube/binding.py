"""Writing scheduling decisions: ``pods/binding`` and the PodScheduled condition."""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from lasched.kube.client import ApiError, KubeClient


class BindOutcome(enum.Enum):
    BOUND = "bound"
    ALREADY_ASSIGNED = "already-assigned"  # 409: someone else bound it; never rebind
    GONE = "gone"  # 404: the pod was deleted meanwhile


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def bind(kc: KubeClient, *, namespace: str, name: str, uid: str, node: str) -> BindOutcome:
    """Bind a pod to ``node`` through the binding subresource.

    The UID precondition makes a bind of a deleted-and-recreated pod of the
    same name fail instead of binding the wrong object. The answer is a
    ``Status``, not a Binding, so it is not decoded into one. Other API errors
    and transport errors propagate: the caller decides whether the outcome is
    ambiguous and must be read back.
    """
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    try:
        await kc.post(f"/api/v1/namespaces/{namespace}/pods/{name}/binding", body)
    except ApiError as e:
        if e.conflict:
            return BindOutcome.ALREADY_ASSIGNED
        if e.not_found:
            return BindOutcome.GONE
        raise
    return BindOutcome.BOUND


async def set_unschedulable(
    kc: KubeClient, *, namespace: str, name: str, message: str, nominated_node: str | None = None
) -> None:
    """Record ``PodScheduled=False`` (reason Unschedulable), as kube-scheduler does."""
    status: dict[str, object] = {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": None,
                "lastTransitionTime": now_rfc3339(),
            }
        ]
    }
    if nominated_node is not None:
        status["nominatedNodeName"] = nominated_node
    try:
        await kc.patch(
            f"/api/v1/namespaces/{namespace}/pods/{name}/status",
            {"status": status},
            patch_type="strategic",
        )
    except ApiError as e:
        if not e.not_found:
            raise
