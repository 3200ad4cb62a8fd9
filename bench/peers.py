"""The schedulers a benchmark compares, each run as its own process.

All of them use the cluster's admin identity (``system:masters``), so API
Priority and Fairness puts their requests in the same (exempt) priority level.

| peer | client-side rate limit |
|---|---|
| lasched | none; at most 64 connections, 64 binds in flight |
| kube-scheduler (defaults) | QPS 50, burst 100 (its defaults) |
| kube-scheduler (tuned) | QPS 5000, burst 10000 (as kwok and scheduler_perf use) |
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lasched.devcluster import binaries
from lasched.devcluster.processes import Child, spawn, stop_children


@dataclass(frozen=True, slots=True)
class Peer:
    key: str
    label: str
    scheduler_name: str
    qps: int | None = None
    burst: int | None = None


LASCHED = Peer("lasched", "lasched", "lasched")
KUBE_DEFAULT = Peer(
    "kube-scheduler", "kube-scheduler (QPS 50/100)", "kube-scheduler", qps=50, burst=100
)
KUBE_TUNED = Peer(
    "kube-scheduler-tuned",
    "kube-scheduler (QPS 5000/10000)",
    "kube-scheduler",
    qps=5000,
    burst=10000,
)
PEERS = {p.key: p for p in (LASCHED, KUBE_DEFAULT, KUBE_TUNED)}


@dataclass(frozen=True, slots=True)
class ProcStats:
    cpu_seconds: float
    peak_rss_bytes: int


def proc_stats(pid: int) -> ProcStats:
    """CPU time (user + system) and peak RSS of a live process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return ProcStats(cpu_seconds=cpu, peak_rss_bytes=peak)


class RunningPeer:
    """A scheduler process started for one measurement."""

    def __init__(self, peer: Peer, child: Child) -> None:
        self.peer = peer
        self.child = child

    def stats(self) -> ProcStats:
        return proc_stats(self.child.pid)

    async def stop(self) -> None:
        await stop_children([self.child], grace=10)


async def start(peer: Peer, *, kubeconfig: Path, workdir: Path) -> RunningPeer:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    if peer is LASCHED:
        config = workdir / "lasched.yaml"
        config.write_text(
            "profiles:\n  - schedulerName: lasched\nbindConcurrency: 64\nlogLevel: WARNING\n"
        )
        argv = [
            sys.executable, "-m", "lasched", "run",
            "--kubeconfig", str(kubeconfig), "--config", str(config), "--port", "0",
        ]  # fmt: skip
    else:
        exe = (await binaries.ensure(["kube-scheduler"]))["kube-scheduler"]
        config = workdir / f"{peer.key}.yaml"
        config.write_text(
            "apiVersion: kubescheduler.config.k8s.io/v1\n"
            "kind: KubeSchedulerConfiguration\n"
            f"clientConnection:\n  kubeconfig: {kubeconfig}\n"
            f"  qps: {peer.qps}\n  burst: {peer.burst}\n"
            "leaderElection:\n  leaderElect: false\n"
            f"profiles:\n  - schedulerName: {peer.scheduler_name}\n"
        )
        argv = [str(exe), f"--config={config}", "--secure-port=0", "--v=0"]
    return RunningPeer(peer, spawn(peer.key, argv, log_dir=workdir, detached=False))
