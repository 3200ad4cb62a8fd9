"""Where a process's resident memory is: its mappings by kind, and what imports cost.

The memory scenario reports lasched's RSS; this says what it is made of, from
``/proc/<pid>/smaps`` (the kernel's per-mapping residency), so that a figure
above a target comes with the parts it is made of:

- *files*: shared libraries and extension modules (their code and data pages);
- *C heap*: glibc's main arena (``[heap]``): objects over 512 bytes that
  CPython allocates with ``malloc``, and the C libraries' own (OpenSSL's, uvloop's);
- *anonymous*: other private mappings: CPython's object arenas (small objects),
  large ``malloc`` blocks, thread arenas and thread stacks;
- *stack*: the main thread's stack.

``import_baseline`` measures the same parts in a fresh interpreter that has
only imported what ``lasched run`` imports before it schedules, and the RSS
that each heavy dependency adds in the order the run path loads it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

PARTS = ("files", "C heap", "anonymous", "stack")

_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def parts_of(smaps: str) -> dict[str, float]:
    """MB resident by part, from the text of a ``/proc/<pid>/smaps``."""
    out = dict.fromkeys(PARTS, 0.0)
    part = "anonymous"
    for line in smaps.splitlines():
        if _HEADER.match(line):
            fields = line.split()
            name = fields[5] if len(fields) > 5 else ""
            if name == "[heap]":
                part = "C heap"
            elif name == "[stack]":
                part = "stack"
            elif name.startswith("/"):
                part = "files"
            else:  # "", [anon:...], [vdso], [vvar]: private memory of the process
                part = "anonymous"
        elif line.startswith("Rss:"):
            out[part] += int(line.split()[1]) / 1024
    return out


def of_process(pid: int) -> dict[str, float]:
    """MB resident by part of a live process (empty if it is gone)."""
    try:
        return parts_of(Path(f"/proc/{pid}/smaps").read_text())
    except OSError:
        return {}


# What lasched's run path imports before it schedules (lasched.cli._run), one heavy
# dependency at a time, in the order that path loads them; then the rest of lasched.
_STEPS = ("uvloop", "numpy", "aiohttp", "prometheus_client", "prometheus_async.aio")
_BASELINE = f"""
import gc, json, sys
from pathlib import Path

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

steps = [("Python itself", rss())]
from lasched import cli
cli._leave_out_unused_imports()
steps.append(("lasched.cli (asyncio, ssl, yaml)", rss()))
for name in {_STEPS!r}:
    __import__(name)
    steps.append((name, rss()))
import lasched.app
gc.collect()
steps.append(("lasched and the rest", rss()))
print(json.dumps({{"steps": steps, "smaps": Path("/proc/self/smaps").read_text()}}))
"""


def import_baseline() -> dict[str, object]:
    """The run path's imports alone: parts by kind, and RSS added per step (MB)."""
    done = subprocess.run(
        [sys.executable, "-c", _BASELINE], capture_output=True, text=True, check=True, timeout=120
    )
    raw = json.loads(done.stdout)
    steps: list[tuple[str, float]] = [(str(n), float(v)) for n, v in raw["steps"]]
    added = [(name, v - (steps[i - 1][1] if i else 0.0)) for i, (name, v) in enumerate(steps)]
    return {
        "parts": parts_of(raw["smaps"]),
        "rss_mb": steps[-1][1],
        "added_mb": dict(added),
    }


def markdown(run_parts: dict[str, float], baseline: dict[str, object]) -> list[str]:
    """The tables of the memory report: lasched's parts after the run beside its imports'."""
    base = baseline.get("parts") or {}
    assert isinstance(base, dict)
    lines = [
        "Where lasched's resident memory is after idling (last repetition; "
        "bench/residency.py, from /proc/<pid>/smaps), beside a fresh interpreter "
        "that has only imported what `lasched run` imports before it schedules:",
        "",
        "| part | after the run MB | imports only MB | the run's own MB |",
        "|---|---|---|---|",
    ]
    for part in PARTS:
        ran, imported = run_parts.get(part, 0.0), float(base.get(part, 0.0))
        lines.append(f"| {part} | {ran:.1f} | {imported:.1f} | {ran - imported:+.1f} |")
    total_run, total_base = sum(run_parts.values()), sum(float(v) for v in base.values())
    lines.append(
        f"| **total** | **{total_run:.1f}** | **{total_base:.1f}** "
        f"| **{total_run - total_base:+.1f}** |"
    )
    added = baseline.get("added_mb") or {}
    assert isinstance(added, dict)
    lines += [
        "",
        "RSS each import adds, in the order the run path loads them (a module's "
        "dependencies count where first loaded):",
        "",
        "| import | adds MB |",
        "|---|---|",
    ]
    lines += [f"| {name} | {mb:.1f} |" for name, mb in added.items()]
    return lines
