"""KubeSchedulerConfiguration (kubescheduler.config.k8s.io/v1) read into lasched's Settings.

``lasched run --config FILE`` takes a cluster's kube-scheduler configuration
as well as lasched's own file; :func:`translate` reads it into the same
:class:`~lasched.settings.Settings`, held to the same rules. Every field of
the file ends one of three ways, and each names the field by its path:

* **translated**: ``profiles[]`` (``schedulerName``, ``plugins`` at each
  extension point and ``multiPoint`` with weights, ``pluginConfig`` of the
  plugins lasched has, ``percentageOfNodesToScore``), the top-level
  ``percentageOfNodesToScore``, ``podInitialBackoffSeconds`` and
  ``podMaxBackoffSeconds``, ``leaderElection`` and
  ``clientConnection.kubeconfig``;
* **ignored, with a warning**: a field of kube-scheduler's that lasched has
  no use for (``parallelism``, ``clientConnection.qps``, NodeResourcesFit's
  ``ignoredResources``, ...);
* **an error**: a plugin lasched does not have (saying what it offers
  instead), a value it cannot honour (an extended resource for
  ``LeastAllocated``), one kube-scheduler's validation refuses (a
  ``RequestedToCapacityRatio`` shape out of order), a field kube-scheduler's
  v1 does not have.

What only lasched's own file sets (latency, server, extender, queue aging
beyond PrioritySort's args) keeps its default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lasched import settings as lasched_settings
from lasched.framework.registry import (
    ExtensionPoint,
    PluginRef,
    PluginsConfig,
    PluginSet,
    quoted,
    unknown_plugin,
)
from lasched.plugins.latency import DefaultPreference
from lasched.plugins.noderesources import (
    REQUESTED_TO_CAPACITY_RATIO,
    SCORED_RESOURCES,
    STRATEGIES,
)
from lasched.plugins.numafit import STRATEGIES as NUMA_STRATEGIES
from lasched.plugins.requestedtocapacity import ShapeError, validate_shape
from lasched.profiles import IN_TREE
from lasched.settings import DEFAULT_RESOURCE_WEIGHTS, ConfigError, ProfileSettings, Settings

API_GROUP = "kubescheduler.config.k8s.io"
API_VERSION = f"{API_GROUP}/v1"
KIND = "KubeSchedulerConfiguration"
DEFAULT_SCHEDULER_NAME = "default-scheduler"  # kube-scheduler's, for a profile that names none

_INT32_MAX = 2**31 - 1

# Plugins of kube-scheduler, scheduler-plugins and KubeNexus that lasched does not have,
# and what to use instead. Disabling one is allowed (there is nothing to disable).
_ELSEWHERE: Mapping[str, str] = {
    "NodeName": "not needed: lasched never schedules a pod that names its node",
    "EBSLimits": "NodeVolumeLimits counts CSI volumes; in-tree volume limits are not supported",
    "GCEPDLimits": "NodeVolumeLimits counts CSI volumes; in-tree volume limits are not supported",
    "AzureDiskLimits": "NodeVolumeLimits counts CSI volumes; in-tree volume limits are not "
    "supported",
    "CinderLimits": "NodeVolumeLimits counts CSI volumes; in-tree volume limits are not supported",
    "DynamicResources": "dynamic resource allocation is not supported yet",
    "SelectorSpread": "not supported",
    "NodePreferAvoidPods": "not supported",
    "NodeResourcesLeastAllocated": "use NodeResourcesFit with scoringStrategy.type LeastAllocated",
    "NodeResourcesMostAllocated": "use NodeResourcesFit with scoringStrategy.type MostAllocated",
    "RequestedToCapacityRatio": "use NodeResourcesFit with scoringStrategy.type "
    "RequestedToCapacityRatio",
    "CapacityScheduling": "elastic quotas are not supported yet",
    "NodeResourcesAllocatable": "use NodeResourcesFit with LeastAllocated or MostAllocated",
    "TargetLoadPacking": "load-aware scoring is not supported yet",
    "LoadVariationRiskBalancing": "load-aware scoring is not supported yet",
    "LowRiskOverCommitment": "load-aware scoring is not supported yet",
    "NetworkOverhead": "use LatencyFilter and LatencyScore, which read measured RTTs",
    "TopologicalSort": "use PrioritySort",
    "QOSSort": "use PrioritySort",
    "PreemptionToleration": "not supported yet",
    "CrossNodePreemption": "not supported yet",
    "PodState": "not supported yet",
    "SySched": "not supported yet",
    "ResourceReservation": "Coscheduling holds a group's nodes from Reserve until it binds",
    "WorkloadAwareScoring": "use NodeResourcesFit with LeastAllocated or MostAllocated",
    "BackfillScoring": "not supported yet",
    "TopologySpreadScoring": "not supported yet",
}

# Extension points of kube-scheduler's v1 where lasched runs no plugin, and those it
# has no cycle for at all.
_NO_PLUGINS_AT = ("postBind",)
_PLACEMENT_POINTS = ("placementGenerate", "placementScore", "placementFeasible")
_NO_PLACEMENT = "lasched has no pod group placement cycle"


def is_kube_scheduler_configuration(data: Any) -> bool:
    """Whether decoded YAML is a KubeSchedulerConfiguration, by its kind or API group."""
    if not isinstance(data, Mapping):
        return False
    api = data.get("apiVersion")
    return data.get("kind") == KIND or (isinstance(api, str) and api.split("/")[0] == API_GROUP)


@dataclass(frozen=True, slots=True)
class Translation:
    """The settings a KubeSchedulerConfiguration means, and the fields it ignored."""

    settings: Settings
    warnings: tuple[str, ...]
    """One line per ignored field, naming its path."""


class _Fields:
    """One mapping of the file: every key is read, ignored with a warning, or an error."""

    def __init__(self, data: Any, path: str, warnings: list[str]) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'the configuration'} must be a mapping, not {data!r}")
        self.data: dict[str, Any] = dict(data)
        self.path = path
        self.warnings = warnings
        self.seen: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def ignore(self, key: str, why: str) -> None:
        self.seen.add(key)
        if self.data.get(key) not in (None, "", [], {}):
            self.warnings.append(f"{self.name(key)} is ignored: {why}")

    def ignore_rest(self, why: str) -> None:
        for key in sorted(set(self.data) - self.seen):
            self.ignore(key, why)

    def child(self, key: str) -> _Fields:
        return _Fields(self.get(key), self.name(key), self.warnings)

    def list(self, key: str) -> list[Any]:
        v = self.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            raise ConfigError(f"{self.name(key)} must be a list, not {v!r}")
        return v

    def integer(self, key: str, *, minimum: int, maximum: int = _INT32_MAX) -> int | None:
        v = self.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
            raise ConfigError(
                f"{self.name(key)} must be an integer from {minimum} to {maximum}, not {v!r}"
            )
        return v

    def number(self, key: str, *, minimum: float = 0.0) -> float | None:
        v = self.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ConfigError(f"{self.name(key)} must be a finite number, not {v!r}")
        if v < minimum:
            raise ConfigError(f"{self.name(key)} must be >= {minimum:g}, not {v!r}")
        return float(v)

    def boolean(self, key: str) -> bool | None:
        v = self.get(key)
        if v is not None and not isinstance(v, bool):
            raise ConfigError(f"{self.name(key)} must be true or false, not {v!r}")
        return v

    def string(self, key: str) -> str | None:
        v = self.get(key)
        if v is not None and (not isinstance(v, str) or not v):
            raise ConfigError(f"{self.name(key)} must be a non-empty string, not {v!r}")
        return v

    def duration(self, key: str) -> float | None:
        v = self.get(key)
        if v is None:
            return None
        seconds = parse_duration(v) if isinstance(v, str) else None
        if seconds is None or seconds <= 0:
            raise ConfigError(
                f"{self.name(key)} must be a positive duration such as 15s, not {v!r}"
            )
        return seconds

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(
                f"{self.name(unknown[0])}: unknown field (not in kube-scheduler's {API_VERSION})"
            )


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration (``15s``, ``1m30s``, ``500ms``, ``0``); None if it is not one.

    One pass over the text, each part matched where the last ended.
    """
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    total, at = 0.0, 0
    while at < len(body):
        m = _DURATION_PART.match(body, at)
        if m is None:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        at = m.end()
    if at == 0:
        return None
    return -total if text.startswith("-") else total


