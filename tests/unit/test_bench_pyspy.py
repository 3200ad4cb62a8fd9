"""bench.pyspy reads collapsed stacks as py-spy wrote them, or gzipped."""

from __future__ import annotations

import gzip
from pathlib import Path

from bench import pyspy

STACKS = (
    "Runner.run (asyncio/runners.py:118);SchedulingCycle.schedule_one (lasched/cycle.py:1) 3\n"
    "Runner.run (asyncio/runners.py:118) 1\n"
    "not a stack line\n"
)


def test_plain_and_gzipped_read_alike(tmp_path: Path) -> None:
    plain = tmp_path / "p.txt"
    plain.write_text(STACKS)
    packed = tmp_path / "p.txt.gz"
    packed.write_bytes(gzip.compress(STACKS.encode()))
    stacks = pyspy.read(plain)
    assert stacks == pyspy.read(packed)
    assert sum(stacks.values()) == 4
    summary = pyspy.summarise(packed)
    assert summary.startswith("4 samples (p.txt.gz)")
    assert "| scheduling cycle (schedule_one) | 75.0 % |" in summary
