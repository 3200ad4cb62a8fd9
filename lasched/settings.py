"""Configuration: one YAML file, validated at start-up, frozen afterwards.

Every field has a documented default (docs/configuration.md); an invalid
value raises :class:`ConfigError` naming the field by its YAML path, e.g.
``queue.initialBackoffSeconds must be a positive number, not -1``. Unknown
fields are errors too, so a typo never silently falls back to a default. A
KubeSchedulerConfiguration is read into these same Settings
(lasched.kubeschedconfig), so they stay the one configuration model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lasched.framework.registry import ExtensionPoint, PluginRef, PluginsConfig, PluginSet

DEFAULT_SCHEDULER_NAME = "lasched"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the field."""


# kube-scheduler's default score weights; latency outweighs resource balance,
# because a pod that asked to be near something should be.
DEFAULT_SCORE_WEIGHTS: Mapping[str, int] = {
    "NodeResourcesFit": 1,
    "NodeResourcesBalancedAllocation": 1,
    "NodeAffinity": 2,
    "TaintToleration": 3,
    "PodTopologySpread": 2,
    "InterPodAffinity": 2,
    "ImageLocality": 1,
    "LatencyScore": 5,
    "NodeResourceTopologyMatch": 1,  # scheduler-plugins' default
}


DEFAULT_RESOURCE_WEIGHTS: Mapping[str, int] = {"cpu": 1, "memory": 1}


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    scheduler_name: str = DEFAULT_SCHEDULER_NAME
    scoring_strategy: str = "LeastAllocated"
    """NodeResourcesFit's: LeastAllocated (spread), MostAllocated (bin-pack) or
    RequestedToCapacityRatio (along ``scoring_shape``; from a KubeSchedulerConfiguration)."""
    scoring_shape: tuple[tuple[int, int], ...] | None = None
    """RequestedToCapacityRatio's (utilization, score) points; None for the other strategies."""
    score_weights: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_SCORE_WEIGHTS))
    """The default score plugins' weights; 0 turns a score off."""
    resource_weights: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_RESOURCE_WEIGHTS)
    )
    """NodeResourcesFit's ``scoringStrategy.resources``, each weighted: cpu and memory
    (RequestedToCapacityRatio: any resource)."""
    plugins: PluginsConfig = field(default_factory=PluginsConfig)
    """Plugins enabled and disabled per extension point over the defaults, as in a
    KubeSchedulerConfiguration profile (lasched.framework.registry has the rules)."""
    plugin_args: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``pluginConfig`` args of plugins that read their own, passed to their factory."""
    percentage_of_nodes_to_score: int | None = None
    """This profile's own; None: the top-level ``percentageOfNodesToScore``."""


@dataclass(frozen=True, slots=True)
class QueueSettings:
    initial_backoff_seconds: float = 1.0
    max_backoff_seconds: float = 10.0
    max_unschedulable_seconds: float = 300.0
    aging_points_per_minute: float = 10.0
    aging_max_boost: int = 100
    aging_starvation_seconds: float = 600.0
    """A pod pending this long is starving: ordered before every pod that is not, whatever
    the priorities, oldest first (docs/concepts.md, "The queue"); 0: never."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A user-facing place agents probe, e.g. a gateway in front of a user population."""

    name: str
    address: str
    port: int | None = None


@dataclass(frozen=True, slots=True)
class TokenReviewSettings:
    """How agents' tokens are checked: results cached, apiserver calls rate-limited."""

    cache_seconds: float = 300.0
    """A valid token's identity is reused this long (never past the token's own expiry)."""
    negative_cache_seconds: float = 10.0
    misses_per_second: float = 20.0
    """TokenReviews sent to the apiserver, all clients together; beyond it 429."""
    miss_burst: int = 50
    misses_per_source_per_second: float = 2.0
    miss_burst_per_source: int = 5
    max_connections: int = 4
    """The reviews' own connection pool, apart from the scheduler's apiserver connections."""


@dataclass(frozen=True, slots=True)
class TopologyLayer:
    """One layer of inferred topology: nodes within ``max_rtt_ms`` of each other group."""

    name: str
    max_rtt_ms: float


DEFAULT_TOPOLOGY_LAYERS = (TopologyLayer("site", 1.0), TopologyLayer("region", 30.0))


