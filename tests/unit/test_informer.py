"""Informers list, watch from the list's version, and reconcile after 410 Gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from lasched.kube.client import JSON
from lasched.kube.informers import Backoff, Informer
from lasched.model.pod import PodInfo
from tests.unit.factories import pod_json


class FakeListWatch:
    """Serves scripted lists and watch streams, recording the watch parameters."""

    def __init__(self, lists: list[list[JSON]], watches: list[list[JSON]]) -> None:
        self.lists = lists
        self.watches = watches
        self.watch_params: list[dict[str, Any]] = []
        self.exhausted = asyncio.Event()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        timeout: float | None = 30.0,
    ) -> JSON:
        items = self.lists.pop(0)
        rv = max((int(i["metadata"]["resourceVersion"]) for i in items), default=1)
        return {"items": items, "metadata": {"resourceVersion": str(rv)}}

    async def stream(
        self, path: str, *, params: Mapping[str, str | int | bool], timeout: float | None = None
    ) -> AsyncIterator[JSON]:
        self.watch_params.append(dict(params))
        if not self.watches:
            self.exhausted.set()
            await asyncio.Event().wait()
        for event in self.watches.pop(0):
            yield event


class Recorder:
    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def on_add(self, obj: PodInfo) -> None:
        self.log.append(("add", obj.name))

    def on_update(self, old: PodInfo, new: PodInfo) -> None:
        self.log.append(("update", new.name))

    def on_delete(self, obj: PodInfo) -> None:
        self.log.append(("delete", obj.name))


def informer(client: FakeListWatch, rec: Recorder) -> Informer[PodInfo]:
    return Informer(
        client,
        path="/api/v1/pods",
        decode=PodInfo,
        handler=rec,
        backoff=Backoff(initial=0.001, maximum=0.001),
    )


async def run_until_exhausted(inf: Informer[PodInfo], client: FakeListWatch) -> None:
    task = asyncio.create_task(inf.run())
    await asyncio.wait_for(client.exhausted.wait(), 2)
    task.cancel()


async def test_list_then_watch_from_its_version() -> None:
    """Listed objects are added, then the watch starts at the list's resourceVersion."""
    client = FakeListWatch(
        lists=[[pod_json("a", rv="5")]],
        watches=[[{"type": "ADDED", "object": pod_json("b", rv="6")}]],
    )
    rec = Recorder()
    inf = informer(client, rec)
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "a"), ("add", "b")]
    assert client.watch_params[0]["resourceVersion"] == "5"
    assert client.watch_params[0]["allowWatchBookmarks"] is True
    assert client.watch_params[1]["resourceVersion"] == "6"  # resumed after the stream ended


async def test_bookmark_moves_the_version_only() -> None:
    """A BOOKMARK advances the resourceVersion and reaches no handler."""
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "42"}}}
    client = FakeListWatch(lists=[[]], watches=[[bookmark]])
    rec = Recorder()
    inf = informer(client, rec)
    await run_until_exhausted(inf, client)
    assert rec.log == []
    assert client.watch_params[1]["resourceVersion"] == "42"


async def test_gone_relists_and_reconciles_the_difference() -> None:
    """After 410 the store is rebuilt: vanished objects are deleted, changed ones updated."""
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    client = FakeListWatch(
        lists=[
            [pod_json("keep", rv="1"), pod_json("vanish", rv="2"), pod_json("change", rv="3")],
            [pod_json("keep", rv="1"), pod_json("change", rv="9"), pod_json("new", rv="10")],
        ],
        watches=[[gone]],
    )
    rec = Recorder()
    inf = informer(client, rec)
    await run_until_exhausted(inf, client)
    assert rec.log[3:] == [("delete", "vanish"), ("update", "change"), ("add", "new")]
    assert inf.relists == 1
    assert set(inf.store) == {"default/keep", "default/change", "default/new"}


async def test_deleted_and_modified_events() -> None:
    """MODIFIED reaches on_update with the old object; DELETED removes from the store."""
    client = FakeListWatch(
        lists=[[pod_json("a", rv="1")]],
        watches=[
            [
                {"type": "MODIFIED", "object": pod_json("a", rv="2", node="n1")},
                {"type": "DELETED", "object": pod_json("a", rv="3", node="n1")},
            ]
        ],
    )
    rec = Recorder()
    inf = informer(client, rec)
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "a"), ("update", "a"), ("delete", "a")]
    assert inf.store == {}
