"""Every parser of workload input, for any input: a valid value or its documented error, fast.

"Valid" means finite and in range (RTTs and limits within 0..60000 ms,
weights 1..10, sizes 1..2^31-1, timeouts within (0, 86400] s, priorities
32-bit). "Its documented error" means the parser's own error type (or error
text) with a message of bounded length. Anything else, an unexpected
exception, an infinite limit, or a slow parse, is a failure.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lasched.latency import snapshot, static
from lasched.latency.cache import LatencyCache
from lasched.latency.coordinates import MAX_COORDINATE_MS, Coordinates
from lasched.latency.goldpinger import GoldpingerError, parse_check_all
from lasched.model import quantity
from lasched.model.delay import delay_constraints
from lasched.model.latencyreq import (
    GROUP_MAX_RTT,
    MAX_RTT,
    PEER_MAX_RTT,
    PEER_SELECTOR,
    PREFER_LOW_RTT,
    LatencyRequirements,
    RequirementError,
    parse_ms,
    parse_requirements,
    parse_selector,
)
from lasched.model.pod import PodInfo
from lasched.model.podgroup import (
    MAX_MEMBERS,
    MAX_TIMEOUT_SECONDS,
    GroupDecl,
    GroupError,
    declared_group,
)
from lasched.model.priority import effective_priority
from lasched.model.selector import matches
from lasched.model.strict import MAX_RTT_MS, integer
from tests.unit.factories import pod_json

MAX_MESSAGE = 1000  # characters: every error goes into an Event note of at most 1024 bytes
FAST = 1.0  # seconds for one parse of up to 256 KiB: a guard against backtracking, not a benchmark
KIB_256 = 262_144

# Digits that are not ASCII, written as escapes because they look like ASCII
# ones. int() and float() read Arabic-Indic (U+0660..) and fullwidth (U+FF10..)
# digits; superscripts pass str.isdigit() but int() refuses them.
ARABIC_INDIC = "".join(chr(0x0660 + d) for d in range(10))
FULLWIDTH = "".join(chr(0xFF10 + d) for d in range(10))
NON_ASCII_DIGITS = "²³¹" + ARABIC_INDIC[:6] + FULLWIDTH[:2] + FULLWIDTH[5]
# Characters that broke parsers before: those digits, blanks, signs, units,
# and the separators of the annotation syntax.
TRICKY = "0123456789.eE+-_ ,=()!\t\n" + NON_ASCII_DIGITS + "\u216b\u221einfINFnaNmsuµ\u03bc"
KNOWN = [
    "", " ", "0", "-0", "5", "5ms", "0.5s", "800us", "5µs", ".5", "5.", "1e3", "60000", "60s",
    "60000.001", "61s", "inf", "-inf", "+Infinity", "nan", "NaN", "1e999", "1e308", "-1e308",
    "²", ARABIC_INDIC[1], ARABIC_INDIC[3], ARABIC_INDIC[2] + ARABIC_INDIC[5], FULLWIDTH[5],
    "1_000", "0x10", "users-eu=²", f"users-eu={ARABIC_INDIC[3]}", "a=1,a=2", "a,,b",
]  # fmt: skip
ADVERSARIAL_UNITS = ["1", "1.", " ", "9e", "é", "²", "a=1,", "(", "a in (", "1 ", ",", "=", "a "]

tricky_text = st.text(alphabet=TRICKY, max_size=80)
huge_text = st.builds(
    lambda unit, n: (unit * n)[:KIB_256],
    st.sampled_from(ADVERSARIAL_UNITS),
    st.integers(min_value=0, max_value=KIB_256),
)
free_text = st.one_of(
    st.sampled_from(KNOWN), tricky_text, st.text(max_size=100), huge_text.map(lambda t: t + "x")
)
# Short number-like texts, where a non-ASCII digit beside ASCII ones hides.
DIGITS = "0123456789" + NON_ASCII_DIGITS  # every one passes str.isdigit()
odd_digits = st.builds(
    lambda a, b, c: a + b + c,
    st.text(alphabet="0123456789", max_size=2),
    st.sampled_from(NON_ASCII_DIGITS),
    st.text(alphabet="0123456789", max_size=2),
)
number_text = st.one_of(
    odd_digits,
    st.sampled_from(KNOWN),
    st.text(alphabet=DIGITS, min_size=1, max_size=3),
    st.text(alphabet=DIGITS + ".eE+- ", min_size=1, max_size=5),
    st.from_regex(r"\A[0-9]{1,4}(\.[0-9]{1,3})?(ms|s|us|µs)?\Z"),
    free_text,
)
place = st.one_of(
    st.text(alphabet="abcdé-", min_size=1, max_size=8),
    st.sampled_from(["users-eu", "edge-1", "é" * 300]),
    st.text(max_size=20),
)
place_list = st.lists(
    st.tuples(place, st.one_of(st.none(), number_text)), max_size=4, unique_by=lambda pv: pv[0]
).map(lambda ps: ", ".join(p if v is None else f"{p}={v}" for p, v in ps))
selector_text = st.one_of(st.text(alphabet="ab=!,() innot\n", max_size=40), free_text)

ANNOTATION_KEYS = [MAX_RTT, PREFER_LOW_RTT, PEER_SELECTOR, PEER_MAX_RTT, GROUP_MAX_RTT,
                   "pod-group", "pod-group-size", "priority"]  # fmt: skip
LABEL_KEYS = [
    "delay_edge-1", "delay_users-eu", "delay_", "lasched.io/pod-group", "lasched.io/min-available",
    "lasched.io/timeout-seconds", "scheduling.x-k8s.io/pod-group",
    "pod-group.scheduling.kubenexus.io/name", "pod-group.scheduling.kubenexus.io/min-available",
]  # fmt: skip


def entries(keys: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """Dictionaries whose values suit their keys, and sometimes do not."""
    entry = st.one_of(
        *(st.tuples(st.just(k), v) for k, v in keys.items()),
        st.tuples(st.sampled_from(sorted(keys)), free_text),
    )
    return st.lists(entry, max_size=6).map(dict)


ANNOTATION_VALUES = {
    MAX_RTT: place_list,
    PREFER_LOW_RTT: place_list,
    PEER_SELECTOR: selector_text,
    PEER_MAX_RTT: number_text,
    GROUP_MAX_RTT: number_text,
    "pod-group": free_text,
    "pod-group-size": number_text,
    "priority": number_text,
}
annotation_dicts = entries(ANNOTATION_VALUES)
one_annotation_dict = st.one_of(
    *(st.tuples(st.just(k), v) for k, v in ANNOTATION_VALUES.items())
).map(lambda kv: dict([kv]))
label_dicts = st.one_of(
    entries(dict.fromkeys(LABEL_KEYS, number_text)),
    st.dictionaries(st.text(max_size=10).map(lambda t: f"delay_{t}"), number_text, max_size=3),
)

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 60_000, 60_000.5, 1e150, 1e308, -1.0, 5e-324]),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def timed(parse: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """The parse's result or exception, and a check that it was fast."""
    start = time.perf_counter()
    try:
        result, error = parse(), None
    except Exception as e:
        result, error = None, e
    assert time.perf_counter() - start < FAST
    return result, error


