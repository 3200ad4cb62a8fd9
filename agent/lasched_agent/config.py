"""Command line and environment -> :class:`AgentConfig`, with errors that name the flag.

Flags win over environment variables; only the scheduler URL, the node
name, fan-out and topology reporting come from the environment
(``LASCHED_SCHEDULER_URL``, ``NODE_NAME``, ``LASCHED_FAN_OUT``,
``LASCHED_REPORT_TOPOLOGY``), since a DaemonSet sets them there (the node
name through the downward API).
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NoReturn, cast
from urllib.parse import urlsplit

from lasched_agent import __version__
from lasched_agent.numa import DEFAULT_SYSFS
from lasched_protocol import TopologyPolicy, TopologyScope

MethodChoice = Literal["auto", "icmp", "tcp"]
LogFormat = Literal["text", "json"]

DEFAULT_TOKEN_FILE = Path("/var/run/secrets/lasched/token")
DEFAULT_TCP_PORT = 10250
"""The kubelet's port: listening on every node, so a node target always answers."""


class ConfigError(ValueError):
    """A flag or environment variable with a bad or missing value; the message names it."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    scheduler_url: str
    node: str
    token_file: Path | None  # None: send no Authorization header
    method: MethodChoice = "auto"
    tcp_port: int = DEFAULT_TCP_PORT
    max_targets_per_round: int = 32
    probes_per_target: int = 5
    probe_timeout: float = 1.0
    max_in_flight: int = 8
    heartbeat_seconds: float = 10.0
    buffer_limit: int = 4096
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    simulate_rtt_file: Path | None = None  # answer probes from this file (demos, tests)
    fan_out: bool = False  # stream to every replica the URL's host resolves to
    resolve_seconds: float = 15.0  # how often fan-out looks the replicas up
    report_topology: bool = False  # report this node's NUMA zones (opt-in)
    sysfs: Path = DEFAULT_SYSFS
    topology_policy: TopologyPolicy = "none"  # the kubelet's, as the operator knows it
    topology_scope: TopologyScope = "container"
    topology_seconds: float = 60.0  # how often sysfs is read again


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _parser() -> _Parser:
    d = AgentConfig(scheduler_url="", node="", token_file=None)
    p = _Parser(
        prog="lasched-agent",
        description="Measure RTTs from this node to the targets lasched sends, "
        "and stream them to lasched.",
    )
    p.add_argument("--version", action="version", version=f"lasched-agent {__version__}")
    p.add_argument(
        "--scheduler",
        metavar="URL",
        help="the scheduler's agent endpoint, ws://host:port/agents/v1 "
        "(env LASCHED_SCHEDULER_URL; required)",
    )
    p.add_argument("--node", help="this node's name (env NODE_NAME; required)")
    p.add_argument(
        "--token-file",
        default=str(DEFAULT_TOKEN_FILE),
        help="projected ServiceAccount token, re-read on every connection; "
        f"'' sends none (default {DEFAULT_TOKEN_FILE})",
    )
    p.add_argument(
        "--method",
        default=d.method,
        choices=("auto", "icmp", "tcp"),
        help="probe with ICMP echo, TCP connect, or ICMP when allowed else TCP (default auto)",
    )
    p.add_argument(
        "--tcp-port",
        default=str(d.tcp_port),
        metavar="PORT",
        help=f"TCP probe port for targets that have none (default {d.tcp_port}, the kubelet's)",
    )
    p.add_argument(
        "--max-targets-per-round",
        default=str(d.max_targets_per_round),
        metavar="N",
        help=f"targets probed per interval, in rotation (default {d.max_targets_per_round})",
    )
    p.add_argument(
        "--probes-per-target",
        default=str(d.probes_per_target),
        metavar="N",
        help=f"probes to each target per interval (default {d.probes_per_target})",
    )
    p.add_argument(
        "--probe-timeout",
        default=str(d.probe_timeout),
        metavar="SECONDS",
        help=f"a probe unanswered this long is lost (default {d.probe_timeout})",
    )
    p.add_argument(
        "--max-in-flight",
        default=str(d.max_in_flight),
        metavar="N",
        help=f"probes outstanding at once (default {d.max_in_flight})",
    )
    p.add_argument(
        "--heartbeat-seconds",
        default=str(d.heartbeat_seconds),
        metavar="SECONDS",
        help=f"heartbeat period while connected (default {d.heartbeat_seconds:g})",
    )
    p.add_argument(
        "--buffer-limit",
        default=str(d.buffer_limit),
        metavar="N",
        help=f"targets whose latest sample is kept while disconnected (default {d.buffer_limit})",
    )
    p.add_argument(
        "--fan-out",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stream to every scheduler replica: the URL's host is resolved to one address "
        "per replica (a headless Service) and each gets its own connection "
        "(env LASCHED_FAN_OUT=true; default off: one connection to the URL)",
    )
    p.add_argument(
        "--resolve-seconds",
        default=str(d.resolve_seconds),
        metavar="SECONDS",
        help="with --fan-out, how often the replicas are looked up again "
        f"(default {d.resolve_seconds:g})",
    )
    p.add_argument(
        "--simulate-rtt-file",
        metavar="PATH",
        help="answer probes from this JSON file ({node: {target: ms}}, lasched's static "
        "RTT format) instead of the network; for demos and tests on fake nodes",
    )
    p.add_argument(
        "--report-topology",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="report this node's NUMA zones (CPUs, memory, GPUs per NUMA node, from sysfs) "
        "to a scheduler that accepts them, for nodes without a NodeResourceTopology "
        "(env LASCHED_REPORT_TOPOLOGY=true; default off)",
    )
    p.add_argument(
        "--sysfs",
        default=str(d.sysfs),
        metavar="PATH",
        help=f"where sysfs is mounted, for --report-topology (default {d.sysfs})",
    )
    p.add_argument(
        "--topology-manager-policy",
        default=d.topology_policy,
        choices=("none", "best-effort", "restricted", "single-numa-node"),
        help="the kubelet's --topology-manager-policy on this node, reported with the zones "
        f"(default {d.topology_policy})",
    )
    p.add_argument(
        "--topology-manager-scope",
        default=d.topology_scope,
        choices=("container", "pod"),
        help=f"the kubelet's --topology-manager-scope (default {d.topology_scope})",
    )
    p.add_argument(
        "--topology-seconds",
        default=str(d.topology_seconds),
        metavar="SECONDS",
        help="how often sysfs is read again; a change is reported at once "
        f"(default {d.topology_seconds:g})",
    )
    p.add_argument("--log-format", default=d.log_format, choices=("text", "json"))
    p.add_argument(
        "--log-level", default=d.log_level, choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    return p


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> AgentConfig:
    """The configuration from ``argv`` and ``env`` (default: this process's).

    Raises :class:`ConfigError` naming the flag (and its variable) at fault.
    """
    env = os.environ if env is None else env
    a = _parser().parse_args(argv)
    url = a.scheduler or env.get("LASCHED_SCHEDULER_URL", "")
    if not url:
        raise ConfigError("--scheduler (env LASCHED_SCHEDULER_URL) is required")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(
            f"--scheduler (env LASCHED_SCHEDULER_URL) must be a ws:// or wss:// URL "
            f"with a host, not {url!r}"
        )
    node = a.node or env.get("NODE_NAME", "")
    if not node:
        raise ConfigError("--node (env NODE_NAME) is required")
    fan_out = a.fan_out
    if fan_out is None:
        fan_out = _env_bool(env, "LASCHED_FAN_OUT", flag="--fan-out")
    report_topology = a.report_topology
    if report_topology is None:
        report_topology = _env_bool(env, "LASCHED_REPORT_TOPOLOGY", flag="--report-topology")
    return AgentConfig(
        scheduler_url=url,
        node=node,
        token_file=Path(a.token_file) if a.token_file else None,
        method=cast(MethodChoice, a.method),
        tcp_port=_int("--tcp-port", a.tcp_port, minimum=1, maximum=65535),
        max_targets_per_round=_int("--max-targets-per-round", a.max_targets_per_round, minimum=1),
        probes_per_target=_int("--probes-per-target", a.probes_per_target, minimum=1),
        probe_timeout=_seconds("--probe-timeout", a.probe_timeout),
        max_in_flight=_int("--max-in-flight", a.max_in_flight, minimum=1),
        heartbeat_seconds=_seconds("--heartbeat-seconds", a.heartbeat_seconds),
        buffer_limit=_int("--buffer-limit", a.buffer_limit, minimum=1),
        log_format=cast(LogFormat, a.log_format),
        log_level=a.log_level,
        simulate_rtt_file=Path(a.simulate_rtt_file) if a.simulate_rtt_file else None,
        fan_out=fan_out,
        resolve_seconds=_seconds("--resolve-seconds", a.resolve_seconds),
        report_topology=report_topology,
        sysfs=Path(a.sysfs),
        topology_policy=cast(TopologyPolicy, a.topology_manager_policy),
        topology_scope=cast(TopologyScope, a.topology_manager_scope),
        topology_seconds=_seconds("--topology-seconds", a.topology_seconds),
    )


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def _env_bool(env: Mapping[str, str], name: str, *, flag: str) -> bool:
    raw = env.get(name, "")
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"{name} (flag {flag}) must be true or false, not {raw!r}")


def _int(flag: str, raw: str, *, minimum: int, maximum: int | None = None) -> int:
    bounds = f"within {minimum}..{maximum}" if maximum is not None else f">= {minimum}"
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{flag} must be an integer {bounds}, not {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise ConfigError(f"{flag} must be an integer {bounds}, not {raw!r}")
    return value


def _seconds(flag: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{flag} must be a positive number of seconds, not {raw!r}")
    return value