@dataclass(frozen=True, slots=True)
class TopologySettings:
    """Sites and tiers inferred from RTTs (docs/latency.md, "Topology inference")."""

    enabled: bool = False
    layers: tuple[TopologyLayer, ...] = DEFAULT_TOPOLOGY_LAYERS
    """Finest first, each ``max_rtt_ms`` above the one before; the first is the site."""
    hold_seconds: float = 120.0
    """A node moves to another group only after it was proposed this long without a break."""
    interval_seconds: float = 10.0
    """At most one recompute per interval (one runs after RTTs change, or a hold ends)."""
    write_labels: bool = False
    """Write ``topology.lasched.io/<layer>`` and ``topology.lasched.io/tier`` on nodes."""


@dataclass(frozen=True, slots=True)
class LatencySettings:
    ttl_seconds: float = 30.0
    static_file: str | None = None
    report_interval_seconds: float = 10.0
    agent_service_accounts: tuple[str, ...] = ("lasched-system/lasched-agent",)
    endpoints: tuple[Endpoint, ...] = ()
    snapshot_file: str | None = None
    snapshot_interval_seconds: float = 60.0
    cloud_fallback: bool = False
    plan: bool = True
    """Plan the pending latency pods together (lasched.latency.plan)."""
    goldpinger_url: str | None = None
    goldpinger_interval_seconds: float = 30.0
    token_review: TokenReviewSettings = field(default_factory=TokenReviewSettings)
    topology: TopologySettings = field(default_factory=TopologySettings)


@dataclass(frozen=True, slots=True)
class LeaderElectionSettings:
    """kube-scheduler's ``leaderElection`` block, with its defaults."""

    leader_elect: bool = True
    resource_name: str = "lasched"
    resource_namespace: str = "kube-system"
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0


@dataclass(frozen=True, slots=True)
class ExtenderSettings:
    """kube-scheduler's extender API (docs/extender.md), served beside the profiles."""

    enabled: bool = False
    url_prefix: str = "/extender"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    bind_address: str = "0.0.0.0"
    port: int = 10271
    max_connections: int = 2048
    """Open connections on the port from all clients together; lowered at start so that a
    quarter of the open-file limit (at least 256) stays for the scheduler's own use."""
    max_connections_per_source: int = 32
    header_timeout_seconds: float = 10.0
    """A connection whose request head is not complete this long after it opened is closed."""
    idle_timeout_seconds: float = 90.0
    """A keep-alive connection idle this long between requests is closed."""


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """What readiness (``/readyz``) and the informers' liveness hold lasched to."""

    watch_idle_timeout_seconds: float = 180.0
    """A watch that delivers nothing, not even a bookmark (the apiserver sends one every one
    to two minutes), for this long is watched anew from its last resourceVersion; readiness
    fails meanwhile."""
    loop_blocked_seconds: float = 5.0
    """Readiness fails for a while after the event loop was blocked this long."""


@dataclass(frozen=True, slots=True)
class RemediationSettings:
    """Latency remediation (docs/latency.md, "Remediation"): off unless enabled."""

    enabled: bool = False
    dry_run: bool = False
    """Decide and report (Events, metrics) but never evict."""
    interval_seconds: float = 2.0
    """How often the leader looks at the bound pods."""
    grace_period_seconds: float = 60.0
    """How long fresh RTTs must break a pod's hard limit before it is moved."""
    node_not_ready_seconds: float = 300.0
    """How long a node must be NotReady (or unreachable) before its pods are moved."""
    cooldown_seconds: float = 600.0
    """A pod evicted (or refused) is not tried again, and a pod younger than this is not
    evicted, for this long: a replacement never follows its predecessor at once."""
    window_seconds: float = 60.0
    """The window the three rate limits count evictions over."""
    max_per_node: int = 2
    max_per_namespace: int = 5
    max_total: int = 10
    excluded_namespaces: tuple[str, ...] = ("kube-system",)
    evict_local_storage_pods: bool = False
    """Pods with an emptyDir or hostPath volume lose its data when evicted: off, they stay."""