@dataclass(slots=True)
class _ProfileArgs:
    """What one profile's ``pluginConfig`` sets."""

    scoring_strategy: str = "LeastAllocated"
    scoring_shape: tuple[tuple[int, int], ...] | None = None
    resource_weights: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_RESOURCE_WEIGHTS)
    )
    plugin_args: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    # Args of plugins one instance of which serves every profile: all profiles must agree.
    queue: dict[str, Any] = field(default_factory=dict)


def translate(data: Any) -> Translation:
    """The Settings a decoded KubeSchedulerConfiguration means; ConfigError names a bad field."""
    warnings: list[str] = []
    top = _Fields(data, "", warnings)
    kind, api = top.get("kind"), top.get("apiVersion")
    if kind != KIND:
        raise ConfigError(f"kind must be {KIND}, not {kind!r}")
    if api != API_VERSION:
        raise ConfigError(f"apiVersion must be {API_VERSION}, not {api!r}")
    top.ignore("parallelism", "lasched runs each scheduling cycle on one event loop")
    top.ignore("enableProfiling", "lasched serves no profiling endpoints")
    top.ignore("enableContentionProfiling", "lasched serves no profiling endpoints")
    top.ignore("percentageOfPlacementsToScore", _NO_PLACEMENT)
    top.ignore("extenders", "lasched calls no extenders (it can serve as one: docs/extender.md)")
    top.ignore("delayCacheUntilActive", "every lasched replica keeps its cache warm")

    own: dict[str, Any] = {}  # lasched's own file, for the checks settings.parse makes
    pct = top.integer("percentageOfNodesToScore", minimum=0, maximum=100)
    if pct is not None:
        own["percentageOfNodesToScore"] = pct
    queue: dict[str, Any] = {}
    for key, ours in (
        ("podInitialBackoffSeconds", "initialBackoffSeconds"),
        ("podMaxBackoffSeconds", "maxBackoffSeconds"),
    ):
        seconds = top.integer(key, minimum=1)
        if seconds is not None:
            queue[ours] = seconds
    own["leaderElection"] = _leader_election(top.child("leaderElection"))
    kubeconfig = _client_connection(top.child("clientConnection"))
    if kubeconfig is not None:
        own["kubeconfig"] = kubeconfig

    profiles, shared = _profiles(top)
    top.finish()
    queue.update(shared.queue)
    own["queue"] = queue
    try:
        parsed = lasched_settings.parse(own)
    except ConfigError as e:
        raise ConfigError(_their_names(str(e))) from e
    return Translation(replace(parsed, profiles=tuple(profiles)), tuple(warnings))


