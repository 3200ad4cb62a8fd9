"""Informers list, watch from the list's version, and reconcile after 410 Gone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from lasched.kube.client import JSON
from lasched.kube.informers import Backoff, Informer
from lasched.model.pod import PodInfo
from tests.unit.factories import pod_json

Script = list[JSON | BaseException] | BaseException
"""A watch stream's events; an exception among them breaks the stream there, and an
exception instead of them is the answer to connecting."""


class FakeListWatch:
    """Serves scripted lists and watch streams, recording the watch parameters and how
    many lists were asked for."""

    def __init__(self, lists: list[list[JSON]], watches: list[Script]) -> None:
        self.lists = lists
        self.watches = watches
        self.watch_params: list[dict[str, Any]] = []
        self.listed = 0
        self.exhausted = asyncio.Event()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        timeout: float | None = 30.0,
    ) -> JSON:
        self.listed += 1
        items = self.lists.pop(0)
        rv = max((int(i["metadata"]["resourceVersion"]) for i in items), default=1)
        return {"items": items, "metadata": {"resourceVersion": str(rv)}}

    async def stream(
        self,
        path: str,
        *,
        params: Mapping[str, str | int | bool],
        timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[JSON]:
        self.watch_params.append(dict(params))
        if not self.watches:
            self.exhausted.set()
            await asyncio.Event().wait()
        script = self.watches.pop(0)
        if isinstance(script, BaseException):
            raise script
        for event in script:
            if isinstance(event, BaseException):
                raise event  # the connection breaks here
            if event.get("type") == "SILENCE":
                # What aiohttp does when nothing arrives within sock_read.
                await asyncio.sleep(read_timeout or 0)
                raise TimeoutError("timeout on reading data from socket")
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
        watch_list=False,  # the paged list (test_informer_watch_list.py: the streamed one)
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


class Exploding(Recorder):
    """A handler with a bug for one pod's updates."""

    def on_update(self, old: PodInfo, new: PodInfo) -> None:
        if new.name == "bad":
            raise ValueError("a bug in a handler")
        super().on_update(old, new)


async def test_an_object_that_cannot_be_decoded_is_reported_and_skipped() -> None:
    """A decode failure reaches on_error once; later events of other objects still arrive."""
    broken = {"metadata": {"namespace": "default", "name": "weird", "resourceVersion": "7"}}
    client = FakeListWatch(
        lists=[[pod_json("a", rv="5")]],
        watches=[
            [
                {"type": "ADDED", "object": broken},  # no spec/status/uid: PodInfo refuses
                {"type": "ADDED", "object": pod_json("b", rv="8")},
            ]
        ],
    )
    rec = Recorder()
    reported: list[tuple[str, str]] = []
    inf = informer(client, rec)
    inf._decode = lambda raw: PodInfo(raw) if "spec" in raw else _boom()
    inf._on_error = lambda raw, e: reported.append((raw["metadata"]["name"], type(e).__name__))
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "a"), ("add", "b")]
    assert reported == [("weird", "KeyError")]
    assert inf.errors == 1
    # The stream moved past the broken object instead of replaying it.
    assert client.watch_params[1]["resourceVersion"] == "8"


def _boom() -> PodInfo:
    raise KeyError("spec")


async def test_a_handler_bug_is_reported_and_the_stream_goes_on() -> None:
    """A handler that raises does not end run(); the store keeps the new object."""
    client = FakeListWatch(
        lists=[[pod_json("bad", rv="1"), pod_json("good", rv="2")]],
        watches=[
            [
                {"type": "MODIFIED", "object": pod_json("bad", rv="3")},
                {"type": "MODIFIED", "object": pod_json("good", rv="4")},
            ]
        ],
    )
    rec = Exploding()
    reported: list[str] = []
    inf = informer(client, rec)
    inf._on_error = lambda raw, e: reported.append(raw["metadata"]["name"])
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "bad"), ("add", "good"), ("update", "good")]
    assert reported == ["bad"]
    assert inf.store["default/bad"].resource_version == "3"


async def test_a_silent_watch_is_watched_again_from_its_version() -> None:
    """Nothing for idle_timeout (no event, no bookmark): a new watch from the last version
    gets what the dead one missed, without a relist."""
    client = FakeListWatch(
        lists=[[pod_json("a", rv="5")]],
        watches=[[{"type": "SILENCE"}], [{"type": "ADDED", "object": pod_json("missed", rv="9")}]],
    )
    rec = Recorder()
    inf = Informer(
        client, path="/api/v1/pods", decode=PodInfo, handler=rec,
        backoff=Backoff(initial=0.001, maximum=0.001), idle_timeout=0.05, watch_list=False,
    )  # fmt: skip
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "a"), ("add", "missed")]
    assert inf.relists == 0
    assert [w["resourceVersion"] for w in client.watch_params] == ["5", "5", "9"]


async def test_health_reports_silence_past_the_idle_timeout() -> None:
    """health() is None while heard from in time, and names the silence after."""
    now = [100.0]
    inf: Informer[PodInfo] = Informer(
        FakeListWatch([], []), path="/api/v1/pods", decode=PodInfo, handler=Recorder(),
        name="pods", idle_timeout=60, clock=lambda: now[0],
    )  # fmt: skip
    assert inf.health() == "informer pods: not synced"
    inf.synced.set()
    now[0] += 59
    assert inf.health() is None
    now[0] += 2
    assert inf.health() == "informer pods: nothing heard for 61 s (not connected)"
