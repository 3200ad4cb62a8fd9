"""The agent codec, for any bytes: a message whose every number is finite and in range,
or a ProtocolError naming the problem. Never another exception, never slow."""

from __future__ import annotations

import math
import time
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lasched_protocol import (
    MAX_AMOUNT,
    MAX_COUNT,
    MAX_FRAME_BYTES,
    MAX_INTERVAL_SECONDS,
    MAX_RTT_MS,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    MAX_TIME,
    MAX_ZONES,
    Heartbeat,
    Hello,
    Message,
    NumaZone,
    ProtocolError,
    Sample,
    Samples,
    Target,
    Targets,
    Topology,
    decode,
    encode,
)

# CPU seconds for one decode of up to 1 MiB: a guard, not a benchmark. CPU time, not
# wall time: a machine busy with other work must not fail it, a quadratic decoder must.
FAST = 1.0

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 0.0005, 60_000, 60_000.001, 1e150, 1e308, -1e308, 5e-324, 2**63]),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# A field is mostly of its own kind, sometimes anything at all.
number = st.one_of(
    st.sampled_from([0, 0.0005, 1, 60_000, 60_000.001, 1e150, 1e308, -1, 2**63, 2**64 - 1, True]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=0, max_value=MAX_RTT_MS),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    json_value,
)
text = st.one_of(st.text(max_size=12), st.text(min_size=1020, max_size=1030), json_value)


def frame_of(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


sample_body = st.fixed_dictionaries(
    {"target": text, "method": st.sampled_from(["icmp", "tcp", "udp"]), "count": number,
     "loss": number},
    optional={"min": number, "median": number, "p90": number, "jitter": number},
)  # fmt: skip
target_body = st.fixed_dictionaries(
    {"id": text, "address": text, "kind": st.sampled_from(["node", "endpoint", "pod"])},
    optional={"port": number},
)
zone_body = st.fixed_dictionaries(
    {
        "id": number,
        "resources": st.dictionaries(
            st.sampled_from(["cpu", "memory", "nvidia.com/gpu", ""]), number, max_size=3
        )
        | json_value,
    },
)
header = {"v": st.one_of(st.just(1), json_scalar), "seq": number}
frames = st.one_of(
    st.fixed_dictionaries(
        {**header, "type": st.just("hello"), "node": text, "agentVersion": text,
         "methods": st.lists(st.sampled_from(["icmp", "tcp", "ping"]), max_size=3)},
        optional={"targetsPerRound": number},
    ),
    st.fixed_dictionaries(
        {**header, "type": st.just("targets"), "intervalSeconds": number,
         "targets": st.lists(target_body, max_size=3)}
    ),
    st.fixed_dictionaries(
        {**header, "type": st.just("samples"), "time": number,
         "samples": st.lists(sample_body, max_size=3)}
    ),
    st.fixed_dictionaries({**header, "type": st.just("heartbeat"), "time": number}),
    st.fixed_dictionaries(
        {**header, "type": st.just("topology"), "time": number,
         "zones": st.lists(zone_body, max_size=3) | json_value},
        optional={"policy": st.sampled_from(["none", "restricted", "strict"]) | json_value,
                  "scope": st.sampled_from(["pod", "container", "node"]) | json_value},
    ),
    st.dictionaries(st.sampled_from(["v", "type", "seq", "time", "node"]), json_value),
).map(frame_of)  # fmt: skip


valid_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        Hello,
        seq=st.integers(0, MAX_SEQ),
        node=st.text(min_size=1, max_size=30),
        agent_version=st.text(min_size=1, max_size=10),
        methods=st.lists(st.sampled_from(["icmp", "tcp"]), max_size=2).map(tuple),
        targets_per_round=st.none() | st.integers(1, MAX_COUNT),
    ),
    st.builds(
        Targets,
        seq=st.integers(0, MAX_SEQ),
        targets=st.lists(
            st.builds(
                Target,
                id=st.text(min_size=1, max_size=10),
                address=st.text(min_size=1, max_size=10),
                kind=st.sampled_from(["node", "endpoint"]),
                port=st.none() | st.integers(1, 65535),
            ),
            max_size=3,
        ).map(tuple),
        interval_seconds=st.floats(0.001, MAX_INTERVAL_SECONDS),
        accepts=st.lists(st.sampled_from(["topology", "later"]), max_size=2).map(tuple),
    ),
    st.builds(
        Samples,
        seq=st.integers(0, MAX_SEQ),
        time=st.floats(0, MAX_TIME),
        samples=st.lists(
            st.builds(
                Sample,
                target=st.text(min_size=1, max_size=10),
                method=st.sampled_from(["icmp", "tcp"]),
                count=st.integers(0, MAX_COUNT),
                loss=st.floats(0, 1),
                min_ms=st.none() | st.floats(0, MAX_RTT_MS),
                median_ms=st.none() | st.floats(0, MAX_RTT_MS),
                p90_ms=st.none() | st.floats(0, MAX_RTT_MS),
                jitter_ms=st.none() | st.floats(0, MAX_RTT_MS),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Heartbeat, seq=st.integers(0, MAX_SEQ), time=st.floats(0, MAX_TIME)),
    st.builds(
        Topology,
        seq=st.integers(0, MAX_SEQ),
        time=st.floats(0, MAX_TIME),
        zones=st.lists(
            st.builds(
                NumaZone,
                id=st.integers(0, 7),
                resources=st.dictionaries(
                    st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]),
                    st.integers(0, MAX_AMOUNT),
                ).map(lambda d: tuple(sorted(d.items()))),
            ),
            max_size=3,
            unique_by=lambda z: z.id,
        ).map(lambda zs: tuple(sorted(zs, key=lambda z: z.id))),
        policy=st.sampled_from(["none", "best-effort", "restricted", "single-numa-node"]),
        scope=st.sampled_from(["container", "pod"]),
    ),
)


