"""kube-scheduler's extender API over HTTP, against a latency cache (no Kubernetes API)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from lasched import settings
from lasched.extender import Extender, decode_args, to_extender_priority
from lasched.latency.cache import LatencyCache
from lasched.plugins.latency import LatencyFilter, LatencyScore
from tests.unit.factories import node_json, pod_json

NODES = ("edge-1", "edge-2", "edge-3", "cloud-1")
RTTS = {("edge-1", "edge-2"): 12.0, ("edge-1", "edge-3"): 41.0, ("edge-1", "cloud-1"): 60.0}

Client = TestClient[web.Request, web.Application]


def latency_cache() -> LatencyCache:
    cache = LatencyCache()
    for (src, dst), ms in RTTS.items():
        cache.observe(src, dst, median_ms=ms, source="static", pinned=True)
    return cache


def extender(*, cloud_fallback: bool = False, ready: bool = True) -> Extender:
    cache = latency_cache()
    return Extender(
        latency_filter=LatencyFilter(cache),
        latency_score=LatencyScore(cache, cloud_fallback=cloud_fallback),
        ready=lambda: ready,
    )


async def serve(ext: Extender) -> Client:
    app = web.Application()
    ext.add_routes(app)
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    c = await serve(extender())
    yield c
    await c.close()


def a_pod(
    *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    body = pod_json("web", scheduler="default-scheduler")
    body["metadata"]["labels"] = labels or {}
    body["metadata"]["annotations"] = annotations or {}
    return body


def by_names(pod: dict[str, Any], names: tuple[str, ...] = NODES) -> dict[str, Any]:
    """ExtenderArgs as kube-scheduler sends them with nodeCacheCapable: true."""
    return {"Pod": pod, "Nodes": None, "NodeNames": list(names)}


def by_objects(pod: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """ExtenderArgs as kube-scheduler sends them with nodeCacheCapable: false."""
    return {"Pod": pod, "Nodes": {"metadata": {}, "items": nodes}, "NodeNames": None}


async def post(client: Client, verb: str, args: dict[str, Any]) -> Any:
    resp = await client.post(f"/extender/{verb}", data=orjson.dumps(args))
    assert resp.status == 200, await resp.text()
    return orjson.loads(await resp.read())


def requests_counted(verb: str, outcome: str) -> float:
    labels = {"verb": verb, "outcome": outcome}
    return REGISTRY.get_sample_value("lasched_extender_requests_total", labels) or 0.0


async def test_filter_by_names_splits_nodes_by_the_delay_label(client: Client) -> None:
    """nodeCacheCapable: passing names in NodeNames, the rest with the reason.

    Too far is unresolvable: preempting pods never brings a node nearer.
    """
    result = await post(client, "filter", by_names(a_pod(labels={"delay_edge-1": "25"})))
    assert result == {
        "Nodes": None,
        "NodeNames": ["edge-1", "edge-2"],
        "FailedNodes": {},
        "FailedAndUnresolvableNodes": {
            "edge-3": "node(s) were more than 25 ms from edge-1 (delay_edge-1)",
            "cloud-1": "node(s) were more than 25 ms from edge-1 (delay_edge-1)",
        },
        "Error": "",
    }


async def test_filter_by_objects_returns_the_node_objects_sent(client: Client) -> None:
    """Without nodeCacheCapable the passing nodes go back as a NodeList, unchanged."""
    nodes = [node_json(n) for n in NODES]
    result = await post(client, "filter", by_objects(a_pod(labels={"delay_edge-1": "5"}), nodes))
    assert result["NodeNames"] is None
    assert result["Nodes"]["items"] == [nodes[0]]
    assert set(result["FailedAndUnresolvableNodes"]) == {"edge-2", "edge-3", "cloud-1"}


async def test_filter_passes_every_node_for_a_pod_without_limits(client: Client) -> None:
    """A pod with no latency requirement is not lasched's business: all nodes pass."""
    result = await post(client, "filter", by_names(a_pod()))
    assert result["NodeNames"] == list(NODES)
    assert result["FailedNodes"] == {}


async def test_filter_fails_closed_for_an_unmeasured_source(client: Client) -> None:
    """No RTT from the named place: every node fails with the plugin's reason."""
    result = await post(client, "filter", by_names(a_pod(labels={"delay_edge-9": "5"})))
    assert result["NodeNames"] == []
    assert result["FailedAndUnresolvableNodes"] == dict.fromkeys(
        NODES, "node(s) had no measured RTT from edge-9"
    )


async def test_filter_reports_a_malformed_annotation_on_every_node(client: Client) -> None:
    """A parse error is unresolvable: every node carries its text."""
    result = await post(client, "filter", by_names(a_pod(annotations={"lasched.io/max-rtt": "x"})))
    assert result["NodeNames"] == []
    assert result["FailedNodes"] == {}
    reasons = result["FailedAndUnresolvableNodes"]
    assert set(reasons) == set(NODES)
    assert all('lasched.io/max-rtt="x"' in r for r in reasons.values())


async def test_prioritize_scales_scores_to_max_extender_priority(client: Client) -> None:
    """Lower RTT to the preferred place scores higher, on kube-scheduler's 0..10 scale."""
    pod = a_pod(annotations={"lasched.io/prefer-low-rtt": "edge-1"})
    result = await post(client, "prioritize", by_names(pod))
    # RTTs 0, 12, 41, 60 ms -> 100 * (0 + 1) / (rtt + 1) = 100, 7, 2, 1 -> 10, 1, 0, 0
    assert result == [
        {"Host": "edge-1", "Score": 10},
        {"Host": "edge-2", "Score": 1},
        {"Host": "edge-3", "Score": 0},
        {"Host": "cloud-1", "Score": 0},
    ]


