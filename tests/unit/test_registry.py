"""The registry places each plugin at every point it implements, by kube-scheduler's rules."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import SUCCESS, CycleState, Plugin, Status
from lasched.framework.registry import (
    ExtensionPoint,
    PluginRef,
    PluginsConfig,
    PluginSet,
    Registry,
    RegistryError,
    extension_points,
    place,
)
from lasched.framework.runtime import Framework
from lasched.framework.waiting import WaitingRoom
from lasched.kube.client import KubeClient
from lasched.latency.cache import LatencyCache
from lasched.model.pod import PodInfo
from lasched.plugins.coscheduling import Coscheduling
from lasched.plugins.latency import LatencyFilter, LatencyScore
from lasched.plugins.preemption import Evictions
from lasched.profiles import DEFAULT_PLUGINS, IN_TREE, build_framework
from lasched.settings import ConfigError, ProfileSettings, Settings

P = ExtensionPoint


def build(profile: ProfileSettings | None = None, settings: Settings | None = None) -> Framework:
    """A profile's framework over an empty cache (the binder is never called)."""
    cache = SchedulerCache()
    gang = Coscheduling(
        clock=time.monotonic, room=WaitingRoom(time.monotonic), node_of=cache.node_of
    )
    latency = LatencyCache(ttl_seconds=30)
    return build_framework(
        profile or ProfileSettings(),
        settings or Settings(),
        client=cast(KubeClient, None),
        cache=cache,
        gang=gang,
        pdbs=list,
        latency=LatencyFilter(latency),
        latency_score=LatencyScore(latency),
        evictions=Evictions(cache.node_info),
    )


def at(fw: Framework) -> dict[ExtensionPoint, list[str]]:
    """Plugin names per extension point, in order."""
    return {
        P.PRE_ENQUEUE: [p.name for p in fw.pre_enqueue],
        P.QUEUE_SORT: [fw.queue_sort.name] if fw.queue_sort else [],
        P.PRE_FILTER: [p.name for p in fw.pre_filters],
        P.FILTER: [p.name for p in fw.filters],
        P.POST_FILTER: [p.name for p in fw.post_filters],
        P.PRE_SCORE: [p.name for p in fw.pre_scores],
        P.SCORE: [p.name for p, _ in fw.scores],
        P.RESERVE: [p.name for p in fw.reserves],
        P.PERMIT: [p.name for p in fw.permits],
        P.PRE_BIND: [p.name for p in fw.pre_binds],
        P.BIND: [p.name for p in fw.binders],
    }


def instances(fw: Framework) -> dict[str, Plugin]:
    found: dict[str, Plugin] = {}
    for plugins in (
        fw.pre_enqueue, fw.pre_filters, fw.filters, fw.post_filters, fw.pre_scores,
        [p for p, _ in fw.scores], fw.reserves, fw.permits, fw.binders,
    ):  # fmt: skip
        for p in plugins:
            found.setdefault(p.name, p)
    if fw.queue_sort is not None:
        found[fw.queue_sort.name] = fw.queue_sort
    return found


def profile_with(**points: PluginSet) -> ProfileSettings:
    multi = points.pop("multiPoint", PluginSet())
    return ProfileSettings(
        plugins=PluginsConfig(
            multi_point=multi, points={ExtensionPoint(k): v for k, v in points.items()}
        )
    )


def off(*names: str) -> PluginSet:
    return PluginSet(disabled=tuple(PluginRef(n) for n in names))


def test_default_profile_is_todays_plugin_order() -> None:
    """The defaults give each point the plugins, in the order, lasched has always run."""
    assert at(build()) == {
        P.PRE_ENQUEUE: ["SchedulingGates", "Coscheduling"],
        P.QUEUE_SORT: ["PrioritySort"],
        P.PRE_FILTER: [
            "Coscheduling", "NodeAffinity", "NodePorts", "LatencyFilter", "VolumeRestrictions",
            "NodeVolumeLimits", "VolumeBinding", "VolumeZone", "NodeResourceTopologyMatch",
            "PodTopologySpread", "InterPodAffinity",
        ],
        P.FILTER: [
            "NodeUnschedulable", "TaintToleration", "NodeAffinity", "NodePorts",
            "LatencyFilter", "NodeResourcesFit", "VolumeRestrictions", "NodeVolumeLimits",
            "VolumeBinding", "VolumeZone", "NodeResourceTopologyMatch", "PodTopologySpread",
            "InterPodAffinity",
        ],
        P.POST_FILTER: ["GangPreemption", "Coscheduling", "DefaultPreemption"],
        P.PRE_SCORE: [
            "NodeAffinity", "NodeResourceTopologyMatch", "PodTopologySpread", "InterPodAffinity",
            "ImageLocality", "LatencyScore",
        ],
        P.SCORE: [
            "TaintToleration", "NodeAffinity", "NodeResourcesFit", "NodeResourceTopologyMatch",
            "PodTopologySpread", "InterPodAffinity", "NodeResourcesBalancedAllocation",
            "ImageLocality", "LatencyScore",
        ],
        P.RESERVE: ["Coscheduling", "VolumeBinding", "NodeResourceTopologyMatch"],
        P.PERMIT: ["Coscheduling"],
        P.PRE_BIND: ["VolumeBinding"],
        P.BIND: ["DefaultBinder"],
    }  # fmt: skip