# lasched's names for the fields translate() passes through settings.parse.
_OUR_NAMES = {
    "queue.initialBackoffSeconds": "podInitialBackoffSeconds",
    "queue.maxBackoffSeconds": "podMaxBackoffSeconds",
    "leaderElection.leaseDurationSeconds": "leaderElection.leaseDuration",
    "leaderElection.renewDeadlineSeconds": "leaderElection.renewDeadline",
    "leaderElection.retryPeriodSeconds": "leaderElection.retryPeriod",
}


def _their_names(message: str) -> str:
    for ours, theirs in _OUR_NAMES.items():
        message = message.replace(ours, theirs)
    return message


def _leader_election(f: _Fields) -> dict[str, Any]:
    out: dict[str, Any] = {}
    elect = f.boolean("leaderElect")
    if elect is not None:
        out["leaderElect"] = elect
    for key, ours in (
        ("leaseDuration", "leaseDurationSeconds"),
        ("renewDeadline", "renewDeadlineSeconds"),
        ("retryPeriod", "retryPeriodSeconds"),
    ):
        seconds = f.duration(key)
        if seconds is not None:
            out[ours] = seconds
    for key in ("resourceName", "resourceNamespace"):
        value = f.string(key)
        if value is not None:
            out[key] = value
    if f.get("resourceLock") not in ("leases", None):
        f.ignore("resourceLock", "lasched always holds a Lease (leases)")
    f.finish()
    return out


