"""Profiles: a scheduler name, its plugins in kube-scheduler's order, its recorder.

Built once at start from settings; every profile shares the cache, the gang
waiting room and the evictions in flight, so a victim being evicted for one
profile's pod is terminating for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lasched.cache.cache import SchedulerCache
from lasched.framework.interface import ScorePlugin
from lasched.framework.runtime import Framework
from lasched.kube.binding import DefaultBinder
from lasched.kube.client import KubeClient
from lasched.kube.events import EventRecorder
from lasched.model.pdb import PDB
from lasched.plugins.coscheduling import Coscheduling
from lasched.plugins.latency import LatencyFilter, LatencyScore
from lasched.plugins.nodeaffinity import NodeAffinity
from lasched.plugins.nodeports import NodePorts
from lasched.plugins.noderesources import BalancedAllocation, NodeResourcesFit
from lasched.plugins.nodeunschedulable import NodeUnschedulable
from lasched.plugins.preemption import DefaultPreemption, Evictions, GangPreemption
from lasched.plugins.schedulinggates import SchedulingGates
from lasched.plugins.tainttoleration import TaintToleration
from lasched.settings import ProfileSettings, Settings


@dataclass(slots=True)
class Profile:
    """A scheduler name, the plugins that serve it, and its event recorder."""

    name: str
    framework: Framework
    events: EventRecorder


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
) -> Framework:
    """A profile's plugins in kube-scheduler's order, scores weighted by config.

    ``evictions`` is shared by every profile: a victim being evicted for one
    profile's pod is terminating for all of them."""
    fit = NodeResourcesFit(profile.scoring_strategy)
    taints = TaintToleration()
    affinity = NodeAffinity()
    scorers: list[ScorePlugin] = [fit, BalancedAllocation(), affinity, taints, latency_score]
    weights = profile.score_weights
    ports = NodePorts()
    fw = Framework(
        pre_enqueue=[SchedulingGates(), gang],
        pre_filters=[gang, affinity, ports, latency],
        post_filters=[gang],
        reserves=[gang],
        permits=[gang],
        pre_scores=[affinity, latency_score],
        filters=[NodeUnschedulable(), taints, affinity, ports, latency, fit],
        binders=[DefaultBinder(client)],
        scores=[(p, weights[p.name]) for p in scorers if weights.get(p.name)],
        percentage_of_nodes_to_score=settings.percentage_of_nodes_to_score,
        profile=profile.scheduler_name,
        batching=settings.opportunistic_batching,
    )
    # Preemption simulates this profile's own filters on trimmed nodes. For a
    # group member, group-wide preemption is tried before the group lets go.
    preemption = DefaultPreemption(
        node_info=cache.node_info,
        filter_node=fw.filter_node,
        pdbs=pdbs,
        nominated_node=cache.nominated_node,
        evictions=evictions,
    )
    gang_preemption = GangPreemption(
        gang=gang, preemption=preemption, nodes=lambda: list(cache.node_infos())
    )
    if settings.preemption_enabled:
        fw.post_filters[:0] = [gang_preemption]
        fw.post_filters.append(preemption)
    return fw
