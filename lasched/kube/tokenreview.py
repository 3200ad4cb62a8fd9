"""Who is this agent? A TokenReview of its projected ServiceAccount token.

An agent presents the token kubelet projected into its pod with audience
``lasched``. The apiserver's TokenReview answers whether the token is valid
for that audience, which ServiceAccount it belongs to, and, because a
projected token is bound to its pod, the node that pod runs on (the
``authentication.kubernetes.io/node-name`` extra). That last fact is what
lets the scheduler bind a connection to one node: an agent may only report
RTTs measured *from* the node its own pod is on.
"""

from __future__ import annotations

from collections.abc import Collection

from lasched.kube.client import ApiError, KubeClient
from lasched.latency.hub import AuthError, Identity

AUDIENCE = "lasched"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"


class TokenReviewAuthenticator:
    """Checks bearer tokens with the apiserver, for one audience and a set of ServiceAccounts.

    ``service_accounts`` holds ``namespace/name`` entries; a token of any other
    identity is refused with 403 even if valid.
    """

    def __init__(
        self,
        client: KubeClient,
        *,
        service_accounts: Collection[str],
        audience: str = AUDIENCE,
    ) -> None:
        self._client = client
        self._audience = audience
        self._allowed = {
            "system:serviceaccount:" + sa.replace("/", ":", 1) for sa in service_accounts
        }

    async def authenticate(self, token: str) -> Identity:
        """The token's identity; raises :class:`AuthError` if it is refused."""
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self._audience]},
        }
        try:
            answer = await self._client.post("/apis/authentication.k8s.io/v1/tokenreviews", review)
        except ApiError as e:
            # The scheduler lacks the right to review tokens, or the apiserver failed:
            # refuse, and say so where the operator looks (the agent's log shows 503).
            raise AuthError(503, f"token review failed: {e}") from e
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            error = status.get("error") or "token not valid"
            raise AuthError(401, f"token refused for audience {self._audience!r}: {error}")
        if self._audience not in (status.get("audiences") or [self._audience]):
            raise AuthError(401, f"token is not for audience {self._audience!r}")
        user = status.get("user") or {}
        username = user.get("username", "")
        if username not in self._allowed:
            allowed = ", ".join(sorted(self._allowed)) or "none configured"
            who = username or "an anonymous identity"
            raise AuthError(403, f"{who} is not an agent ServiceAccount ({allowed})")
        nodes = (user.get("extra") or {}).get(NODE_NAME_EXTRA) or []
        return Identity(username=username, node=nodes[0] if nodes else None)
