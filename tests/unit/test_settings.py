"""Configuration errors name the field; defaults are documented values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lasched import settings
from lasched.framework.registry import PluginsConfig
from lasched.settings import ConfigError


def test_defaults() -> None:
    """Without a file: one profile 'lasched', backoff 1 s to 10 s."""
    s = settings.load(None)
    assert s.scheduler_names == ("lasched",)
    assert (s.queue.initial_backoff_seconds, s.queue.max_backoff_seconds) == (1.0, 10.0)


def test_several_profiles(tmp_path: Path) -> None:
    """Profiles let one process serve pods written for other schedulers."""
    f = tmp_path / "c.yaml"
    f.write_text(
        "profiles:\n"
        "  - schedulerName: lasched\n"
        "  - schedulerName: custom-scheduler\n"
        "    scoringStrategy: MostAllocated\n"
    )
    s = settings.load(f)
    assert s.scheduler_names == ("lasched", "custom-scheduler")
    assert s.profiles[1].scoring_strategy == "MostAllocated"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"queue": {"initialBackoffSeconds": -1}}, "queue.initialBackoffSeconds must be positive"),
        ({"queue": {"initialBackoffSeconds": 5, "maxBackoffSeconds": 2}}, "maxBackoffSeconds (2"),
        ({"bindConcurrency": 0}, "bindConcurrency must be an integer >= 1"),
        ({"profiles": [{"scoringStrategy": "Spread"}]}, "profiles[0].scoringStrategy must be"),
        ({"profiles": [{}, {}]}, "profiles[1].schedulerName 'lasched' is used by an earlier"),
        ({"server": {"port": 70000}}, "server.port must be an integer from 0 to 65535"),
        ({"queue": {"initialBackof": 1}}, "unknown field queue.initialBackof"),
        ({"profiles": "lasched"}, "profiles must be a non-empty list"),
        ({"logFormat": "xml"}, "logFormat must be one of text, json"),
    ],
    ids=[
        "negative", "max-below-initial", "zero-binders", "bad-strategy", "duplicate-profile",
        "port-range", "typo", "profiles-not-list", "log-format",
    ],
)  # fmt: skip
def test_errors_name_the_field(data: dict[str, Any], message: str) -> None:
    """Every invalid value is reported with its YAML path."""
    with pytest.raises(ConfigError) as err:
        settings.parse(data)
    assert message in str(err.value)


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    """A file that is not YAML is reported with its path."""
    f = tmp_path / "bad.yaml"
    f.write_text("profiles: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml is not valid YAML"):
        settings.load(f)


def test_score_weights_override_defaults() -> None:
    """scoreWeights changes named weights and keeps the others at kube-scheduler's."""
    s = settings.parse({"profiles": [{"scoreWeights": {"NodeAffinity": 5, "TaintToleration": 0}}]})
    w = s.profiles[0].score_weights
    assert (w["NodeAffinity"], w["TaintToleration"], w["NodeResourcesFit"]) == (5, 0, 1)


def test_unknown_score_plugin_is_named() -> None:
    """A weight for a plugin that does not score is an error naming it."""
    with pytest.raises(ConfigError, match=r"profiles\[0\]\.scoreWeights\.Latency is not a score"):
        settings.parse({"profiles": [{"scoreWeights": {"Latency": 1}}]})


def test_preemption_can_be_turned_off() -> None:
    """preemption.enabled: false is read; a non-boolean names the field."""
    assert settings.parse({}).preemption_enabled is True
    assert settings.parse({"preemption": {"enabled": False}}).preemption_enabled is False
    with pytest.raises(settings.ConfigError, match=r"preemption\.enabled must be true or false"):
        settings.parse({"preemption": {"enabled": "no"}})


