"""Markdown tables and PNG plots of a benchmark's results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.gangs import GangSample
from bench.peers import LABELS as _LABELS
from bench.throughput import Sample


def _fmt(stat: dict[str, float] | None, digits: int = 0) -> str:
    if not stat:
        return "-"
    m, lo, hi = stat["median"], stat["min"], stat["max"]
    return f"{m:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"


def markdown(result: dict[str, Any]) -> str:
    summary: dict[str, dict[str, dict[str, float]]] = result["summary"]
    cfg = result["config"]
    env = result["environment"]
    lines = [
        f"### throughput: {cfg['nodes']} nodes, {cfg['pods']} pods burst, "
        f"{cfg['rate']:.0f} pods/s steady for {cfg['steady_seconds']:.0f} s, "
        f"{cfg['repeat']} repetitions",
        "",
        "Medians, with the range over repetitions in brackets. The bind ceiling's steady "
        "figures are the latency floor: a process that binds each pod the moment its watch "
        "shows it (bench/floor.py).",
        "",
        "| scheduler | burst pods/s | burst makespan s | steady p50 ms | steady p90 ms "
        "| steady p99 ms | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for peer, s in summary.items():
        lines.append(
            f"| {_LABELS.get(peer, peer)} | {_fmt(s.get('burst_pods_per_s'))} "
            f"| {_fmt(s.get('burst_makespan_s'), 2)} | {_fmt(s.get('steady_p50_ms'), 1)} "
            f"| {_fmt(s.get('steady_p90_ms'), 1)} | {_fmt(s.get('steady_p99_ms'), 1)} "
            f"| {_fmt(s.get('cpu_seconds'), 1)} | {_fmt(s.get('peak_rss_mb'))} |"
        )
    ratios = _ratios(summary)
    floor = summary.get("bind-ceiling", {}).get("steady_p99_ms")
    ours_p99 = summary.get("lasched", {}).get("steady_p99_ms")
    if floor and ours_p99:
        ratios.append(
            f"- steady p99: lasched {ours_p99['median']:.0f} ms, the floor "
            f"{floor['median']:.0f} ms (target: at most 100 ms)"
        )
    if ratios:
        lines += ["", *ratios]
    lines += _control_plane_table(summary)
    lines += [
        "",
        f"Machine: {env.get('machine', '?')}. Kubernetes {env.get('kubernetes', '?')}, "
        f"etcd {env.get('etcd', '?')}, kwok {env.get('kwok', '?')}, "
        f"Python {env.get('python', '?')}.",
        f"Command: `{env.get('command', '?')}`",
    ]
    if env.get("load"):
        lines.append(f"Load: {env['load']}")
    return "\n".join(lines) + "\n"


_PROCESSES = ("kube-apiserver", "etcd", "kwok", "scheduler")
_REQUESTS = ("binding", "pod create", "Event create", "Lease renew")


def _control_plane_table(summary: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Where the cores went in the steady phase, and the apiserver's own time per request."""
    if not any(f"cpu_percent:{p}" in s for s in summary.values() for p in _PROCESSES):
        return []
    lines = [
        "",
        "Steady phase: each process's CPU as a share of one core (the machine has "
        f"{os.cpu_count()}), and the apiserver's own mean time per request (from its "
        "`apiserver_request_duration_seconds`); medians over repetitions. The floor's "
        "scheduler column is bench/floor.py.",
        "",
        "| scheduler | "
        + " | ".join(f"{p} %" for p in _PROCESSES)
        + " | "
        + " | ".join(f"{r} ms" for r in _REQUESTS)
        + " |",
        "|---|" + "---|" * (len(_PROCESSES) + len(_REQUESTS)),
    ]
    for peer, s in summary.items():
        cpu = [s.get(f"cpu_percent:{p}") for p in _PROCESSES]
        api = [s.get(f"apiserver_ms:{r}") for r in _REQUESTS]
        label = "floor (binds on sight)" if peer == "bind-ceiling" else _LABELS.get(peer, peer)
        lines.append(
            f"| {label} | "
            + " | ".join(f"{c['median']:.0f}" if c else "-" for c in cpu) + " | "
            + " | ".join(f"{a['median']:.1f}" if a else "-" for a in api) + " |"
        )  # fmt: skip
    return lines


def _ratios(summary: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    def med(peer: str) -> float | None:
        stat = summary.get(peer, {}).get("burst_pods_per_s")
        return stat["median"] if stat else None

    ours = med("lasched")
    out: list[str] = []
    if ours is None:
        return out
    for peer in ("kube-scheduler-tuned", "kube-scheduler", "bind-ceiling"):
        theirs = med(peer)
        if theirs:
            out.append(f"- lasched burst throughput / {_LABELS[peer]}: **{ours / theirs:.2f}x**")
    return out


def plots(samples: list[Sample], directory: Path, stem: str) -> list[Path]:
    """Bound-over-time of each peer's last burst, and the steady latency CDF."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    last: dict[str, Sample] = {}
    for s in samples:
        last[s.peer] = s

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for peer, s in last.items():
        ax.plot(s.bound_curve, range(1, len(s.bound_curve) + 1), label=_LABELS.get(peer, peer))
    ax.set_xlabel("seconds since the scheduler started")
    ax.set_ylabel("pods bound")
    ax.set_title("Burst: pods bound over time (last repetition)")
    ax.grid(alpha=0.3)
    ax.legend()
    path = directory / f"{stem}-burst.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    pooled: dict[str, list[float]] = {}
    for s in samples:
        pooled.setdefault(s.peer, []).extend(s.steady_latencies_ms)
    for peer, lat in pooled.items():
        if not lat:
            continue
        xs = sorted(lat)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        label = "floor (binds on sight)" if peer == "bind-ceiling" else _LABELS.get(peer, peer)
        ax.plot(xs, ys, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("creation to bound, ms (log scale)")
    ax.set_ylabel("fraction of pods")
    ax.set_title("Steady arrivals: latency CDF (all repetitions)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    path = directory / f"{stem}-latency-cdf.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def gang_plot(samples: list[GangSample], path: Path) -> Path:
    """Each gang's time from its last member's creation to all bound, by size."""
    sizes = sorted({s.size for s in samples})
    fig, ax = plt.subplots(figsize=(7, 4))
    data = [[s.last_created_to_all_bound_ms for s in samples if s.size == n] for n in sizes]
    ax.boxplot(data, tick_labels=[f"{n} members" for n in sizes])
    for i, values in enumerate(data, start=1):
        ax.scatter([i] * len(values), values, s=12, alpha=0.6)
    ax.set_ylabel("last member created to all bound, ms")
    ax.set_title("Gangs: all-or-nothing binding time")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cdf_plot(
    series: dict[str, list[float]],
    path: Path,
    *,
    title: str,
    xlabel: str,
    log: bool = False,
    dashed: frozenset[str] = frozenset(),
) -> Path:
    """One empirical CDF per labelled series."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, values in series.items():
        if not values:
            continue
        xs = sorted(values)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=label, linestyle="--" if label in dashed else "-")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of pods")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bar_plot(values: dict[str, float], path: Path, *, title: str, ylabel: str) -> Path:
    """One bar per label, its value written above it."""
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = list(values)
    colours = [f"C{i}" for i in range(len(labels))]
    bars = ax.bar(labels, [values[k] for k in labels], color=colours)
    for bar, label in zip(bars, labels, strict=True):
        ax.annotate(
            f"{values[label]:.0f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
        )
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