def in_rtt_range(ms: float, *, zero: bool = False) -> bool:
    return math.isfinite(ms) and (ms >= 0 if zero else ms > 0) and ms <= MAX_RTT_MS


def check_requirements(req: LatencyRequirements) -> None:
    for limit in req.limits:
        assert limit.place and in_rtt_range(limit.max_ms), limit
    for pref in req.preferences:
        assert pref.place and 1 <= pref.weight <= 10, pref
    if req.peers is not None and req.peers.max_ms is not None:
        assert in_rtt_range(req.peers.max_ms)
    if req.group_max_ms is not None:
        assert in_rtt_range(req.group_max_ms)
    assert req.hard or req.soft


def check_message(message: str, *names: str) -> None:
    assert message and len(message) <= MAX_MESSAGE, len(message)
    assert any(n in message for n in names), (names, message[:200])


# ---- pod labels and annotations -------------------------------------------------


@given(key=st.sampled_from([MAX_RTT, PEER_MAX_RTT, GROUP_MAX_RTT]), text=number_text)
def test_durations(key: str, text: str) -> None:
    """A duration is a finite number of ms within (0, 60000], or a RequirementError naming it."""
    ms, error = timed(lambda: parse_ms(key, text))
    if error is None:
        assert in_rtt_range(ms)
    else:
        assert isinstance(error, RequirementError)
        check_message(str(error), key)


