"""A paginated list: each page asked for with the previous one's continue token, the next
one asked for before this one is decoded, and a list started over when its token expires."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from lasched.kube.client import JSON, ApiError
from lasched.kube.informers import Backoff, Informer, StoreOnly
from lasched.model.pod import PodInfo
from tests.unit.factories import pod_json

GONE = ApiError(status=410, reason="Expired", message="continue token too old", body=None)


class PagedList:
    """Serves a list in pages chained by continue tokens; records what happens, in order.

    ``listings``: one list of pages per listing (a relist or a restart serves the next).
    ``fail``: continue tokens whose page answers 410 Gone, once each. ``stall``: a token
    whose page never comes."""

    def __init__(
        self,
        listings: list[list[list[JSON]]],
        *,
        fail: frozenset[str] = frozenset(),
        stall: str | None = None,
    ) -> None:
        self.listings = listings
        self.fail = set(fail)
        self.stall = stall
        self.log: list[tuple[str, str]] = []
        self.params: list[dict[str, Any]] = []
        self.watching = asyncio.Event()
        self.stalled = asyncio.Event()
        self.stall_cancelled = asyncio.Event()
        self._pages: list[list[JSON]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        timeout: float | None = 30.0,
    ) -> JSON:
        params = dict(params or {})
        self.params.append(params)
        token = str(params.get("continue", ""))
        self.log.append(("request", token))
        if token in self.fail:
            self.fail.discard(token)
            raise GONE
        if token == self.stall:
            self.stalled.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.stall_cancelled.set()
                raise
        if not token:
            self._pages = self.listings.pop(0)
        index = int(token.rpartition("-")[2]) if token else 0
        page = self._pages[index]
        await asyncio.sleep(0.01)  # the apiserver prepares the page meanwhile
        meta: dict[str, Any] = {"resourceVersion": "100"}
        if index + 1 < len(self._pages):
            meta["continue"] = f"{len(self.listings)}-{index + 1}"
        return {"items": page, "metadata": meta}

    async def stream(
        self,
        path: str,
        *,
        params: Mapping[str, str | int | bool],
        timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[JSON]:
        self.watching.set()
        await asyncio.Event().wait()
        yield {}


class Added(StoreOnly):
    def __init__(self, log: list[tuple[str, str]]) -> None:
        self.log = log

    def on_add(self, obj: object) -> None:
        assert isinstance(obj, PodInfo)
        self.log.append(("add", obj.name))


def pages(*names: str) -> list[list[JSON]]:
    """One page per comma-separated group of pod names."""
    return [[pod_json(n, rv="1") for n in group.split(",")] for group in names]


def informer(client: PagedList, *, page_size: int = 2) -> Informer[PodInfo]:
    def decode(raw: JSON) -> PodInfo:
        client.log.append(("decode", raw["metadata"]["name"]))
        return PodInfo(raw)

    return Informer(
        client,
        path="/api/v1/pods",
        decode=decode,
        handler=Added(client.log),
        page_size=page_size,
        backoff=Backoff(initial=0.001, maximum=0.001),
        watch_list=False,  # the paged list, what an apiserver without streaming lists gets
    )


async def synced(client: PagedList, inf: Informer[PodInfo]) -> None:
    task = asyncio.create_task(inf.run())
    await asyncio.wait_for(client.watching.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_each_page_is_asked_for_with_the_previous_token() -> None:
    client = PagedList([pages("a,b", "c,d", "e")])
    inf = informer(client, page_size=2)
    await synced(client, inf)
    assert [p.get("continue") for p in client.params] == [None, "0-1", "0-2"]
    assert {p["limit"] for p in client.params} == {2}
    assert sorted(inf.store) == ["default/a", "default/b", "default/c", "default/d", "default/e"]
    assert inf.resource_version == "100"


async def test_the_next_page_is_asked_for_before_this_one_is_decoded() -> None:
    client = PagedList([pages("a,b", "c,d", "e")])
    await synced(client, informer(client))
    assert client.log == [
        ("request", ""),
        ("request", "0-1"),
        ("decode", "a"),
        ("decode", "b"),
        ("request", "0-2"),
        ("decode", "c"),
        ("decode", "d"),
        ("decode", "e"),
        ("add", "a"),
        ("add", "b"),
        ("add", "c"),
        ("add", "d"),
        ("add", "e"),
    ]


async def test_an_expired_continue_token_starts_the_list_over() -> None:
    """What the first pages held is dropped: only the second listing reaches the handler."""
    client = PagedList([pages("a,gone", "c"), pages("a,new", "c")], fail=frozenset({"1-1"}))
    inf = informer(client)
    await synced(client, inf)
    assert [p.get("continue") for p in client.params] == [None, "1-1", None, "0-1"]
    assert [e for e in client.log if e[0] == "add"] == [("add", "a"), ("add", "new"), ("add", "c")]
    assert sorted(inf.store) == ["default/a", "default/c", "default/new"]


async def test_cancelling_a_list_cancels_the_page_asked_for_ahead() -> None:
    client = PagedList([pages("a,b", "c")], stall="0-1")
    inf = informer(client)
    task = asyncio.create_task(inf.run())
    await asyncio.wait_for(client.stalled.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(client.stall_cancelled.wait(), 2)
    assert not inf.synced.is_set()
    assert inf.store == {}