@pytest.mark.parametrize("name", DEFAULT_PLUGINS)
def test_each_default_plugin_runs_at_every_point_it_implements(name: str) -> None:
    """A default plugin is placed at exactly the points whose Protocol it implements."""
    fw = build()
    plugin = instances(fw)[name]
    placed = {point for point, names in at(fw).items() if name in names}
    assert placed == set(extension_points(plugin))
    assert placed, f"{name} implements no extension point"


def test_a_plugin_is_built_once_for_all_its_points() -> None:
    """One instance serves every point of a profile (its PreFilter state reaches its Filter)."""
    fw = build()
    pre: list[object] = [p for p in fw.pre_filters if p.name == "NodeAffinity"]
    filters: list[object] = [p for p in fw.filters if p.name == "NodeAffinity"]
    scores: list[object] = [p for p, _ in fw.scores if p.name == "NodeAffinity"]
    assert len(pre) == len(filters) == len(scores) == 1
    assert pre[0] is filters[0] is scores[0]


def test_default_weights_are_kube_schedulers() -> None:
    """TaintToleration 3, NodeAffinity, PodTopologySpread and InterPodAffinity 2, the
    resource scores and ImageLocality 1, LatencyScore 5."""
    weights = {p.name: w for p, w in build().scores}
    assert weights == {
        "TaintToleration": 3, "NodeAffinity": 2, "NodeResourcesFit": 1,
        "NodeResourceTopologyMatch": 1,
        "PodTopologySpread": 2, "InterPodAffinity": 2,
        "NodeResourcesBalancedAllocation": 1, "ImageLocality": 1, "LatencyScore": 5,
    }  # fmt: skip


def test_disabled_at_a_point_leaves_the_plugins_other_points() -> None:
    """TaintToleration off at filter still scores; off at score still filters."""
    names = at(build(profile_with(filter=off("TaintToleration"))))
    assert "TaintToleration" not in names[P.FILTER]
    assert "TaintToleration" in names[P.SCORE]
    names = at(build(profile_with(score=off("TaintToleration", "NodeResourcesBalancedAllocation"))))
    assert names[P.SCORE] == [
        "NodeAffinity", "NodeResourcesFit", "NodeResourceTopologyMatch", "PodTopologySpread",
        "InterPodAffinity", "ImageLocality", "LatencyScore",
    ]  # fmt: skip
    assert "TaintToleration" in names[P.FILTER]


def test_disabled_at_multipoint_removes_the_plugin_everywhere() -> None:
    """Off at multiPoint: NodeAffinity neither pre-filters, filters, pre-scores nor scores."""
    names = at(build(profile_with(multiPoint=off("NodeAffinity"))))
    assert not any("NodeAffinity" in n for n in names.values())
    assert names[P.FILTER] == [
        "NodeUnschedulable", "TaintToleration", "NodePorts", "LatencyFilter", "NodeResourcesFit",
        "VolumeRestrictions", "NodeVolumeLimits", "VolumeBinding", "VolumeZone",
        "NodeResourceTopologyMatch", "PodTopologySpread", "InterPodAffinity",
    ]  # fmt: skip


def test_star_disables_every_default_at_a_point() -> None:
    """``"*"`` at score keeps only what score enables, with its own weight."""
    fit = PluginRef("NodeResourcesFit", weight=4)
    fw = build(profile_with(score=PluginSet(enabled=(fit,), disabled=(PluginRef("*"),))))
    assert [(p.name, w) for p, w in fw.scores] == [("NodeResourcesFit", 4)]
    assert at(fw)[P.FILTER][-1] == "InterPodAffinity"


