"""The agent wire format round-trips and rejects bad frames with a reason."""

from __future__ import annotations

import re

import orjson
import pytest

from lasched.model import strict
from lasched_protocol import (
    MAX_FRAME_BYTES,
    MAX_RTT_MS,
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

MESSAGES: list[Message] = [
    Hello(seq=0, node="edge-1", agent_version="0.1.0", methods=("icmp", "tcp")),
    Hello(seq=0, node="edge-1", agent_version="0.1.0", methods=("icmp",), targets_per_round=32),
    Targets(
        seq=3,
        interval_seconds=5.0,
        targets=(
            Target(id="edge-2", address="10.0.0.2", kind="node"),
            Target(id="users-eu", address="192.0.2.10", kind="endpoint", port=443),
        ),
    ),
    Samples(
        seq=7,
        time=1_700_000_000.5,
        samples=(
            Sample("edge-2", "icmp", 10, 0.0, 1.2, 1.5, 2.0, 0.3),
            Sample("users-eu", "tcp", 5, 1.0, None, None, None, None),
        ),
    ),
    Heartbeat(seq=8, time=1_700_000_001.0),
    Targets(seq=4, targets=(), interval_seconds=5.0, accepts=("topology",)),
    Topology(
        seq=9,
        time=1_700_000_002.0,
        zones=(
            NumaZone(0, (("cpu", 24), ("memory", 64 << 30))),
            NumaZone(1, (("cpu", 24), ("memory", 64 << 30), ("nvidia.com/gpu", 2))),
        ),
        policy="single-numa-node",
        scope="pod",
    ),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: f"{type(m).__name__}-{m.seq}")
def test_roundtrip(msg: Message) -> None:
    """decode(encode(m)) == m for every message type."""
    assert decode(encode(msg)) == msg


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\x00\xff garbage", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (orjson.dumps({"v": 2, "type": "heartbeat", "seq": 1, "time": 1}), "version 2"),
        (orjson.dumps({"v": 1, "type": "gossip", "seq": 1}), "unknown message type 'gossip'"),
        (orjson.dumps({"v": 1, "type": "heartbeat", "seq": -1, "time": 1}), "'seq'"),
        (
            orjson.dumps(
                {"v": 1, "type": "hello", "seq": 0, "node": "", "agentVersion": "1", "methods": []}
            ),
            "'node'",
        ),
        (
            orjson.dumps(
                {
                    "v": 1,
                    "type": "samples",
                    "seq": 0,
                    "time": 1,
                    "samples": [{"target": "a", "method": "icmp", "count": 1, "loss": 2}],
                }
            ),
            "loss",
        ),
        (b" " * (MAX_FRAME_BYTES + 1), "exceeds"),
    ],
    ids=["garbage", "array", "version", "type", "seq", "empty-node", "loss-range", "oversized"],
)
def test_bad_frames_are_rejected_with_a_reason(frame: bytes, reason: str) -> None:
    """Malformed input raises ProtocolError that says what was wrong."""
    with pytest.raises(ProtocolError, match=reason):
        decode(frame)


