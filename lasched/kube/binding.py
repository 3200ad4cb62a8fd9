"""The API writes of scheduling decisions, one request each.

``pods/binding`` (through :class:`DefaultBinder`, the Bind plugin), the
PodScheduled condition, the nominated node, a preemption victim's deletion and
a PodGroup's phase. :mod:`lasched.kube.statuswriter` runs all but the binding
beside the scheduling loop, in order per pod.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

import aiohttp

from lasched.framework.interface import SUCCESS, Code, CycleState, Status
from lasched.kube.client import JSON, ApiError, KubeClient
from lasched.model.pod import PodInfo


class BindOutcome(enum.Enum):
    BOUND = "bound"
    ALREADY_ASSIGNED = "already-assigned"  # 409: someone else bound it; never rebind
    GONE = "gone"  # 404: the pod was deleted meanwhile


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    # isoformat's fixed layout costs half of strftime's parsed format (once per Event).
    return datetime.now(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


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


async def set_nominated(kc: KubeClient, *, namespace: str, name: str, node: str) -> None:
    """Record ``status.nominatedNodeName`` (the node preemption freed for the pod)."""
    try:
        await kc.patch(
            f"/api/v1/namespaces/{namespace}/pods/{name}/status",
            {"status": {"nominatedNodeName": node}},
            patch_type="strategic",
        )
    except ApiError as e:
        if not e.not_found:
            raise


async def set_podgroup_phase(
    kc: KubeClient, *, api: str, namespace: str, name: str, phase: str
) -> None:
    """Record a scheduler-plugins PodGroup's ``status.phase`` (Scheduling, Scheduled)."""
    try:
        await kc.patch(
            f"/apis/{api}/namespaces/{namespace}/podgroups/{name}/status",
            {"status": {"phase": phase}},
        )
    except ApiError as e:
        if not e.not_found:
            raise


async def patch_podgroup_status(kc: KubeClient, *, path: str, patch: JSON) -> None:
    """A strategic-merge patch of a Kubernetes PodGroup's status (conditions merge by
    type, as kube-scheduler writes them); a PodGroup already gone is not an error."""
    try:
        await kc.patch(path, patch, patch_type="strategic")
    except ApiError as e:
        if not e.not_found:
            raise


async def evict(kc: KubeClient, *, namespace: str, name: str, uid: str) -> None:
    """Delete a preemption victim with its own grace period; the UID precondition
    keeps a re-created pod of the same name safe."""
    try:
        await kc.delete(
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}},
        )
    except ApiError as e:
        if not (e.not_found or e.conflict):
            raise


async def request_eviction(kc: KubeClient, *, namespace: str, name: str, uid: str) -> None:
    """Ask the Eviction API (policy/v1) to evict a pod, so its PodDisruptionBudgets hold.

    The UID precondition keeps a re-created pod of the same name safe. Raises
    :class:`ApiError`: 429 when a budget refuses, 404 or 409 when the pod is gone.
    """
    await kc.post(
        f"/api/v1/namespaces/{namespace}/pods/{name}/eviction",
        {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
            "deleteOptions": {"preconditions": {"uid": uid}},
        },
    )


class DefaultBinder:
    """The Bind plugin that writes ``pods/binding``, as kube-scheduler's does.

    A definite rejection (4xx other than 429) fails at once. After an error
    whose outcome is unknown (a timeout, a 5xx, a dropped connection) the pod
    is read back before anyone retries: it may be bound already.
    """

    name = "DefaultBinder"

    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def bind(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        try:
            outcome = await bind(
                self._client, namespace=pod.namespace, name=pod.name, uid=pod.uid, node=node
            )
        except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as e:
            resolved = await self._resolve_ambiguous(pod, node, e)
            if resolved is None:
                return Status(Code.ERROR, (f"Binding rejected: {e}",))
            outcome = resolved
        if outcome is BindOutcome.BOUND:
            return SUCCESS
        return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (outcome.value,))

    async def _resolve_ambiguous(
        self, pod: PodInfo, node: str, err: Exception
    ) -> BindOutcome | None:
        if isinstance(err, ApiError) and err.status < 500 and err.status != 429:
            return None  # a definite rejection
        try:
            current = await self._client.get(f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}")
        except ApiError as e:
            return BindOutcome.GONE if e.not_found else None
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        if (current.get("metadata") or {}).get("uid") != pod.uid:
            return BindOutcome.GONE
        bound_to = (current.get("spec") or {}).get("nodeName")
        if bound_to == node:
            return BindOutcome.BOUND
        if bound_to:
            return BindOutcome.ALREADY_ASSIGNED
        return None
