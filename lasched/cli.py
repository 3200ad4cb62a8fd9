"""Command line: ``lasched run``, ``demo``, ``explain``, ``latency``, ``dev up|down|build``."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import logging
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from lasched import logs
from lasched.settings import ConfigError, Settings

log = logging.getLogger("lasched")


# Where ``lasched explain`` and ``lasched latency`` ask by default: the scheduler's port.
DEFAULT_URL = "http://127.0.0.1:10271"

DEV_MISSING = (
    "needs lasched-dev, lasched's developer tools (pip install ./dev from the "
    "source tree; `make setup` installs it)"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lasched", description="A latency-aware Kubernetes scheduler.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the scheduler against a cluster")
    run.add_argument(
        "--config",
        help="YAML configuration file: lasched's own or a KubeSchedulerConfiguration "
        "(defaults apply without one)",
    )
    run.add_argument(
        "--kubeconfig", help="kubeconfig path (default: in-cluster, then ~/.kube/config)"
    )
    run.add_argument(
        "--port", type=int, help="HTTP port for /metrics and /healthz (overrides config)"
    )
    run.add_argument("--log-format", choices=("text", "json"))
    run.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))

    demo = sub.add_parser(
        "demo", help="an edge cluster with live RTTs, a latency-aware placement story, a picture"
    )
    demo.add_argument(
        "--output", default="lasched-demo", help="where pictures and logs go (./lasched-demo)"
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep everything running afterwards, until Ctrl-C"
    )

    _explain_parsers(sub)

    dev = sub.add_parser(
        "dev", help="the local control plane (etcd, kube-apiserver, kube-controller-manager, kwok)"
    )
    dev_sub = dev.add_subparsers(dest="dev_command", required=True)
    up = dev_sub.add_parser("up", help="start a local cluster in the background")
    up.add_argument("--nodes", type=int, default=10, help="kwok nodes to create (default 10)")
    up.add_argument("--cpu", default="8", help="CPU per node (default 8)")
    up.add_argument("--memory", default="32Gi", help="memory per node (default 32Gi)")
    up.add_argument("--name", default="default", help="cluster name (default 'default')")
    up.add_argument(
        "--no-controller-manager",
        action="store_true",
        help="leave kube-controller-manager out: no workload controllers (saves its CPU)",
    )
    down = dev_sub.add_parser("down", help="stop a cluster started with 'dev up'")
    down.add_argument("--name", default="default")
    dev_sub.add_parser("build", help="build (or find) the control-plane binaries")
    return p


def _explain_parsers(sub: Any) -> None:
    """``explain`` and ``latency``, which :mod:`lasched.cli_explain` runs. Declared here,
    not there: that module loads rich and urllib.request, which ``lasched run`` never
    needs, and the parser is built for every command."""
    url_help = f"the scheduler's HTTP address (env LASCHED_URL; default {DEFAULT_URL})"
    token_help = "a file with a bearer token, for a scheduler on another host"
    ex = sub.add_parser("explain", help="why a pod is pending, or how its node scores now")
    ex.add_argument("pod", metavar="NAMESPACE/POD")
    lat = sub.add_parser("latency", help="the RTT matrix lasched holds, with freshness")
    for cmd in (ex, lat):
        cmd.add_argument("--url", default=os.environ.get("LASCHED_URL", DEFAULT_URL), help=url_help)
        cmd.add_argument("--token-file", help=token_help)
        cmd.add_argument("--json", action="store_true", help="print the scheduler's JSON answer")
    lat.add_argument("--pairs", action="store_true", help="one row per pair instead of a matrix")
    lat.add_argument("--png", metavar="FILE", help="also draw the matrix as a heatmap PNG")
    lat.add_argument(
        "--export",
        metavar="FILE",
        help="write the fresh pairs in latency.staticFile's format (.json or .csv)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command in ("explain", "latency"):
            from lasched import cli_explain

            return cli_explain.main(args)
        logs.setup(level="INFO")
        if args.command == "demo":
            from lasched_dev.demo import run_demo

            return _loop(run_demo(output=Path(args.output), keep=args.keep))
        return _dev(args)
    except ModuleNotFoundError as e:
        if e.name is None or not e.name.startswith("lasched_dev"):
            raise
        print(f"lasched {args.command}: {DEV_MISSING}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"lasched: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _loop(coro: Coroutine[Any, Any, int | None]) -> int:
    import uvloop

    return uvloop.run(coro) or 0


def _leave_out_unused_imports() -> None:
    """Keep modules the scheduler never uses out of its process, before aiohttp loads.

    The scheduler resolves the apiserver's name with the system resolver
    (kube.client.system_resolver), yet aiohttp imports c-ares whenever aiodns is
    installed (aioping needs it, for the agent): about 1 MB of the scheduler's RSS.
    Only in a process of the scheduler's own: where aiohttp is loaded already (a
    test run), aioping may still need it.
    """
    if "aiohttp" not in sys.modules:
        sys.modules.setdefault("aiodns", None)  # type: ignore[arg-type]


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    _leave_out_unused_imports()
    from lasched import app

    cfg, ignored = _load_config(args.config)
    if args.kubeconfig:
        cfg = dataclasses.replace(cfg, kubeconfig=args.kubeconfig)
    if args.port is not None:
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, port=args.port))
    if args.log_format:
        cfg = dataclasses.replace(cfg, log_format=args.log_format)
    if args.log_level:
        cfg = dataclasses.replace(cfg, log_level=args.log_level)
    logs.setup(level=cfg.log_level, fmt=cfg.log_format)
    for field in ignored:
        log.warning("configuration: %s", field)
    # The modules just imported live as long as the process: frozen, they are
    # out of the cyclic collector's full passes (docs/architecture.md).
    gc.freeze()
    # A crash below Python (a C extension's fault) then still leaves a traceback in the log.
    faulthandler.enable()
    return _loop(app.run(cfg, own_process=True))


def _load_config(path: str | None) -> tuple[Settings, tuple[str, ...]]:
    """The settings in ``path`` and the fields they ignore: lasched's own file, or a
    KubeSchedulerConfiguration (told apart by its apiVersion and kind)."""
    from lasched import kubeschedconfig, settings

    if path is None:
        return settings.Settings(), ()
    data = settings.read(path)
    if kubeschedconfig.is_kube_scheduler_configuration(data):
        translated = kubeschedconfig.translate(data)
        return translated.settings, translated.warnings
    return settings.parse(data), ()


def _dev(args: argparse.Namespace) -> int:
    from lasched_dev.devcluster import binaries
    from lasched_dev.devcluster.cluster import default_workdir, stop_detached
    from lasched_dev.devcluster.progress import reporter

    if args.dev_command == "build":
        with reporter() as progress:
            paths = asyncio.run(binaries.ensure(progress=progress))
        for name, path in paths.items():
            print(f"{name}: {path}")
        return 0
    if args.dev_command == "down":
        workdir = default_workdir(args.name)
        if stop_detached(workdir):
            print(f"stopped cluster {args.name!r}")
        else:
            print(f"no cluster {args.name!r} is running")
        return 0
    return asyncio.run(_dev_up(args, default_workdir(args.name)))


async def _dev_up(args: argparse.Namespace, workdir: Path) -> int:
    from lasched_dev.devcluster import nodes
    from lasched_dev.devcluster.cluster import DevCluster, stop_detached
    from lasched_dev.devcluster.progress import reporter

    stop_detached(workdir)  # a stale cluster of the same name
    with reporter() as progress:
        cluster = DevCluster(
            workdir=workdir,
            detached=True,
            controller_manager=not args.no_controller_manager,
            progress=progress,
        )
        await cluster.start()
        specs = nodes.uniform(args.nodes, cpu=args.cpu, memory=args.memory)
        async with await cluster.client() as kc:
            await nodes.create_nodes(
                kc, specs, progress=lambda d, t: progress("creating kwok nodes", d, t)
            )
            await nodes.wait_ready(kc, [s.name for s in specs])
    kcm = "without" if args.no_controller_manager else "with"
    print(
        f"cluster {args.name!r} is up with {args.nodes} kwok nodes, {kcm} kube-controller-manager"
    )
    print(f"  kubeconfig: {cluster.kubeconfig}")
    print(f"  try:        kubectl --kubeconfig {cluster.kubeconfig} get nodes")
    print(f"  schedule:   lasched run --kubeconfig {cluster.kubeconfig}")
    print(f"  stop:       lasched dev down --name {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