@given(labels=label_dicts, annotations=annotation_dicts)
@example(labels={}, annotations={PREFER_LOW_RTT: "users-eu=²"})
@example(labels={}, annotations={GROUP_MAX_RTT: "1" * 29_999 + "x"})
@example(labels={"delay_edge-1": "inf"}, annotations={})
@example(labels={"delay_edge-1": "1e999"}, annotations={})
def test_latency_requirements(labels: dict[str, str], annotations: dict[str, str]) -> None:
    """Requirements from any labels and annotations are valid, or an error text naming a key."""
    result, error = timed(lambda: parse_requirements(labels, annotations))
    assert error is None, repr(error)
    req, err = result
    if err is not None:
        assert req is None
        check_message(err, *labels, *annotations)
    elif req is not None:
        check_requirements(req)


@given(annotations=one_annotation_dict)
def test_each_annotation_alone(annotations: dict[str, str]) -> None:
    """One annotation, so that no other one's error hides its own: valid, or named."""
    result, error = timed(lambda: parse_requirements({}, annotations))
    assert error is None, repr(error)
    req, err = result
    if err is not None:
        check_message(err, *annotations)
    elif req is not None:
        check_requirements(req)


@given(weight=number_text.filter(lambda t: "," not in t and "=" not in t))
def test_preference_weights(weight: str) -> None:
    """A weight is 1..10 in ASCII digits, or an error naming prefer-low-rtt."""
    result, error = timed(lambda: parse_requirements({}, {PREFER_LOW_RTT: f"edge-1={weight}"}))
    assert error is None, repr(error)
    req, err = result
    if err is None:
        assert req is not None
        # The parser strips what str.strip() does (an ASCII control such as \x1f too),
        # which int() alone would refuse: compare with the stripped text.
        assert weight.strip().isascii() and req.preferences[0].weight == int(weight.strip())
        check_requirements(req)
    else:
        check_message(err, PREFER_LOW_RTT)


@given(labels=label_dicts)
def test_delay_labels(labels: dict[str, str]) -> None:
    """delay_<node> labels give finite limits within (0, 60000] ms, or an error naming a label."""
    result, error = timed(lambda: delay_constraints(labels))
    assert error is None, repr(error)
    constraints, err = result
    if err is not None:
        assert constraints == ()
        check_message(err, *(k for k in labels if k.startswith("delay_")))
    for c in constraints:
        assert c.source and in_rtt_range(c.max_ms) and c.label in labels
        assert labels[c.label].isascii()


@given(
    number=st.one_of(
        st.floats(allow_nan=False, allow_infinity=False, min_value=0.0, max_value=1e6),
        st.integers(min_value=0, max_value=10**9),
    )
)
def test_delay_labels_read_every_number_within_range(number: float) -> None:
    """Any non-negative number written in decimal is read exactly, or refused by its range."""
    constraints, err = delay_constraints({"delay_edge-1": repr(number)})
    if 0 < number <= MAX_RTT_MS:
        assert err is None and constraints[0].max_ms == float(number)
    else:
        assert err is not None and constraints == ()