def test_connection_limits_and_token_reviews_are_read() -> None:
    """server.* limits and latency.tokenReview.* reach their dataclasses."""
    s = settings.parse(
        {
            "server": {
                "maxConnections": 512,
                "maxConnectionsPerSource": 8,
                "headerTimeoutSeconds": 2.5,
                "idleTimeoutSeconds": 30,
            },
            "latency": {"tokenReview": {"cacheSeconds": 60, "missesPerSecond": 5, "missBurst": 9}},
        }
    )
    assert (s.server.max_connections, s.server.max_connections_per_source) == (512, 8)
    assert (s.server.header_timeout_seconds, s.server.idle_timeout_seconds) == (2.5, 30.0)
    tr = s.latency.token_review
    assert (tr.cache_seconds, tr.misses_per_second, tr.miss_burst) == (60.0, 5.0, 9)
    assert tr.negative_cache_seconds == 10.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"server": {"maxConnections": 0}}, "server.maxConnections must be an integer >= 1"),
        ({"server": {"headerTimeoutSeconds": 0}}, "server.headerTimeoutSeconds must be positive"),
        (
            {"server": {"maxConnections": 10, "maxConnectionsPerSource": 20}},
            "server.maxConnectionsPerSource (20) must not exceed server.maxConnections (10)",
        ),
        (
            {"latency": {"tokenReview": {"missesPerSecond": 0}}},
            "latency.tokenReview.missesPerSecond must be positive",
        ),
        (
            {"latency": {"tokenReview": {"cacheSecs": 1}}},
            "unknown field latency.tokenReview.cacheSecs",
        ),
    ],
    ids=["no-connections", "zero-header-timeout", "per-source-over-total", "zero-rate", "typo"],
)
def test_limit_errors_name_the_field(data: dict[str, Any], message: str) -> None:
    """Invalid limits are reported with their YAML path."""
    with pytest.raises(ConfigError) as err:
        settings.parse(data)
    assert message in str(err.value)


def test_report_interval_is_at_most_what_agents_accept() -> None:
    """latency.reportIntervalSeconds above a day is refused, naming the field."""
    with pytest.raises(ConfigError, match=r"latency.reportIntervalSeconds must be at most 86400"):
        settings.parse({"latency": {"reportIntervalSeconds": 100_000}})


@pytest.mark.parametrize("value", [float("inf"), float("nan")], ids=["inf", "nan"])
def test_numbers_must_be_finite(value: float) -> None:
    """A YAML .inf or .nan for a number is a configuration error naming the field."""
    with pytest.raises(ConfigError, match=r"queue.initialBackoffSeconds must be a finite number"):
        settings.parse({"queue": {"initialBackoffSeconds": value}})


def test_a_lasched_profile_keeps_the_default_plugins() -> None:
    """lasched's own file names no plugin lists: the defaults, cpu and memory weighed alike."""
    p = settings.parse({"profiles": [{"schedulerName": "a"}]}).profiles[0]
    assert p.plugins == PluginsConfig()
    assert p.resource_weights == {"cpu": 1, "memory": 1}
    assert (p.plugin_args, p.percentage_of_nodes_to_score) == ({}, None)


def test_read_decodes_the_file(tmp_path: Path) -> None:
    """``read`` gives the decoded YAML of either configuration format."""
    f = tmp_path / "c.yaml"
    f.write_text("kind: KubeSchedulerConfiguration\n")
    assert settings.read(f) == {"kind": "KubeSchedulerConfiguration"}
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        settings.read(tmp_path / "missing.yaml")


def test_remediation_is_off_by_default_and_reads_every_field() -> None:
    """remediation: off unless enabled; each documented field reaches the settings."""
    assert settings.parse({}).remediation == settings.RemediationSettings()
    assert not settings.RemediationSettings().enabled
    r = settings.parse(
        {
            "remediation": {
                "enabled": True,
                "dryRun": True,
                "intervalSeconds": 1,
                "gracePeriodSeconds": 2,
                "nodeNotReadySeconds": 30,
                "cooldownSeconds": 0,
                "windowSeconds": 120,
                "maxPerNode": 1,
                "maxPerNamespace": 3,
                "maxTotal": 4,
                "excludedNamespaces": ["kube-system", "monitoring"],
                "evictLocalStoragePods": True,
            }
        }
    ).remediation
    assert r == settings.RemediationSettings(
        enabled=True, dry_run=True, interval_seconds=1, grace_period_seconds=2,
        node_not_ready_seconds=30, cooldown_seconds=0, window_seconds=120, max_per_node=1,
        max_per_namespace=3, max_total=4, excluded_namespaces=("kube-system", "monitoring"),
        evict_local_storage_pods=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ({"enabled": "yes"}, r"remediation\.enabled must be true or false"),
        ({"gracePeriodSeconds": -1}, r"remediation\.gracePeriodSeconds must be >= 0"),
        ({"intervalSeconds": 0}, r"remediation\.intervalSeconds must be positive"),
        ({"maxPerNode": 0}, r"remediation\.maxPerNode must be an integer >= 1"),
        ({"excludedNamespaces": "kube-system"}, r"remediation\.excludedNamespaces must be a list"),
        ({"maxEvictions": 3}, r"unknown field remediation\.maxEvictions"),
    ],
    ids=["enabled", "grace", "interval", "per-node", "excluded", "unknown"],
)
def test_remediation_errors_name_the_field(block: dict[str, Any], error: str) -> None:
    """A bad remediation value names its YAML path."""
    with pytest.raises(ConfigError, match=error):
        settings.parse({"remediation": block})