async def test_prioritize_gives_zeros_when_the_score_does_not_apply(client: Client) -> None:
    """No latency requirement (and no cloud fallback): LatencyScore skips, every node 0."""
    result = await post(client, "prioritize", by_names(a_pod()))
    assert result == [{"Host": n, "Score": 0} for n in NODES]


async def test_prioritize_scores_a_hard_limit_as_a_preference_for_its_place(
    client: Client,
) -> None:
    """Hard limits only: within the limit, lower RTT to the limited place scores higher."""
    result = await post(client, "prioritize", by_names(a_pod(labels={"delay_edge-1": "25"})))
    assert result == [
        {"Host": "edge-1", "Score": 10},
        {"Host": "edge-2", "Score": 1},
        {"Host": "edge-3", "Score": 0},
        {"Host": "cloud-1", "Score": 0},
    ]


async def test_prioritize_reads_labels_of_the_nodes_sent() -> None:
    """Cloud fallback with a NodeList: the node labelled as cloud scores 10."""
    client = await serve(extender(cloud_fallback=True))
    try:
        nodes = [
            node_json(n, labels={"kubernetes.io/role": "cloud"} if n == "cloud-1" else {})
            for n in NODES
        ]
        result = await post(client, "prioritize", by_objects(a_pod(), nodes))
    finally:
        await client.close()
    assert {h["Host"]: h["Score"] for h in result} == {
        "edge-1": 0, "edge-2": 0, "edge-3": 0, "cloud-1": 10,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("score", "priority"),
    [(0, 0), (4, 0), (5, 1), (31, 3), (80, 8), (95, 10), (100, 10)],
    ids=str,
)
def test_node_scores_become_extender_priorities(score: int, priority: int) -> None:
    """0..100 maps to 0..10, rounded half up."""
    assert to_extender_priority(score) == priority


GARBAGE = {
    "not-json": b"{nope",
    "empty": b"",
    "a-list": b"[]",
    "no-pod": b'{"NodeNames": ["edge-1"]}',
    "pod-without-name": b'{"Pod": {"metadata": {}}, "NodeNames": []}',
    "pod-metadata-a-string": b'{"Pod": {"metadata": "x"}, "NodeNames": []}',
    "no-nodes": b'{"Pod": {"metadata": {"name": "p"}}}',
    "names-not-strings": b'{"Pod": {"metadata": {"name": "p"}}, "NodeNames": [1]}',
    "items-not-objects": b'{"Pod": {"metadata": {"name": "p"}}, "Nodes": {"items": [1]}}',
    "node-without-name": b'{"Pod": {"metadata": {"name": "p"}}, "Nodes": {"items": [{}]}}',
}


@pytest.mark.parametrize("verb", ["filter", "prioritize"])
@pytest.mark.parametrize("body", list(GARBAGE.values()), ids=list(GARBAGE))
async def test_a_malformed_body_is_a_400_with_a_message(
    client: Client, verb: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad input never raises: HTTP 400, the reason in Error, one log line, one count."""
    before = requests_counted(verb, "bad_request")
    resp = await client.post(f"/extender/{verb}", data=body)
    assert resp.status == 400
    error = orjson.loads(await resp.read())["Error"]
    assert error.startswith(f"lasched extender {verb}: ")
    assert requests_counted(verb, "bad_request") == before + 1
    assert [r.getMessage() for r in caplog.records if r.name == "lasched.extender"] == [
        f"extender {verb}: bad request from 127.0.0.1: {error.split(': ', 1)[1]}"
    ]


def test_decode_names_the_missing_field() -> None:
    """The 400's text says what to fix."""
    with pytest.raises(ValueError, match=r"ExtenderArgs\.Pod cannot be read: missing field 'name'"):
        decode_args(b'{"Pod": {"metadata": {}}, "NodeNames": []}')


async def test_a_request_before_the_informers_sync_is_a_503() -> None:
    """A starting lasched does not guess: kube-scheduler treats the 503 per ignorable."""
    client = await serve(extender(ready=False))
    try:
        resp = await client.post("/extender/filter", data=orjson.dumps(by_names(a_pod())))
    finally:
        await client.close()
    assert resp.status == 503


async def test_successes_are_counted(client: Client) -> None:
    """lasched_extender_requests_total{verb, outcome="success"}."""
    before = requests_counted("prioritize", "success")
    await post(client, "prioritize", by_names(a_pod()))
    assert requests_counted("prioritize", "success") == before + 1


def test_settings_extender_is_off_by_default() -> None:
    """The extender is opt-in; kube-scheduler's trailing "/" rule applies to the prefix."""
    assert settings.parse({}).extender == settings.ExtenderSettings(False, "/extender")
    ext = settings.parse({"extender": {"enabled": True, "urlPrefix": "/latency/"}}).extender
    assert ext == settings.ExtenderSettings(True, "/latency")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"enabled": "yes"}, "extender.enabled must be true or false, not 'yes'"),
        ({"urlPrefix": "extender"}, "extender.urlPrefix must be a URL path such as /extender"),
        ({"urlPrefix": "/a b"}, "extender.urlPrefix must be a URL path such as /extender"),
        ({"urlPrefix": 3}, "extender.urlPrefix must be a non-empty string, not 3"),
        ({"filterVerb": "filter"}, "unknown field extender.filterVerb"),
    ],
    ids=["enabled-not-bool", "relative-prefix", "space-in-prefix", "prefix-not-string", "unknown"],
)
def test_settings_errors_name_the_field(section: dict[str, Any], message: str) -> None:
    """A bad extender section stops start-up with the field's YAML path."""
    with pytest.raises(settings.ConfigError, match=re.escape(message)):
        settings.parse({"extender": section})
