"""``python -m bench run <scenario> [options]``: run a scenario, write results.

Scenarios: ``throughput``, ``workloads``, ``gangs``, ``gangs-contended``, ``latency``, ``drift``,
``memory``, ``preemption``, ``chaos``, ``numa`` (docs/benchmarks.md), and ``oracle``, which holds
lasched's Filter verdicts to kube-scheduler's (bench/oracle.py). Each writes
``bench/results/<stem>.json``, ``<stem>.md`` and PNG plots next to them (``--out``
elsewhere), shows progress on stderr, and prints the Markdown table. The
machine's load average at the start and the end of the run is part of the
results: these machines are shared. A run whose placement check failed
(bench/verify.py) is written like any other, named on stderr, and makes the
command exit with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench import (
    chaos,
    drift,
    gangs,
    gangscale,
    latency,
    memory,
    numa,
    oracle,
    preemption,
    pyspy,
    report,
    residency,
    throughput,
    workloads,
)
from bench import peers as peer_defs
from bench.throughput import Progress
from lasched_dev.devcluster import binaries
from lasched_dev.devcluster.progress import reporter

SCENARIOS = (
    "throughput", "workloads", "gangs", "gangs-contended", "latency", "drift", "memory",
    "preemption", "chaos", "oracle", "numa",
)  # fmt: skip


def _machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return (
        f"{platform.machine()}, {cpus} cores, {mem_kb / 2**20:.0f} GiB, Linux {platform.release()}"
    )


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario")
    run.add_argument("scenario", choices=SCENARIOS)
    run.add_argument("--out", type=Path, help="results directory (default: bench/results)")
    run.add_argument("--repeat", type=int, help="repetitions (each peer, in rotation)")
    run.add_argument("--peers", help="comma-separated peers (default: the scenario's)")
    run.add_argument(
        "--nodes", type=int, help="kwok nodes (throughput, workloads, gangs, memory, preemption)"
    )
    run.add_argument("--pods", type=int, help="throughput: burst pods; memory: all pods")
    t = throughput.Config()
    run.add_argument(
        "--rate",
        type=float,
        help=f"throughput: steady arrivals/s ({t.rate:g}); preemption: preemptors/s",
    )
    run.add_argument("--steady-seconds", type=float, default=t.steady_seconds)
    run.add_argument(
        "--event-wait",
        type=float,
        help="throughput, workloads: seconds the Scheduled Events may take after a phase's "
        f"last binding before the missing ones count as dropped ({t.event_wait_seconds:g})",
    )
    run.add_argument(
        "--pause",
        type=float,
        help=f"throughput, workloads: seconds between phases ({t.pause_seconds:g})",
    )
    w = workloads.Config()
    run.add_argument(
        "--workloads",
        help="workloads: comma-separated test cases (default: all of "
        f"{', '.join(workloads.WORKLOADS)})",
    )
    run.add_argument(
        "--shapes",
        choices=throughput.SHAPES,
        help="throughput: every pod 100m / 128 MiB (alike, the default), or each of one of "
        "25 shapes, 50m to 500m and 64 MiB to 1 GiB, drawn by its name and --seed (mixed)",
    )
    run.add_argument(
        "--seed",
        type=int,
        help=f"workloads: MixedShapes' seed ({w.seed}); throughput: the shapes'; "
        f"oracle: the scenes' ({oracle.Config().seed}); numa: the workload's "
        f"({numa.Config().seed})",
    )
    lat = latency.Config()
    dr = drift.Config()
    run.add_argument(
        "--seeds",
        help="latency, drift: comma-separated topology seeds "
        f"({','.join(str(x) for x in lat.seeds)}; drift: {','.join(str(x) for x in dr.seeds)})",
    )
    run.add_argument(
        "--regions", type=int, help=f"latency, drift: regions per topology ({lat.regions})"
    )
    run.add_argument(
        "--routes", type=int, help=f"drift: routes that degrade per seed ({dr.routes})"
    )
    run.add_argument(
        "--grace", type=float, help=f"drift: remediation's grace period ({dr.grace_seconds:g} s)"
    )
    run.add_argument("--no-bind-ceiling", action="store_true")
    run.add_argument(
        "--no-controller-manager",
        action="store_true",
        help="run the dev cluster without kube-controller-manager (its CPU goes to the peers); "
        "the results say so",
    )
    run.add_argument(
        "--profile",
        action="store_true",
        help=(
            "sample lasched with py-spy (throughput: whole run; workloads: each test"
            " case's last repetition; memory: start to first bind)"
        ),
    )
    gc = gangscale.Config()
    run.add_argument(
        "--sizes",
        help="gangs: comma-separated gang sizes (8,50); gangs-contended: the smallest and "
        f"largest size, sizes drawn between them by --seed ({gc.min_size},{gc.max_size})",
    )
    run.add_argument(
        "--gangs",
        type=int,
        help=f"gangs: gangs per size (10); gangs-contended: gangs in all ({gc.gangs})",
    )
    run.add_argument(
        "--demand",
        type=float,
        help=f"gangs-contended: all members' cpu over the cluster's ({gc.demand:g})",
    )
    run.add_argument(
        "--free",
        type=float,
        help="gangs-contended: share of the fully bound gangs deleted to make room, "
        f"0 to skip ({gc.free_fraction:g})",
    )
    run.add_argument("--tail", type=int, help="memory: pods the scheduler places")
    run.add_argument("--preemptors", type=int, help="preemption: high-priority pods")
    run.add_argument("--rounds", type=int, help="chaos: apiserver restarts per peer")
    run.add_argument("--down-seconds", type=float, help="chaos: how long the apiserver is down")
    run.add_argument(
        "--cases", type=int, help=f"oracle: pending pods to judge ({oracle.Config().cases})"
    )
    return ap


def _given(args: argparse.Namespace, **fields: str) -> dict[str, Any]:
    """Config fields from the options the user gave (name -> option attribute)."""
    return {f: getattr(args, a) for f, a in fields.items() if getattr(args, a) is not None}


Outcome = tuple[str, dict[str, Any], Callable[[dict[str, Any]], str], list[Path]]
"""What a scenario leaves: file stem, JSON result, its Markdown table, plots."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Run:
    """One invocation: the parser (for errors), options, shared config, output, environment."""

    ap: argparse.ArgumentParser
    args: argparse.Namespace
    common: dict[str, Any]
    out: Path
    env: dict[str, str]
    progress: Progress


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    env = {
        "machine": _machine(),
        "python": platform.python_version(),
        "kubernetes": binaries.KUBERNETES_VERSION,
        "etcd": binaries.ETCD_VERSION,
        "kwok": binaries.KWOK_VERSION,
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
    }
    load_before = _load()
    out: Path = args.out or throughput.results_dir()
    out.mkdir(parents=True, exist_ok=True)
    common = _given(args, repeat="repeat")
    common["controller_manager"] = not args.no_controller_manager
    env["control_plane"] = "etcd, kube-apiserver, " + (
        "kube-controller-manager, kwok"
        if common["controller_manager"]
        else "kwok (without kube-controller-manager)"
    )
    if args.peers:
        common["peers"] = tuple(p for p in args.peers.split(",") if p)
    scenario = {
        "throughput": _throughput,
        "gangs": _gangs,
        "gangs-contended": _gangs_contended,
        "workloads": _workloads,
        "latency": _latency,
        "drift": _drift,
        "memory": _memory,
        "preemption": _preemption,
        "chaos": _chaos,
        "oracle": _oracle,
        "numa": _numa,
    }[args.scenario]
    with reporter() as progress:
        stem, result, table_of, pngs = scenario(_Run(ap, args, common, out, env, progress))
    env["load"] = f"load average (1, 5, 15 min) {load_before} at the start, {_load()} at the end"
    result["environment"] = env
    table = table_of(result) + f"\nControl plane: {env['control_plane']}.\n"
    _emit(out, stem, result, table, pngs)
    profile = result["config"].get("profile")
    if profile:
        summary = pyspy.summarise(Path(profile))
        Path(profile).with_suffix(".md").write_text(summary)
        print(summary)
    failed = result.get("failed") or []
    if failed:
        print(f"placement checks failed in {len(failed)} run(s):", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def _throughput(r: _Run) -> Outcome:
    cfg = throughput.Config(
        **r.common,
        **_given(
            r.args,
            nodes="nodes",
            pods="pods",
            rate="rate",
            event_wait_seconds="event_wait",
            pause_seconds="pause",
            shapes="shapes",
            seed="seed",
        ),
        steady_seconds=r.args.steady_seconds,
        bind_ceiling=not r.args.no_bind_ceiling,
    )
    _check_peers(r.ap, cfg.peers, tuple(peer_defs.PEERS))
    stem = f"throughput-{cfg.nodes}nodes" + ("-mixed" if cfg.shapes == "mixed" else "")
    if r.args.profile:
        cfg = dataclasses.replace(cfg, profile=str(r.out / f"{stem}-pyspy.txt"))
    samples = asyncio.run(throughput.run(cfg, r.progress))
    pngs = report.plots(samples, r.out, stem)
    return stem, throughput.to_json(cfg, samples, r.env), report.markdown, pngs


def _gangs(r: _Run) -> Outcome:
    cfg = gangs.Config(
        controller_manager=r.common["controller_manager"],
        sizes=tuple(int(s) for s in (r.args.sizes or "8,50").split(",")),
        gangs_per_size=r.args.gangs or 10,
        **_given(r.args, nodes="nodes"),
    )
    samples = asyncio.run(gangs.run(cfg, r.progress))
    pngs = [report.gang_plot(samples, r.out / "gangs.png")]
    return "gangs", gangs.to_json(cfg, samples, r.env), gangs.markdown, pngs


def _gangs_contended(r: _Run) -> Outcome:
    given = _given(
        r.args, nodes="nodes", gangs="gangs", demand="demand", seed="seed", free_fraction="free"
    )
    if r.args.sizes:
        sizes = [int(s) for s in r.args.sizes.split(",") if s]
        if len(sizes) != 2:
            r.ap.error(f"--sizes: gangs-contended takes the smallest and largest, got {sizes}")
        given["min_size"], given["max_size"] = sizes
    cfg = gangscale.Config(**r.common, **given)
    _check_peers(r.ap, cfg.peers, tuple(gangscale.PEERS))
    samples = asyncio.run(gangscale.run(cfg, r.progress))
    pngs = [
        report.cdf_plot(
            gangscale.cdf_series(samples),
            r.out / "gangs-contended-cdf.png",
            title="Contended gangs: last member created to all bound (all repetitions)",
            xlabel="ms (log scale)",
            ylabel="fraction of the fully bound gangs",
            log=True,
        )
    ]
    result = gangscale.to_json(cfg, samples, r.env)
    return "gangs-contended", result, gangscale.markdown, pngs


def _workloads(r: _Run) -> Outcome:
    given = _given(
        r.args, nodes="nodes", seed="seed", event_wait_seconds="event_wait", pause_seconds="pause"
    )
    if r.args.workloads:
        given["workloads"] = tuple(w for w in r.args.workloads.split(",") if w)
        unknown = [w for w in given["workloads"] if w not in workloads.WORKLOADS]
        if unknown:
            r.ap.error(
                f"unknown workload(s): {', '.join(unknown)}; known: "
                f"{', '.join(workloads.WORKLOADS)}"
            )
    cfg = workloads.Config(**r.common, **given)
    if r.args.profile:
        cfg = dataclasses.replace(cfg, profile_stem=str(r.out / f"workloads-{cfg.nodes}nodes"))
    _check_peers(r.ap, cfg.peers, tuple(workloads.PEERS))

    def checkpoint(done: list[workloads.Workload], samples: list[workloads.Sample]) -> None:
        """The finished test cases' results, written as the run goes (the last write is
        the whole run's)."""
        partial = workloads.to_json(cfg, done, samples, r.env)
        note = (
            f"\n*Partial: {len(done)} of {len(cfg.workloads)} test cases done; "
            "the run goes on, and replaces these files when it ends.*\n"
        )
        _emit(r.out, "workloads", partial, workloads.markdown(partial) + note, [], quiet=True)

    built, samples = asyncio.run(workloads.run(cfg, r.progress, checkpoint))
    for name in cfg.workloads:
        if (path := workloads.profile_path(cfg, name)) and path.exists():
            path.with_suffix(".md").write_text(pyspy.summarise(path))
            print(f"{name}: py-spy summary in {path.with_suffix('.md')}")
    result = workloads.to_json(cfg, built, samples, r.env)
    pngs = [workloads.plot(result, r.out / "workloads.png")]
    return "workloads", result, workloads.markdown, pngs


def _latency(r: _Run) -> Outcome:
    given = _given(r.args, regions="regions")
    if r.args.seeds:
        given["seeds"] = tuple(int(x) for x in r.args.seeds.split(",") if x)
    cfg = latency.Config(**r.common, **given)
    _check_peers(r.ap, cfg.peers, tuple(latency.PEERS))
    seeded, samples = asyncio.run(latency.run(cfg, r.progress))
    result = latency.to_json(cfg, seeded, samples, r.env)
    pngs = latency.plots(result, seeded, samples, r.out)
    return "latency", result, latency.markdown, pngs


def _drift(r: _Run) -> Outcome:
    if r.args.no_controller_manager:
        r.ap.error("drift: its pods are ReplicaSets', which need kube-controller-manager")
    given = _given(r.args, regions="regions", routes="routes", grace_seconds="grace")
    if r.args.seeds:
        given["seeds"] = tuple(int(x) for x in r.args.seeds.split(",") if x)
    cfg = drift.Config(**given)
    samples = asyncio.run(drift.run(cfg, r.progress))
    result = drift.to_json(cfg, samples, r.env)
    return "drift", result, drift.markdown, [drift.plot(result, r.out)]


def _memory(r: _Run) -> Outcome:
    cfg = memory.Config(**r.common, **_given(r.args, nodes="nodes", pods="pods", tail="tail"))
    _check_peers(r.ap, cfg.peers, tuple(peer_defs.PEERS))
    orders = [throughput.rotation(cfg.peers, rep) for rep in range(cfg.repeat)]
    if r.args.profile:
        cfg = dataclasses.replace(cfg, profile=str(r.out / "memory-pyspy.txt"))
    samples = asyncio.run(memory.run(cfg, r.progress))
    peaks = {
        peer_defs.LABELS.get(p, p): v["peak_rss_mb"]["median"]
        for p, v in memory.summarise(samples).items()
    }
    pngs = [
        report.bar_plot(
            peaks,
            r.out / "memory-peak-rss.png",
            title=f"Peak RSS at {cfg.nodes} nodes and {cfg.pods} pods",
            ylabel="MB",
        )
    ]
    baseline = residency.import_baseline() if "lasched" in cfg.peers else None
    result = memory.to_json(cfg, samples, r.env, baseline)
    result["orders"] = orders
    result["ratios"] = _memory_ratios(samples)

    def table(res: dict[str, Any]) -> str:
        lines = ["", "Ratios taken within each repetition; median (min to max):", ""]
        for peer, st in res["ratios"].items():
            rng = "" if st["min"] == st["max"] else f" ({st['min']:.2f}x to {st['max']:.2f}x)"
            lines.append(
                f"- lasched peak RSS / {report.label(peer)}: **{st['median']:.2f}x**{rng}, "
                f"{st['n']:.0f} repetition(s)"
            )
        lines += report.order_lines(orders)
        return memory.markdown(res) + "\n".join(lines if res["ratios"] else lines[3:]) + "\n"

    return "memory", result, table, pngs


def _memory_ratios(samples: list[memory.Sample]) -> dict[str, dict[str, float]]:
    """Per other peer: lasched's peak RSS over the peer's, in each repetition."""
    mine = {s.repeat: s for s in samples if s.peer == "lasched"}
    out = {}
    for peer in dict.fromkeys(s.peer for s in samples if s.peer != "lasched"):
        theirs = {s.repeat: s for s in samples if s.peer == peer}
        vals = [mine[k].peak_rss_mb / theirs[k].peak_rss_mb for k in mine.keys() & theirs.keys()]
        if vals:
            out[peer] = throughput.stat(vals)
    return out


def _preemption(r: _Run) -> Outcome:
    cfg = preemption.Config(
        **r.common, **_given(r.args, nodes="nodes", preemptors="preemptors", rate="rate")
    )
    _check_peers(r.ap, cfg.peers, tuple(peer_defs.PEERS))
    samples = asyncio.run(preemption.run(cfg, r.progress))
    pooled: dict[str, list[float]] = {}
    for s in samples:
        pooled.setdefault(peer_defs.LABELS.get(s.peer, s.peer), []).extend(s.latencies_ms)
    pngs = [
        report.cdf_plot(
            pooled,
            r.out / "preemption-cdf.png",
            title="Preemptors: creation to bound (all repetitions)",
            xlabel="ms (log scale)",
            log=True,
        )
    ]
    return "preemption", preemption.to_json(cfg, samples, r.env), preemption.markdown, pngs


def _chaos(r: _Run) -> Outcome:
    cfg = chaos.Config(
        **{k: v for k, v in r.common.items() if k != "repeat"},
        **_given(r.args, nodes="nodes", pods="pods", rounds="rounds", down_seconds="down_seconds"),
    )
    _check_peers(r.ap, cfg.peers, tuple(peer_defs.PEERS))
    samples = asyncio.run(chaos.run(cfg, r.progress))
    recoveries = {
        peer_defs.LABELS.get(k, k): v["recovery_s"]["median"]
        for k, v in chaos.summarise(samples).items()
        if v["recovery_s"]
    }
    pngs = [
        report.bar_plot(
            recoveries,
            r.out / "chaos-recovery.png",
            title="After an apiserver restart: until every pod is bound (median)",
            ylabel="s",
        )
    ]
    return "chaos", chaos.to_json(cfg, samples, r.env), chaos.markdown, pngs


def _oracle(r: _Run) -> Outcome:
    cfg = oracle.Config(
        controller_manager=r.common["controller_manager"],
        **_given(r.args, cases="cases", seed="seed"),
    )
    tally = asyncio.run(oracle.run(cfg, r.progress))
    return "oracle", oracle.to_json(cfg, tally, r.env), oracle.markdown, []


def _numa(r: _Run) -> Outcome:
    cfg = numa.Config(**r.common, **_given(r.args, nodes="nodes", seed="seed"))
    _check_peers(r.ap, cfg.peers, numa.PEERS)
    samples = asyncio.run(numa.run(cfg, r.progress))
    result = numa.to_json(cfg, samples, r.env)
    shares = {
        numa.LABELS.get(peer, peer): s["zone_share_percent"]["median"]
        for peer, s in result["summary"].items()
        if peer != numa.PLAIN
    }
    cpu = {
        numa.LABELS.get(peer, peer): s["cpu_seconds"]["median"]
        for peer, s in result["summary"].items()
    }
    pngs = [
        report.bar_plot(
            shares,
            r.out / "numa-zone-share.png",
            title="NUMA pods bound where one zone fits (median)",
            ylabel="%",
        ),
        report.bar_plot(
            cpu,
            r.out / "numa-cpu.png",
            title="Scheduler CPU seconds for the workload (median)",
            ylabel="CPU s",
        ),
    ]
    return "numa", result, numa.markdown, pngs


def _check_peers(
    ap: argparse.ArgumentParser, chosen: tuple[str, ...], known: tuple[str, ...]
) -> None:
    unknown = [p for p in chosen if p not in known]
    if unknown:
        ap.error(f"unknown peer(s): {', '.join(unknown)}; this scenario knows {', '.join(known)}")


def _emit(
    out: Path,
    stem: str,
    result: dict[str, Any],
    table: str,
    pngs: list[Path],
    *,
    quiet: bool = False,
) -> None:
    """Write <stem>.json and <stem>.md beside the plots, and print the table (unless
    ``quiet``: a checkpoint mid-run, under the progress display)."""
    (out / f"{stem}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    (out / f"{stem}.md").write_text(table)
    if quiet:
        return
    print(table)  # plain: a Markdown table must not be re-wrapped to the terminal
    for p in pngs:
        print(f"plot: {p}")


if __name__ == "__main__":
    sys.exit(main())
