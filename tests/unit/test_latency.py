"""The latency cache, static RTT files, delay labels and the latency filter."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lasched.cache.cache import NodeInfo
from lasched.framework.events import LATENCY_UPDATE, ClusterEvent
from lasched.framework.interface import Code, CycleState
from lasched.latency import static
from lasched.latency.cache import LatencyCache
from lasched.latency.upkeep import LatencyUpkeep
from lasched.model.delay import delay_constraints
from lasched.model.pod import PodInfo
from lasched.plugins.latency import LatencyFilter
from lasched.timers import TimerHeap
from tests.unit.factories import make_node, make_pod, pod_json


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_ewma_and_direction() -> None:
    """Reports fold into an EWMA; A->B and B->A are separate."""
    c = LatencyCache(alpha=0.5, clock=Clock())
    c.observe("a", "b", median_ms=10)
    c.observe("a", "b", median_ms=20)
    rtt = c.get("a", "b")
    assert rtt is not None
    assert rtt.ms == 15
    assert c.get("b", "a") is None
    assert c.get("a", "a") is not None  # a place to itself is 0 ms


def test_entries_go_stale_after_the_ttl() -> None:
    """Freshness is part of every answer."""
    clock = Clock()
    c = LatencyCache(ttl_seconds=30, clock=clock)
    c.observe("a", "b", median_ms=5)
    clock.t = 30
    assert not c.get("a", "b").stale  # type: ignore[union-attr]
    clock.t = 31
    assert c.get("a", "b").stale  # type: ignore[union-attr]


def test_static_entries_never_go_stale() -> None:
    """Pre-measured RTTs from a file are pinned."""
    clock = Clock()
    c = LatencyCache(ttl_seconds=1, clock=clock)
    c.observe("a", "b", median_ms=5, source="static", pinned=True)
    clock.t = 10_000
    assert not c.get("a", "b").stale  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    [
        '{"edge-1": {"edge-2": 12.5, "cloud-1": 40}}',
        "source,target,rtt_ms\nedge-1,edge-2,12.5\nedge-1,cloud-1,40\n",
        "edge-1,edge-2,12.5\n# comment\nedge-1,cloud-1,40\n",
    ],
    ids=["json", "csv-with-header", "csv-with-comment"],
)
def test_static_file_formats(text: str) -> None:
    """JSON and CSV give the same triples."""
    assert sorted(static.parse(text)) == [("edge-1", "cloud-1", 40.0), ("edge-1", "edge-2", 12.5)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": {"b": "fast"}}', "a -> b: RTT 'fast' is not a number"),
        ('{"a": {"b": -1}}', "must not be negative"),
        ('{"a": [1]}', "'a' must map targets to RTTs"),
        ("a,b\n", ":1: want source,target,rtt_ms"),
        ("a,b,x\n", ":1: RTT 'x' is not a number"),
        ("{not json", "is not valid JSON"),
        ('{"a": {"b": "inf"}}', "a -> b: RTT 'inf' is not a number"),
        ('{"a": {"b": "1e999"}}', "a -> b: RTT '1e999' is not a finite number"),
        ('{"a": {"b": 1e308}}', "a -> b: RTT 1e+308 must be at most 60000 ms"),
        ('{"a": {"b": 18446744073709551615}}', "must be at most 60000 ms"),
        ("a,b,١٢\n", ":1: RTT '١٢' is not a number"),
        ("a,b,nan\n", ":1: RTT 'nan' is not a number"),
        ("a,,5\n", ":1: source and target must be non-empty names"),
        ("a,b,\x005\n", "rtt.json:1: RTT '\x005' is not a number"),
        ("a,b," + "1" * 200_000 + "\n", "rtt.json:1: field larger than field limit"),
    ],
    ids=["word", "negative", "not-a-map", "short-row", "csv-word", "broken-json", "inf-text",
         "overflow-text", "huge-number", "huge-integer", "arabic-indic", "nan", "empty-name",
         "nul", "huge-field"],
)  # fmt: skip
def test_static_file_errors_name_the_place(text: str, message: str) -> None:
    """Every problem says where it is."""
    with pytest.raises(static.StaticFileError) as err:
        static.parse(text, name="rtt.json")
    assert message in str(err.value)


def test_static_load_reports_unreadable_files(tmp_path: Path) -> None:
    """A missing file is an error naming it."""
    with pytest.raises(static.StaticFileError, match="cannot read RTT file"):
        static.load(tmp_path / "missing.json", LatencyCache())


def test_static_load_reports_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a StaticFileError, not a UnicodeDecodeError."""
    path = tmp_path / "rtt.csv"
    path.write_bytes(b"a,b,\xff\n")
    with pytest.raises(static.StaticFileError, match="is not UTF-8 text"):
        static.load(path, LatencyCache())