def test_star_at_multipoint_leaves_only_what_is_enabled() -> None:
    """With every default off, a profile is exactly its enabled plugins."""
    enabled = tuple(PluginRef(n) for n in ("PrioritySort", "NodeResourcesFit", "DefaultBinder"))
    fw = build(profile_with(multiPoint=PluginSet(enabled=enabled, disabled=(PluginRef("*"),))))
    assert {k: v for k, v in at(fw).items() if v} == {
        P.QUEUE_SORT: ["PrioritySort"],
        P.FILTER: ["NodeResourcesFit"],
        P.SCORE: ["NodeResourcesFit"],
        P.BIND: ["DefaultBinder"],
    }


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ({"score": PluginSet(enabled=(PluginRef("NodeAffinity", 7),))}, 7),
        ({"multiPoint": PluginSet(enabled=(PluginRef("NodeAffinity", 6),))}, 6),
        ({"score": PluginSet(enabled=(PluginRef("NodeAffinity", 0),))}, 1),
        ({"score": PluginSet(enabled=(PluginRef("NodeAffinity"),))}, 1),
        (
            {
                "score": PluginSet(enabled=(PluginRef("NodeAffinity", 8),)),
                "multiPoint": PluginSet(enabled=(PluginRef("NodeAffinity", 6),)),
            },
            8,
        ),
    ],
    ids=["score", "multipoint", "zero-is-one", "none-is-one", "score-over-multipoint"],
)
def test_score_weight_comes_from_score_then_multipoint(
    points: dict[str, PluginSet], expected: int
) -> None:
    """kube-scheduler's precedence: the score entry, else multiPoint's; none or 0 is 1."""
    weights = {p.name: w for p, w in build(profile_with(**points)).scores}
    assert weights["NodeAffinity"] == expected


def test_explicitly_enabled_default_goes_first_at_its_point() -> None:
    """A default re-enabled at a point runs before the multiPoint plugins there."""
    names = at(build(profile_with(filter=PluginSet(enabled=(PluginRef("NodeResourcesFit"),)))))
    assert names[P.FILTER][0] == "NodeResourcesFit"
    assert names[P.FILTER].count("NodeResourcesFit") == 1


def test_zero_score_weight_and_preemption_off_disable_their_plugins() -> None:
    """lasched's own file: scoreWeights 0 and preemption.enabled false are disabled lists."""
    weights = {**ProfileSettings().score_weights, "LatencyScore": 0}
    fw = build(ProfileSettings(score_weights=weights), Settings(preemption_enabled=False))
    names = at(fw)
    assert "LatencyScore" not in names[P.SCORE]
    assert "LatencyScore" in names[P.PRE_SCORE]
    assert names[P.POST_FILTER] == ["Coscheduling"]


def test_unknown_plugin_is_an_error_naming_it_and_the_field() -> None:
    """A typo fails loudly, with the field, the name, and the names lasched has."""
    ref = PluginRef("NodeResourcesFitt", source="profiles[0].plugins.score.enabled[1]")
    with pytest.raises(ConfigError) as err:
        build(profile_with(score=PluginSet(enabled=(ref,))))
    message = str(err.value)
    assert (
        'profiles[0].plugins.score.enabled[1].name: unknown plugin "NodeResourcesFitt"' in message
    )
    assert "lasched has: CloudTier, Coscheduling, DefaultBinder, DefaultPreemption" in message


def test_a_plugin_enabled_where_it_cannot_run_is_an_error() -> None:
    """NodePorts does not score: enabling it at score names what it implements."""
    ref = PluginRef("NodePorts", source="profiles[0].plugins.score.enabled[0]")
    expected = r'\]\.name: plugin "NodePorts" cannot run at score; it implements preFilter'
    with pytest.raises(ConfigError, match=expected):
        build(profile_with(score=PluginSet(enabled=(ref,))))


def test_a_plugin_enabled_twice_at_a_point_is_an_error() -> None:
    """Double registration is a configuration error, as in kube-scheduler."""
    twice = (PluginRef("NodePorts"), PluginRef("NodePorts", source="x.enabled[1]"))
    expected = r'x\.enabled\[1\]\.name: plugin "NodePorts" is enabled twice at filter'
    with pytest.raises(ConfigError, match=expected):
        build(profile_with(filter=PluginSet(enabled=twice)))


def test_a_profile_needs_one_queue_sort_and_a_binder() -> None:
    """kube-scheduler's two rules for a profile's plugins."""
    with pytest.raises(ConfigError, match="needs exactly one queueSort plugin, not 0"):
        build(profile_with(queueSort=off("PrioritySort")))
    with pytest.raises(ConfigError, match="needs a bind plugin"):
        build(profile_with(bind=off("*")))


