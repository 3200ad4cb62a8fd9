"""Markdown tables and PNG plots of a benchmark's results."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from bench.gangs import GangSample
from bench.peers import LABELS as _LABELS
from bench.throughput import Sample, ratios


def _fmt(stat: dict[str, float] | None, digits: int = 0) -> str:
    if not stat:
        return "-"
    m, lo, hi = stat["median"], stat["min"], stat["max"]
    if lo == hi:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ({lo:.{digits}f} to {hi:.{digits}f})"


def _runs(stat: dict[str, float] | None) -> str:
    return "-" if not stat else f"{stat['median']:.0f}"


def label(peer: str) -> str:
    return "floor / bind ceiling" if peer == "bind-ceiling" else _LABELS.get(peer, peer)


def environment_lines(env: dict[str, Any]) -> list[str]:
    """The machine, versions, command and load: the closing lines of every table."""
    lines = [
        "",
        f"Machine: {env.get('machine', '?')}. Kubernetes {env.get('kubernetes', '?')}, "
        f"etcd {env.get('etcd', '?')}, kwok {env.get('kwok', '?')}, "
        f"Python {env.get('python', '?')}.",
        f"Command: `{env.get('command', '?')}`",
    ]
    if env.get("load"):
        lines.append(f"Load: {env['load']}")
    return lines


def order_lines(orders: list[list[str]], name: Callable[[str], str] = label) -> list[str]:
    if not orders:
        return []
    text = "; ".join(f"{i + 1}: {', '.join(name(p) for p in o)}" for i, o in enumerate(orders))
    return ["", f"Order of the peers in each repetition: {text}."]


def check_lines(result: dict[str, Any]) -> list[str]:
    """The placement checks' outcome: every failed run named, or that all passed."""
    failed = result.get("failed") or []
    runs = len(result.get("samples") or [])
    if not failed:
        return ["", f"Placement checks (bench/verify.py): all {runs} runs passed."]
    return [
        "",
        f"**Placement checks failed in {len(failed)} of {runs} runs** (bench/verify.py):",
        "",
        *(f"- {line}" for line in failed),
    ]


_RATIO_NAMES = {
    "burst_pods_per_s": "burst pods/s (bound and reported)",
    "burst_pods_per_s_binds": "burst pods/s (bindings only)",
    "steady_p99_ms": "steady p99 (bound and reported)",
    "steady_binds_p99_ms": "steady p99 (bindings only)",
}


def _ratio_peer(peer: str, figure: str) -> str:
    """The bind ceiling's burst is the ceiling's; its steady figures are the floor's."""
    if peer != "bind-ceiling":
        return label(peer)
    return "floor" if figure.startswith("steady") else "bind ceiling"


