"""bench/residency.py: resident memory by part, from smaps text and from a real process."""

from __future__ import annotations

import os
from pathlib import Path

from bench import residency

SMAPS = """\
55d0c0000000-55d0c0100000 r--p 00000000 fd:01 123 /usr/bin/python3.11
Size:               1024 kB
Rss:                 800 kB
55d0c2000000-55d0c3000000 rw-p 00000000 00:00 0 [heap]
Size:              16384 kB
Rss:               12000 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Size:               1024 kB
Rss:                1024 kB
7f0000200000-7f0000300000 rw-p 00000000 fd:01 9 /usr/lib/x86_64-linux-gnu/libssl.so.3
Rss:                 200 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
Rss:                 100 kB
7ffd10000000-7ffd10002000 r-xp 00000000 00:00 0 [vdso]
Rss:                   4 kB
"""


def test_each_mapping_counts_in_its_part() -> None:
    parts = residency.parts_of(SMAPS)
    assert parts == {
        "files": (800 + 200) / 1024,
        "C heap": 12000 / 1024,
        "anonymous": (1024 + 4) / 1024,
        "stack": 100 / 1024,
    }


def test_a_live_process_adds_up_to_its_rss() -> None:
    parts = residency.of_process(os.getpid())
    rss_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    # Read a moment apart: the two agree within a few hundred kB.
    assert abs(sum(parts.values()) * 1024 - rss_kb) < 2048
    assert parts["files"] > 0 and parts["C heap"] > 0


def test_the_import_baseline_measures_the_run_path() -> None:
    base = residency.import_baseline()
    added = base["added_mb"]
    assert isinstance(added, dict)
    assert next(iter(added)) == "Python itself"
    assert "numpy" in added and "lasched and the rest" in added
    assert abs(sum(added.values()) - float(base["rss_mb"])) < 0.01  # type: ignore[arg-type]
    lines = residency.markdown(base["parts"], base)  # type: ignore[arg-type]
    assert any(line.startswith("| **total** |") for line in lines)