@given(labels=label_dicts, annotations=annotation_dicts)
def test_pod_groups(labels: dict[str, str], annotations: dict[str, str]) -> None:
    """A group declaration in any spelling is valid, or a GroupError naming a key."""
    decl, error = timed(lambda: declared_group("ns", labels, annotations))
    if error is not None:
        assert isinstance(error, GroupError), repr(error)
        check_message(str(error), *labels, *annotations)
        return
    if decl is None:
        return
    assert isinstance(decl, GroupDecl)
    assert decl.key.startswith("ns/") and len(decl.key) <= 3 + 253
    size_text = {
        "lasched": labels.get("lasched.io/min-available"),
        "kubenexus": labels.get("pod-group.scheduling.kubenexus.io/min-available"),
        "annotation": annotations.get("pod-group-size"),
    }.get(decl.source)
    if decl.min_available is not None:
        assert size_text is not None and integer(size_text) == decl.min_available, size_text
    assert decl.min_available is None or 1 <= decl.min_available <= MAX_MEMBERS
    t = decl.timeout_seconds
    assert t is None or (math.isfinite(t) and 0 < t <= MAX_TIMEOUT_SECONDS)


@given(
    size_key=st.sampled_from(
        [("lasched.io/pod-group", "lasched.io/min-available"),
         ("pod-group.scheduling.kubenexus.io/name",
          "pod-group.scheduling.kubenexus.io/min-available")]
    ),
    size=number_text,
    timeout=number_text,
)  # fmt: skip
def test_group_sizes_and_timeouts(size_key: tuple[str, str], size: str, timeout: str) -> None:
    """A size is 1..2^31-1 in ASCII digits and a timeout finite within (0, 86400] s, or named."""
    group, size_label = size_key
    pod_labels = {group: "g", size_label: size, "lasched.io/timeout-seconds": timeout}
    decl, error = timed(lambda: declared_group("ns", pod_labels, {}))
    if error is not None:
        assert isinstance(error, GroupError), repr(error)
        check_message(str(error), size_label, "lasched.io/timeout-seconds")
        return
    assert decl is not None and decl.min_available == integer(size)
    t = decl.timeout_seconds
    assert t is None or (math.isfinite(t) and 0 < t <= MAX_TIMEOUT_SECONDS and timeout.isascii())


@given(text=number_text, spec_priority=st.integers(-(2**31), 2**31 - 1), cls=st.booleans())
@example(text="\x1c5", spec_priority=0, cls=False)  # str.strip() removes \x1c, int() does not
def test_priority_annotation(text: str, spec_priority: int, cls: bool) -> None:
    """The priority is a 32-bit integer; a bad annotation is an error naming it."""
    spec: dict[str, Any] = {"priority": spec_priority}
    if cls:
        spec["priorityClassName"] = "high"
    result, error = timed(lambda: effective_priority(spec, {"priority": text}))
    assert error is None, repr(error)
    prio, err = result
    assert -(2**31) <= prio <= 2**31 - 1
    if err is not None:
        assert prio == spec_priority
        check_message(err, "annotation priority=")
    elif not cls:
        assert text.strip().isascii() and prio == int(text.strip())


QUANTITY_LIKE = r"\A[+-]?[0-9]{0,6}\.?[0-9]{0,4}(e-?[0-9]{1,3}|[numkMGTPE]i?)?\Z"


@given(text=st.one_of(free_text, st.from_regex(QUANTITY_LIKE)))
def test_quantities(text: str) -> None:
    """A quantity is an exact fraction, or a QuantityError."""
    value, error = timed(lambda: quantity.parse(text))
    if error is None:
        assert isinstance(value, Fraction)
        assert math.isfinite(float(value)) or abs(value) > 1
    else:
        assert isinstance(error, quantity.QuantityError), repr(error)
        assert len(str(error)) <= MAX_MESSAGE


