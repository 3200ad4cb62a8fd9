"""Latency requirements from labels and annotations, and the plugins that enforce them."""

from __future__ import annotations

import time

import pytest

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import Code, CycleState
from lasched.latency.cache import LatencyCache
from lasched.model.latencyreq import (
    GROUP_MAX_RTT,
    MAX_LIST_CHARS,
    MAX_RTT,
    PEER_MAX_RTT,
    PEER_SELECTOR,
    PREFER_LOW_RTT,
    LatencyRequirements,
    parse_ms,
    parse_requirements,
    parse_selector,
)
from lasched.model.pod import PodInfo
from lasched.model.selector import matches
from lasched.plugins.latency import LatencyFilter, LatencyScore, between
from tests.unit.factories import make_node, pod_json


def requirements(
    annotations: dict[str, str], labels: dict[str, str] | None = None
) -> LatencyRequirements:
    req, err = parse_requirements(labels or {}, annotations)
    assert err is None, err
    assert req is not None
    return req


def pod_with(annotations: dict[str, str], labels: dict[str, str] | None = None) -> PodInfo:
    body = pod_json("p")
    body["metadata"]["annotations"] = annotations
    body["metadata"]["labels"] = labels or {}
    return PodInfo(body)


def test_max_rtt_and_delay_labels_combine() -> None:
    """delay_ labels and lasched.io/max-rtt both become hard limits, with their origin."""
    req = requirements({MAX_RTT: "users-eu=30ms, edge-2 = 0.5s"}, {"delay_edge-1": "10"})
    assert [(x.place, x.max_ms, x.origin) for x in req.limits] == [
        ("edge-1", 10.0, "delay_edge-1"),
        ("users-eu", 30.0, MAX_RTT),
        ("edge-2", 500.0, MAX_RTT),
    ]
    assert req.hard and not req.soft


def test_preferences_with_optional_weights() -> None:
    """prefer-low-rtt takes places with optional integer weights."""
    req = requirements({PREFER_LOW_RTT: "users-eu, edge-1=3"})
    assert [(p.place, p.weight) for p in req.preferences] == [("users-eu", 1), ("edge-1", 3)]
    assert req.soft and not req.hard


def test_no_requirements_is_none() -> None:
    """A pod with no latency labels or annotations has no requirements object at all."""
    assert parse_requirements({"app": "x"}, {"other": "y"}) == (None, None)


@pytest.mark.parametrize(
    ("annotations", "labels", "error"),
    [
        ({MAX_RTT: "users-eu"}, {}, "'users-eu' needs a limit"),
        ({MAX_RTT: "users-eu=fast"}, {}, 'lasched.io/max-rtt="fast" is not a duration'),
        ({MAX_RTT: "users-eu=0ms"}, {}, "must be a positive duration"),
        ({MAX_RTT: "a=1,a=2"}, {}, "names a twice"),
        ({MAX_RTT: " , "}, {}, "names no place"),
        ({PREFER_LOW_RTT: "users-eu=11"}, {}, "integer from 1 to 10, not '11'"),
        ({PEER_MAX_RTT: "5ms"}, {}, "needs lasched.io/peer-selector"),
        ({PEER_SELECTOR: "app=db", PEER_MAX_RTT: "-5"}, {}, "is not a duration"),
        ({PEER_SELECTOR: "a b c"}, {}, "'a b c' is not a label key"),
        ({PEER_SELECTOR: " , "}, {}, "empty selector"),
        ({GROUP_MAX_RTT: "soon"}, {}, 'group-max-rtt="soon"'),
        ({}, {"delay_edge-1": "fast"}, 'label delay_edge-1="fast" is not a number'),
    ],
)
def test_malformed_values_name_key_and_value(
    annotations: dict[str, str], labels: dict[str, str], error: str
) -> None:
    """Every malformed value gives an error text naming what was wrong, never an exception."""
    req, err = parse_requirements(labels, annotations)
    assert req is None
    assert err is not None and error in err, err


