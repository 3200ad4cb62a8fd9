"""Agent flags and environment: defaults, precedence, and errors that name the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from lasched_agent.__main__ import main
from lasched_agent.config import AgentConfig, ConfigError, parse

URL = "ws://lasched.kube-system:10259/agents/v1"
ENV = {"LASCHED_SCHEDULER_URL": URL, "NODE_NAME": "edge-1"}


def test_defaults_from_environment() -> None:
    """With only the two variables set, every other setting has its documented default."""
    assert parse([], ENV) == AgentConfig(
        scheduler_url=URL,
        node="edge-1",
        token_file=Path("/var/run/secrets/lasched/token"),
        method="auto",
        tcp_port=10250,
        max_targets_per_round=32,
        probes_per_target=5,
        probe_timeout=1.0,
        max_in_flight=8,
        heartbeat_seconds=10.0,
        buffer_limit=4096,
        log_format="text",
        log_level="INFO",
    )


def test_flags_override_environment() -> None:
    """--scheduler and --node win over LASCHED_SCHEDULER_URL and NODE_NAME."""
    cfg = parse(
        ["--scheduler", "wss://other:443/agents/v1", "--node", "edge-9", "--method", "tcp",
         "--tcp-port", "22", "--max-targets-per-round", "8", "--heartbeat-seconds", "2.5",
         "--token-file", "", "--log-format", "json"],
        ENV,
    )  # fmt: skip
    assert (cfg.scheduler_url, cfg.node) == ("wss://other:443/agents/v1", "edge-9")
    assert cfg.method == "tcp"
    assert (cfg.tcp_port, cfg.max_targets_per_round, cfg.heartbeat_seconds) == (22, 8, 2.5)
    assert cfg.token_file is None
    assert cfg.log_format == "json"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        pytest.param([], {"NODE_NAME": "a"},
                     r"--scheduler \(env LASCHED_SCHEDULER_URL\) is required", id="no-scheduler"),
        pytest.param([], {"LASCHED_SCHEDULER_URL": URL}, r"--node \(env NODE_NAME\) is required",
                     id="no-node"),
        pytest.param(["--scheduler", "http://x/agents/v1"], ENV, r"--scheduler .* ws:// or wss://",
                     id="http-url"),
        pytest.param(["--tcp-port", "0"], ENV, r"--tcp-port must be an integer within 1\.\.65535",
                     id="port-zero"),
        pytest.param(["--tcp-port", "ssh"], ENV, r"--tcp-port .* not 'ssh'", id="port-name"),
        pytest.param(["--max-targets-per-round", "0"], ENV, "--max-targets-per-round", id="cap"),
        pytest.param(["--probes-per-target", "-1"], ENV, "--probes-per-target", id="probes"),
        pytest.param(["--max-in-flight", "x"], ENV, "--max-in-flight", id="in-flight"),
        pytest.param(["--buffer-limit", "0"], ENV, "--buffer-limit", id="buffer"),
        pytest.param(["--probe-timeout", "0"], ENV, "--probe-timeout must be a positive",
                     id="timeout"),
        pytest.param(["--heartbeat-seconds", "nan"], ENV, "--heartbeat-seconds", id="nan"),
        pytest.param(["--method", "udp"], ENV, "--method: invalid choice", id="method"),
        pytest.param(["--log-level", "LOUD"], ENV, "--log-level: invalid choice", id="log-level"),
        pytest.param(["--bogus"], ENV, "unrecognized arguments: --bogus", id="unknown-flag"),
    ],
)  # fmt: skip
def test_errors_name_the_flag(argv: list[str], env: dict[str, str], message: str) -> None:
    """Every bad or missing value raises ConfigError naming the flag (and its variable)."""
    with pytest.raises(ConfigError, match=message):
        parse(argv, env)


def test_main_exits_2_on_a_bad_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """The command prints the error and exits 2 instead of raising."""
    assert main(["--node", "a", "--scheduler", URL, "--tcp-port", "0"]) == 2
    assert "lasched-agent: --tcp-port must be" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "fan_out"),
    [
        pytest.param([], {}, False, id="default-off"),
        pytest.param([], {"LASCHED_FAN_OUT": "true"}, True, id="env-true"),
        pytest.param([], {"LASCHED_FAN_OUT": "False"}, False, id="env-false"),
        pytest.param(["--fan-out"], {}, True, id="flag"),
        pytest.param(["--no-fan-out"], {"LASCHED_FAN_OUT": "true"}, False, id="flag-wins"),
    ],
)  # fmt: skip
def test_fan_out_from_flag_or_environment(
    argv: list[str], env: dict[str, str], fan_out: bool
) -> None:
    """--fan-out / --no-fan-out win over LASCHED_FAN_OUT; without either it is off."""
    cfg = parse(argv, {**ENV, **env})
    assert cfg.fan_out is fan_out
    assert cfg.resolve_seconds == 15.0


def test_resolve_seconds_and_bad_fan_out_values() -> None:
    """--resolve-seconds takes positive seconds; LASCHED_FAN_OUT only true or false."""
    assert parse(["--resolve-seconds", "2.5"], ENV).resolve_seconds == 2.5
    with pytest.raises(ConfigError, match="--resolve-seconds must be a positive"):
        parse(["--resolve-seconds", "0"], ENV)
    with pytest.raises(ConfigError, match=r"LASCHED_FAN_OUT \(flag --fan-out\) .* not 'maybe'"):
        parse([], {**ENV, "LASCHED_FAN_OUT": "maybe"})