@given(text=selector_text, pod=label_dicts)
def test_label_selectors(text: str, pod: dict[str, str]) -> None:
    """A selector is a LabelSelector that matches without raising, or a RequirementError."""
    selector, error = timed(lambda: parse_selector(PEER_SELECTOR, text))
    if error is not None:
        assert isinstance(error, RequirementError), repr(error)
        check_message(str(error), PEER_SELECTOR)
        return
    assert isinstance(matches(selector, pod), bool)


@given(labels=label_dicts, annotations=annotation_dicts)
@example(labels={}, annotations={PREFER_LOW_RTT: "users-eu=²"})
@example(labels={"lasched.io/pod-group": "g", "lasched.io/min-available": "²"}, annotations={})
@example(labels={}, annotations={"priority": "١٢", "pod-group": "g", "pod-group-size": "٣"})
@example(labels={}, annotations=dict.fromkeys(ANNOTATION_KEYS, "1" * KIB_256))
def test_pod_decoding_never_raises(labels: dict[str, str], annotations: dict[str, str]) -> None:
    """PodInfo decodes a pod with any labels and annotations; problems are error texts."""
    body = pod_json("p")
    body["metadata"]["labels"] = labels
    body["metadata"]["annotations"] = annotations
    pod, error = timed(lambda: PodInfo(body))
    assert error is None, repr(error)
    assert isinstance(pod, PodInfo)
    for problem in (pod.latency_error, pod.group_error, pod.priority_error):
        assert problem is None or 0 < len(problem) <= MAX_MESSAGE
    if pod.latency is not None and pod.latency_error is None:
        check_requirements(pod.latency)
    assert -(2**31) <= pod.priority <= 2**31 - 1


# ---- files and answers the scheduler reads --------------------------------------


csv_field = st.one_of(number_text.filter(lambda t: len(t) < 1000), st.sampled_from(["a", "b"]))
csv_text = st.lists(st.lists(csv_field, min_size=0, max_size=4).map(",".join), max_size=10).map(
    "\n".join
)
json_rtt_file = st.dictionaries(
    st.text(max_size=8), st.one_of(json_value, st.dictionaries(st.text(max_size=8), json_value))
).map(lambda d: orjson.dumps(d).decode())


@given(text=st.one_of(csv_text, json_rtt_file, st.text(max_size=200), huge_text))
def test_static_rtt_files(text: str) -> None:
    """A static file gives named pairs with RTTs within 0..60000 ms, or a StaticFileError."""
    triples, error = timed(lambda: static.parse(text, name="rtt.csv"))
    if error is not None:
        assert isinstance(error, static.StaticFileError), repr(error)
        check_message(str(error), "rtt.csv")
        return
    for src, dst, ms in triples:
        assert src and dst and in_rtt_range(ms, zero=True)


goldpinger_call = st.fixed_dictionaries(
    {
        "OK": st.booleans(),
        "HostIP": st.sampled_from(["10.0.0.1", "10.0.0.2"]),
        "response-time-ms": json_scalar,
    }
)
goldpinger_result = st.fixed_dictionaries(
    {
        "HostIP": st.sampled_from(["10.0.0.1", "10.0.0.2", ""]),
        "response": st.one_of(
            json_value,
            st.fixed_dictionaries(
                {
                    "podResults": st.dictionaries(
                        st.text(max_size=8), st.one_of(goldpinger_call, json_value)
                    )
                }
            ),
        ),
    }
)
goldpinger_body = st.one_of(
    json_value,
    st.fixed_dictionaries(
        {
            "responses": st.dictionaries(
                st.text(max_size=8), st.one_of(json_value, goldpinger_result)
            )
        }
    ),
)


@given(body=goldpinger_body)
def test_goldpinger_answers(body: Any) -> None:
    """A /check_all answer gives node pairs with RTTs within 0..60000 ms, or a GoldpingerError."""
    nodes = {"10.0.0.1": "edge-1", "10.0.0.2": "edge-2"}
    calls, error = timed(lambda: parse_check_all(body, nodes))
    if error is not None:
        assert isinstance(error, GoldpingerError), repr(error)
        assert len(str(error)) <= MAX_MESSAGE
        return
    for src, dst, ms in calls:
        assert src != dst and in_rtt_range(ms, zero=True)


