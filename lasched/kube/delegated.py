"""Delegated authorization for lasched's own read-only HTTP paths, as kube-scheduler does it.

A bearer token is checked with a TokenReview, then its user's right to
``get`` the path with a SubjectAccessReview (a non-resource URL). An
apiserver that cannot be asked means "no", with the reason: never an
exception into the HTTP handler. This lives in ``lasched.kube``, the one
package that talks to the API.
"""

from __future__ import annotations

import aiohttp

from lasched.kube.client import ApiError, KubeClient


class DelegatedAuthorizer:
    """TokenReview, then SubjectAccessReview for ``get`` on the path (kube-scheduler's way)."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def __call__(self, token: str, path: str) -> str | None:
        try:
            review = await self._client.post(
                "/apis/authentication.k8s.io/v1/tokenreviews",
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                 "spec": {"token": token}},
            )  # fmt: skip
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
            return f"cannot review the token: {e}"
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return "token refused: " + (status.get("error") or "not valid")
        user = status.get("user") or {}
        try:
            access = await self._client.post(
                "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                {
                    "apiVersion": "authorization.k8s.io/v1",
                    "kind": "SubjectAccessReview",
                    "spec": {
                        "user": user.get("username", ""),
                        "groups": user.get("groups") or [],
                        "uid": user.get("uid", ""),
                        "extra": user.get("extra") or {},
                        "nonResourceAttributes": {"path": path, "verb": "get"},
                    },
                },
            )
        except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as e:
            return f"cannot check access to {path}: {e}"
        if (access.get("status") or {}).get("allowed"):
            return None
        return f"{user.get('username', '?')} may not get {path}"
