"""``python -m bench run throughput [options]``: run a scenario, write results.

Writes ``bench/results/<scenario>.json``, ``<scenario>.md`` and PNG plots next
to them, and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import orjson

from bench import gangs, report, throughput
from bench import peers as peer_defs
from lasched.devcluster import binaries
from lasched.devcluster.progress import reporter


def _machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return (
        f"{platform.machine()}, {cpus} cores, {mem_kb / 2**20:.0f} GiB, Linux {platform.release()}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario")
    run.add_argument("scenario", choices=["throughput", "gangs"])
    defaults = throughput.Config()
    run.add_argument("--nodes", type=int, default=defaults.nodes)
    run.add_argument("--pods", type=int, default=defaults.pods)
    run.add_argument("--rate", type=float, default=defaults.rate, help="steady arrivals per second")
    run.add_argument("--steady-seconds", type=float, default=defaults.steady_seconds)
    run.add_argument("--repeat", type=int, default=defaults.repeat)
    run.add_argument(
        "--peers",
        default=",".join(defaults.peers),
        help="comma-separated: lasched, kube-scheduler, kube-scheduler-tuned",
    )
    run.add_argument("--no-bind-ceiling", action="store_true")
    run.add_argument("--sizes", default="8,50", help="gangs: comma-separated gang sizes")
    run.add_argument("--gangs", type=int, default=10, help="gangs: gangs per size")
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
    out = throughput.results_dir()
    out.mkdir(parents=True, exist_ok=True)
    if args.scenario == "gangs":
        gcfg = gangs.Config(
            nodes=args.nodes,
            sizes=tuple(int(s) for s in args.sizes.split(",")),
            gangs_per_size=args.gangs,
        )
        with reporter() as progress:
            gsamples = asyncio.run(gangs.run(gcfg, progress))
        gresult = gangs.to_json(gcfg, gsamples, env)
        pngs = [report.gang_plot(gsamples, out / "gangs.png")]
        _emit(out, "gangs", gresult, gangs.markdown(gresult), pngs)
        return 0

    peers = tuple(p for p in args.peers.split(",") if p)
    unknown = [p for p in peers if p not in peer_defs.PEERS]
    if unknown:
        ap.error(f"unknown peer(s): {', '.join(unknown)}")
    cfg = throughput.Config(
        nodes=args.nodes,
        pods=args.pods,
        rate=args.rate,
        steady_seconds=args.steady_seconds,
        repeat=args.repeat,
        peers=peers,
        bind_ceiling=not args.no_bind_ceiling,
    )
    with reporter() as progress:
        samples = asyncio.run(throughput.run(cfg, progress))
    result = throughput.to_json(cfg, samples, env)
    pngs = report.plots(samples, out, "throughput")
    _emit(out, "throughput", result, report.markdown(result), pngs)
    return 0


def _emit(out: Path, stem: str, result: dict[str, Any], table: str, pngs: list[Path]) -> None:
    """Write <stem>.json and <stem>.md beside the plots, and print the table."""
    (out / f"{stem}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    (out / f"{stem}.md").write_text(table)
    print(table)  # plain: a Markdown table must not be re-wrapped to the terminal
    for p in pngs:
        print(f"plot: {p}")


if __name__ == "__main__":
    sys.exit(main())
