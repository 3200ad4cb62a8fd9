"""The first state streamed as a watch (sendInitialEvents): a fresh store reconciled at the
bookmark that ends the initial events, the same stream then watched on; a refusing
apiserver gets paged lists instead."""

from __future__ import annotations

import asyncio

from lasched.kube.client import JSON, ApiError
from lasched.kube.informers import INITIAL_EVENTS_END, Backoff, Informer
from lasched.model.pod import PodInfo
from tests.unit.factories import pod_json
from tests.unit.test_informer import FakeListWatch, Script


def end(rv: str) -> JSON:
    """The bookmark that ends the initial events."""
    meta = {"resourceVersion": rv, "annotations": {INITIAL_EVENTS_END: "true"}}
    return {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": meta}}


def added(name: str, rv: str) -> JSON:
    return {"type": "ADDED", "object": pod_json(name, rv=rv)}


def streams(watches: list[Script], lists: list[list[JSON]] | None = None) -> FakeListWatch:
    """Scripted watch streams, and lists for an informer that falls back to them."""
    return FakeListWatch(lists or [], watches)


class Recorder:
    def __init__(self, inf: list[Informer[PodInfo]]) -> None:
        self.log: list[tuple[str, str]] = []
        self._inf = inf

    def _note(self, what: str, pod: PodInfo) -> None:
        # Whether the informer called itself synced when the handler heard of the pod.
        synced = "synced" if self._inf and self._inf[0].synced.is_set() else "not synced"
        self.log.append((what, f"{pod.name} ({synced})"))

    def on_add(self, obj: PodInfo) -> None:
        self._note("add", obj)

    def on_update(self, old: PodInfo, new: PodInfo) -> None:
        self._note("update", new)

    def on_delete(self, obj: PodInfo) -> None:
        self._note("delete", obj)


def informer(client: FakeListWatch) -> tuple[Informer[PodInfo], Recorder]:
    holder: list[Informer[PodInfo]] = []
    rec = Recorder(holder)
    inf = Informer(
        client,
        path="/api/v1/pods",
        decode=PodInfo,
        handler=rec,
        backoff=Backoff(initial=0.001, maximum=0.001),
    )
    holder.append(inf)
    return inf, rec


async def run_until_exhausted(inf: Informer[PodInfo], client: FakeListWatch) -> None:
    task = asyncio.create_task(inf.run())
    await asyncio.wait_for(client.exhausted.wait(), 2)
    task.cancel()


async def test_initial_events_fill_the_store_then_the_same_stream_is_watched() -> None:
    """The objects reach the handler at the end bookmark, as one list would; events after
    it on the same stream are ordinary watch events."""
    client = streams([[added("a", "3"), added("b", "4"), end("7"), added("c", "8")]])
    inf, rec = informer(client)
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "a (not synced)"), ("add", "b (not synced)"), ("add", "c (synced)")]
    first = client.watch_params[0]
    assert first["sendInitialEvents"] is True
    assert first["resourceVersionMatch"] == "NotOlderThan"
    assert first["resourceVersion"] == ""
    assert first["allowWatchBookmarks"] is True
    # The stream ended after its initial events: the next watch resumes, no second start.
    assert "sendInitialEvents" not in client.watch_params[1]
    assert client.watch_params[1]["resourceVersion"] == "8"
    assert client.listed == 0
    assert set(inf.store) == {"default/a", "default/b", "default/c"}


async def test_a_stream_broken_after_its_initial_events_resumes_from_its_version() -> None:
    """A connection lost once the whole view is in: a watch from the last version, not a
    second stream of every object."""
    lost = ConnectionResetError("the server closed the connection")
    client = streams([[added("a", "3"), end("7"), added("b", "8"), lost], [added("c", "9")]])
    inf, rec = informer(client)
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "a (not synced)"), ("add", "b (synced)"), ("add", "c (synced)")]
    assert [w.get("sendInitialEvents") for w in client.watch_params] == [True, None, None]
    assert client.watch_params[1]["resourceVersion"] == "8"