@dataclass(frozen=True, slots=True)
class Settings:
    profiles: tuple[ProfileSettings, ...] = (ProfileSettings(),)
    kubeconfig: str | None = None
    bind_concurrency: int = 64
    percentage_of_nodes_to_score: int = 0
    opportunistic_batching: bool = True
    shutdown_grace_seconds: float = 10.0
    log_format: str = "text"
    log_level: str = "INFO"
    queue: QueueSettings = field(default_factory=QueueSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    latency: LatencySettings = field(default_factory=LatencySettings)
    extender: ExtenderSettings = field(default_factory=ExtenderSettings)
    preemption_enabled: bool = True
    leader_election: LeaderElectionSettings = field(default_factory=LeaderElectionSettings)
    health: HealthSettings = field(default_factory=HealthSettings)
    remediation: RemediationSettings = field(default_factory=RemediationSettings)

    @property
    def scheduler_names(self) -> tuple[str, ...]:
        return tuple(p.scheduler_name for p in self.profiles)


class _Reader:
    """Reads one mapping, remembering the YAML path for error messages."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'the configuration'} must be a mapping")
        self.data = dict(data)
        self.path = path
        self.used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.data.get(key)

    def number(
        self,
        key: str,
        default: float,
        *,
        minimum: float = 0.0,
        strict: bool = True,
        maximum: float | None = None,
    ) -> float:
        v = self.raw(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f"{self._name(key)} must be a finite number, not {v!r}")
        if v < minimum or (strict and v == minimum):
            what = "positive" if strict and minimum == 0 else f">= {minimum}"
            raise ConfigError(f"{self._name(key)} must be {what}, not {v!r}")
        if maximum is not None and v > maximum:
            raise ConfigError(f"{self._name(key)} must be at most {maximum:g}, not {v!r}")
        return float(v)

    def integer(self, key: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        v = self.raw(key)
        if v is None:
            return default
        if (
            isinstance(v, bool)
            or not isinstance(v, int)
            or v < minimum
            or (maximum is not None and v > maximum)
        ):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise ConfigError(f"{self._name(key)} must be an integer {bounds}, not {v!r}")
        return v

    def string(self, key: str, default: str, *, choices: tuple[str, ...] = ()) -> str:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{self._name(key)} must be a non-empty string, not {v!r}")
        if choices and v not in choices:
            raise ConfigError(f"{self._name(key)} must be one of {', '.join(choices)}, not {v!r}")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise ConfigError(f"{self._name(key)} must be true or false, not {v!r}")
        return v

    def child(self, key: str) -> _Reader:
        return _Reader(self.raw(key), self._name(key))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"unknown field {self._name(unknown[0])}")


def _weights(r: _Reader) -> dict[str, int]:
    """Score plugin weights over the defaults; 0 turns a score off."""
    weights = dict(DEFAULT_SCORE_WEIGHTS)
    for name in list(r.data):
        if name not in DEFAULT_SCORE_WEIGHTS:
            known = ", ".join(DEFAULT_SCORE_WEIGHTS)
            raise ConfigError(f"{r._name(name)} is not a score plugin (known: {known})")
        weights[name] = r.integer(name, weights[name], minimum=0, maximum=100)
    r.finish()
    return weights


DEFAULT_PREFERENCES = ("none", "central", "cloud")
CLOUD_TIERS = ("none", "hard")


def _tiers(pr: _Reader) -> tuple[dict[str, Mapping[str, Any]], PluginsConfig]:
    """A profile's ``defaultPreference`` (LatencyScore's arg) and ``cloudTier: hard``
    (the CloudTier filter enabled), as a KubeSchedulerConfiguration would say them."""
    args: dict[str, Mapping[str, Any]] = {}
    preference = pr.raw("defaultPreference")
    if preference is not None:
        pr.string("defaultPreference", "none", choices=DEFAULT_PREFERENCES)
        args["LatencyScore"] = {"defaultPreference": preference}
    plugins = PluginsConfig()
    if pr.string("cloudTier", "none", choices=CLOUD_TIERS) == "hard":
        plugins = PluginsConfig(
            points={
                ExtensionPoint.FILTER: PluginSet(
                    enabled=(PluginRef("CloudTier", source=pr._name("cloudTier")),)
                )
            }
        )
    return args, plugins


def _path(r: _Reader, key: str) -> str | None:
    v = r.raw(key)
    if v is not None and (not isinstance(v, str) or not v):
        raise ConfigError(f"{r._name(key)} must be a path, not {v!r}")
    return v


def _latency(lat: _Reader) -> LatencySettings:
    accounts_raw = lat.raw("agentServiceAccounts")
    accounts: tuple[str, ...] = ("lasched-system/lasched-agent",)
    if accounts_raw is not None:
        if not isinstance(accounts_raw, list) or not all(
            isinstance(a, str) and a.count("/") == 1 and all(a.split("/")) for a in accounts_raw
        ):
            raise ConfigError(
                "latency.agentServiceAccounts must be a list of namespace/name, "
                f"not {accounts_raw!r}"
            )
        accounts = tuple(accounts_raw)
    endpoints_raw = lat.raw("endpoints")
    if endpoints_raw is not None and not isinstance(endpoints_raw, list):
        raise ConfigError(f"latency.endpoints must be a list, not {endpoints_raw!r}")
    endpoints: list[Endpoint] = []
    for i, item in enumerate(endpoints_raw or ()):
        er = _Reader(item, f"latency.endpoints[{i}]")
        ep = Endpoint(
            name=er.string("name", ""),
            address=er.string("address", ""),
            port=None
            if er.data.get("port") is None
            else er.integer("port", 0, minimum=1, maximum=65535),
        )
        er.used.add("port")
        if not ep.name or not ep.address:
            raise ConfigError(f"latency.endpoints[{i}] needs a name and an address")
        if any(e.name == ep.name for e in endpoints):
            raise ConfigError(f"latency.endpoints[{i}].name {ep.name!r} is used twice")
        er.finish()
        endpoints.append(ep)
    cloud = lat.raw("cloudFallback")
    if cloud is not None and not isinstance(cloud, bool):
        raise ConfigError(f"latency.cloudFallback must be true or false, not {cloud!r}")
    gp = lat.child("goldpinger")
    gp_url = gp.raw("url")
    if gp_url is not None and (not isinstance(gp_url, str) or not gp_url.startswith("http")):
        raise ConfigError(f"latency.goldpinger.url must be an http(s) URL, not {gp_url!r}")
    gp_interval = gp.number("intervalSeconds", 30.0)
    gp.finish()
    settings = LatencySettings(
        goldpinger_url=gp_url,
        goldpinger_interval_seconds=gp_interval,
        ttl_seconds=lat.number("ttlSeconds", 30.0),
        static_file=_path(lat, "staticFile"),
        # Sent to agents in Targets, whose codec takes at most a day.
        report_interval_seconds=lat.number("reportIntervalSeconds", 10.0, maximum=86_400),
        agent_service_accounts=accounts,
        endpoints=tuple(endpoints),
        snapshot_file=_path(lat, "snapshotFile"),
        snapshot_interval_seconds=lat.number("snapshotIntervalSeconds", 60.0),
        cloud_fallback=bool(cloud),
        plan=lat.boolean("plan", True),
        token_review=_token_review(lat.child("tokenReview")),
        topology=_topology(lat.child("topology")),
    )
    lat.finish()
    return settings


# A label name's segment after the prefix (and so a usable layer name): DNS-1123-like.
_LAYER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _topology(tr: _Reader) -> TopologySettings:
    layers_raw = tr.raw("layers")
    layers: list[TopologyLayer] = list(DEFAULT_TOPOLOGY_LAYERS)
    if layers_raw is not None:
        if not isinstance(layers_raw, list) or not layers_raw:
            raise ConfigError(f"{tr._name('layers')} must be a non-empty list, not {layers_raw!r}")
        layers = []
        for i, item in enumerate(layers_raw):
            lr = _Reader(item, f"{tr._name('layers')}[{i}]")
            layer = TopologyLayer(name=lr.string("name", ""), max_rtt_ms=lr.number("maxRttMs", 0.0))
            lr.finish()
            if not layer.name or not layer.max_rtt_ms:
                field_name = "name" if not layer.name else "maxRttMs"
                raise ConfigError(f"{lr._name(field_name)} is required")
            if len(layer.name) > 40 or not _LAYER_NAME.fullmatch(layer.name):
                raise ConfigError(
                    f"{lr._name('name')} must be lower-case letters, digits and '-' (at most "
                    f"40, starting and ending alphanumeric), not {layer.name!r}"
                )
            if layer.name == "tier" or any(x.name == layer.name for x in layers):
                raise ConfigError(f"{lr._name('name')} {layer.name!r} is taken")
            if layers and layer.max_rtt_ms <= layers[-1].max_rtt_ms:
                raise ConfigError(
                    f"{lr._name('maxRttMs')} ({layer.max_rtt_ms:g}) must be greater than the "
                    f"layer before ({layers[-1].max_rtt_ms:g})"
                )
            layers.append(layer)
    out = TopologySettings(
        enabled=tr.boolean("enabled", False),
        layers=tuple(layers),
        hold_seconds=tr.number("holdSeconds", 120.0, strict=False),
        interval_seconds=tr.number("intervalSeconds", 10.0),
        write_labels=tr.boolean("writeLabels", False),
    )
    tr.finish()
    return out


def _token_review(tr: _Reader) -> TokenReviewSettings:
    out = TokenReviewSettings(
        cache_seconds=tr.number("cacheSeconds", 300.0, strict=False),
        negative_cache_seconds=tr.number("negativeCacheSeconds", 10.0, strict=False),
        misses_per_second=tr.number("missesPerSecond", 20.0),
        miss_burst=tr.integer("missBurst", 50, minimum=1),
        misses_per_source_per_second=tr.number("missesPerSourcePerSecond", 2.0),
        miss_burst_per_source=tr.integer("missBurstPerSource", 5, minimum=1),
        max_connections=tr.integer("maxConnections", 4, minimum=1, maximum=64),
    )
    tr.finish()
    return out


def _leader_election(le: _Reader) -> LeaderElectionSettings:
    elect = le.raw("leaderElect")
    if elect is not None and not isinstance(elect, bool):
        raise ConfigError(f"leaderElection.leaderElect must be true or false, not {elect!r}")
    out = LeaderElectionSettings(
        leader_elect=True if elect is None else elect,
        resource_name=le.string("resourceName", "lasched"),
        resource_namespace=le.string("resourceNamespace", "kube-system"),
        lease_duration_seconds=le.number("leaseDurationSeconds", 15.0),
        renew_deadline_seconds=le.number("renewDeadlineSeconds", 10.0),
        retry_period_seconds=le.number("retryPeriodSeconds", 2.0),
    )
    le.finish()
    if not out.lease_duration_seconds > out.renew_deadline_seconds:
        raise ConfigError(
            f"leaderElection.leaseDurationSeconds ({out.lease_duration_seconds:g}) must be "
            f"greater than leaderElection.renewDeadlineSeconds ({out.renew_deadline_seconds:g})"
        )
    if not out.renew_deadline_seconds > 1.2 * out.retry_period_seconds:
        raise ConfigError(
            f"leaderElection.renewDeadlineSeconds ({out.renew_deadline_seconds:g}) must be "
            f"greater than 1.2 x leaderElection.retryPeriodSeconds ({out.retry_period_seconds:g})"
        )
    return out


def _extender(ext: _Reader) -> ExtenderSettings:
    enabled = ext.raw("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise ConfigError(f"extender.enabled must be true or false, not {enabled!r}")
    prefix = ext.string("urlPrefix", "/extender")
    if not prefix.startswith("/") or any(c in prefix for c in " ?#\t\n"):
        raise ConfigError(
            f"extender.urlPrefix must be a URL path such as /extender, not {prefix!r}"
        )
    ext.finish()
    # kube-scheduler trims a trailing "/" before appending "/<verb>"; so do we.
    return ExtenderSettings(enabled=bool(enabled), url_prefix=prefix.rstrip("/"))


def _remediation(rr: _Reader) -> RemediationSettings:
    excluded_raw = rr.raw("excludedNamespaces")
    excluded: tuple[str, ...] = ("kube-system",)
    if excluded_raw is not None:
        if not isinstance(excluded_raw, list) or not all(
            isinstance(n, str) and n for n in excluded_raw
        ):
            raise ConfigError(
                f"remediation.excludedNamespaces must be a list of namespace names, "
                f"not {excluded_raw!r}"
            )
        excluded = tuple(excluded_raw)
    out = RemediationSettings(
        enabled=rr.boolean("enabled", False),
        dry_run=rr.boolean("dryRun", False),
        interval_seconds=rr.number("intervalSeconds", 2.0),
        grace_period_seconds=rr.number("gracePeriodSeconds", 60.0, strict=False),
        node_not_ready_seconds=rr.number("nodeNotReadySeconds", 300.0, strict=False),
        cooldown_seconds=rr.number("cooldownSeconds", 600.0, strict=False),
        window_seconds=rr.number("windowSeconds", 60.0),
        max_per_node=rr.integer("maxPerNode", 2, minimum=1),
        max_per_namespace=rr.integer("maxPerNamespace", 5, minimum=1),
        max_total=rr.integer("maxTotal", 10, minimum=1),
        excluded_namespaces=excluded,
        evict_local_storage_pods=rr.boolean("evictLocalStoragePods", False),
    )
    rr.finish()
    return out


def parse(data: Any) -> Settings:
    """Settings from already-decoded YAML."""
    r = _Reader(data, "")
    profiles_raw = r.raw("profiles")
    profiles: list[ProfileSettings] = []
    if profiles_raw is None:
        profiles = [ProfileSettings()]
    elif not isinstance(profiles_raw, list) or not profiles_raw:
        raise ConfigError("profiles must be a non-empty list")
    else:
        for i, item in enumerate(profiles_raw):
            pr = _Reader(item, f"profiles[{i}]")
            plugin_args, plugins = _tiers(pr)
            profiles.append(
                ProfileSettings(
                    scheduler_name=pr.string("schedulerName", DEFAULT_SCHEDULER_NAME),
                    scoring_strategy=pr.string(
                        "scoringStrategy",
                        "LeastAllocated",
                        choices=("LeastAllocated", "MostAllocated"),
                    ),
                    score_weights=_weights(pr.child("scoreWeights")),
                    plugin_args=plugin_args,
                    plugins=plugins,
                )
            )
            pr.finish()
    names = [p.scheduler_name for p in profiles]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"profiles[{i}].schedulerName {n!r} is used by an earlier profile")

    q = r.child("queue")
    initial = q.number("initialBackoffSeconds", 1.0)
    maximum = q.number("maxBackoffSeconds", 10.0)
    if maximum < initial:
        raise ConfigError(
            f"queue.maxBackoffSeconds ({maximum}) must not be below "
            f"queue.initialBackoffSeconds ({initial})"
        )
    queue = QueueSettings(
        initial_backoff_seconds=initial,
        max_backoff_seconds=maximum,
        max_unschedulable_seconds=q.number("maxUnschedulableSeconds", 300.0),
        aging_points_per_minute=q.number("agingPointsPerMinute", 10.0, strict=False),
        aging_max_boost=q.integer("agingMaxBoost", 100, minimum=0),
        aging_starvation_seconds=q.number("agingStarvationSeconds", 600.0, strict=False),
    )
    q.finish()

    s = r.child("server")
    server = ServerSettings(
        bind_address=s.string("bindAddress", "0.0.0.0"),
        port=s.integer("port", 10271, minimum=0, maximum=65535),
        max_connections=s.integer("maxConnections", 2048, minimum=1),
        max_connections_per_source=s.integer("maxConnectionsPerSource", 32, minimum=1),
        header_timeout_seconds=s.number("headerTimeoutSeconds", 10.0),
        idle_timeout_seconds=s.number("idleTimeoutSeconds", 90.0),
    )
    s.finish()
    if server.max_connections_per_source > server.max_connections:
        raise ConfigError(
            f"server.maxConnectionsPerSource ({server.max_connections_per_source}) must not "
            f"exceed server.maxConnections ({server.max_connections})"
        )

    latency = _latency(r.child("latency"))
    extender = _extender(r.child("extender"))
    pre = r.child("preemption")
    preemption_enabled = pre.raw("enabled")
    if preemption_enabled is not None and not isinstance(preemption_enabled, bool):
        raise ConfigError(f"preemption.enabled must be true or false, not {preemption_enabled!r}")
    pre.finish()
    leader_election = _leader_election(r.child("leaderElection"))
    hr = r.child("health")
    health = HealthSettings(
        watch_idle_timeout_seconds=hr.number("watchIdleTimeoutSeconds", 180.0),
        loop_blocked_seconds=hr.number("loopBlockedSeconds", 5.0),
    )
    hr.finish()
    remediation = _remediation(r.child("remediation"))

    kubeconfig = r.raw("kubeconfig")
    if kubeconfig is not None and not isinstance(kubeconfig, str):
        raise ConfigError(f"kubeconfig must be a path, not {kubeconfig!r}")
    settings = Settings(
        profiles=tuple(profiles),
        kubeconfig=kubeconfig,
        bind_concurrency=r.integer("bindConcurrency", 64, minimum=1),
        percentage_of_nodes_to_score=r.integer(
            "percentageOfNodesToScore", 0, minimum=0, maximum=100
        ),
        opportunistic_batching=r.boolean("opportunisticBatching", True),
        shutdown_grace_seconds=r.number("shutdownGraceSeconds", 10.0, strict=False),
        log_format=r.string("logFormat", "text", choices=("text", "json")),
        log_level=r.string("logLevel", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
        queue=queue,
        server=server,
        latency=latency,
        extender=extender,
        preemption_enabled=preemption_enabled is not False,
        leader_election=leader_election,
        health=health,
        remediation=remediation,
    )
    r.finish()
    return settings


def read(path: str | Path) -> Any:
    """The decoded YAML of a configuration file."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read configuration file {path}: {e.strerror}") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e


def load(path: str | Path | None) -> Settings:
    """Settings from a YAML file, or the defaults when ``path`` is None."""
    if path is None:
        return Settings()
    return parse(read(path))
