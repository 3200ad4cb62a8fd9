"""The schedulers a benchmark compares, each run as its own process(es).

All of them use the cluster's admin identity (``system:masters``), so API
Priority and Fairness puts their requests in the same (exempt) priority level.

| peer | client-side rate limit |
|---|---|
| lasched | none; at most 64 connections, 64 binds in flight |
| kube-scheduler (defaults) | QPS 50, burst 100 (its defaults) |
| kube-scheduler (tuned) | QPS 5000, burst 10000 (as kwok and scheduler_perf use) |
| kube-scheduler + lasched extender | kube-scheduler tuned, asking lasched's extender API |

A peer's CPU seconds and peak RSS add up all of its processes (for the
extender peer: kube-scheduler and lasched).

kube-scheduler runs with the feature gates the dev cluster's control plane
has (Kubernetes' Workload API and gang scheduling, :func:`workload_api_flags`),
as every component of a cluster does.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from lasched_dev.devcluster import binaries
from lasched_dev.devcluster.cluster import workload_api_flags
from lasched_dev.devcluster.processes import Child, spawn, stop_children


@dataclass(frozen=True, slots=True)
class Peer:
    key: str
    label: str
    scheduler_name: str
    qps: int | None = None
    burst: int | None = None
    extender: bool = False  # kube-scheduler with lasched as its extender
    # kube-scheduler with the cluster's Workload API feature gates (and so, on v1.37,
    # its GangScheduling plugin); False runs it as a cluster without them would.
    workload_api: bool = True
    # lasched's settings for this peer, beside the benchmark's (a variant of lasched).
    settings: Mapping[str, Any] | None = None
    # kube-scheduler's default plugins this peer runs without (multiPoint.disabled).
    disabled_plugins: tuple[str, ...] = ()

    @property
    def is_lasched(self) -> bool:
        return self.scheduler_name == LASCHED_NAME and not self.extender


LASCHED_NAME = "lasched"
LASCHED = Peer("lasched", "lasched", LASCHED_NAME)
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
# The tuned kube-scheduler cut to the plugins lasched has: its default plugins without
# DynamicResources (lasched does not allocate ResourceClaims) and NodeName (lasched never
# sees a pod that names its node). Beside the tuned row it shows what those cost.
KUBE_LASCHED_PLUGINS = Peer(
    "kube-scheduler-lasched-plugins",
    "kube-scheduler (QPS 5000/10000), lasched's plugins",
    "kube-scheduler",
    qps=5000,
    burst=10000,
    disabled_plugins=("DynamicResources", "NodeName"),
)
PEERS = {p.key: p for p in (LASCHED, KUBE_DEFAULT, KUBE_TUNED, KUBE_LASCHED_PLUGINS)}

# The latency scenario's peers: pods that kube-scheduler places name its default profile.
KUBE_LATENCY_BLIND = Peer(
    "kube-scheduler-tuned",
    "kube-scheduler (QPS 5000/10000)",
    "default-scheduler",
    qps=5000,
    burst=10000,
)
KUBE_EXTENDER = Peer(
    "kube-scheduler-extender",
    "kube-scheduler + lasched extender",
    "default-scheduler",
    qps=5000,
    burst=10000,
    extender=True,
)
# Not a scheduler: bench.floor, binding each pod round robin the moment its watch shows
# it and then writing its Event (the workloads scenario sets it beside the schedulers on
# test cases whose pods ask for nothing round robin could break).
FLOOR = Peer("floor", "floor (binds on sight, then its Event)", "bench-floor")
LABELS = {
    **{p.key: p.label for p in (*PEERS.values(), KUBE_EXTENDER, FLOOR)},
    "bind-ceiling": "bind ceiling",
}


@dataclass(frozen=True, slots=True)
class ProcStats:
    cpu_seconds: float
    peak_rss_bytes: int
    rss_bytes: int = 0


def proc_stats(pid: int) -> ProcStats:
    """CPU time (user + system), peak RSS and current RSS of a live process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
        elif line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return ProcStats(cpu_seconds=cpu, peak_rss_bytes=peak, rss_bytes=rss)


class RunningPeer:
    """The process(es) of one peer, started for one measurement."""

    def __init__(self, peer: Peer, children: list[Child], *, http_port: int | None) -> None:
        self.peer = peer
        self.children = children
        self.http_port = http_port  # lasched's /metrics and agent endpoint, if it runs

    @property
    def child(self) -> Child:
        """The process that schedules (kube-scheduler for the extender peer)."""
        return self.children[-1]

    @property
    def lasched(self) -> Child | None:
        return next((c for c in self.children if c.name.startswith("lasched")), None)

    def stats(self) -> ProcStats:
        parts = [proc_stats(c.pid) for c in self.children]
        return ProcStats(
            cpu_seconds=sum(p.cpu_seconds for p in parts),
            peak_rss_bytes=sum(p.peak_rss_bytes for p in parts),
            rss_bytes=sum(p.rss_bytes for p in parts),
        )

    def alive(self) -> bool:
        return all(c.alive() for c in self.children)

    async def stop(self) -> None:
        await stop_children(self.children, grace=10)


