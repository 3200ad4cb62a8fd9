"""lasched.latency.sitetask: recomputes on the leader, label patches, what the debug API shows."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from rich.console import Console

from lasched import settings
from lasched.cli_explain import render_topology
from lasched.kube.client import ApiError
from lasched.latency.cache import LatencyCache
from lasched.latency.sitetask import SiteTask
from lasched.model.node import Node
from lasched.settings import ConfigError, TopologySettings

SITE = "topology.lasched.io/site"


def node(name: str, **labels: str) -> Node:
    return Node({"metadata": {"name": name, "labels": labels}})


class Patches:
    """Records the label patches; fails for the nodes in ``refuse``."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.sent: list[tuple[str, dict[str, str | None]]] = []
        self.refuse = refuse or set()

    async def __call__(self, name: str, labels: Mapping[str, str | None]) -> None:
        if name in self.refuse:
            raise ApiError(status=403, reason="Forbidden", message="no", body=None)
        self.sent.append((name, dict(labels)))


def two_sites(cache: LatencyCache) -> list[Node]:
    members = {"a1": "A", "a2": "A", "b1": "B", "b2": "B"}
    for a, sa in members.items():
        for b, sb in members.items():
            if a != b:
                cache.observe(a, b, median_ms=0.3 if sa == sb else 12.0)
    cache.observe("a1", "users", median_ms=3.0)  # not a node: ignored
    return [node("a1"), node("a2", **{SITE: "old", "keep": "me"}), node("b1"), node("b2")]


def task(
    cache: LatencyCache, nodes: list[Node], patch: Patches | None, *, leading: bool = True
) -> SiteTask:
    return SiteTask(
        TopologySettings(enabled=True, write_labels=patch is not None),
        latency=cache,
        nodes=lambda: nodes,
        patch=patch,
        is_cloud=lambda n: n.labels.get("kubernetes.io/role") == "cloud",
        leading=lambda: leading,
        clock=lambda: 100.0,
    )


def test_pass_writes_only_what_differs() -> None:
    """Each node gets one patch of its topology labels; other labels are never sent."""
    cache = LatencyCache()
    patches = Patches()
    t = task(cache, two_sites(cache), patches)
    moved = asyncio.run(t.pass_once())
    assert sorted(moved) == ["a1", "a2", "b1", "b2"]
    sent = dict(patches.sent)
    assert sent["a1"][SITE] == sent["a2"][SITE] != sent["b1"][SITE]
    assert all(set(labels) <= {SITE, "topology.lasched.io/region", "topology.lasched.io/tier"}
               for labels in sent.values())  # fmt: skip


def test_labels_already_right_are_not_written_again() -> None:
    """A node whose labels match its place gets no patch (a new leader reads them back)."""
    cache = LatencyCache()
    done = {SITE: "site-0", "topology.lasched.io/region": "region-0"}
    nodes = [node(n, **done, **{"topology.lasched.io/tier": "edge"}) for n in ("a1", "a2")]
    cache.observe("a1", "a2", median_ms=0.3)
    patches = Patches()
    asyncio.run(task(cache, nodes, patches).pass_once())
    assert patches.sent == []


def test_refused_patch_is_retried_not_fatal() -> None:
    """A refused patch is counted and logged; the others are still written."""
    cache = LatencyCache()
    patches = Patches(refuse={"a1"})
    t = task(cache, two_sites(cache), patches)
    asyncio.run(t.pass_once())
    assert sorted(n for n, _ in patches.sent) == ["a2", "b1", "b2"]
    assert t._retry


def test_describe_shows_each_node_and_the_cli_prints_it() -> None:
    """/debug/latency's topology block names every node's site and tier; the CLI tables it."""
    cache = LatencyCache()
    t = task(cache, two_sites(cache), None)
    asyncio.run(t.pass_once())
    d = t.describe()
    assert d["writeLabels"] is False
    nodes = d["nodes"]
    assert isinstance(nodes, dict)
    assert nodes["a1"]["site"] == nodes["a2"]["site"]
    assert nodes["b1"]["tier"] == "edge" and nodes["b1"]["pending"] is None
    console = Console(width=120, record=True)
    render_topology(console, {"topology": d})
    text = console.export_text()
    assert "a1" in text and nodes["b1"]["site"] in text and "4 nodes in 2 site(s)" in text


def test_follower_recomputes_nothing() -> None:
    """Not leading: one loop turn places nobody and writes nothing."""
    cache = LatencyCache()
    patches = Patches()
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        raise asyncio.CancelledError

    t = SiteTask(
        TopologySettings(enabled=True, write_labels=True),
        latency=cache,
        nodes=lambda: two_sites(cache),
        patch=patches,
        is_cloud=lambda n: False,
        leading=lambda: False,
        sleep=sleep,
    )
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(t.run())
    assert patches.sent == [] and t.inference.places() == {} and slept == [10.0]


def test_settings_read_the_topology_block() -> None:
    """latency.topology: layers, hold, interval and writeLabels as written."""
    s = settings.parse(
        {
            "latency": {
                "topology": {
                    "enabled": True,
                    "layers": [{"name": "rack", "maxRttMs": 0.5}, {"name": "metro", "maxRttMs": 5}],
                    "holdSeconds": 0,
                    "writeLabels": True,
                }
            }
        }
    )
    ts = s.latency.topology
    assert ts.enabled and ts.write_labels and ts.hold_seconds == 0.0
    assert [(x.name, x.max_rtt_ms) for x in ts.layers] == [("rack", 0.5), ("metro", 5.0)]
    assert settings.Settings().latency.topology.enabled is False


@pytest.mark.parametrize(
    ("topology", "message"),
    [
        ({"layers": []}, r"latency\.topology\.layers must be a non-empty list"),
        ({"layers": [{"name": "site"}]}, r"latency\.topology\.layers\[0\]\.maxRttMs is required"),
        ({"layers": [{"name": "Site", "maxRttMs": 1}]}, r"layers\[0\]\.name must be lower-case"),
        ({"layers": [{"name": "tier", "maxRttMs": 1}]}, r"layers\[0\]\.name 'tier' is taken"),
        (
            {"layers": [{"name": "a", "maxRttMs": 5}, {"name": "b", "maxRttMs": 2}]},
            r"layers\[1\]\.maxRttMs \(2\) must be greater than the layer before \(5\)",
        ),
        ({"holdSeconds": -1}, r"latency\.topology\.holdSeconds must be >= 0"),
        ({"writeLabel": True}, r"unknown field latency\.topology\.writeLabel"),
    ],
    ids=["empty", "no-limit", "upper-case", "tier", "not-rising", "negative-hold", "typo"],
)
def test_settings_errors_name_the_field(topology: dict[str, object], message: str) -> None:
    """Each mistake in latency.topology names its field."""
    with pytest.raises(ConfigError, match=message):
        settings.parse({"latency": {"topology": topology}})
