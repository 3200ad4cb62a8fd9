"""Profiles: a scheduler name, its plugins in kube-scheduler's order, its recorder.

Built once at start from settings. Each profile's plugins come from the
in-tree registry (:data:`IN_TREE`: a plugin's name and its factory), the
default plugin list (:data:`DEFAULT_PLUGINS`) and the profile's own
enabled and disabled lists, args and score weights, placed by
lasched.framework.registry's rules, which are kube-scheduler's. Every
profile shares the cache, the gang waiting room and the evictions in flight,
so a victim being evicted for one profile's pod is terminating for all of
them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import cast

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.cache.topology import Topologies
from lasched.cache.volumes import VolumeCache
from lasched.framework.interface import (
    BindPlugin,
    CycleState,
    FilterPlugin,
    PermitPlugin,
    Plugin,
    PostFilterPlugin,
    PreBindPlugin,
    PreEnqueuePlugin,
    PreFilterPlugin,
    PreScorePlugin,
    QueueSortPlugin,
    ReservePlugin,
    ScorePlugin,
    Status,
)
from lasched.framework.registry import (
    Args,
    ExtensionPoint,
    PluginRef,
    PluginsConfig,
    PluginSet,
    Registry,
    RegistryError,
    place,
)
from lasched.framework.runtime import Framework
from lasched.kube.binding import DefaultBinder
from lasched.kube.client import KubeClient
from lasched.kube.events import EventRecorder
from lasched.kube.volumes import KubeVolumeWrites
from lasched.model.affinity import NamespaceLabels, no_namespace_labels
from lasched.model.pdb import PDB
from lasched.model.pod import PodInfo
from lasched.plugins.cloudtier import CloudTier
from lasched.plugins.coscheduling import Coscheduling
from lasched.plugins.imagelocality import ImageLocality
from lasched.plugins.interpodaffinity import InterPodAffinity
from lasched.plugins.latency import LatencyFilter, LatencyScore
from lasched.plugins.nodeaffinity import NodeAffinity
from lasched.plugins.nodeports import NodePorts
from lasched.plugins.noderesources import BalancedAllocation, NodeResourcesFit
from lasched.plugins.noderesourcetopology import NodeResourceTopologyMatch
from lasched.plugins.nodeunschedulable import NodeUnschedulable
from lasched.plugins.nodevolumelimits import NodeVolumeLimits
from lasched.plugins.podtopologyspread import PodTopologySpread
from lasched.plugins.preemption import (
    MIN_CANDIDATE_NODES_ABSOLUTE,
    MIN_CANDIDATE_NODES_PERCENTAGE,
    DefaultPreemption,
    Evictions,
    GangPreemption,
)
from lasched.plugins.queuesort import PrioritySort
from lasched.plugins.schedulinggates import SchedulingGates
from lasched.plugins.tainttoleration import TaintToleration
from lasched.plugins.volumebinding import VolumeBinding
from lasched.plugins.volumerestrictions import VolumeRestrictions
from lasched.plugins.volumezone import VolumeZone
from lasched.settings import ConfigError, ProfileSettings, Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Profile:
    """A scheduler name, the plugins that serve it, and its event recorder."""

    name: str
    framework: Framework
    events: EventRecorder


class Handle:
    """What a plugin's factory may use: the settings, the profile's own, the parts
    every profile shares, and the profile's filters (preemption simulates them)."""

    def __init__(
        self,
        *,
        settings: Settings,
        profile: ProfileSettings,
        client: KubeClient,
        cache: SchedulerCache,
        gang: Coscheduling,
        pdbs: Callable[[], Iterable[PDB]],
        latency: LatencyFilter,
        latency_score: LatencyScore,
        evictions: Evictions,
        namespace_labels: NamespaceLabels = no_namespace_labels,
        volumes: VolumeCache | None = None,
        topologies: Topologies | None = None,
    ) -> None:
        self.settings = settings
        self.topologies = topologies if topologies is not None else Topologies()
        self.profile = profile
        self.client = client
        self.cache = cache
        self.gang = gang
        self.pdbs = pdbs
        self.latency = latency
        self.latency_score = latency_score
        self.evictions = evictions
        self.namespace_labels = namespace_labels
        self.volumes = volumes if volumes is not None else VolumeCache()
        self._framework: Framework | None = None

    def attach(self, framework: Framework) -> None:
        """The framework built from this handle's plugins."""
        self._framework = framework

    def filter_node(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        """Every Filter of the profile on one node."""
        if self._framework is None:
            raise RuntimeError(f"profile {self.profile.scheduler_name!r} is still being built")
        return self._framework.filter_node(state, pod, node)


def _fit(args: Args, h: Handle) -> NodeResourcesFit:
    p = h.profile
    return NodeResourcesFit(p.scoring_strategy, resources=p.resource_weights, shape=p.scoring_shape)


def _default_preemption(args: Args, h: Handle) -> DefaultPreemption:
    return DefaultPreemption(
        min_candidate_nodes_percentage=int(
            args.get("minCandidateNodesPercentage", MIN_CANDIDATE_NODES_PERCENTAGE)
        ),
        min_candidate_nodes_absolute=int(
            args.get("minCandidateNodesAbsolute", MIN_CANDIDATE_NODES_ABSOLUTE)
        ),
        node_info=h.cache.node_info,
        filter_node=h.filter_node,
        pdbs=h.pdbs,
        nominated_node=h.cache.nominated_node,
        evictions=h.evictions,
        gang_budget=h.gang.disruption_budget,
        lowest_priority=h.cache.lowest_priority,
    )


def _gang_preemption(args: Args, h: Handle) -> GangPreemption:
    cache = h.cache
    return GangPreemption(
        gang=h.gang,
        preemption=_default_preemption({}, h),
        nodes=lambda: list(cache.node_infos()),
    )


def _volume_binding(args: Args, h: Handle) -> VolumeBinding:
    cache = h.cache

    def node_labels(name: str) -> Mapping[str, str] | None:
        ni = cache.node_info(name)
        return None if ni is None or ni.node is None else ni.node.labels

    return VolumeBinding.from_args(
        args, h.volumes, KubeVolumeWrites(h.client), node_labels=node_labels
    )


def _priority_sort(args: Args, h: Handle) -> PrioritySort:
    q = h.settings.queue
    return PrioritySort(points_per_minute=q.aging_points_per_minute, max_boost=q.aging_max_boost)


IN_TREE: Registry[Handle] = {
    "PrioritySort": _priority_sort,
    "SchedulingGates": lambda args, h: SchedulingGates(),
    "NodeUnschedulable": lambda args, h: NodeUnschedulable(),
    "TaintToleration": lambda args, h: TaintToleration(),
    "NodeAffinity": lambda args, h: NodeAffinity(),
    "NodePorts": lambda args, h: NodePorts(),
    "NodeResourcesFit": _fit,
    "NodeResourcesBalancedAllocation": lambda args, h: BalancedAllocation(),
    "ImageLocality": lambda args, h: ImageLocality(h.cache.images),
    "VolumeRestrictions": lambda args, h: VolumeRestrictions(h.volumes, h.cache),
    "NodeVolumeLimits": lambda args, h: NodeVolumeLimits(h.volumes),
    "VolumeBinding": _volume_binding,
    "VolumeZone": lambda args, h: VolumeZone(h.volumes),
    "NodeResourceTopologyMatch": lambda args, h: NodeResourceTopologyMatch.from_args(
        h.topologies, args, node_info=h.cache.node_info
    ),
    "PodTopologySpread": lambda args, h: PodTopologySpread.from_args(h.cache, args),
    "InterPodAffinity": lambda args, h: InterPodAffinity.from_args(
        h.cache, args, namespace_labels=h.namespace_labels
    ),
    "DefaultPreemption": _default_preemption,
    "DefaultBinder": lambda args, h: DefaultBinder(h.client),
    # One gang state and one latency view for the process: a group's members may use
    # several profiles, and the extender answers with the same latency plugins.
    "Coscheduling": lambda args, h: h.gang,
    "GangPreemption": _gang_preemption,
    "LatencyFilter": lambda args, h: h.latency,
    # A profile's args choose its default preference; the latency view stays shared.
    "LatencyScore": lambda args, h: h.latency_score.configured(args, "args"),
    "CloudTier": lambda args, h: CloudTier(),
}
"""lasched's plugins by name: kube-scheduler's names for kube-scheduler's plugins."""

DEFAULT_PLUGINS: tuple[str, ...] = (
    "SchedulingGates",
    "PrioritySort",
    "GangPreemption",
    "Coscheduling",
    "NodeUnschedulable",
    "TaintToleration",
    "NodeAffinity",
    "NodePorts",
    "LatencyFilter",
    "NodeResourcesFit",
    "VolumeRestrictions",
    "NodeVolumeLimits",
    "VolumeBinding",
    "VolumeZone",
    "NodeResourceTopologyMatch",
    "PodTopologySpread",
    "InterPodAffinity",
    "DefaultPreemption",
    "NodeResourcesBalancedAllocation",
    "ImageLocality",
    "LatencyScore",
    "DefaultBinder",
)
"""The default profile, in kube-scheduler's default order (its ``getDefaultPlugins``).

lasched's own plugins sit where their order at each point matters: a group's
checks before the node filters and its preemption before the pod's, the
latency limits before the resource fit (a node too far away is rejected as
unresolvable, so preemption does not try it). NodeResourceTopologyMatch is
scheduler-plugins', in the default profile because it costs nothing for a pod
that asks no NUMA alignment (its PreFilter skips it; docs/numa.md)."""


def default_plugins(profile: ProfileSettings) -> tuple[PluginRef, ...]:
    """The default plugins, weighted by ``profile.score_weights``."""
    return tuple(PluginRef(name, profile.score_weights.get(name)) for name in DEFAULT_PLUGINS)


def profile_plugins(profile: ProfileSettings, settings: Settings) -> PluginsConfig:
    """The profile's own plugin lists, with what its lasched settings turn off.

    A score weight of 0 and ``preemption.enabled: false`` disable the plugin
    at that point, as a KubeSchedulerConfiguration's ``disabled`` list would.
    """
    off: dict[ExtensionPoint, tuple[PluginRef, ...]] = {
        ExtensionPoint.SCORE: tuple(
            PluginRef(name) for name, weight in profile.score_weights.items() if weight == 0
        ),
    }
    if not settings.preemption_enabled:
        off[ExtensionPoint.POST_FILTER] = (
            PluginRef("GangPreemption"),
            PluginRef("DefaultPreemption"),
        )
    points = dict(profile.plugins.points)
    for point, refs in off.items():
        if refs:
            own = points.get(point, PluginSet())
            points[point] = replace(own, disabled=(*own.disabled, *refs))
    return replace(profile.plugins, points=points)


def build_framework(
    profile: ProfileSettings,
    settings: Settings,
    *,
    client: KubeClient,
    cache: SchedulerCache,
    gang: Coscheduling,
    pdbs: Callable[[], Iterable[PDB]],
    latency: LatencyFilter,
    latency_score: LatencyScore,
    evictions: Evictions,
    namespace_labels: NamespaceLabels = no_namespace_labels,
    volumes: VolumeCache | None = None,
    topologies: Topologies | None = None,
    registry: Registry[Handle] = IN_TREE,
) -> Framework:
    """A profile's plugins placed by the registry's rules, scores weighted by config.

    ``evictions`` is shared by every profile: a victim being evicted for one
    profile's pod is terminating for all of them; so is ``volumes``, what the
    volume plugins read and assume (none given: no claims, volumes or classes).
    A plugin the registry does not know, or one enabled where it cannot run, is
    a :class:`ConfigError` naming the field.
    """
    handle = Handle(
        settings=settings, profile=profile, client=client, cache=cache, gang=gang,
        pdbs=pdbs, latency=latency, latency_score=latency_score, evictions=evictions,
        namespace_labels=namespace_labels, volumes=volumes, topologies=topologies,
    )  # fmt: skip
    name = profile.scheduler_name
    try:
        placed = place(
            registry,
            handle,
            default_plugins(profile),
            profile_plugins(profile, settings),
            profile.plugin_args,
        )
    except RegistryError as e:
        raise ConfigError(f"profile {name!r}: {e}") from e
    at = placed.at
    queue_sort = at(ExtensionPoint.QUEUE_SORT)
    if len(queue_sort) != 1:
        raise ConfigError(
            f"profile {name!r} needs exactly one queueSort plugin, not {len(queue_sort)}"
        )
    if not at(ExtensionPoint.BIND):
        raise ConfigError(f"profile {name!r} needs a bind plugin (DefaultBinder)")
    scores = cast(tuple[ScorePlugin, ...], at(ExtensionPoint.SCORE))
    percentage = profile.percentage_of_nodes_to_score
    fw = Framework(
        queue_sort=cast(QueueSortPlugin, queue_sort[0]),
        pre_enqueue=cast(tuple[PreEnqueuePlugin, ...], at(ExtensionPoint.PRE_ENQUEUE)),
        pre_filters=cast(tuple[PreFilterPlugin, ...], at(ExtensionPoint.PRE_FILTER)),
        filters=cast(tuple[FilterPlugin, ...], at(ExtensionPoint.FILTER)),
        post_filters=cast(tuple[PostFilterPlugin, ...], at(ExtensionPoint.POST_FILTER)),
        pre_scores=cast(tuple[PreScorePlugin, ...], at(ExtensionPoint.PRE_SCORE)),
        scores=[(p, placed.weights[p.name]) for p in scores],
        reserves=cast(tuple[ReservePlugin, ...], at(ExtensionPoint.RESERVE)),
        permits=cast(tuple[PermitPlugin, ...], at(ExtensionPoint.PERMIT)),
        pre_binds=cast(tuple[PreBindPlugin, ...], at(ExtensionPoint.PRE_BIND)),
        binders=cast(tuple[BindPlugin, ...], at(ExtensionPoint.BIND)),
        percentage_of_nodes_to_score=(
            settings.percentage_of_nodes_to_score if percentage is None else percentage
        ),
        profile=name,
        batching=settings.opportunistic_batching,
    )
    handle.attach(fw)
    log.debug("profile=%s plugins=%s", name, describe(placed.points))
    return fw


def describe(points: Mapping[ExtensionPoint, tuple[Plugin, ...]]) -> str:
    """``filter=NodeUnschedulable,TaintToleration ...``, the points that have plugins."""
    return " ".join(
        f"{point.value}={','.join(p.name for p in plugins)}"
        for point, plugins in points.items()
        if plugins
    )