def _client_connection(f: _Fields) -> str | None:
    kubeconfig = f.get("kubeconfig")
    if kubeconfig is not None and not isinstance(kubeconfig, str):
        raise ConfigError(f"{f.name('kubeconfig')} must be a path, not {kubeconfig!r}")
    f.ignore("qps", "lasched does not rate-limit its apiserver requests")
    f.ignore("burst", "lasched does not rate-limit its apiserver requests")
    f.ignore("contentType", "lasched speaks JSON to the apiserver")
    f.ignore("acceptContentTypes", "lasched speaks JSON to the apiserver")
    f.finish()
    return kubeconfig or None


def _profiles(top: _Fields) -> tuple[list[ProfileSettings], _ProfileArgs]:
    """Each profile, and the args every profile must agree on (the first profile's)."""
    items = top.list("profiles") or [{}]  # none: kube-scheduler's one default profile
    profiles: list[ProfileSettings] = []
    first: _ProfileArgs | None = None
    for i, item in enumerate(items):
        f = _Fields(item, f"profiles[{i}]", top.warnings)
        name = f.string("schedulerName") or DEFAULT_SCHEDULER_NAME
        if any(p.scheduler_name == name for p in profiles):
            raise ConfigError(f"{f.name('schedulerName')} {name!r} is used by an earlier profile")
        pct = f.integer("percentageOfNodesToScore", minimum=0, maximum=100)
        f.ignore("percentageOfPlacementsToScore", _NO_PLACEMENT)
        plugins = _plugins(f.child("plugins"))
        args = _plugin_config(f, "pluginConfig")
        f.finish()
        if first is None:
            first = args
        for what, mine, theirs in (("PrioritySort", args.queue, first.queue),):
            if mine != theirs:
                raise ConfigError(
                    f"{f.name('pluginConfig')}: the args of {what} differ from profiles[0]'s; "
                    f"one {what} serves every profile, so all must agree"
                )
        profiles.append(
            ProfileSettings(
                scheduler_name=name,
                scoring_strategy=args.scoring_strategy,
                scoring_shape=args.scoring_shape,
                resource_weights=args.resource_weights,
                plugins=plugins,
                plugin_args=args.plugin_args,
                percentage_of_nodes_to_score=pct,
            )
        )
    assert first is not None
    return profiles, first


def _plugins(f: _Fields) -> PluginsConfig:
    multi_point = _plugin_set(f.child("multiPoint"), None)
    points: dict[ExtensionPoint, PluginSet] = {}
    for point in ExtensionPoint:
        present = f.data.get(point.value) is not None
        own = _plugin_set(f.child(point.value), point)
        if present:
            points[point] = own
    for key in _NO_PLUGINS_AT:
        unused = _plugin_set(f.child(key), None)
        if unused.enabled:
            ref = unused.enabled[0]
            raise ConfigError(
                f"{ref.source}.name: lasched runs no plugin at {key} ({quoted(ref.name)})"
            )
    for key in _PLACEMENT_POINTS:
        f.ignore(key, _NO_PLACEMENT)
    f.ignore("podGroupPostFilter", _NO_PLACEMENT)
    f.finish()
    return PluginsConfig(multi_point=multi_point, points=points)


def _plugin_set(f: _Fields, point: ExtensionPoint | None) -> PluginSet:
    """One ``{enabled, disabled}`` set; ``point`` None is multiPoint."""
    enabled = tuple(
        _ref(f, f"{f.name('enabled')}[{j}]", item, point, enabling=True)
        for j, item in enumerate(f.list("enabled"))
    )
    disabled = tuple(
        _ref(f, f"{f.name('disabled')}[{j}]", item, point, enabling=False)
        for j, item in enumerate(f.list("disabled"))
    )
    f.finish()
    return PluginSet(enabled=enabled, disabled=disabled)


