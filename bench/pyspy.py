"""Sampling a scheduler process with py-spy while a scenario runs, and reading the result.

``py-spy record --nonblocking`` samples the process from outside (the process
is not paused), writing collapsed stacks (one ``frame;frame;... count`` line
per distinct stack). :func:`summarise` turns them into the two views a
profile is read with: where the samples end (self time per function) and
which parts of the scheduler they pass through (inclusive share per area).

    python -m bench.pyspy <collapsed stacks file>

prints the summary of an earlier recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

_REPO = f"{Path(__file__).resolve().parents[1]}/"

# Areas of lasched, each a test on one frame ("Class.function (path/file.py:line)");
# a sample counts for an area when any frame of its stack passes the test.
AREAS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("scheduling cycle (schedule_one)", lambda f: f.startswith("SchedulingCycle.schedule_one ")),
    # Node by node, or from the node columns (lasched/framework/columnar.py).
    ("cycle: Filter", lambda f: f.startswith(("Framework._find_feasible ", "find_feasible "))),
    ("cycle: Score", lambda f: f.startswith(("Framework.score_nodes ", "Framework._score_col"))),
    ("cycle: PostFilter (preemption)", lambda f: f.startswith("Framework.run_post_filters ")),
    ("binding cycle (bind request)", lambda f: f.startswith("SchedulingCycle._binding_cycle ")),
    ("status writes and evictions", lambda f: "lasched/kube/binding.py" in f and "bind " not in f),
    ("events (events.k8s.io writes)", lambda f: "lasched/kube/events.py" in f),
    ("informers (watch, decode, handlers)", lambda f: "lasched/kube/informers.py" in f),
    ("informers: decoding pods (PodInfo)", lambda f: "lasched/model/pod.py" in f),
    ("informers: event handlers (cache, queue)", lambda f: "lasched/eventhandlers.py" in f),
    ("metrics (prometheus_client)", lambda f: "prometheus_client/" in f),
)

# Where the samples end, by library.
LIBRARIES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("aiohttp", lambda f: "aiohttp/" in f),
    ("ssl", lambda f: "ssl.py" in f or "sslproto.py" in f),
    ("asyncio / uvloop", lambda f: "asyncio/" in f or "uvloop/" in f),
    ("orjson", lambda f: "orjson" in f),
    ("lasched", lambda f: "lasched/" in f),
)


def available() -> bool:
    return _exe() is not None


def _exe() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Recording:
    """One py-spy recording of a running process; stop() writes the file."""

    def __init__(self, proc: asyncio.subprocess.Process, output: Path) -> None:
        self._proc = proc
        self.output = output

    @classmethod
    async def start(cls, pid: int, output: Path, *, rate: int = 100) -> Recording:
        exe = _exe()
        if exe is None:
            raise RuntimeError("py-spy is not installed (make setup installs it in .venv)")
        argv = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw"]
        argv += ["--nonblocking", "--output", str(output)]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        return cls(proc, output)

    async def stop(self) -> Path:
        """SIGINT makes py-spy write what it sampled and exit."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self._proc.wait(), 30)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        return self.output


def read(path: Path) -> Counter[tuple[str, ...]]:
    """Collapsed stacks, from a file as py-spy wrote it or gzipped (``.gz``, as the larger
    committed profiles are)."""
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def summarise(path: Path, *, top: int = 20) -> str:
    """Self time of the top functions, and the inclusive share of each area, as Markdown."""
    stacks = read(path)
    total = sum(stacks.values())
    if not total:
        return f"no samples in {path}\n"
    leaf: Counter[str] = Counter()
    for stack, n in stacks.items():
        leaf[_short(stack[-1])] += n
    lines = [
        f"{total} samples ({path.name})",
        "",
        "| area of lasched (inclusive) | share of samples |",
        "|---|---|",
    ]
    for label, test in AREAS:
        n = sum(c for stack, c in stacks.items() if any(test(f) for f in stack))
        lines.append(f"| {label} | {100 * n / total:.1f} % |")
    lines += ["", "| where samples end, by library | share of samples |", "|---|---|"]
    for label, test in LIBRARIES:
        n = sum(c for stack, c in stacks.items() if test(stack[-1]))
        lines.append(f"| {label} | {100 * n / total:.1f} % |")
    lines += ["", "| function (self) | share of samples |", "|---|---|"]
    for name, n in leaf.most_common(top):
        lines.append(f"| `{name}` | {100 * n / total:.1f} % |")
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    """``fn (/long/path/site-packages/pkg/mod.py:12)`` -> ``fn (pkg/mod.py)``: per function."""
    fn, _, where = frame.partition(" (")
    where = where.rstrip(")").rpartition(":")[0] or where.rstrip(")")
    for marker in ("site-packages/", "/lib/python3.11/", _REPO):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{fn} ({where})" if where else fn


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1])))
