"""What the cluster serves: API groups that may or may not be installed (CRDs)."""

from __future__ import annotations

from lasched.kube.client import ApiError, KubeClient


async def serves(client: KubeClient, group_version: str) -> bool:
    """Whether ``/apis/<group_version>`` exists; other errors propagate (the caller retries)."""
    try:
        await client.get(f"/apis/{group_version}")
    except ApiError as e:
        if e.not_found:
            return False
        raise
    return True