def _ref(
    within: _Fields, path: str, item: Any, point: ExtensionPoint | None, *, enabling: bool
) -> PluginRef:
    """One ``{name, weight}`` entry: a plugin lasched has, or (disabled) one it may lack."""
    r = _Fields(item, path, within.warnings)
    name = r.string("name")
    if name is None:
        raise ConfigError(f"{path}.name is required")
    weight = r.integer("weight", minimum=0)
    if not enabling or point not in (None, ExtensionPoint.SCORE):
        r.ignore("weight", "a weight counts where a plugin is enabled at score or multiPoint")
        weight = None
    r.finish()
    ref = PluginRef(name, weight, path)
    if name == "*":
        if enabling:
            raise ConfigError(f'{path}.name: "*" disables every default plugin; it enables none')
        return ref
    if name not in IN_TREE and (enabling or name not in _ELSEWHERE):
        raise ConfigError(_lacking(ref))
    return ref


def _lacking(ref: PluginRef) -> str:
    why = _ELSEWHERE.get(ref.name)
    if why is None:
        return unknown_plugin(ref, IN_TREE)
    return (
        f"{ref.source}.name: lasched has no plugin {quoted(ref.name)} ({why}); "
        f"lasched has: {', '.join(sorted(IN_TREE))}"
    )


def _plugin_config(profile: _Fields, key: str) -> _ProfileArgs:
    out = _ProfileArgs()
    seen: dict[str, str] = {}
    for j, item in enumerate(profile.list(key)):
        f = _Fields(item, f"{profile.name(key)}[{j}]", profile.warnings)
        name = f.string("name")
        if name is None:
            raise ConfigError(f"{f.name('name')} is required")
        if name in seen:
            raise ConfigError(
                f"{f.name('name')}: {quoted(name)} is configured twice (also at {seen[name]})"
            )
        seen[name] = f.path
        args = f.child("args")
        kind = args.get("kind")
        if kind is not None and kind != f"{name}Args":
            raise ConfigError(f"{args.name('kind')} must be {name}Args, not {kind!r}")
        api = args.get("apiVersion")
        if api is not None and api != API_VERSION:
            raise ConfigError(f"{args.name('apiVersion')} must be {API_VERSION}, not {api!r}")
        read = _ARGS.get(name)
        if read is not None:
            read(args, out)
        elif name in IN_TREE:
            # A plugin that reads its own args: its factory gets them as written.
            out.plugin_args[name] = {k: v for k, v in args.data.items() if k not in args.seen}
            args.seen.update(args.data)
        elif name in _ELSEWHERE:
            args.seen.update(args.data)
            profile.warnings.append(f"{f.path} is ignored: lasched has no plugin {quoted(name)}")
        else:
            raise ConfigError(unknown_plugin(PluginRef(name, source=f.path), IN_TREE))
        args.finish()
        f.finish()
    return out


ReadArgs = Callable[[_Fields, _ProfileArgs], None]