wild_number = st.one_of(
    st.sampled_from([-1, -1e308, 60_000.001, 1e150, 1e308, 2**63, 2**64 - 1, 0.0005, True]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
)


@st.composite
def one_field_wrong(draw: st.DrawFn) -> bytes:
    """A valid message's frame with one field, at any depth, given a number out of range,
    some other JSON value, or removed."""
    body = orjson.loads(encode(draw(valid_messages)))
    fields: list[tuple[dict[str, Any], str]] = [(body, k) for k in body]
    for key in ("samples", "targets", "zones"):
        for entry in body.get(key, ()):
            fields += [(entry, k) for k in entry]
    numeric = [
        (c, k) for c, k in fields if c[k] is None or (type(c[k]) in (int, float) and k != "v")
    ]
    how = draw(st.sampled_from(["number", "number", "number", "json", "remove"]))
    container, key = draw(st.sampled_from(numeric if how == "number" else fields))
    if how == "remove":
        del container[key]
    else:
        container[key] = draw(wild_number if how == "number" else json_value)
    return orjson.dumps(body)


def check(frame: bytes | str) -> None:
    """Decode ``frame``: a valid message, or a ProtocolError with a short message."""
    start = time.process_time()
    try:
        msg = decode(frame)
    except ProtocolError as e:
        assert 0 < len(str(e)) <= 300, str(e)[:300]
    else:
        check_message(msg)
        assert decode(encode(msg)) == msg
    assert time.process_time() - start < FAST


def rtt(ms: float | None) -> bool:
    return ms is None or (math.isfinite(ms) and 0 <= ms <= MAX_RTT_MS)


def check_message(msg: Message) -> None:
    assert 0 <= msg.seq <= MAX_SEQ
    if isinstance(msg, Hello):
        assert 0 < len(msg.node) <= MAX_TEXT_CHARS and 0 < len(msg.agent_version) <= MAX_TEXT_CHARS
        assert set(msg.methods) <= {"icmp", "tcp"}
        assert msg.targets_per_round is None or 1 <= msg.targets_per_round <= MAX_COUNT
    elif isinstance(msg, Targets):
        assert math.isfinite(msg.interval_seconds)
        assert 0.001 <= msg.interval_seconds <= MAX_INTERVAL_SECONDS
        for t in msg.targets:
            assert t.kind in ("node", "endpoint") and t.id and t.address
            assert t.port is None or (type(t.port) is int and 1 <= t.port <= 65535)
    elif isinstance(msg, Samples):
        assert math.isfinite(msg.time) and 0 <= msg.time <= MAX_TIME
        for s in msg.samples:
            assert s.method in ("icmp", "tcp") and s.target
            assert 0 <= s.count <= MAX_COUNT
            assert math.isfinite(s.loss) and 0 <= s.loss <= 1
            assert all(rtt(x) for x in (s.min_ms, s.median_ms, s.p90_ms, s.jitter_ms)), s
    elif isinstance(msg, Topology):
        assert math.isfinite(msg.time) and 0 <= msg.time <= MAX_TIME
        assert len(msg.zones) <= MAX_ZONES and len({z.id for z in msg.zones}) == len(msg.zones)
        for z in msg.zones:
            assert all(r and type(n) is int and 0 <= n <= MAX_AMOUNT for r, n in z.resources)
    else:
        assert isinstance(msg, Heartbeat)
        assert math.isfinite(msg.time) and 0 <= msg.time <= MAX_TIME


@given(frame=st.one_of(one_field_wrong(), frames))
@example(frame=frame_of({"v": 1, "type": "samples", "seq": 0, "time": 1, "samples": [
    {"target": "a", "method": "icmp", "count": 1, "loss": 0, "median": 1e150}]}))  # fmt: skip
@example(frame=frame_of({"v": 1, "type": "samples", "seq": 0, "time": 1, "samples": [
    {"target": "a", "method": "icmp", "count": 1, "loss": 0, "median": 1e308}]}))  # fmt: skip
@example(frame=b'{"v":1,"type":"heartbeat","time":1,"seq":' + b"[" * 1000 + b"]" * 1000 + b"}")
def test_every_frame_type(frame: bytes) -> None:
    """Frames of each type with fields of any value decode validly or raise ProtocolError."""
    check(frame)


@given(frame=st.binary(max_size=300))
def test_random_bytes(frame: bytes) -> None:
    """Any bytes decode validly or raise ProtocolError."""
    check(frame)


@given(value=json_value)
def test_random_json(value: Any) -> None:
    """Any JSON document decodes validly or raises ProtocolError."""
    check(orjson.dumps(value))


@given(frame=st.text(max_size=300))
def test_random_text(frame: str) -> None:
    """Text frames (WebSocket TEXT messages), surrogates included, too."""
    check(frame)


@given(msg=valid_messages)
def test_valid_messages_round_trip(msg: Message) -> None:
    """Every message within the ranges survives encode and decode unchanged."""
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize(
    "frame",
    [
        b" " * MAX_FRAME_BYTES,
        b"[" * MAX_FRAME_BYTES,
        b'"' + b"\\u00e9" * (MAX_FRAME_BYTES // 6 - 1) + b'"',
        frame_of({"v": 1, "type": "x" * (MAX_FRAME_BYTES - 100), "seq": 0}),
        frame_of({"v": 1, "type": "samples", "seq": 0, "time": 1,
                  "samples": [{"target": "a", "method": "icmp", "count": 1, "loss": 0,
                               "median": 1.0}] * 9_000}),
    ],
    ids=["blanks", "brackets", "escapes", "long-type", "many-samples"],
)  # fmt: skip
def test_a_mebibyte_frame_is_decoded_fast(frame: bytes) -> None:
    """The largest frame accepted, of any shape, is decoded or refused in bounded time."""
    assert len(frame) <= MAX_FRAME_BYTES
    check(frame)
