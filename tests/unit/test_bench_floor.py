"""bench.floor's nodes: bench-0 .. for a count, else the nodes a label selector lists."""

from __future__ import annotations

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
