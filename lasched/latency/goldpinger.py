"""Goldpinger as a latency source, for clusters that already run it.

Goldpinger's ``/check_all`` asks every Goldpinger pod to call every other
one and returns, per caller pod, the callee pods' ``response-time-ms`` with
both pods' ``HostIP``. lasched maps host IPs to node names (the nodes'
InternalIPs) and folds each call into the latency cache as ``node -> node``
with source ``goldpinger``.

A Goldpinger call is an HTTP request between pods, so its time includes a
TCP handshake and the HTTP exchange on top of the network round trip: it
reads higher than an ICMP RTT, and agents' measurements of the same pair
should be preferred where both exist (run one or the other).

A response time must be a finite number of milliseconds within 0..60000;
any other shape or value raises :class:`GoldpingerError`, naming the callee
and the value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from lasched.latency.cache import LatencyCache
from lasched.model.strict import MAX_RTT_MS, shown

log = logging.getLogger(__name__)


class GoldpingerError(ValueError):
    """The answer was not a ``/check_all`` result; the message says what was wrong."""


def parse_check_all(body: Any, node_of_ip: Mapping[str, str]) -> list[tuple[str, str, float]]:
    """``(source node, target node, ms)`` for every successful call between known nodes."""
    if not isinstance(body, dict) or not isinstance(body.get("responses"), dict):
        raise GoldpingerError("the answer has no 'responses' object")
    out: list[tuple[str, str, float]] = []
    for caller, result in body["responses"].items():
        if not isinstance(result, dict):
            raise GoldpingerError(f"responses[{_shown(caller)}] is not an object")
        src = node_of_ip.get(_text(result.get("HostIP")))
        response = result.get("response")
        pods = response.get("podResults") if isinstance(response, dict) else None
        if src is None or not isinstance(pods, dict):
            continue
        for callee, call in pods.items():
            if not isinstance(call, dict) or not call.get("OK"):
                continue
            dst = node_of_ip.get(_text(call.get("HostIP")))
            ms = call.get("response-time-ms")
            if dst is None or dst == src or isinstance(ms, bool) or not isinstance(ms, int | float):
                continue
            if ms < 0:
                raise GoldpingerError(f"podResults[{_shown(callee)}] has a negative response time")
            if not ms <= MAX_RTT_MS:
                raise GoldpingerError(
                    f"podResults[{_shown(callee)}] has a response time of {ms!r} ms;"
                    f" at most {MAX_RTT_MS:g} ms is a round trip"
                )
            out.append((src, dst, float(ms)))
    return out


def _shown(key: str) -> str:
    return shown(key, quote="'")


def _text(value: object) -> str:
    # Host IPs are short strings; anything else matches no node.
    return value if isinstance(value, str) else ""


async def poll(
    cache: LatencyCache,
    *,
    url: str,
    interval_seconds: float,
    node_of_ip: Callable[[], Mapping[str, str]],
    on_change: Callable[[], None] = lambda: None,
) -> None:
    """Fold ``url``'s ``/check_all`` answer into the cache every interval, until cancelled.

    A failed or malformed answer is logged and tried again next interval;
    pairs it would have refreshed go stale on their own.
    """
    timeout = aiohttp.ClientTimeout(total=max(5.0, interval_seconds))
    # The system's resolver, never aiodns (see lasched.kube.client.system_resolver).
    connector = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver())
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        while True:
            try:
                async with http.get(url) as resp:
                    resp.raise_for_status()
                    body = orjson.loads(await resp.read())
                calls = parse_check_all(body, node_of_ip())
            except (
                aiohttp.ClientError,
                TimeoutError,
                orjson.JSONDecodeError,
                GoldpingerError,
            ) as e:
                log.warning("goldpinger %s: %s", url, e)
            else:
                changed = 0
                for src, dst, ms in calls:
                    before = cache.get(src, dst)
                    delta = cache.observe(src, dst, median_ms=ms, source="goldpinger")
                    if before is None or before.stale or delta > max(1.0, 0.1 * before.ms):
                        changed += 1
                log.debug("goldpinger %s: %d calls, %d changed pairs", url, len(calls), changed)
                if changed:
                    on_change()
            await asyncio.sleep(interval_seconds)