def lasched_config(
    scheduler_name: str, *, extra: dict[str, Any] | None = None, extender: bool = False
) -> dict[str, Any]:
    """lasched's settings for a benchmark: one profile, 64 binds in flight, quiet logs."""
    cfg: dict[str, Any] = {
        "profiles": [{"schedulerName": scheduler_name}],
        "bindConcurrency": 64,
        "logLevel": "WARNING",
        **(extra or {}),
    }
    if extender:
        cfg["extender"] = {"enabled": True}
    return cfg


def _spawn_lasched(
    *, kubeconfig: Path, workdir: Path, config: dict[str, Any], port: int, name: str
) -> Child:
    path = workdir / f"{name}.yaml"
    # JSON is YAML: the settings loader reads it as such.
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    argv = [
        sys.executable, "-m", "lasched", "run",
        "--kubeconfig", str(kubeconfig), "--config", str(path), "--port", str(port),
    ]  # fmt: skip
    return spawn(name, argv, log_dir=workdir, detached=False)


def kube_scheduler_config(peer: Peer, *, kubeconfig: Path, extender_url: str | None) -> str:
    text = (
        "apiVersion: kubescheduler.config.k8s.io/v1\n"
        "kind: KubeSchedulerConfiguration\n"
        f"clientConnection:\n  kubeconfig: {kubeconfig}\n"
        f"  qps: {peer.qps}\n  burst: {peer.burst}\n"
        "leaderElection:\n  leaderElect: false\n"
        f"profiles:\n  - schedulerName: {peer.scheduler_name}\n"
    )
    if peer.disabled_plugins:
        text += "    plugins:\n      multiPoint:\n        disabled:\n" + "".join(
            f"          - name: {name}\n" for name in peer.disabled_plugins
        )
    if extender_url:
        # As docs/extender.md recommends.
        text += (
            "extenders:\n"
            f"  - urlPrefix: {extender_url}\n"
            "    filterVerb: filter\n"
            "    prioritizeVerb: prioritize\n"
            "    weight: 5\n"
            "    nodeCacheCapable: true\n"
            "    ignorable: false\n"
            "    httpTimeout: 5s\n"
        )
    return text


def _merged(
    base: Mapping[str, Any] | None, extra: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """``extra`` over ``base``, one level of sections deep (``latency: {plan: false}`` keeps
    the other latency settings)."""
    if extra is None:
        return dict(base) if base is not None else None
    out = dict(base or {})
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


async def start(
    peer: Peer,
    *,
    kubeconfig: Path,
    workdir: Path,
    lasched_settings: dict[str, Any] | None = None,
    http_port: int = 0,
) -> RunningPeer:
    """Start ``peer``. ``lasched_settings`` are merged into lasched's benchmark settings;
    ``http_port`` is lasched's (0: any free port, unknown to the caller)."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    if peer.is_lasched:
        config = lasched_config(peer.scheduler_name, extra=_merged(lasched_settings, peer.settings))
        child = _spawn_lasched(
            kubeconfig=kubeconfig, workdir=workdir, config=config, port=http_port, name="lasched"
        )
        return RunningPeer(peer, [child], http_port=http_port or None)
    children: list[Child] = []
    extender_url = None
    if peer.extender:
        if not http_port:
            raise ValueError("http_port must be set for the extender peer: kube-scheduler calls it")
        config = lasched_config("lasched", extra=lasched_settings, extender=True)
        children.append(
            _spawn_lasched(
                kubeconfig=kubeconfig,
                workdir=workdir,
                config=config,
                port=http_port,
                name="lasched-extender",
            )
        )
        extender_url = f"http://127.0.0.1:{http_port}/extender"
    exe = (await binaries.ensure(["kube-scheduler"]))["kube-scheduler"]
    path = workdir / f"{peer.key}.yaml"
    path.write_text(kube_scheduler_config(peer, kubeconfig=kubeconfig, extender_url=extender_url))
    gates = workload_api_flags(exe) if peer.workload_api else []
    argv = [str(exe), f"--config={path}", "--secure-port=0", *gates, "--v=0"]
    children.append(spawn(peer.key, argv, log_dir=workdir, detached=False))
    return RunningPeer(peer, children, http_port=http_port or None)
