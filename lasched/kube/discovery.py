"""What the cluster serves: API groups that may or may not be installed (CRDs, or
Kubernetes APIs that a release or its feature gates leave out)."""

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


async def resources(client: KubeClient, group_version: str) -> frozenset[str]:
    """The resources ``/apis/<group_version>`` lists (empty when it is not served); other
    errors propagate (the caller retries)."""
    try:
        doc = await client.get(f"/apis/{group_version}")
    except ApiError as e:
        if e.not_found:
            return frozenset()
        raise
    listed = doc.get("resources") if isinstance(doc, dict) else None
    return frozenset(
        r["name"] for r in listed or () if isinstance(r, dict) and isinstance(r.get("name"), str)
    )
