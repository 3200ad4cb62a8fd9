"""Who is this agent? A TokenReview of its projected ServiceAccount token.

An agent presents the token kubelet projected into its pod with audience
``lasched``. The apiserver's TokenReview answers whether the token is valid
for that audience, which ServiceAccount it belongs to, and, because a
projected token is bound to its pod, the node that pod runs on (the
``authentication.kubernetes.io/node-name`` extra). That last fact is what
lets the scheduler bind a connection to one node: an agent may only report
RTTs measured *from* the node its own pod is on.

Anyone who reaches the agents' port can make the scheduler ask, so the reviews
go through a connection pool of their own (at most
``latency.tokenReview.maxConnections``) and a :class:`ReviewCache` that
answers repeats from memory and rate-limits the rest
(lasched/latency/authcache.py); :func:`agent_authenticator` builds both.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

import aiohttp

from lasched.kube.client import JSON, ApiError, ClientOptions, KubeClient
from lasched.latency.authcache import ReviewCache, ReviewCacheOptions
from lasched.latency.hub import AuthError, Identity
from lasched.settings import LatencySettings

AUDIENCE = "lasched"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
REVIEW_TIMEOUT = 10.0
"""Seconds one review may take; an agent's upgrade request waits for it."""


class ReviewClient(Protocol):
    """The part of :class:`KubeClient` a review needs."""

    async def request(
        self, method: str, path: str, *, body: Any = None, timeout: float | None = 30.0
    ) -> JSON: ...


def agent_authenticator(client: KubeClient, settings: LatencySettings) -> ReviewCache:
    """Agents' authenticator: cached, rate-limited reviews on a pool apart from ``client``'s."""
    tr = settings.token_review
    pool = client.companion(
        ClientOptions(max_connections=tr.max_connections, user_agent="lasched/tokenreview")
    )
    reviewer = TokenReviewAuthenticator(pool, service_accounts=settings.agent_service_accounts)
    return ReviewCache(
        reviewer,
        ReviewCacheOptions(
            positive_ttl=tr.cache_seconds,
            negative_ttl=tr.negative_cache_seconds,
            reviews_per_second=tr.misses_per_second,
            burst=tr.miss_burst,
            reviews_per_source_per_second=tr.misses_per_source_per_second,
            burst_per_source=tr.miss_burst_per_source,
        ),
    )


class TokenReviewAuthenticator:
    """Checks bearer tokens with the apiserver, for one audience and a set of ServiceAccounts.

    ``service_accounts`` holds ``namespace/name`` entries; a token of any other
    identity is refused with 403 even if valid.
    """

    def __init__(
        self,
        client: ReviewClient,
        *,
        service_accounts: Collection[str],
        audience: str = AUDIENCE,
    ) -> None:
        self._client = client
        self._audience = audience
        self._allowed = {
            "system:serviceaccount:" + sa.replace("/", ":", 1) for sa in service_accounts
        }

    async def review(self, token: str) -> Identity:
        """The token's identity; raises :class:`AuthError` if it is refused."""
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self._audience]},
        }
        try:
            answer = await self._client.request(
                "POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=review,
                timeout=REVIEW_TIMEOUT,
            )  # fmt: skip
        except (ApiError, aiohttp.ClientError, TimeoutError) as e:
            # The scheduler lacks the right to review tokens, or the apiserver failed or is
            # unreachable: refuse, and say so where the operator looks (the agent sees 503).
            raise AuthError(503, f"token review failed: {e or type(e).__name__}") from e
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
