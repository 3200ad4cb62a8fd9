"""The demo tells its story on a real control plane, with real agent processes, and checks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lasched.demo import PODS, SITE_OF, rtt_matrix, rtt_ms, run_demo


def test_rtts_follow_geography() -> None:
    """Within a site under a millisecond; Paris-Berlin about 13 ms; across the Atlantic 80+."""
    assert rtt_ms("eu-paris-0", "eu-paris-1") < 1.0
    assert 11 < rtt_ms("eu-paris-0", "eu-berlin-0") < 15
    assert rtt_ms("us-nyc-0", "eu-paris-0") > 75
    assert rtt_ms("eu-berlin-0", "users-berlin") < 8 < rtt_ms("cloud-fra-0", "users-berlin")
    matrix = rtt_matrix()
    assert set(matrix) == set(SITE_OF)
    assert all(len(row) == len(SITE_OF) - 1 + 2 for row in matrix.values())


async def test_demo_story_outcomes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every scene ends as the story says; the placement table and both pictures are written."""
    assert await run_demo(output=tmp_path) == 0
    out = capsys.readouterr().out
    assert "all as the story says" in out
    assert "✗" not in out
    assert "Preempted by pod demo/checkout on node eu-berlin-" in out
    assert "rtt from users-berlin = " in out  # the deciding RTT, from the Scheduled event
    for name in PODS:
        assert f"│ {name} " in out, f"{name} missing from the placement table"
    for picture in ("topology.png", "rtt.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "agent-logs").glob("agent-*.log"))) == len(SITE_OF)