def test_static_rtt_of_sixty_seconds_is_accepted() -> None:
    """0 and 60000 ms are the ends of the range."""
    assert static.parse("a,b,0\na,c,60000\n") == [("a", "b", 0.0), ("a", "c", 60_000.0)]


@pytest.mark.parametrize(
    ("median", "stored"),
    [(math.inf, None), (math.nan, None), (-1.0, None), (1e150, 60_000.0), (1e308, 60_000.0)],
    ids=["inf", "nan", "negative", "1e150", "1e308"],
)
def test_cache_never_stores_what_is_not_an_rtt(median: float, stored: float | None) -> None:
    """A report that is not finite is ignored; one above 60 s counts as 60 s."""
    c = LatencyCache(clock=Clock())
    c.observe("a", "b", median_ms=median, p90_ms=median, loss=math.nan)
    rtt = c.get("a", "b")
    if stored is None:
        assert rtt is None
        assert c.coordinates.get("a") is None
    else:
        assert rtt is not None
        assert (rtt.ms, rtt.p90_ms, rtt.loss) == (stored, stored, 1.0)


@pytest.mark.parametrize(
    ("labels", "error"),
    [
        ({"delay_edge-1": "25"}, None),
        ({"delay_edge-1": "fast"}, 'label delay_edge-1="fast" is not a number of milliseconds'),
        ({"delay_edge-1": "0"}, "must be a positive number"),
        ({"delay_": "5"}, "names no node"),
        ({"delay_edge-1": "inf"}, 'delay_edge-1="inf" is not a finite number of milliseconds'),
        ({"delay_edge-1": "-Infinity"}, "is not a finite number of milliseconds"),
        ({"delay_edge-1": "NaN"}, 'label delay_edge-1="NaN" is not a finite number'),
        ({"delay_edge-1": "1e999"}, 'label delay_edge-1="1e999" is not a finite number'),
        ({"delay_edge-1": "-5"}, "must be a positive number of milliseconds"),
        ({"delay_edge-1": "60001"}, "must be at most 60000 milliseconds (60 s)"),
        ({"delay_edge-1": "٢٥"}, 'label delay_edge-1="٢٥" is not a number of milliseconds'),
        ({"delay_edge-1": "\uff12\uff15"}, "is not a number of milliseconds"),
        ({"delay_edge-1": "2_5"}, "is not a number of milliseconds"),
        ({"delay_edge-1": "1" * 100}, "value too long (100 characters; at most 64)"),
        ({"delay_edge-1": "2.5e1"}, None),
    ],
    ids=["valid", "word", "zero", "no-node", "inf", "minus-infinity", "nan", "overflow",
         "negative", "over-a-minute", "arabic-indic", "fullwidth", "underscore", "too-long",
         "exponent"],
)  # fmt: skip
def test_delay_labels(labels: dict[str, str], error: str | None) -> None:
    """delay_<node> labels parse, and bad ones say what was wrong."""
    constraints, problem = delay_constraints(labels)
    if error is None:
        assert problem is None
        assert constraints[0].source == "edge-1"
        assert constraints[0].max_ms == 25
    else:
        assert problem is not None
        assert error in problem


def pod_with(labels: dict[str, str], annotations: dict[str, str] | None = None) -> PodInfo:
    body = pod_json("p")
    body["metadata"]["labels"] = labels
    body["metadata"]["annotations"] = annotations or {}
    return PodInfo(body)


