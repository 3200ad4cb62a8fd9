"""Goldpinger's /check_all answer becomes node-to-node RTTs; a bad answer harms nothing."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lasched.latency.cache import LatencyCache
from lasched.latency.goldpinger import GoldpingerError, parse_check_all, poll

NODES = {"10.0.0.1": "edge-1", "10.0.0.2": "edge-2", "10.0.0.3": "edge-3"}


def call(host_ip: str, ms: float, *, ok: bool = True) -> dict[str, Any]:
    return {"OK": ok, "HostIP": host_ip, "PodIP": "10.244.0.9", "response-time-ms": ms}


CHECK_ALL: dict[str, Any] = {
    "OK": True,
    "hosts-number": 3,
    "responses": {
        "goldpinger-a": {
            "OK": True,
            "HostIP": "10.0.0.1",
            "response": {
                "podResults": {
                    "goldpinger-a": call("10.0.0.1", 1),
                    "goldpinger-b": call("10.0.0.2", 4),
                    "goldpinger-c": call("10.0.0.3", 0, ok=False),
                }
            },
        },
        "goldpinger-b": {
            "OK": True,
            "HostIP": "10.0.0.2",
            "response": {"podResults": {"goldpinger-a": call("10.0.0.1", 6)}},
        },
        "goldpinger-x": {"OK": False, "HostIP": "192.0.2.1", "error": "timeout"},
    },
}


def test_parse_keeps_successful_calls_between_known_nodes() -> None:
    """Calls to itself, failed calls and unknown hosts are left out; directions stay apart."""
    assert sorted(parse_check_all(CHECK_ALL, NODES)) == [
        ("edge-1", "edge-2", 4.0),
        ("edge-2", "edge-1", 6.0),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "no 'responses' object"),
        ({"responses": {"p": 3}}, "responses['p'] is not an object"),
        (
            {"responses": {"p": {"HostIP": "10.0.0.1", "response": {"podResults": {
                "q": call("10.0.0.2", -1)}}}}},
            "negative response time",
        ),
        (
            {"responses": {"p": {"HostIP": "10.0.0.1", "response": {"podResults": {
                "q": call("10.0.0.2", 1e308)}}}}},
            "podResults['q'] has a response time of 1e+308 ms; at most 60000 ms is a round trip",
        ),
        (
            {"responses": {"p" * 1000: 3}},
            f"responses['{'p' * 64}…' (1000 characters)] is not an object",
        ),
    ],
    ids=["not-an-object", "caller-not-an-object", "negative", "huge", "long-caller"],
)  # fmt: skip
def test_parse_rejects_what_is_not_a_check_all_answer(body: Any, error: str) -> None:
    """A malformed answer raises GoldpingerError naming what was wrong."""
    with pytest.raises(GoldpingerError, match=re.escape(error)):
        parse_check_all(body, NODES)


@pytest.mark.parametrize(
    "result",
    [
        {"HostIP": "10.0.0.1", "response": "down"},
        {"HostIP": "10.0.0.1", "response": [1, 2]},
        {"HostIP": ["10.0.0.1"], "response": {"podResults": {"q": call("10.0.0.2", 3)}}},
        {"HostIP": "10.0.0.1", "response": {"podResults": {"q": {**call("10.0.0.2", 3),
                                                                "HostIP": {"a": 1}}}}},
    ],
    ids=["response-text", "response-list", "host-ip-list", "callee-host-ip-object"],
)  # fmt: skip
def test_parse_skips_odd_shapes_without_raising(result: dict[str, Any]) -> None:
    """A caller whose response or host IP has an odd shape contributes nothing."""
    assert parse_check_all({"responses": {"p": result}}, NODES) == []


async def test_poll_feeds_the_cache_and_survives_garbage() -> None:
    """The poller stores RTTs with source goldpinger, and a garbage answer is only logged."""
    answers = [b"not json at all", orjson.dumps(CHECK_ALL)]
    changes = 0

    async def check_all(_: web.Request) -> web.Response:
        return web.Response(body=answers.pop(0) if len(answers) > 1 else answers[0])

    def changed() -> None:
        nonlocal changes
        changes += 1

    app = web.Application()
    app.router.add_get("/check_all", check_all)
    async with TestServer(app) as server:
        cache = LatencyCache()
        task = asyncio.create_task(
            poll(
                cache,
                url=str(server.make_url("/check_all")),
                interval_seconds=0.05,
                node_of_ip=lambda: NODES,
                on_change=changed,
            )
        )
        try:
            for _ in range(100):
                if cache.get("edge-2", "edge-1") is not None:
                    break
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    rtt = cache.get("edge-2", "edge-1")
    assert rtt is not None and rtt.ms == 6.0 and rtt.source == "goldpinger"
    assert changes >= 1
