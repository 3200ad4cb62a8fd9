"""bench.floor's nodes: bench-0 .. for a count, else the nodes a label selector lists."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import floor


class Listing:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.asked: list[dict[str, Any]] = []

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        self.asked.append({"path": path, **params})
        return {"items": [{"metadata": {"name": n}} for n in self.names]}


async def test_a_count_names_the_bench_nodes() -> None:
    kc = Listing([])
    assert await floor.node_names(kc, "3") == ["bench-0", "bench-1", "bench-2"]  # type: ignore[arg-type]
    assert kc.asked == []


async def test_a_selector_lists_its_nodes_by_name() -> None:
    kc = Listing(["w0-b", "w0-a", "w0-c"])
    names = await floor.node_names(kc, "bench.lasched.io/workload=SchedulingBasic")  # type: ignore[arg-type]
    assert names == ["w0-a", "w0-b", "w0-c"]
    assert kc.asked == [
        {"path": "/api/v1/nodes", "labelSelector": "bench.lasched.io/workload=SchedulingBasic"}
    ]


async def test_a_selector_matching_nothing_is_an_error_naming_it() -> None:
    with pytest.raises(SystemExit, match="no node matches 'x=y'"):
        await floor.node_names(Listing([]), "x=y")  # type: ignore[arg-type]


class Cluster:
    """A scripted apiserver for the floor: one namespace, its watch, and the writes."""

    def __init__(self) -> None:
        self.unbound = [{"metadata": {"name": "late", "uid": "u-late"}}]
        self.posts: list[str] = []
        self.fail_next_binding = True
        self.streams = 0

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        if path.endswith("/pods"):
            items = self.unbound if "fieldSelector" in params else []
            return {"metadata": {"resourceVersion": "7"}, "items": items}
        return {"spec": {"nodeName": ""}}  # a pod read back: the failed binding did not land

    async def stream(self, path: str, params: dict[str, Any]) -> Any:
        self.streams += 1
        if self.streams == 1:
            yield {"type": "ADDED", "object": {"metadata": {"name": "p", "uid": "u-p"}}}
            yield {"type": "MODIFIED", "object": {"metadata": {"name": "p", "uid": "u-p"}}}
            return  # the watch ends: the floor lists again and finds "late"
        await asyncio.Event().wait()
        yield {}

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/binding") and self.fail_next_binding:
            self.fail_next_binding = False
            raise OSError("connection reset")
        self.posts.append(f"{path.rsplit('/', 1)[-1]} {body['metadata']['name'].split('.')[0]}")
        return {}


async def test_a_failed_write_is_tried_again_and_a_watch_that_ends_is_followed_by_a_list(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kc = Cluster()
    task = asyncio.create_task(floor.bind_on_sight(kc, ["ns"], ["n0", "n1"]))  # type: ignore[arg-type]
    for _ in range(200):
        if len(kc.posts) == 4:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert sorted(kc.posts) == ["binding late", "binding p", "events late", "events p"]
    out = capsys.readouterr().out
    assert "ns/p: attempt 1: OSError: connection reset" in out
    assert "ns: watch ended; listing again" in out
