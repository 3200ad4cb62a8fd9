"""bench.throughput.delete_pods: a collection delete the apiserver cuts off is repeated."""

from __future__ import annotations

from typing import Any

import pytest

from bench.throughput import delete_pods
from lasched.kube.client import ApiError, KubeClient


class Apiserver:
    """Answers the collection delete with ``failures`` in turn, then empties the namespace."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.deletes = 0
        self.left = 5

    async def request(self, method: str, path: str, **kwargs: Any) -> None:
        self.deletes += 1
        if self.failures:
            raise self.failures.pop(0)
        self.left = 0

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        return {"items": [{}] * min(self.left, 1)}


@pytest.mark.parametrize(
    "failure",
    [
        ApiError(status=504, reason="Timeout", message="", body=None),
        ConnectionResetError("the server closed the connection"),
        TimeoutError(),
    ],
    ids=["504", "connection-closed", "timeout"],
)
async def test_a_cut_off_collection_delete_is_repeated_until_none_is_left(
    failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bench.throughput.asyncio.sleep", _no_sleep)
    api = Apiserver([failure])
    await delete_pods(_as_client(api), "ns", timeout=5)
    assert (api.deletes, api.left) == (2, 0)


async def test_another_refusal_is_raised() -> None:
    api = Apiserver([ApiError(status=403, reason="Forbidden", message="", body=None)])
    with pytest.raises(ApiError):
        await delete_pods(_as_client(api), "ns", timeout=5)


async def _no_sleep(_: float) -> None:
    return None


def _as_client(api: Apiserver) -> KubeClient:
    return api  # type: ignore[return-value]
