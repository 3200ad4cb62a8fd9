"""``lasched-agent`` / ``python -m lasched_agent``: flags -> config -> the agent on uvloop.

With ``--fan-out`` the agent streams to every scheduler replica
(:class:`~lasched_agent.fanout.FanOut`), else over one connection to the URL
(:class:`~lasched_agent.stream.AgentClient`).

SIGTERM and SIGINT stop the agent gracefully: every WebSocket is closed with
1001 (going away) and outstanding probes are cancelled. Exit status: 0 after
a stop, 2 for a bad flag, 1 when ICMP was required but is not allowed, or
when the agent failed (a bug, logged with its traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from lasched_agent import __version__, config, logs, methods
from lasched_agent.fanout import FanOut
from lasched_agent.numa import TopologyWatch
from lasched_agent.prober import Prober
from lasched_agent.stream import AgentClient
from lasched_protocol import Method

log = logging.getLogger("lasched_agent")


async def run(cfg: config.AgentConfig, *, stop: asyncio.Event | None = None) -> None:
    """Run the agent until ``stop`` is set or SIGTERM/SIGINT arrives.

    Raises :class:`~lasched_agent.methods.NoIcmpError` if ``cfg.method`` is
    ``icmp`` and ICMP is not allowed; any other exception is a bug.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await _run(cfg, stop)
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _run(cfg: config.AgentConfig, stop: asyncio.Event) -> None:
    if cfg.simulate_rtt_file is not None:
        from lasched_agent import simulate

        name: Method = "tcp" if cfg.method == "tcp" else "icmp"
        method = simulate.method(cfg.simulate_rtt_file, cfg.node, name=name)
    else:
        method = await methods.choose(cfg.method, tcp_port=cfg.tcp_port, timeout=cfg.probe_timeout)
    prober = Prober(
        method,
        probes_per_target=cfg.probes_per_target,
        max_targets_per_round=cfg.max_targets_per_round,
        max_in_flight=cfg.max_in_flight,
    )
    topology = None
    if cfg.report_topology:
        topology = TopologyWatch(
            cfg.sysfs,
            policy=cfg.topology_policy,
            scope=cfg.topology_scope,
            interval=cfg.topology_seconds,
        )
    client: AgentClient | FanOut
    if cfg.fan_out:
        client = FanOut(
            url=cfg.scheduler_url,
            node=cfg.node,
            prober=prober,
            token_file=cfg.token_file,
            heartbeat_seconds=cfg.heartbeat_seconds,
            buffer_limit=cfg.buffer_limit,
            resolve_seconds=cfg.resolve_seconds,
            topology=topology,
        )
    else:
        client = AgentClient(
            url=cfg.scheduler_url,
            node=cfg.node,
            prober=prober,
            token_file=cfg.token_file,
            heartbeat_seconds=cfg.heartbeat_seconds,
            buffer_limit=cfg.buffer_limit,
            topology=topology,
        )
    log.info(
        "lasched-agent %s starting node=%s scheduler=%s method=%s fan_out=%s "
        "report_topology=%s",
        __version__, cfg.node, cfg.scheduler_url, method.name, str(cfg.fan_out).lower(),
        str(cfg.report_topology).lower(),
    )  # fmt: skip
    agent = asyncio.create_task(client.run(), name="agent")
    stopper = asyncio.create_task(stop.wait(), name="stop-signal")
    try:
        done, _ = await asyncio.wait({agent, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if agent in done:
            agent.result()  # the agent never ends on its own: surface why it did
            return
        log.info("stopping")
    finally:
        stopper.cancel()
        agent.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await agent
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        cfg = config.parse(argv)
    except config.ConfigError as e:
        print(f"lasched-agent: {e}", file=sys.stderr)
        return 2
    logs.setup(level=cfg.log_level, fmt=cfg.log_format)
    try:
        _run_loop(run(cfg))
    except config.ConfigError as e:  # a --simulate-rtt-file that cannot be used
        print(f"lasched-agent: {e}", file=sys.stderr)
        return 2
    except methods.NoIcmpError as e:
        log.error("%s", e)
        return 1
    except Exception:
        log.exception("lasched-agent failed")
        return 1
    return 0


def _run_loop(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(main())
