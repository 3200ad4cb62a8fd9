"""The agent wire format round-trips and rejects bad frames with a reason."""

from __future__ import annotations

import orjson
import pytest

from lasched_protocol import (
    MAX_FRAME_BYTES,
    Heartbeat,
    Hello,
    Message,
    ProtocolError,
    Sample,
    Samples,
    Target,
    Targets,
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
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
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