@pytest.mark.parametrize(
    ("text", "ms"),
    [("5", 5.0), ("5ms", 5.0), (" 2.5 ms ", 2.5), ("0.5s", 500.0), ("800us", 0.8), (".5", 0.5)],
)
def test_durations(text: str, ms: float) -> None:
    """Durations read as milliseconds, with ms, s and us units."""
    assert parse_ms("k", text) == pytest.approx(ms)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=db", {"app": "db"}, True),
        ("app=db", {"app": "web"}, False),
        ("app==db,tier!=cache", {"app": "db", "tier": "main"}, True),
        ("app in (db, cache),!canary", {"app": "cache"}, True),
        ("app in (db, cache),!canary", {"app": "cache", "canary": "1"}, False),
        ("app notin (web)", {"app": "db"}, True),
        ("app", {"app": "x"}, True),
        ("app", {}, False),
    ],
)
def test_selector_syntax(text: str, labels: dict[str, str], expected: bool) -> None:
    """kubectl's selector syntax becomes a LabelSelector that matches as kubectl's does."""
    assert matches(parse_selector("k", text), labels) is expected


def cache_with(pairs: dict[tuple[str, str], float]) -> LatencyCache:
    cache = LatencyCache(ttl_seconds=30)
    for (a, b), ms in pairs.items():
        cache.observe(a, b, median_ms=ms)
    return cache


def test_between_reads_either_direction() -> None:
    """An endpoint is only measured from the node; the node->place direction is used then."""
    cache = cache_with({("edge-1", "users-eu"): 12.0})
    rtt = between(cache, "users-eu", "edge-1")
    assert rtt is not None and rtt.ms == 12.0
    assert between(cache, "users-eu", "edge-2") is None


def test_filter_max_rtt_to_endpoint() -> None:
    """max-rtt to an endpoint admits nodes whose own agents measured it within the limit."""
    cache = cache_with({("edge-1", "users-eu"): 12.0, ("edge-2", "users-eu"): 45.0})
    f = LatencyFilter(cache)
    pod = pod_with({MAX_RTT: "users-eu=30ms"})
    state = CycleState()
    assert f.pre_filter(state, pod).ok
    assert f.filter(state, pod, NodeInfo(make_node("edge-1"))).ok
    far = f.filter(state, pod, NodeInfo(make_node("edge-2")))
    assert far.reasons == ("node(s) were more than 30 ms from users-eu (lasched.io/max-rtt)",)
    assert f.filter(state, pod, NodeInfo(make_node("edge-3"))).reasons == (
        "node(s) had no measured RTT from users-eu",
    )


def test_filter_peer_max_rtt() -> None:
    """peer-max-rtt admits nodes near every node hosting a matching pod."""
    cache = cache_with({("db-node", "edge-1"): 2.0, ("db-node", "edge-2"): 20.0})
    f = LatencyFilter(cache, peer_nodes=lambda ns, sel: {"db-node"})
    pod = pod_with({PEER_SELECTOR: "app=db", PEER_MAX_RTT: "5ms"})
    state = CycleState()
    assert f.pre_filter(state, pod).ok
    assert f.filter(state, pod, NodeInfo(make_node("edge-1"))).ok
    assert f.filter(state, pod, NodeInfo(make_node("db-node"))).ok  # 0 ms to itself
    assert f.filter(state, pod, NodeInfo(make_node("edge-2"))).reasons == (
        "node(s) were more than 5 ms from pods matching app=db (peer-max-rtt)",
    )


def test_filter_peers_not_placed_yet() -> None:
    """With no matching pod placed the pod waits, unless it matches its own selector."""
    f = LatencyFilter(LatencyCache(), peer_nodes=lambda ns, sel: set())
    waiting = f.pre_filter(CycleState(), pod_with({PEER_SELECTOR: "app=db", PEER_MAX_RTT: "5"}))
    assert waiting.code is Code.UNSCHEDULABLE
    assert "no pod matching app=db is placed yet" in waiting.message
    first = pod_with({PEER_SELECTOR: "app=db", PEER_MAX_RTT: "5"}, {"app": "db"})
    assert f.pre_filter(CycleState(), first).ok


def test_filter_group_pairwise_budget() -> None:
    """group-max-rtt bounds the RTT to every member already placed."""
    cache = cache_with({("m1", "near"): 1.0, ("m2", "near"): 2.0, ("m1", "half"): 1.0})
    f = LatencyFilter(cache, group_nodes=lambda pod: {"m1", "m2"})
    pod = pod_with(
        {GROUP_MAX_RTT: "3ms"}, {"lasched.io/pod-group": "g", "lasched.io/min-available": "3"}
    )
    assert pod.group is not None
    state = CycleState()
    assert f.pre_filter(state, pod).ok
    assert f.filter(state, pod, NodeInfo(make_node("near"))).ok
    half = f.filter(state, pod, NodeInfo(make_node("half")))
    assert half.reasons == (
        f"node(s) had no measured RTT from other members of pod group {pod.group.key}",
    )