async def test_a_stream_that_ends_before_its_initial_events_do_starts_over() -> None:
    """Half the initial events are no state: nothing is delivered, and the next attempt
    streams from the start again."""
    client = streams([[added("a", "3")], [added("a", "3"), added("b", "4"), end("5")]])
    inf, rec = informer(client)
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "a (not synced)"), ("add", "b (not synced)")]
    assert [w.get("sendInitialEvents") for w in client.watch_params] == [True, True, None]
    assert inf.synced.is_set()


async def test_gone_streams_again_and_reconciles_the_difference() -> None:
    """After 410 the initial events rebuild the store: vanished objects are deleted,
    changed ones updated, new ones added."""
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    client = streams(
        [
            [added("keep", "1"), added("vanish", "2"), added("change", "3"), end("3"), gone],
            [added("keep", "1"), added("change", "9"), added("new", "10"), end("10")],
        ]
    )
    inf, rec = informer(client)
    await run_until_exhausted(inf, client)
    assert rec.log[3:] == [
        ("delete", "vanish (synced)"),
        ("update", "change (synced)"),
        ("add", "new (synced)"),
    ]
    assert inf.relists == 1
    assert client.watch_params[1]["sendInitialEvents"] is True
    assert set(inf.store) == {"default/keep", "default/change", "default/new"}


async def test_an_apiserver_that_refuses_it_gets_paged_lists_from_then_on() -> None:
    """422 to sendInitialEvents (the WatchList feature off): a paged list, and after a
    410 a list again, not another refused stream."""
    refused = ApiError(
        status=422, reason="Invalid", message="sendInitialEvents is forbidden", body=None
    )
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    client = streams(
        [refused, [gone]],
        lists=[[pod_json("a", rv="5")], [pod_json("a", rv="5"), pod_json("b", rv="6")]],
    )
    inf, rec = informer(client)
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "a (not synced)"), ("add", "b (synced)")]
    assert client.listed == 2
    assert [w.get("sendInitialEvents") for w in client.watch_params] == [True, None, None]


async def test_an_undecodable_initial_object_is_reported_and_the_rest_arrive() -> None:
    """One bad object among the initial events costs that object only."""
    bad = {"type": "ADDED", "object": {"metadata": {"name": "bad", "resourceVersion": "2"}}}
    errors: list[str] = []
    client = streams([[added("a", "1"), bad, added("b", "3"), end("3")]])
    inf = Informer(
        client,
        path="/api/v1/pods",
        decode=_strict,
        handler=Recorder([]),
        backoff=Backoff(initial=0.001, maximum=0.001),
        on_error=lambda raw, e: errors.append(raw["metadata"]["name"]),
    )
    await run_until_exhausted(inf, client)
    assert set(inf.store) == {"default/a", "default/b"}
    assert errors == ["bad"]
    assert inf.synced.is_set()


def _strict(raw: JSON) -> PodInfo:
    """PodInfo, refusing an object without a spec (as a malformed one would fail)."""
    if "spec" not in raw:
        raise KeyError("spec")
    return PodInfo(raw)


async def test_a_stream_the_apiserver_fails_is_followed_by_a_paged_list() -> None:
    """Any other refusal of the stream (a 500): the next attempt lists in pages, so the
    informer gets its view; the view after a later 410 is streamed again."""
    broken = ApiError(status=500, reason="InternalError", message="no", body=None)
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
    client = streams(
        [broken, [gone], [added("a", "5"), added("b", "6"), end("6")]],
        lists=[[pod_json("a", rv="5")]],
    )
    inf, rec = informer(client)
    await run_until_exhausted(inf, client)
    assert rec.log == [("add", "a (not synced)"), ("add", "b (synced)")]
    assert client.listed == 1
    assert [w.get("sendInitialEvents") for w in client.watch_params] == [True, None, True, None]
