"""--simulate-rtt-file: probes answered from the node's row of a static-format RTT file."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from lasched_agent import simulate
from lasched_agent.config import ConfigError, parse
from lasched_protocol import Target

EDGE_2 = Target(id="edge-2", address="10.0.0.2", kind="node")
USERS = Target(id="users-eu", address="192.0.2.10", kind="endpoint")


def write(path: Path, data: object) -> None:
    path.write_bytes(orjson.dumps(data))


def test_flag_parses_to_a_path() -> None:
    """The flag sets AgentConfig.simulate_rtt_file; without it the agent probes the network."""
    base = ["--scheduler", "ws://s:1/agents/v1", "--node", "edge-1"]
    assert parse(base, {}).simulate_rtt_file is None
    assert parse([*base, "--simulate-rtt-file", "m.json"], {}).simulate_rtt_file == Path("m.json")


async def test_answers_from_its_own_row(tmp_path: Path) -> None:
    """The node's row answers in seconds; null or a missing target loses the probe."""
    f = tmp_path / "m.json"
    write(f, {"edge-1": {"edge-2": 12.5, "users-eu": None}, "edge-2": {"edge-1": 99}})
    m = simulate.method(f, "edge-1")
    assert await m.probe(EDGE_2) == pytest.approx(0.0125)
    with pytest.raises(TimeoutError):
        await m.probe(USERS)


async def test_reloads_when_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rewritten file is read again, so a route can change while the agent runs."""
    monkeypatch.setattr(simulate, "RECHECK_SECONDS", 0.0)
    f = tmp_path / "m.json"
    write(f, {"edge-1": {"edge-2": 40.0}})
    m = simulate.method(f, "edge-1")
    write(f, {"edge-1": {"edge-2": 1.0}})
    stat = f.stat()
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert await m.probe(EDGE_2) == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[1]", "must map each source node"),
        (b'{"edge-1": 5}', "'edge-1' must map targets"),
        (b'{"edge-1": {"edge-2": "fast"}}', "edge-1 -> edge-2 must be ms or null, not 'fast'"),
        (b'{"edge-1": {"edge-2": -1}}', "must not be negative"),
    ],
    ids=["bad-json", "not-object", "row-not-object", "not-number", "negative"],
)
def test_bad_files_name_the_flag(tmp_path: Path, content: bytes, message: str) -> None:
    """Every problem names --simulate-rtt-file and what is wrong."""
    f = tmp_path / "m.json"
    f.write_bytes(content)
    with pytest.raises(ConfigError, match="--simulate-rtt-file") as e:
        simulate.load_row(f, "edge-1")
    assert message in str(e.value)
