"""TokenReview answers become identities or refusals with the right HTTP status."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio.client import Configuration

from lasched.kube.client import JSON, ApiError, ClientOptions, KubeClient
from lasched.kube.tokenreview import NODE_NAME_EXTRA, TokenReviewAuthenticator
from lasched.latency.hub import AuthError

AGENT_SA = "lasched-system/lasched-agent"
AGENT_USER = "system:serviceaccount:lasched-system:lasched-agent"


class FakeClient:
    """Answers every POST with ``answer`` (or raises ``error``), recording the bodies."""

    def __init__(self, answer: JSON | None = None, error: Exception | None = None) -> None:
        self.answer = answer or {}
        self.error = error
        self.bodies: list[Any] = []

    async def request(
        self, method: str, path: str, *, body: Any = None, timeout: float | None = 30.0
    ) -> JSON:
        assert (method, path) == ("POST", "/apis/authentication.k8s.io/v1/tokenreviews")
        self.bodies.append(body)
        if self.error is not None:
            raise self.error
        return self.answer


def reviewed(username: str, nodes: list[str] | None = None, audiences: Any = None) -> JSON:
    user: JSON = {"username": username}
    if nodes is not None:
        user["extra"] = {NODE_NAME_EXTRA: nodes}
    return {"status": {"authenticated": True, "user": user, "audiences": audiences}}


async def test_an_agent_token_names_its_node() -> None:
    """A valid agent token yields the ServiceAccount and the node its pod is on."""
    client = FakeClient(reviewed(AGENT_USER, ["edge-1"], ["lasched"]))
    auth = TokenReviewAuthenticator(client, service_accounts=[AGENT_SA])
    identity = await auth.review("tok")
    assert (identity.username, identity.node) == (AGENT_USER, "edge-1")
    assert client.bodies[0]["spec"] == {"token": "tok", "audiences": ["lasched"]}


@pytest.mark.parametrize(
    ("answer", "error", "status"),
    [
        ({"status": {"authenticated": False, "error": "invalid bearer token"}}, None, 401),
        (reviewed(AGENT_USER, ["edge-1"], ["someone-else"]), None, 401),
        (reviewed("system:serviceaccount:default:default", ["edge-1"]), None, 403),
        (None, ApiError(status=403, reason="Forbidden", message="no", body=None), 503),
        (None, TimeoutError(), 503),
    ],
    ids=["invalid", "wrong-audience", "not-an-agent", "review-forbidden", "apiserver-timeout"],
)
async def test_refusals_carry_the_status_to_answer(
    answer: JSON | None, error: Exception | None, status: int
) -> None:
    """Bad tokens get 401, other identities 403, a review that could not be made 503."""
    auth = TokenReviewAuthenticator(FakeClient(answer, error), service_accounts=[AGENT_SA])
    with pytest.raises(AuthError) as err:
        await auth.review("tok")
    assert err.value.status == status


async def test_a_companion_client_is_closed_with_its_parent() -> None:
    """Token reviews' own connection pool is closed when the scheduler's client is."""
    parent = KubeClient(Configuration(host="http://127.0.0.1:9"))
    other = parent.companion(ClientOptions(max_connections=2, user_agent="x"))
    assert other.options.max_connections == 2 and other.host == parent.host
    await parent.close()
    assert other._session.closed
