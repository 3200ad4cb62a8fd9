"""Agent identities on the local cluster, as a DaemonSet would give them.

kwok nodes run no containers, so no kubelet projects a token into an agent
pod. This module does what the DaemonSet and kubelet would: it creates the
agent's ServiceAccount and one agent pod bound to the node, then asks the
apiserver (TokenRequest) for a token bound to that pod with audience
``lasched``. The scheduler's TokenReview of such a token names the node, as
it does in a real cluster.
"""

from __future__ import annotations

from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster.cluster import ensure_namespace

NAMESPACE = "lasched-system"
SERVICE_ACCOUNT = "lasched-agent"


async def agent_token(
    kc: KubeClient,
    *,
    node: str,
    namespace: str = NAMESPACE,
    service_account: str = SERVICE_ACCOUNT,
    audience: str = "lasched",
    seconds: int = 3600,
) -> str:
    """A token for the agent pod on ``node`` (pod and ServiceAccount created if missing)."""
    await ensure_namespace(kc, namespace)
    try:
        await kc.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"metadata": {"name": service_account}},
        )
    except ApiError as e:
        if not e.conflict:
            raise
    name = f"{service_account}-{node}"[:63].rstrip("-.")
    manifest = {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": service_account}},
        "spec": {
            "nodeName": node,
            "serviceAccountName": service_account,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "agent", "image": "lasched-agent"}],
        },
    }
    try:
        pod = await kc.post(f"/api/v1/namespaces/{namespace}/pods", manifest)
    except ApiError as e:
        if not e.conflict:
            raise
        pod = await kc.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    answer = await kc.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience],
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": name,
                    "uid": pod["metadata"]["uid"],
                },
            },
        },
    )
    return str(answer["status"]["token"])