def ratio_lines(ratios: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    out = []
    for peer, figures in ratios.items():
        for fig, st in figures.items():
            rng = "" if st["min"] == st["max"] else f" ({st['min']:.2f}x to {st['max']:.2f}x"
            rng += f", {st['n']:.0f} repetitions)" if rng else f" ({st['n']:.0f} repetition(s))"
            out.append(
                f"- lasched / {_ratio_peer(peer, fig)}, {_RATIO_NAMES.get(fig, fig)}: "
                f"**{st['median']:.2f}x**{rng}"
            )
    return out


def markdown(result: dict[str, Any]) -> str:
    summary: dict[str, dict[str, dict[str, float]]] = result["summary"]
    cfg = result["config"]
    lines = [
        f"### throughput: {cfg['nodes']} nodes, {cfg['pods']} pods burst, "
        f"{cfg['rate']:.0f} pods/s steady for {cfg['steady_seconds']:.0f} s, "
        f"{cfg['repeat']} repetition(s)"
        + (", pods of mixed shapes" if cfg.get("shapes") == "mixed" else ""),
        "",
        "A pod is done when its binding and its `Scheduled` Event are both written (as a watch "
        "on the apiserver sees them). Medians, with the range over repetitions in brackets; "
        "`runs` is how many repetitions each figure is over. Events missing: pods whose Event "
        f"had not come {cfg.get('event_wait_seconds', 60):g} s after the phase's last binding "
        "(summed over burst and steady, per run); done figures leave them out. The bind "
        "ceiling writes each binding and then its Event; the floor (its steady figures) binds "
        "on sight and then writes its Event (bench/floor.py).",
        "",
        "| scheduler | runs | burst pods/s | burst makespan s | steady p50 ms | steady p90 ms "
        "| steady p99 ms | Events missing | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for peer, s in summary.items():
        missing = _sum_stats(s.get("burst_events_missing"), s.get("steady_events_missing"))
        lines.append(
            f"| {label(peer)} | {_runs(s.get('runs'))} | {_fmt(s.get('burst_pods_per_s'))} "
            f"| {_fmt(s.get('burst_makespan_s'), 2)} | {_fmt(s.get('steady_p50_ms'), 1)} "
            f"| {_fmt(s.get('steady_p90_ms'), 1)} | {_fmt(s.get('steady_p99_ms'), 1)} "
            f"| {missing} | {_fmt(s.get('cpu_seconds'), 1)} | {_fmt(s.get('peak_rss_mb'))} |"
        )
    lines += [
        "",
        "The same runs on bindings alone (the clock of the earlier results; "
        "Event lag: last Event seen minus last binding seen, in the burst):",
        "",
        "| scheduler | runs | burst pods/s | burst makespan s | steady p50 ms | steady p90 ms "
        "| steady p99 ms | Event lag s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for peer, s in summary.items():
        lines.append(
            f"| {label(peer)} | {_runs(s.get('runs'))} | {_fmt(s.get('burst_pods_per_s_binds'))} "
            f"| {_fmt(s.get('burst_makespan_binds_s'), 2)} "
            f"| {_fmt(s.get('steady_binds_p50_ms'), 1)} | {_fmt(s.get('steady_binds_p90_ms'), 1)} "
            f"| {_fmt(s.get('steady_binds_p99_ms'), 1)} | {_fmt(s.get('burst_events_lag_s'), 1)} |"
        )
    ratios = ratio_lines(result.get("ratios") or {})
    if ratios:
        lines += ["", "Ratios taken within each repetition; median (min to max):", "", *ratios]
    lines += _control_plane_table(summary)
    lines += order_lines(result.get("orders") or [])
    lines += check_lines(result)
    lines += environment_lines(result["environment"])
    return "\n".join(lines) + "\n"


def _sum_stats(*stats: dict[str, float] | None) -> str:
    present = [s for s in stats if s]
    if not present:
        return "-"
    m = sum(s["median"] for s in present)
    lo, hi = sum(s["min"] for s in present), sum(s["max"] for s in present)
    return f"{m:.0f}" if lo == hi else f"{m:.0f} ({lo:.0f} to {hi:.0f})"


_PROCESSES = ("kube-apiserver", "etcd", "kwok", "scheduler")
_REQUESTS = ("binding", "pod create", "Event create", "Lease renew")


def cores_table(
    heads: list[str],
    rows: Sequence[tuple[list[str], Mapping[str, Mapping[str, float]]]],
    *,
    processes: Sequence[str],
    requests: Sequence[str],
    total: bool = False,
) -> list[str]:
    """A table of where the cores went: each row's leading cells (under ``heads``), then
    each process's ``cpu_percent:`` median, their sum if ``total``, then the apiserver's
    ``apiserver_ms:`` median per request kind."""
    lines = [
        "| "
        + " | ".join([*heads, *(f"{p} %" for p in processes), *(["all %"] if total else [])])
        + " | "
        + " | ".join(f"{r} ms" for r in requests)
        + " |",
        "|" + "---|" * (len(heads) + len(processes) + total + len(requests)),
    ]
    for cells, figs in rows:
        cpu = [figs.get(f"cpu_percent:{p}") for p in processes]
        api = [figs.get(f"apiserver_ms:{r}") for r in requests]
        shares = [f"{c['median']:.0f}" if c else "-" for c in cpu]
        if total:
            shares.append(f"{sum(c['median'] for c in cpu if c):.0f}")
        lines.append(
            "| "
            + " | ".join([*cells, *shares])
            + " | "
            + " | ".join(f"{a['median']:.1f}" if a else "-" for a in api)
            + " |"
        )
    return lines


def _control_plane_table(summary: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Where the cores went in the steady phase, and the apiserver's own time per request."""
    if not any(f"cpu_percent:{p}" in s for s in summary.values() for p in _PROCESSES):
        return []
    rows = [
        (["floor (binds on sight)" if peer == "bind-ceiling" else _LABELS.get(peer, peer)], s)
        for peer, s in summary.items()
    ]
    return [
        "",
        "Steady phase, until its last pod is done: each process's CPU as a share of one core "
        f"(the machine has {os.cpu_count()}), and the apiserver's own mean time per request "
        "(from its `apiserver_request_duration_seconds`); medians over repetitions. The "
        "floor's scheduler column is bench/floor.py.",
        "",
        *cores_table(["scheduler"], rows, processes=_PROCESSES, requests=_REQUESTS),
    ]


def plots(samples: list[Sample], directory: Path, stem: str) -> list[Path]:
    """Done (and bound) over time in each peer's last burst, the steady latency CDF, and
    the per-repetition ratios."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    last: dict[str, Sample] = {}
    for s in samples:
        last[s.peer] = s

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (peer, s) in enumerate(last.items()):
        colour = f"C{i}"
        ax.plot(s.done_curve, range(1, len(s.done_curve) + 1), color=colour, label=label(peer))
        ax.plot(
            s.bound_curve, range(1, len(s.bound_curve) + 1), color=colour, linestyle=":", alpha=0.7
        )
    ax.set_xlabel("seconds since the scheduler started")
    ax.set_ylabel("pods")
    ax.set_title("Burst: pods done (solid) and bound (dotted), last repetition")
    ax.grid(alpha=0.3)
    ax.legend()
    path = directory / f"{stem}-burst.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    pooled: dict[str, tuple[list[float], list[float]]] = {}
    for s in samples:
        done, binds = pooled.setdefault(s.peer, ([], []))
        done.extend(s.steady_latencies_ms)
        binds.extend(s.steady_bind_latencies_ms)
    for i, (peer, (done, binds)) in enumerate(pooled.items()):
        floor = peer == "bind-ceiling"  # binds on sight, then writes its Event
        name = "floor (binds on sight)" if floor else label(peer)
        for values, style, suffix in ((done, "-", name), (binds, ":", None)):
            if not values:
                continue
            xs = sorted(values)
            ys = [(k + 1) / len(xs) for k in range(len(xs))]
            ax.plot(
                xs,
                ys,
                color=f"C{i}",
                linestyle=style,
                label=suffix,
            )
    ax.set_xscale("log")
    ax.set_xlabel("creation to done (solid) or to bound (dotted), ms (log scale)")
    ax.set_ylabel("fraction of pods")
    ax.set_title("Steady arrivals: latency CDF (all repetitions)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    path = directory / f"{stem}-latency-cdf.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    table = ratios(samples)
    if table:
        paths.append(
            ratio_plot(
                table, directory / f"{stem}-ratios.png", title="lasched / each peer, per repetition"
            )
        )
    return paths


def ratio_plot(table: dict[str, dict[str, dict[str, float]]], path: Path, *, title: str) -> Path:
    """One row per (peer, figure): the median ratio with its min-to-max range."""
    rows = [
        (f"{_ratio_peer(p, f)}: {_RATIO_NAMES.get(f, f)}", st)
        for p, figs in table.items()
        for f, st in figs.items()
    ]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    for y, (_, st) in enumerate(rows):
        ax.plot([st["min"], st["max"]], [y, y], color="C0", linewidth=2)
        ax.plot([st["median"]], [y], "o", color="C1")
        ax.annotate(
            f"{st['median']:.2f}x (n={st['n']:.0f})",
            (st["max"], y),
            xytext=(6, -3),
            textcoords="offset points",
            fontsize=8,
        )
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FormatStrFormatter("%gx"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("ratio (log scale): median dot, min to max line")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x", which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
    marks: Mapping[str, float] | None = None,
    ylabel: str = "fraction of pods",
) -> Path:
    """One empirical CDF per labelled series; ``marks``: labelled vertical lines (targets)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, values in series.items():
        if not values:
            continue
        xs = sorted(values)
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=label, linestyle="--" if label in dashed else "-")
    for i, (label, x) in enumerate((marks or {}).items()):
        ax.axvline(x, color=f"C{len(series) + i}", linestyle=":", label=label)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
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
