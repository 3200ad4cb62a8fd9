"""Each earlier system's default as a profile option: the central node and the cloud tier."""

from __future__ import annotations

import pytest

from lasched import kubeschedconfig, settings
from lasched.cache.cache import NodeInfo
from lasched.framework.interface import CycleState
from lasched.framework.runtime import FitError, Framework, ScheduleResult
from lasched.latency.cache import LatencyCache
from lasched.model.pod import PodInfo
from lasched.plugins.cloudtier import DROPPED, CloudTier
from lasched.plugins.latency import DefaultPreference, LatencyScore
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.settings import ConfigError
from tests.unit.factories import make_node, make_pod

CLOUD = {"kubernetes.io/role": "cloud"}


def mesh(rtts: dict[tuple[str, str], float]) -> LatencyCache:
    cache = LatencyCache(ttl_seconds=30)
    for (a, b), ms in rtts.items():
        cache.observe(a, b, median_ms=ms)
    return cache


# a-b 2 ms, a-c 10 ms, b-c 4 ms: means a 6, b 3, c 7: b is the central node.
TRIANGLE = {("a", "b"): 2.0, ("a", "c"): 10.0, ("b", "c"): 4.0}


def scores(plugin: LatencyScore, pod: PodInfo, names: list[str]) -> dict[str, int]:
    state = CycleState()
    nodes = [NodeInfo(make_node(n)) for n in names]
    assert plugin.pre_score(state, pod, nodes).ok
    raw = [plugin.score(state, pod, n) for n in nodes]
    plugin.normalize(state, pod, raw)
    return dict(zip(names, raw, strict=True))


def test_central_prefers_the_lowest_mean_rtt_to_the_other_nodes() -> None:
    """The node with the lowest mean RTT to the others scores 100, the highest 0."""
    names = ["a", "b", "c", "d"]
    s = LatencyScore(
        mesh(TRIANGLE), node_names=lambda: names, default_preference=DefaultPreference.CENTRAL
    )
    assert s.mean_rtt() == {"a": 6.0, "b": 3.0, "c": 7.0}
    # d is measured to nothing: unknown, last. Feasible nodes only are ranked.
    assert scores(s, make_pod("p"), ["a", "b", "c", "d"]) == {"a": 25, "b": 100, "c": 0, "d": 0}


def test_mean_rtt_is_computed_once_per_latency_change() -> None:
    """Pods scored between two RTT changes reuse one computation."""
    names = ["a", "b", "c"]

    def node_names() -> list[str]:
        return names

    cache = mesh(TRIANGLE)
    s = LatencyScore(cache, node_names=node_names, default_preference=DefaultPreference.CENTRAL)
    first = s.mean_rtt()
    for _ in range(5):
        assert s.mean_rtt() is first
    cache.observe("a", "b", median_ms=20.0)
    again = s.mean_rtt()
    assert again is not first and again["a"] != first["a"]


def test_pods_with_requirements_are_not_moved_by_the_default() -> None:
    """The default preference is for pods that state no latency requirement."""
    s = LatencyScore(mesh(TRIANGLE), default_preference=DefaultPreference.CENTRAL)
    pod = PodInfo({"metadata": {"name": "h", "annotations": {"lasched.io/max-rtt": "a=5"}}})
    state = CycleState()
    assert s.pre_score(state, pod, []).ok
    assert state.data["LatencyScore/mode"] == "rtt"  # near a, its limit's place; not central


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, DefaultPreference.NONE),
        ({"defaultPreference": "central"}, DefaultPreference.CENTRAL),
        ({"cloudFallback": True}, DefaultPreference.CLOUD),
        ({"cloudFallback": True, "defaultPreference": "cloud"}, DefaultPreference.CLOUD),
    ],
    ids=["none", "central", "cloudFallback", "both-agree"],
)
def test_profile_args_choose_the_default(args: dict[str, object], expected: object) -> None:
    """A profile's LatencyScore args pick its default; the latency view stays shared."""
    shared = LatencyScore(LatencyCache())
    own = shared.configured(args)
    assert own.default_preference is expected
    assert own.mean_rtt() is shared.mean_rtt()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"defaultPreference": "nearest"}, "args.defaultPreference must be one of none"),
        ({"cloudFallback": "yes"}, "args.cloudFallback must be true or false"),
        (
            {"cloudFallback": False, "defaultPreference": "cloud"},
            "args.cloudFallback=false contradicts args.defaultPreference=cloud",
        ),
        ({"prefer": "x"}, "args.prefer is not an arg of LatencyScore"),
    ],
    ids=["unknown-value", "not-bool", "contradiction", "unknown-arg"],
)
def test_bad_args_name_the_field(args: dict[str, object], message: str) -> None:
    """A bad arg is refused with its name."""
    with pytest.raises(ValueError, match=message):
        LatencyScore(LatencyCache()).configured(args, "args")


