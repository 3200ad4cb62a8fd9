"""Child processes of the local control plane, and how they end.

Two lifetimes exist. An *owned* process (tests, bench, demo) gets
``PR_SET_PDEATHSIG``: the kernel kills it when its parent dies, so even a
``kill -9`` of pytest leaves no orphan etcd behind. A *detached* process
(``lasched dev up``) outlives the CLI and is stopped by ``lasched dev down``
from the pid recorded in the cluster's state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        os.setpgrp()

    return preexec


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(slots=True)
class Child:
    """A started process: its name, pid and log file."""

    name: str
    pid: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return pid_alive(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); its state in /proc says it is gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def spawn(name: str, argv: list[str], *, log_dir: Path, detached: bool) -> Child:
    """Start ``argv`` with stdout and stderr in ``log_dir/<name>.log``."""
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if detached else _die_with_parent(),  # noqa: PLW1509
            start_new_session=detached,
            close_fds=True,
        )
    return Child(name=name, pid=popen.pid, log_path=log_path, popen=popen)


def terminate(pid: int, *, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the pid is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


async def stop_children(children: list[Child], *, grace: float = 5.0) -> None:
    """Stop children in reverse start order, reaping owned ones."""
    for child in reversed(children):
        await asyncio.to_thread(terminate, child.pid, grace=grace)
        if child.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(child.popen.wait, 5)