def _fit_args(args: _Fields, out: _ProfileArgs) -> None:
    why = "lasched's filter checks every resource a pod requests"
    args.ignore("ignoredResources", why)
    args.ignore("ignoredResourceGroups", why)
    strategy = args.child("scoringStrategy")
    kind = strategy.string("type") or "LeastAllocated"
    if kind not in STRATEGIES:
        raise ConfigError(
            f"{strategy.name('type')} must be {', '.join(STRATEGIES[:-1])} or {STRATEGIES[-1]}, "
            f"not {kind!r}"
        )
    shaped = kind == REQUESTED_TO_CAPACITY_RATIO
    shape = None
    if shaped:
        shape = _shape(strategy.child("requestedToCapacityRatio"))
    else:
        strategy.ignore("requestedToCapacityRatio", "it shapes RequestedToCapacityRatio only")
    weights: dict[str, int] = {}
    for j, item in enumerate(strategy.list("resources")):
        r = _Fields(item, f"{strategy.name('resources')}[{j}]", args.warnings)
        resource = r.string("name")
        if resource is None:
            raise ConfigError(f"{r.name('name')} is required")
        if not shaped and resource not in SCORED_RESOURCES:
            raise ConfigError(
                f"{r.name('name')}: lasched's NodeResourcesFit scores "
                f"{' and '.join(SCORED_RESOURCES)} with {kind}, not {resource!r} "
                f"({REQUESTED_TO_CAPACITY_RATIO} scores any resource)"
            )
        if resource in weights:
            raise ConfigError(f"{r.name('name')}: {resource} is listed twice")
        # kube-scheduler's rule: a weight of 0, or none, is 1.
        weights[resource] = r.integer("weight", minimum=0, maximum=100) or 1
        r.finish()
    strategy.finish()
    out.scoring_strategy = kind
    out.scoring_shape = shape
    out.resource_weights = weights or dict(DEFAULT_RESOURCE_WEIGHTS)


def _shape(ratio: _Fields) -> tuple[tuple[int, int], ...]:
    """``requestedToCapacityRatio.shape``, checked as kube-scheduler's validation does."""
    points = []
    for j, item in enumerate(ratio.list("shape")):
        p = _Fields(item, f"{ratio.name('shape')}[{j}]", ratio.warnings)
        # int32 fields; one left out is 0, as in Go.
        utilization = p.integer("utilization", minimum=-(2**31), maximum=_INT32_MAX) or 0
        score = p.integer("score", minimum=-(2**31), maximum=_INT32_MAX) or 0
        p.finish()
        points.append((utilization, score))
    ratio.finish()
    try:
        return validate_shape(points)
    except ShapeError as e:
        raise ConfigError(f"{ratio.name('shape')}{e.field}: {e.message}") from None


def _balanced_args(args: _Fields, out: _ProfileArgs) -> None:
    names = set()
    for j, item in enumerate(args.list("resources")):
        r = _Fields(item, f"{args.name('resources')}[{j}]", args.warnings)
        names.add(r.string("name"))
        r.integer("weight", minimum=0)
        r.finish()
    if names and names != set(SCORED_RESOURCES):
        args.warnings.append(
            f"{args.name('resources')} is ignored: lasched balances "
            f"{' and '.join(SCORED_RESOURCES)}"
        )


def _preemption_args(args: _Fields, out: _ProfileArgs) -> None:
    pct = args.integer("minCandidateNodesPercentage", minimum=0, maximum=100)
    absolute = args.integer("minCandidateNodesAbsolute", minimum=0)
    if pct == 0 and absolute == 0:
        raise ConfigError(
            f"{args.name('minCandidateNodesPercentage')} and "
            f"{args.name('minCandidateNodesAbsolute')} cannot both be zero"
        )
    own = {
        k: v
        for k, v in (
            ("minCandidateNodesPercentage", pct),
            ("minCandidateNodesAbsolute", absolute),
        )
        if v is not None
    }
    if own:
        out.plugin_args["DefaultPreemption"] = own


def _node_affinity_args(args: _Fields, out: _ProfileArgs) -> None:
    if args.get("addedAffinity") not in (None, {}):
        raise ConfigError(f"{args.name('addedAffinity')} is not supported yet")


def _coscheduling_args(args: _Fields, out: _ProfileArgs) -> None:
    args.ignore(
        "permitWaitingTimeSeconds",
        "a group waits its PodGroup's scheduleTimeoutSeconds (or lasched.io/timeout-seconds), "
        "else 60 s",
    )
    args.ignore(
        "podGroupBackoffSeconds",
        "a group backs off like a pod, from podInitialBackoffSeconds to podMaxBackoffSeconds",
    )