def valid_snapshot() -> dict[str, Any]:
    cache = LatencyCache(coordinates=Coordinates(min_updates=1))
    cache.observe("a", "b", median_ms=10, p90_ms=12)
    doc: dict[str, Any] = orjson.loads(snapshot.encode(cache, now=1_000.0)[0])
    return doc


@st.composite
def snapshot_bytes(draw: st.DrawFn) -> bytes:
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return orjson.dumps(draw(json_value))
    doc = valid_snapshot()
    section = draw(st.sampled_from(["pairs", "places"]))
    field = draw(st.sampled_from(sorted(doc[section][0])))
    doc[section][0][field] = draw(json_value)
    return orjson.dumps(doc)


@given(data=snapshot_bytes())
def test_latency_snapshots(data: bytes) -> None:
    """A snapshot gives finite, in-range pairs and places, or a SnapshotError naming the file."""
    result, error = timed(lambda: snapshot.decode(data, now=2_000.0, dimension=8, name="s.json"))
    if error is not None:
        assert isinstance(error, snapshot.SnapshotError), repr(error)
        check_message(str(error), "s.json")
        return
    pairs, places = result
    for p in pairs:
        assert in_rtt_range(p.ewma_ms, zero=True)
        assert p.p90_ms is None or in_rtt_range(p.p90_ms, zero=True)
        assert 0 <= p.loss <= 1 and math.isfinite(p.age_s) and p.age_s >= 0
    for c in places:
        assert all(math.isfinite(x) and abs(x) <= MAX_COORDINATE_MS for x in c.vec)
        assert 0 <= c.height <= MAX_COORDINATE_MS and math.isfinite(c.error)
    cache = LatencyCache(coordinates=Coordinates(min_updates=1))
    cache.import_places(places)
    cache.import_pairs(pairs)
    cache.observe("a", "c", median_ms=5)  # restored coordinates take new samples


# ---- the latency cache and its coordinates --------------------------------------

PLACES = ["a", "b", "c", "d"]
rtt_value = st.one_of(
    st.floats(),  # nan, infinities, negatives, subnormals, 1.8e308
    st.sampled_from([0.0, 60_000.0, 1e150, 1e308, -0.0, 5e-324, math.inf, math.nan]),
    st.floats(min_value=0, max_value=MAX_RTT_MS),
)


@given(
    samples=st.lists(
        st.tuples(st.sampled_from(PLACES), st.sampled_from(PLACES), rtt_value, rtt_value),
        max_size=150,
    )
)
def test_coordinates_stay_finite_whatever_the_cache_is_fed(
    samples: list[tuple[str, str, float, float]],
) -> None:
    """Any samples, also ones the codec refuses, leave coordinates and estimates finite."""
    cache = LatencyCache(coordinates=Coordinates(min_updates=1))
    for src, dst, median, p90 in samples:
        delta = cache.observe(src, dst, median_ms=median, p90_ms=p90, loss=p90)
        assert math.isfinite(delta)
    for _, c in cache.coordinates.items():
        assert all(math.isfinite(x) for x in (*c.vec, c.height, c.error))
        assert math.hypot(*c.vec) <= MAX_COORDINATE_MS * (1 + 1e-9)
        assert c.height <= MAX_COORDINATE_MS
    for src in PLACES:
        for dst in PLACES:
            est = cache.estimate(src, dst)
            if est is not None:
                assert est.error_ms is not None and math.isfinite(est.error_ms)
                assert math.isfinite(est.ms)
    for _, _, rtt in cache.pairs():
        assert in_rtt_range(rtt.ms, zero=True) and 0 <= rtt.loss <= 1
        assert rtt.p90_ms is None or in_rtt_range(rtt.p90_ms, zero=True)