def tiered(*specs: tuple[str, str, bool]) -> list[NodeInfo]:
    return [NodeInfo(make_node(n, cpu=cpu, labels=CLOUD if c else None)) for n, cpu, c in specs]


def test_hard_tier_keeps_cloud_nodes_for_when_no_edge_node_fits() -> None:
    """An edge node that fits wins over a roomier cloud node; with none, the cloud is used."""
    fit = NodeResourcesFit()
    fw = Framework(pre_filters=[], filters=[fit, CloudTier()], scores=[(fit, 1)])
    nodes = tiered(("edge-1", "2", False), ("cloud-1", "64", True))
    small = fw.schedule(CycleState(), make_pod("small", cpu="1"), nodes)
    assert isinstance(small, ScheduleResult) and small.node == "edge-1"
    big = fw.schedule(CycleState(), make_pod("big", cpu="4"), nodes)
    assert isinstance(big, ScheduleResult) and big.node == "cloud-1"
    huge = fw.schedule(CycleState(), make_pod("huge", cpu="100"), nodes)
    assert isinstance(huge, FitError)  # the tier never hides why nothing fits
    assert "Insufficient cpu" in huge.summary()


def test_hard_tier_says_why_cloud_nodes_were_dropped() -> None:
    """The dropped cloud nodes carry CloudTier's reason (what lasched explain shows)."""
    fw = Framework(pre_filters=[], filters=[CloudTier()], scores=[])
    nodes = tiered(("edge-1", "8", False), ("cloud-1", "8", True), ("cloud-2", "8", True))
    failed: dict[str, object] = {}
    kept = fw.narrow(CycleState(), make_pod("p"), nodes, failed)  # type: ignore[arg-type]
    assert kept == [0]
    assert {n: (s.plugin, s.message) for n, s in failed.items()} == {  # type: ignore[attr-defined]
        "cloud-1": ("CloudTier", DROPPED),
        "cloud-2": ("CloudTier", DROPPED),
    }


def test_profile_options_in_lasched_yaml() -> None:
    """profiles[].defaultPreference and cloudTier become LatencyScore's arg and CloudTier."""
    s = settings.parse(
        {
            "profiles": [
                {"schedulerName": "my-latency-scheduler", "defaultPreference": "central"},
                {"schedulerName": "custom-scheduler", "cloudTier": "hard"},
            ]
        }
    )
    central, edge = s.profiles
    assert central.plugin_args == {"LatencyScore": {"defaultPreference": "central"}}
    assert [r.name for r in edge.plugins.points[next(iter(edge.plugins.points))].enabled] == [
        "CloudTier"
    ]
    with pytest.raises(ConfigError, match=r"profiles\[0\]\.cloudTier must be one of none, hard"):
        settings.parse({"profiles": [{"cloudTier": "soft"}]})
    with pytest.raises(ConfigError, match=r"profiles\[0\]\.defaultPreference must be one of"):
        settings.parse({"profiles": [{"defaultPreference": "edge"}]})


def test_kube_scheduler_configuration_args_are_per_profile() -> None:
    """LatencyScore's pluginConfig args may differ between profiles."""
    t = kubeschedconfig.translate(
        {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "profiles": [
                {
                    "schedulerName": "a",
                    "pluginConfig": [
                        {"name": "LatencyScore", "args": {"defaultPreference": "central"}}
                    ],
                },
                {
                    "schedulerName": "b",
                    "pluginConfig": [{"name": "LatencyScore", "args": {"cloudFallback": True}}],
                    "plugins": {"filter": {"enabled": [{"name": "CloudTier"}]}},
                },
            ],
        }
    )
    a, b = t.settings.profiles
    assert a.plugin_args["LatencyScore"] == {"defaultPreference": "central"}
    assert b.plugin_args["LatencyScore"] == {"cloudFallback": True}
