"""LatencyFilter.why_not: the pair behind a rejection, with its RTT, the limit and its age."""

from __future__ import annotations

import pytest

from lasched.framework.interface import Code, CycleState
from lasched.latency.cache import LatencyCache
from lasched.model.pod import PodInfo
from lasched.plugins.latency import LatencyFilter
from tests.unit.factories import pod_json


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def latency_pod(
    labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> PodInfo:
    body = pod_json("p")
    body["metadata"]["labels"] = labels or {}
    body["metadata"]["annotations"] = annotations or {}
    return PodInfo(body)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> LatencyCache:
    c = LatencyCache(ttl_seconds=30, clock=clock)
    c.observe("edge-1", "near", median_ms=4.0, p90_ms=5.0)
    c.observe("edge-1", "far", median_ms=41.0)
    c.observe("edge-1", "pinned", median_ms=60.0, source="static", pinned=True)
    return c


@pytest.mark.parametrize(
    ("node", "why"),
    [
        ("near", ""),
        ("far", "rtt from edge-1 = 41.0 ms > 25 ms (delay_edge-1, 3 s old)"),
        ("pinned", "rtt from edge-1 = 60.0 ms > 25 ms (delay_edge-1, static)"),
        ("unknown", "no measured RTT from edge-1 (delay_edge-1)"),
    ],
    ids=["within", "too-far", "static", "unmeasured"],
)
def test_delay_label(cache: LatencyCache, clock: Clock, node: str, why: str) -> None:
    """Each rejection names the place, the RTT, the limit, where the limit came from and the age."""
    clock.now += 3
    f = LatencyFilter(cache)
    pod = latency_pod({"delay_edge-1": "25"})
    state = CycleState()
    assert f.pre_filter(state, pod).code is Code.SUCCESS
    assert f.why_not(state, pod, node) == why


def test_stale_pair_says_so(cache: LatencyCache, clock: Clock) -> None:
    """A pair past the TTL is stale, not far: hard limits treat it as unknown."""
    clock.now += 31
    f = LatencyFilter(cache)
    pod = latency_pod(annotations={"lasched.io/max-rtt": "edge-1=50ms"})
    state = CycleState()
    f.pre_filter(state, pod)
    assert f.why_not(state, pod, "near") == (
        "rtt from edge-1 = 4.0 ms is stale (31 s old; lasched.io/max-rtt)"
    )


def test_peer_limit_names_the_peer_node(cache: LatencyCache) -> None:
    """peer-max-rtt: the node of the matching pod is the place, the selector the origin."""
    f = LatencyFilter(cache, peer_nodes=lambda ns, sel: {"edge-1"})
    pod = latency_pod(
        annotations={"lasched.io/peer-selector": "app=db", "lasched.io/peer-max-rtt": "5ms"}
    )
    state = CycleState()
    f.pre_filter(state, pod)
    assert f.why_not(state, pod, "near") == ""
    assert f.why_not(state, pod, "far") == (
        "rtt from edge-1 = 41.0 ms > 5 ms (peer-max-rtt to pods matching app=db, 0 s old)"
    )


def test_no_requirements_no_reason(cache: LatencyCache) -> None:
    """A pod without latency requirements is never rejected for latency."""
    f = LatencyFilter(cache)
    assert f.why_not(CycleState(), latency_pod(), "far") == ""
