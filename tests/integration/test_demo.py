"""The demo tells its story on a real control plane, with real agent processes, and checks it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lasched_dev.demo import ROLES, SITE_OF, rtt_matrix, rtt_ms, run_demo

# Placement-table rows per role: the gang's four members, batch-low's
# survivor, preempted replica and pending replacement, and orders' moved pod
# and its replacement.
ROWS = {"train": 4, "batch-low": 3, "orders": 2}


def test_rtts_follow_geography() -> None:
    """Within a site under a millisecond; Paris-Berlin about 13 ms; across the Atlantic 80+."""
    assert rtt_ms("eu-paris-0", "eu-paris-1") < 1.0
    assert 11 < rtt_ms("eu-paris-0", "eu-berlin-0") < 15
    assert rtt_ms("us-nyc-0", "eu-paris-0") > 75
    assert rtt_ms("eu-berlin-0", "users-berlin") < 8 < rtt_ms("cloud-fra-0", "users-berlin")
    matrix = rtt_matrix()
    assert set(matrix) == set(SITE_OF)
    assert all(len(row) == len(SITE_OF) - 1 + 2 for row in matrix.values())


def test_roles_are_workloads_with_lasched_on_the_pod_template() -> None:
    """Every role is a workload whose pod template carries the role label and schedulerName."""
    kinds = {name: r.kind for name, r in ROLES.items()}
    assert kinds["db"] == "StatefulSet" and kinds["train"] == "Job"
    assert {k for n, k in kinds.items() if n not in ("db", "train")} == {"Deployment"}
    for name, role in ROLES.items():
        template = role.manifest()["spec"]["template"]
        assert template["metadata"]["labels"]["demo.lasched.io/role"] == name
        assert template["spec"]["schedulerName"] == "lasched"
    job = ROLES["train"].manifest()["spec"]
    assert job["parallelism"] == 3 and job["completions"] >= 4
    assert job["template"]["spec"]["restartPolicy"] == "Never"


async def test_demo_story_outcomes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every scene ends as the story says; the placement table has a row per pod, under its
    generated name, including the preempted one and its pending replacement, and the pod
    remediation moved; both pictures are written."""
    assert await run_demo(output=tmp_path) == 0
    out = capsys.readouterr().out
    assert "all as the story says" in out
    assert "✗" not in out
    assert "Preempted by pod demo/checkout-" in out
    assert "rtt from users-berlin = " in out  # the deciding RTT, from the Scheduled event
    lines = out.splitlines()
    for name in ROLES:
        rows = [line for line in lines if line.startswith(f"│ {name} ")]
        assert len(rows) == ROWS.get(name, 1), f"{name}: {len(rows)} rows in the placement table"
    low = [line for line in lines if line.startswith("│ batch-low ")]
    assert sum("│ preempted " in r for r in low) == 1
    assert sum("│ pending " in r for r in low) == 1
    orders = [line for line in lines if line.startswith("│ orders ")]
    assert sum("│ moved " in r for r in orders) == 1
    flat = " ".join(out.split())  # the console wraps long lines
    assert "LatencyRemediated: evicted from us-nyc-" in flat
    assert "rtt from users-nyc = " in flat and "> 8 ms (lasched.io/max-rtt" in flat
    assert "│ db-0 " in out
    assert len(re.findall(r"^│ train-[a-z0-9]{5} ", out, re.MULTILINE)) == 4
    assert re.search(r"^│ frontend-[a-z0-9]+-[a-z0-9]{5} ", out, re.MULTILINE)
    for picture in ("topology.png", "rtt.png"):
        assert (tmp_path / picture).read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "agent-logs").glob("agent-*.log"))) == len(SITE_OF)
