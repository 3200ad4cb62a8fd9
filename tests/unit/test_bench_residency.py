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


def _vm_rss_mb() -> float:
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    return next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:")) / 1024


def test_a_live_process_adds_up_to_its_rss() -> None:
    """Every mapping of a real smaps lands in a part, and the parts make the RSS."""
    before = _vm_rss_mb()
    text = Path(f"/proc/{os.getpid()}/smaps").read_text()
    after = _vm_rss_mb()
    parts = residency.parts_of(text)
    listed = sum(int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("Rss:")) / 1024
    assert abs(sum(parts.values()) - listed) < 0.01
    # The process moves while it reads (a test run around it): within a tenth.
    assert min(before, after) * 0.9 <= listed <= max(before, after) * 1.1
    assert parts["files"] > 0 and parts["C heap"] > 0
    assert residency.of_process(os.getpid())


def test_the_import_baseline_measures_the_run_path() -> None:
    base = residency.import_baseline()
    added = base["added_mb"]
    assert isinstance(added, dict)
    assert next(iter(added)) == "Python itself"
    assert "numpy" in added and "lasched and the rest" in added
    assert abs(sum(added.values()) - float(base["rss_mb"])) < 0.01  # type: ignore[arg-type]
    lines = residency.markdown(base["parts"], base)  # type: ignore[arg-type]
    assert any(line.startswith("| **total** |") for line in lines)