def _topology_match_args(args: _Fields, out: _ProfileArgs) -> None:
    """scheduler-plugins' NodeResourceTopologyMatchArgs: the scoring strategy is read; the
    cache settings are lasched's own (docs/numa.md, "Reserve accounting")."""
    why = "lasched holds its placements until the topology shows them (docs/numa.md)"
    for key in ("cacheResyncPeriodSeconds", "cache", "discardReservedNodes"):
        args.ignore(key, why)
    strategy = args.child("scoringStrategy")
    kind = strategy.string("type") or "LeastAllocated"
    if kind not in NUMA_STRATEGIES:
        raise ConfigError(
            f"{strategy.name('type')} must be {', '.join(NUMA_STRATEGIES)}, not {kind!r}"
        )
    weights: dict[str, int] = {}
    for j, item in enumerate(strategy.list("resources")):
        r = _Fields(item, f"{strategy.name('resources')}[{j}]", args.warnings)
        resource = r.string("name")
        if not resource:
            raise ConfigError(f"{r.name('name')} is required")
        if resource in weights:
            raise ConfigError(f"{r.name('name')}: {resource} is listed twice")
        weights[resource] = r.integer("weight", minimum=0, maximum=100) or 1
        r.finish()
    strategy.finish()
    out.plugin_args["NodeResourceTopologyMatch"] = {
        "scoringStrategy": kind,
        **({"resources": weights} if weights else {}),
    }


def _priority_sort_args(args: _Fields, out: _ProfileArgs) -> None:
    points = args.number("agingPointsPerMinute")
    boost = args.integer("agingMaxBoost", minimum=0)
    starvation = args.number("agingStarvationSeconds")
    for key, value in (
        ("agingPointsPerMinute", points),
        ("agingMaxBoost", boost),
        ("agingStarvationSeconds", starvation),
    ):
        if value is not None:
            out.queue[key] = value


def _latency_score_args(args: _Fields, out: _ProfileArgs) -> None:
    """``defaultPreference`` (none, central, cloud) and its older spelling ``cloudFallback``:
    the profile's own, handed to its LatencyScore (which checks they agree)."""
    own: dict[str, Any] = {}
    cloud = args.boolean("cloudFallback")
    if cloud is not None:
        own["cloudFallback"] = cloud
    preference = args.string("defaultPreference")
    if preference is not None:
        choices = tuple(p.value for p in DefaultPreference)
        if preference not in choices:
            raise ConfigError(
                f"{args.name('defaultPreference')} must be one of {', '.join(choices)}, "
                f"not {preference!r}"
            )
        own["defaultPreference"] = preference
    if own:
        out.plugin_args["LatencyScore"] = own


def _volume_binding_args(args: _Fields, out: _ProfileArgs) -> None:
    timeout = args.integer("bindTimeoutSeconds", minimum=0)
    args.ignore("shape", "lasched does not score nodes by storage capacity")
    if timeout is not None:
        out.plugin_args["VolumeBinding"] = {"bindTimeoutSeconds": timeout}


def _no_args(name: str) -> ReadArgs:
    def read(args: _Fields, out: _ProfileArgs) -> None:
        args.ignore_rest(f"{name} takes no args")

    return read


_TAKE_NO_ARGS = (
    "SchedulingGates",
    "ImageLocality",
    "NodeUnschedulable",
    "TaintToleration",
    "NodePorts",
    "LatencyFilter",
    "GangPreemption",
    "DefaultBinder",
    "VolumeRestrictions",
    "VolumeZone",
    "NodeVolumeLimits",
    "CloudTier",
)

_ARGS: Mapping[str, ReadArgs] = {
    "NodeResourcesFit": _fit_args,
    "NodeResourcesBalancedAllocation": _balanced_args,
    "DefaultPreemption": _preemption_args,
    "NodeAffinity": _node_affinity_args,
    "Coscheduling": _coscheduling_args,
    "PrioritySort": _priority_sort_args,
    "LatencyScore": _latency_score_args,
    "VolumeBinding": _volume_binding_args,
    "NodeResourceTopologyMatch": _topology_match_args,
    **{name: _no_args(name) for name in _TAKE_NO_ARGS},
}
"""How the args of each of lasched's plugins are read; a plugin of the registry without
an entry reads its own (its factory gets them as written)."""