def test_profile_percentage_overrides_the_top_level_one() -> None:
    """percentageOfNodesToScore of the profile wins; without it, the top-level value."""
    top = Settings(percentage_of_nodes_to_score=30)
    assert build(settings=top).percentage_of_nodes_to_score == 30
    own = ProfileSettings(percentage_of_nodes_to_score=70)
    assert build(own, top).percentage_of_nodes_to_score == 70


def test_scoring_strategy_and_resource_weights_reach_node_resources_fit() -> None:
    """NodeResourcesFit is built from the profile's strategy and resource weights."""
    profile = ProfileSettings(scoring_strategy="MostAllocated", resource_weights={"cpu": 3})
    fit = instances(build(profile))["NodeResourcesFit"]
    assert (getattr(fit, "strategy", None), getattr(fit, "resources", None)) == (
        "MostAllocated",
        {"cpu": 3},
    )


def test_every_registered_plugin_is_named_as_registered() -> None:
    """The registry's keys are the plugins' own names (kube-scheduler's spelling)."""
    fw = build(profile_with(multiPoint=PluginSet(enabled=tuple(PluginRef(n) for n in IN_TREE))))
    assert set(instances(fw)) == set(IN_TREE)


# ---- the rules themselves, on a small registry of plain plugins ----


class Filter:
    def __init__(self, name: str) -> None:
        self.name = name

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        return SUCCESS


class FilterScore(Filter):
    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return 0

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        return None


def small_registry(*names: str, scoring: Sequence[str] = ()) -> Registry[None]:
    def factory(name: str) -> Any:
        return lambda args, handle: FilterScore(name) if name in scoring else Filter(name)

    return {n: factory(n) for n in names}


def names(
    point: ExtensionPoint, registry: Registry[None], *refs: str, **points: PluginSet
) -> list[str]:
    multi = points.pop("multiPoint", PluginSet())
    config = PluginsConfig(multi_point=multi, points={P(k): v for k, v in points.items()})
    placed = place(registry, None, [PluginRef(n) for n in refs], config)
    return [p.name for p in placed.at(point)]


def test_explicit_entries_order_around_multipoint() -> None:
    """kube-scheduler's three parts: overridden defaults, the rest of multiPoint, new ones."""
    reg = small_registry("A", "B", "C", "D")
    enabled = PluginSet(enabled=(PluginRef("D"), PluginRef("C")))
    assert names(P.FILTER, reg, "A", "B", "C", filter=enabled) == ["C", "A", "B", "D"]


def test_multipoint_entry_of_a_default_replaces_it_in_place() -> None:
    """Re-enabling a default at multiPoint keeps its place and takes the new weight."""
    reg = small_registry("A", "B", scoring=("A", "B"))
    config = PluginsConfig(multi_point=PluginSet(enabled=(PluginRef("A", 9),)))
    placed = place(reg, None, [PluginRef("A"), PluginRef("B")], config)
    assert [p.name for p in placed.at(P.SCORE)] == ["A", "B"]
    assert placed.weights == {"A": 9, "B": 1}


def test_a_factory_refusing_its_args_is_an_error_naming_the_plugin() -> None:
    """A ValueError from a factory becomes a RegistryError that names the plugin."""

    def picky(args: Any, handle: None) -> Plugin:
        raise ValueError("hardPodAffinityWeight must be in 0..100, not 300")

    with pytest.raises(RegistryError, match=r'the args of plugin "Picky": hardPodAffinityWeight'):
        place({"Picky": picky}, None, [PluginRef("Picky")], PluginsConfig())


@given(
    disabled=st.sets(
        st.tuples(st.sampled_from(list(ExtensionPoint)), st.sampled_from(DEFAULT_PLUGINS))
    )
)
def test_disabling_removes_exactly_what_is_disabled(
    disabled: set[tuple[ExtensionPoint, str]],
) -> None:
    """Any set of (point, plugin) disabled: every other default stays, in default order."""
    if (P.QUEUE_SORT, "PrioritySort") in disabled or (P.BIND, "DefaultBinder") in disabled:
        return  # a profile needs both: tested above
    points: dict[ExtensionPoint, PluginSet] = {}
    for point, name in sorted(disabled, key=lambda d: (d[0].value, d[1])):
        own = points.get(point, PluginSet())
        points[point] = replace(own, disabled=(*own.disabled, PluginRef(name)))
    fw = build(ProfileSettings(plugins=PluginsConfig(points=points)))
    full = at(build())
    for point, placed in at(fw).items():
        assert placed == [n for n in full[point] if (point, n) not in disabled]