@given(rtts=st.lists(rtt_value, max_size=100))
def test_coordinates_refuse_or_absorb_any_rtt(rtts: list[float]) -> None:
    """Coordinates.update refuses what is not finite and non-negative, and stays bounded."""
    c = Coordinates(min_updates=1)
    for rtt in rtts:
        try:
            c.update("a", "b", rtt, now=0.0)
        except ValueError:
            assert not (math.isfinite(rtt) and rtt >= 0)
    for _, coord in c.items():
        assert all(math.isfinite(x) for x in (*coord.vec, coord.height, coord.error))


# ---- linear time ------------------------------------------------------------------

ADVERSARIAL = [
    "1" * KIB_256,
    "1" * (KIB_256 - 1) + "x",
    "1." * (KIB_256 // 2),
    " " * KIB_256 + "x",
    "5" + " " * KIB_256 + "x",
    "²" * KIB_256,
    "a=1," * (KIB_256 // 4),
    "a in (" + "b" * KIB_256,
]


def each_parser(value: str) -> list[tuple[str, Callable[[], object]]]:
    pod = pod_json("p")
    pod["metadata"]["annotations"] = dict.fromkeys(ANNOTATION_KEYS, value)
    pod["metadata"]["labels"] = {"delay_edge-1": value, "lasched.io/pod-group": value}

    def quietly(parse: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            try:
                return parse()
            except (RequirementError, GroupError, quantity.QuantityError, static.StaticFileError,
                    snapshot.SnapshotError, GoldpingerError):  # fmt: skip
                return None

        return run

    return [
        ("duration", quietly(lambda: parse_ms(GROUP_MAX_RTT, value))),
        ("requirements", lambda: parse_requirements({}, dict.fromkeys(ANNOTATION_KEYS[:5], value))),
        ("selector", quietly(lambda: parse_selector(PEER_SELECTOR, value))),
        ("delay", lambda: delay_constraints({"delay_edge-1": value})),
        ("group", quietly(lambda: declared_group("ns", {}, {"pod-group": value}))),
        ("group-size", quietly(lambda: declared_group("ns", {}, {"pod-group": "g",
                                                                 "pod-group-size": value}))),
        ("priority", lambda: effective_priority({}, {"priority": value})),
        ("quantity", quietly(lambda: quantity.parse(value))),
        ("static-csv", quietly(lambda: static.parse(f"a,b,{value}\n"))),
        ("static-json", quietly(lambda: static.parse(orjson.dumps({"a": {"b": value}}).decode()))),
        ("snapshot", quietly(lambda: snapshot.decode(value.encode(), now=0.0, dimension=8))),
        ("pod", lambda: PodInfo(pod)),
    ]  # fmt: skip


class TooSlow(Exception):
    pass


@contextlib.contextmanager
def interrupted_after(seconds: float) -> Iterator[None]:
    """Raise TooSlow inside the block after ``seconds``: a quadratic parse of 256 KiB would
    otherwise run for half an hour before the assertion could fail (re checks signals)."""

    def alarm(signum: int, frame: object) -> None:
        raise TooSlow

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("value", ADVERSARIAL, ids=lambda v: f"{v[:6]!r}x{len(v)}")
def test_every_parser_reads_256_kib_of_adversarial_text_in_linear_time(value: str) -> None:
    """256 KiB crafted to make backtracking patterns quadratic is read (or refused) fast."""
    for name, parse in each_parser(value):
        start = time.perf_counter()
        try:
            with interrupted_after(5.0):
                parse()
        except TooSlow:
            pytest.fail(f"{name} still ran after 5 s on {value[:10]!r}... ({len(value)})")
        elapsed = time.perf_counter() - start
        assert elapsed < 0.5, f"{name} took {elapsed:.2f} s on {value[:10]!r}... ({len(value)})"
