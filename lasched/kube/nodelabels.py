"""Writing a node's labels: one merge patch of ``metadata.labels`` and nothing else."""

from __future__ import annotations

from collections.abc import Mapping

from lasched.kube.client import KubeClient


async def patch_node_labels(kc: KubeClient, name: str, labels: Mapping[str, str | None]) -> None:
    """Set the given labels on node ``name`` (None removes one); the others stay as they are.

    A JSON merge patch: it needs ``patch`` on ``nodes`` and no read first. Raises
    :class:`~lasched.kube.client.ApiError` when refused (404: the node is gone).
    """
    await kc.patch(f"/api/v1/nodes/{name}", {"metadata": {"labels": dict(labels)}})