def samples_frame(**sample: object) -> bytes:
    fields: dict[str, object] = {"target": "a", "method": "icmp", "count": 1, "loss": 0.0}
    fields.update(sample)
    return orjson.dumps({"v": 1, "type": "samples", "seq": 0, "time": 1, "samples": [fields]})


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (samples_frame(median=1e150), "'median' must be a number within 0..60000, not 1e+150"),
        (samples_frame(median=1e308), "'median' must be a number within 0..60000, not 1e+308"),
        (samples_frame(min=-0.5), "field 'min' must be a number within 0..60000, not -0.5"),
        (samples_frame(p90=60_000.5), "field 'p90' must be a number within 0..60000"),
        (samples_frame(jitter=2**64 - 1), "field 'jitter' must be a number within 0..60000"),
        (samples_frame(median=True), "field 'median' must be a number within 0..60000, not True"),
        (samples_frame(loss=-0.1), "field 'loss' must be a number within 0..1, not -0.1"),
        (samples_frame(count=2**63 - 1), "field 'count' must be an integer within 0..1000000"),
        (b'{"v":1,"type":"heartbeat","seq":1,"time":1e300}', "field 'time' must be a number"),
        (b'{"v":1,"type":"heartbeat","seq":1,"time":1e400}', "not JSON"),
        (b'{"v":1,"type":"heartbeat","seq":18446744073709551616,"time":1}', "field 'seq'"),
        (
            orjson.dumps({"v": 1, "type": "targets", "seq": 0, "intervalSeconds": 1e9,
                          "targets": []}),
            "field 'intervalSeconds' must be a number within 0.001..86400, not 1000000000.0",
        ),
        (
            orjson.dumps({"v": 1, "type": "targets", "seq": 0, "intervalSeconds": 5,
                          "targets": [{"id": "a", "address": "b", "kind": "node", "port": True}]}),
            "target.port must be 1..65535, not True",
        ),
        (
            orjson.dumps({"v": 1, "type": "hello", "seq": 0, "node": "n" * 2000,
                          "agentVersion": "1", "methods": []}),
            "field 'node' is too long (2000 characters; at most 1024)",
        ),
        (
            b'{"v":1,"type":"heartbeat","seq":' + b"[" * 1000 + b"]" * 1000 + b',"time":1}',
            "field 'seq' must be an integer within 0..9223372036854775807, not a list nested",
        ),
        (
            orjson.dumps({"v": 1, "type": "x" * 10_000, "seq": 0}),
            f"unknown message type '{'x' * 64}'… (10000 characters)",
        ),
        (("é" * (MAX_FRAME_BYTES // 2 + 1)), "exceeds"),
    ],
    ids=["median-1e150", "median-1e308", "min-negative", "p90-over-a-minute", "jitter-huge-int",
         "median-bool", "loss-negative", "count-huge", "time-huge", "time-overflow",
         "seq-beyond-u64", "interval-huge", "port-bool", "node-too-long", "deeply-nested",
         "long-type", "text-frame-counted-in-bytes"],
)  # fmt: skip
def test_numbers_out_of_range_are_rejected_with_field_and_value(
    frame: bytes | str, reason: str
) -> None:
    """RTTs outside 0..60000 ms and any other number out of its range name field and value."""
    with pytest.raises(ProtocolError) as err:
        decode(frame)
    assert reason in str(err.value)
    assert len(str(err.value)) < 250


@pytest.mark.parametrize("ms", [0.0, 60_000.0])
def test_rtts_of_zero_and_sixty_seconds_are_accepted(ms: float) -> None:
    """The ends of the RTT range are valid."""
    msg = Samples(seq=1, time=1.0, samples=(Sample("a", "icmp", 1, 0.0, ms, ms, ms, ms),))
    assert decode(encode(msg)) == msg


def test_scheduler_and_protocol_agree_on_the_largest_rtt() -> None:
    """The wire format's RTT range is the one the scheduler's parsers use."""
    assert MAX_RTT_MS == strict.MAX_RTT_MS


def topology_frame(**fields: object) -> bytes:
    body: dict[str, object] = {"v": 1, "type": "topology", "seq": 1, "time": 1, "zones": []}
    body.update(fields)
    return orjson.dumps(body)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (topology_frame(policy="strict"), "topology.policy must be one of none, best-effort"),
        (topology_frame(scope="node"), "topology.scope must be container or pod, not 'node'"),
        (topology_frame(zones=[{"id": 0, "resources": {}}] * 2), "names a NUMA node twice"),
        (topology_frame(zones=[{"id": -1, "resources": {}}]), "field 'id' must be an integer"),
        (topology_frame(zones=[{"id": 0, "resources": []}]), "zone 0: field 'resources'"),
        (topology_frame(zones=[{"id": 0, "resources": {"cpu": 1.5}}]), "field 'cpu' must be"),
        (topology_frame(zones=[{"id": 0, "resources": {"cpu": -1}}]), "field 'cpu' must be"),
        (topology_frame(zones=[{"id": 0, "resources": {"": 1}}]), "resource name that is none"),
        (topology_frame(zones=[{"id": i, "resources": {}} for i in range(65)]), "at most 64"),
        (topology_frame(zones="all of them"), "field 'zones' must be a list"),
        (
            orjson.dumps({"v": 1, "type": "targets", "seq": 0, "intervalSeconds": 5,
                          "targets": [], "accepts": ["topology", 7]}),
            "targets.accepts has a name that is none: 7",
        ),
    ],
    ids=["policy", "scope", "twice", "id-negative", "resources-list", "cpu-fraction",
         "cpu-negative", "empty-name", "too-many-zones", "zones-string", "accepts-number"],
)  # fmt: skip
def test_bad_topology_frames_are_rejected_naming_the_field(frame: bytes, reason: str) -> None:
    """A Topology or accepts list out of shape raises ProtocolError saying what."""
    with pytest.raises(ProtocolError, match=re.escape(reason)):
        decode(frame)


def test_versions_meet_an_older_scheduler_or_agent_safely() -> None:
    """An older scheduler's Targets (no accepts) decodes as accepting nothing; names and
    fields this version does not know are kept or ignored, never an error; Topology keeps v 1."""
    old = orjson.dumps({"v": 1, "type": "targets", "seq": 0, "intervalSeconds": 5, "targets": []})
    assert decode(old) == Targets(seq=0, targets=(), interval_seconds=5.0)
    newer = orjson.loads(encode(Targets(0, (), 5.0, accepts=("topology", "later"))))
    newer["somethingNew"] = {"x": 1}
    assert decode(orjson.dumps(newer)).accepts == ("topology", "later")  # type: ignore[union-attr]
    frame = orjson.loads(encode(Topology(1, 1.0, ())))
    assert frame == {"v": 1, "type": "topology", "seq": 1, "time": 1.0, "policy": "none",
                     "scope": "container", "zones": []}  # fmt: skip