def run_score(plugin: LatencyScore, pod: PodInfo, names: list[str]) -> dict[str, int]:
    state = CycleState()
    nodes = [
        NodeInfo(
            make_node(n, labels=({"kubernetes.io/role": "cloud"} if n.startswith("cloud") else {}))
        )
        for n in names
    ]
    assert plugin.pre_score(state, pod, nodes).ok
    scores = [plugin.score(state, pod, n) for n in nodes]
    plugin.normalize(state, pod, scores)
    return dict(zip(names, scores, strict=True))


def test_score_prefers_low_rtt_and_ranks_unknown_last() -> None:
    """Nearest node gets 100, others relative to it (+1 ms each), an unmeasured node 0."""
    cache = cache_with({("a", "users"): 5.0, ("b", "users"): 15.0, ("c", "users"): 25.0})
    s = LatencyScore(cache)
    scores = run_score(s, pod_with({PREFER_LOW_RTT: "users"}), ["a", "b", "c", "d"])
    assert scores == {"a": 100, "b": 100 * 6 // 16, "c": 100 * 6 // 26, "d": 0}


def test_score_does_not_depend_on_the_farthest_node() -> None:
    """A distant region does not squeeze the difference between two near nodes."""
    near = {("edge-1", "users"): 3.0, ("edge-2", "users"): 9.0, ("cloud", "users"): 28.0}
    far = {**near, ("other-region", "users"): 178.0}
    s_near = run_score(LatencyScore(cache_with(near)), pod_with({PREFER_LOW_RTT: "users"}),
                       ["edge-1", "edge-2", "cloud"])  # fmt: skip
    s_far = run_score(LatencyScore(cache_with(far)), pod_with({PREFER_LOW_RTT: "users"}),
                      ["edge-1", "edge-2", "cloud", "other-region"])  # fmt: skip
    assert {n: s_far[n] for n in s_near} == s_near
    # 9 ms against 28 ms is worth 27 points (135 after the default weight of 5).
    assert s_near["edge-2"] - s_near["cloud"] == 27


def test_score_skips_pods_without_requirements() -> None:
    """No latency requirement: the score is skipped (cloud fallback off)."""
    s = LatencyScore(LatencyCache())
    assert s.pre_score(CycleState(), pod_with({}), []).code is Code.SKIP


def test_hard_only_pods_prefer_lower_rtt_within_their_limit() -> None:
    """A max-rtt limit alone scores nodes by RTT to the limited place, as a preference would."""
    cache = cache_with({("near", "users"): 2.0, ("far", "users"): 9.0})
    s = LatencyScore(cache)
    scores = run_score(s, pod_with({MAX_RTT: "users=10ms"}), ["near", "far"])
    assert scores == {"near": 100, "far": 100 * 3 // 10}
    delay = run_score(s, pod_with({}, {"delay_users": "10"}), ["near", "far"])
    assert delay == scores


def test_cloud_fallback_for_unconstrained_pods() -> None:
    """With cloud fallback on, a pod with no latency requirement prefers cloud-role nodes."""
    s = LatencyScore(LatencyCache(), cloud_fallback=True)
    assert run_score(s, pod_with({}), ["cloud-1", "edge-1"]) == {"cloud-1": 100, "edge-1": 0}
    delayed = pod_with({PREFER_LOW_RTT: "users"})
    assert s.pre_score(CycleState(), delayed, []).ok  # scored by RTT, not by role


def test_group_max_rtt_needs_a_group() -> None:
    """group-max-rtt on a pod that declares no group is an error, not silently ignored."""
    pod = pod_with({GROUP_MAX_RTT: "3ms"})
    assert pod.latency_error is not None
    assert "lasched.io/group-max-rtt needs the pod to be in a pod group" in pod.latency_error


def test_filter_without_prefilter_admits_pods_without_requirements() -> None:
    """Preemption simulates Filter without PreFilter: a pod with no limits passes."""
    f = LatencyFilter(LatencyCache())
    assert f.filter(CycleState(), pod_with({}), NodeInfo(make_node("any"))).ok


def test_gang_anchor_prefers_the_site_with_most_room_within_budget() -> None:
    """The first member of a budgeted gang goes where most nodes are within the budget."""
    small, big = ["a-0", "a-1"], ["b-0", "b-1", "b-2"]
    pairs: dict[tuple[str, str], float] = {}
    for site in (small, big):
        for x in site:
            for y in site:
                if x != y:
                    pairs[(x, y)] = 1.0
    for x in small:
        for y in big:
            pairs[(x, y)] = pairs[(y, x)] = 30.0
    s = LatencyScore(cache_with(pairs))
    member = {"lasched.io/pod-group": "g", "lasched.io/min-available": "3"}
    scores = run_score(s, pod_with({GROUP_MAX_RTT: "5ms"}, member), small + big)
    assert max(scores, key=lambda n: scores[n]).startswith("b-")
    assert scores["a-0"] == 0


def test_gang_anchor_goes_near_its_users_where_the_gang_has_room() -> None:
    """A budgeted gang whose users are near site a anchors at a, not at the roomier b;
    a site too small for the whole gang within the budget is a last resort."""
    a, b, tiny = ["a-0", "a-1", "a-2"], ["b-0", "b-1", "b-2", "b-3"], ["t-0"]
    pairs: dict[tuple[str, str], float] = {}
    for site in (a, b, tiny):
        for x in site:
            for y in site:
                if x != y:
                    pairs[(x, y)] = 0.3
    for xs, ys, ms in ((a, b, 40.0), (a, tiny, 30.0), (b, tiny, 50.0)):
        for x in xs:
            for y in ys:
                pairs[(x, y)] = pairs[(y, x)] = ms
    for n, ms in {**dict.fromkeys(a, 3.0), **dict.fromkeys(b, 40.0), "t-0": 1.0}.items():
        pairs[(n, "users")] = ms
    s = LatencyScore(cache_with(pairs))
    member = {"lasched.io/pod-group": "g", "lasched.io/min-available": "3"}
    for ann in ({PREFER_LOW_RTT: "users"}, {MAX_RTT: "users=45ms"}):
        body = pod_json("p", cpu="5")  # one member per 8-cpu node
        body["metadata"] |= {"annotations": {GROUP_MAX_RTT: "5ms", **ann}, "labels": member}
        scores = run_score(s, PodInfo(body), a + b + tiny)
        assert max(scores, key=lambda n: scores[n]).startswith("a-"), (ann, scores)
        assert scores["t-0"] == 0  # nearest its users, but room for one member within 5 ms


def test_later_gang_members_prefer_nodes_near_their_users_and_the_placed_ones() -> None:
    """Among nodes within the budget of the placed member, the one nearer the users wins."""
    cache = cache_with({("m", "x"): 1.0, ("m", "y"): 1.0, ("x", "users"): 9.0, ("y", "users"): 2.0})
    s = LatencyScore(cache, group_nodes=lambda pod: {"m"})
    member = {"lasched.io/pod-group": "g", "lasched.io/min-available": "3"}
    scores = run_score(
        s, pod_with({GROUP_MAX_RTT: "5ms", PREFER_LOW_RTT: "users"}, member), ["x", "y"]
    )
    assert scores["y"] > scores["x"]


def test_later_gang_members_prefer_nodes_near_the_placed_ones() -> None:
    """Once members are placed, the nearest node scores highest."""
    cache = cache_with({("m", "near"): 1.0, ("m", "far"): 4.0})
    s = LatencyScore(cache, group_nodes=lambda pod: {"m"})
    member = {"lasched.io/pod-group": "g", "lasched.io/min-available": "3"}
    scores = run_score(s, pod_with({GROUP_MAX_RTT: "5ms"}, member), ["near", "far"])
    assert scores == {"near": 100, "far": 100 * 2 // 5}


@pytest.mark.parametrize(
    "weight",
    ["²", "\u0661", "٣", "\uff15", "1_0", "+3", "3.0", "1" * 4000],
    ids=["superscript", "arabic-indic-1", "arabic-indic-3", "fullwidth", "underscore", "sign",
         "decimal", "huge"],
)  # fmt: skip
def test_preference_weight_is_ascii_digits_only(weight: str) -> None:
    """A weight that str.isdigit() admits but is not 1..10 in ASCII is an error text."""
    req, err = parse_requirements({}, {PREFER_LOW_RTT: f"users-eu={weight}"})
    assert req is None
    assert err is not None and "weight of users-eu must be an integer from 1 to 10" in err, err
    assert len(err) < 400


def test_superscript_weight_gives_a_pod_error_not_an_exception() -> None:
    """prefer-low-rtt "users-eu=²" decodes into a PodInfo carrying latency_error."""
    pod = pod_with({PREFER_LOW_RTT: "users-eu=²"})
    assert pod.latency is None
    assert pod.latency_error == (
        f'annotation {PREFER_LOW_RTT}="users-eu=²": weight of users-eu must be an integer '
        "from 1 to 10, not '²'"
    )


@pytest.mark.parametrize(
    "value",
    [
        "1" * 29_999 + "x",
        "1" * 262_144,
        "1." * 131_072,
        " " * 262_144 + "x",
        "5" + " " * 262_143 + "x",
    ],
    ids=["digits-then-x", "digits", "dots", "blanks", "number-blanks"],
)
def test_huge_duration_is_refused_in_linear_time(value: str) -> None:
    """A 30,000-character or 256 KiB duration is "value too long", fast, in a short message."""
    start = time.perf_counter()
    req, err = parse_requirements({}, {GROUP_MAX_RTT: value})
    assert time.perf_counter() - start < 0.5
    assert req is None
    assert err is not None
    assert f"value too long ({len(value)} characters; at most 64)" in err
    assert err.startswith(f'annotation {GROUP_MAX_RTT}="{value[:64]}…"')
    assert len(err) < 250


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("90s", "must be at most 60 s (60000 ms)"),
        ("60001", "must be at most 60 s"),
        ("1e3", "is not a duration"),
        ("inf", "is not a duration"),
        ("nan ms", "is not a duration"),
        ("٣ms", "is not a duration"),
        ("5..5ms", "is not a duration"),
        ("ms", "is not a duration"),
        ("0.0000s", "must be a positive duration"),
    ],
)
def test_durations_are_finite_and_at_most_a_minute(text: str, error: str) -> None:
    """A duration is ASCII, positive and at most 60 s; anything else names the value."""
    req, err = parse_requirements({}, {MAX_RTT: f"users-eu={text}"})
    assert req is None
    assert err is not None and error in err and f'"{text}"' in err, err


def test_sixty_seconds_is_the_largest_limit() -> None:
    """60 s itself is a valid limit, in any unit."""
    assert parse_ms("k", "60s") == 60_000.0
    assert parse_ms("k", "60000") == 60_000.0
    assert parse_ms("k", "60000000us") == pytest.approx(60_000.0)


def test_lists_of_places_are_bounded() -> None:
    """max-rtt, prefer-low-rtt and peer-selector over 4096 characters are refused."""
    for key in (MAX_RTT, PREFER_LOW_RTT, PEER_SELECTOR):
        value = ",".join(f"p{i}=5" for i in range(1000))
        req, err = parse_requirements({}, {key: value})
        assert req is None
        assert err is not None
        assert f"value too long ({len(value)} characters; at most {MAX_LIST_CHARS})" in err


def test_place_names_are_bounded() -> None:
    """A place name longer than an object name can be is an error, shown cut."""
    place = "é" * 300
    req, err = parse_requirements({}, {MAX_RTT: f"{place}=5ms"})
    assert req is None
    assert err is not None and "is too long (at most 253 characters)" in err, err
    assert len(err) < 300


def test_many_places_parse_in_linear_time() -> None:
    """Duplicate detection does not compare every pair of places."""
    value = ",".join(f"{i}" for i in range(800))[:MAX_LIST_CHARS]
    start = time.perf_counter()
    req, err = parse_requirements({}, {PREFER_LOW_RTT: value})
    assert time.perf_counter() - start < 0.5
    assert err is None and req is not None


@pytest.mark.parametrize(
    "text",
    ["a" * 4000, "a " + " " * 4000 + "x", "a in (" + "b" * 4000, "a in " + "(" * 4000],
    ids=["key", "blanks", "open-set", "parentheses"],
)
def test_selector_patterns_do_not_backtrack(text: str) -> None:
    """Adversarial selectors are read (or refused) quickly."""
    start = time.perf_counter()
    parse_requirements({}, {PEER_SELECTOR: text})
    assert time.perf_counter() - start < 0.5


def test_selector_key_with_a_trailing_newline_is_not_a_key() -> None:
    """Keys are matched whole: "$" would let "app\\n" through."""
    req, err = parse_requirements({}, {PEER_SELECTOR: "app\n"})
    assert req is not None and err is None  # stripped: "app"
    req, err = parse_requirements({}, {PEER_SELECTOR: "a\nb"})
    assert req is None and err is not None and "is not a label key" in err