def test_filter_admits_near_nodes_and_explains_far_ones() -> None:
    """Near enough passes; too far, unknown and stale fail closed with a reason."""
    clock = Clock()
    cache = LatencyCache(ttl_seconds=30, clock=clock)
    cache.observe("edge-1", "near", median_ms=8, p90_ms=9)
    cache.observe("edge-1", "far", median_ms=41)
    f = LatencyFilter(cache)
    pod = pod_with({"delay_edge-1": "25"})
    assert f.pre_filter(CycleState(), pod).code is Code.SUCCESS
    assert f.filter(CycleState(), pod, NodeInfo(make_node("near"))).ok
    far = f.filter(CycleState(), pod, NodeInfo(make_node("far")))
    assert far.reasons == ("node(s) were more than 25 ms from edge-1 (delay_edge-1)",)
    unknown = f.filter(CycleState(), pod, NodeInfo(make_node("elsewhere")))
    assert unknown.reasons == ("node(s) had no measured RTT from edge-1",)
    clock.t = 60
    stale = f.filter(CycleState(), pod, NodeInfo(make_node("near")))
    assert stale.reasons == ("node(s) had only stale RTTs from edge-1",)
    assert f.explain(pod, "near") == "rtt from edge-1 = 8.0 ms (p90 9.0, 60 s old)"


def test_filter_skips_pods_without_constraints() -> None:
    """Pods without delay labels cost nothing."""
    f = LatencyFilter(LatencyCache())
    assert f.pre_filter(CycleState(), make_pod("plain")).code is Code.SKIP


def test_malformed_label_fails_prefilter_unresolvably() -> None:
    """A bad delay label keeps the pod pending with the label named."""
    f = LatencyFilter(LatencyCache())
    st = f.pre_filter(CycleState(), pod_with({"delay_edge-1": "soon"}))
    assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert 'delay_edge-1="soon"' in st.message


def test_rotating_sources_stay_fresh_between_visits() -> None:
    """A source that refreshes each pair every 100 s keeps it fresh for 300 s, not the TTL."""
    clock = Clock()
    cache = LatencyCache(ttl_seconds=30, clock=clock)
    cache.observe("big-1", "n-7", median_ms=3)
    cache.observe("small-1", "n-7", median_ms=3)
    cache.set_refresh("big-1", 100.0)
    clock.t = 200
    big, small = cache.get("big-1", "n-7"), cache.get("small-1", "n-7")
    assert big is not None and not big.stale
    assert small is not None and small.stale
    clock.t = 301
    big = cache.get("big-1", "n-7")
    assert big is not None and big.stale


# ---- upkeep: RTT changes become queue events, coalesced -------------------------------


class Upkept:
    """A LatencyUpkeep whose queue and agent hub are recorders, on a virtual clock."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.timers = TimerHeap(self.clock)
        self.events: list[tuple[float, ClusterEvent]] = []
        self.refreshes: list[float] = []
        self.upkeep = LatencyUpkeep(
            timers=self.timers,
            on_event=self._on_event,
            refresh_targets=lambda: self.refreshes.append(self.clock.t),
        )

    def _on_event(self, event: ClusterEvent, old: object, new: object) -> int:
        self.events.append((self.clock.t, event))
        return 1

    def at(self, t: float) -> None:
        self.clock.t = t
        self.timers.fire_due()


def test_a_burst_of_rtt_changes_is_two_moves_at_most() -> None:
    """The first change moves at once; the rest of the second, once, when it ends."""
    u = Upkept()
    for t in (10.0, 10.2, 10.5, 10.9):
        u.at(t)
        u.upkeep.latency_changed()
    u.at(11.0)
    u.at(30.0)
    assert u.events == [(10.0, LATENCY_UPDATE), (11.0, LATENCY_UPDATE)]


def test_a_lone_rtt_change_after_a_quiet_spell_acts_at_once() -> None:
    """Coalescing bounds the cost; it never delays a change that comes alone."""
    u = Upkept()
    u.at(10.0)
    u.upkeep.latency_changed()
    u.at(25.0)
    u.upkeep.latency_changed()
    assert [t for t, _ in u.events] == [10.0, 25.0]
    assert len(u.timers) == 0  # nothing waits: no poll


def test_node_list_changes_refresh_the_agents_targets_coalesced() -> None:
    """Nodes added one after another: targets recomputed at once, then once more."""
    u = Upkept()
    u.at(5.0)
    for _ in range(50):
        u.upkeep.peers_changed()
    u.at(6.0)
    u.at(9.0)
    assert u.refreshes == [5.0, 6.0]
    assert u.events == []
