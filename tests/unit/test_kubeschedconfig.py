"""A KubeSchedulerConfiguration means in lasched what it means in kube-scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from lasched import cli, kubeschedconfig
from lasched.framework.registry import ExtensionPoint
from lasched.kubeschedconfig import is_kube_scheduler_configuration, parse_duration, translate
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.plugins.preemption import DefaultPreemption
from lasched.settings import ConfigError
from tests.unit.test_registry import at, build

P = ExtensionPoint

REALISTIC = """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
parallelism: 16
leaderElection:
  leaderElect: true
  leaseDuration: 30s
  renewDeadline: 20s
  retryPeriod: 4s
  resourceLock: leases
  resourceName: lasched-packer
  resourceNamespace: scheduling
clientConnection:
  kubeconfig: /etc/kubernetes/scheduler.conf
  qps: 50
  burst: 100
percentageOfNodesToScore: 40
podInitialBackoffSeconds: 2
podMaxBackoffSeconds: 20
profiles:
  - schedulerName: default-scheduler
  - schedulerName: packer
    percentageOfNodesToScore: 100
    plugins:
      multiPoint:
        disabled:
          - name: LatencyScore
      filter:
        disabled:
          - name: TaintToleration
      score:
        disabled:
          - name: NodeResourcesBalancedAllocation
          - name: TaintToleration
          - name: ImageLocality
        enabled:
          - name: NodeResourcesFit
            weight: 5
      preBind:
        disabled:
          - name: VolumeBinding
    pluginConfig:
      - name: NodeResourcesFit
        args:
          apiVersion: kubescheduler.config.k8s.io/v1
          kind: NodeResourcesFitArgs
          scoringStrategy:
            type: MostAllocated
            resources:
              - {name: cpu, weight: 2}
              - {name: memory, weight: 1}
      - name: DefaultPreemption
        args:
          minCandidateNodesPercentage: 20
          minCandidateNodesAbsolute: 50
      - name: VolumeBinding
        args:
          bindTimeoutSeconds: 600
"""


def ksc(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": kubeschedconfig.API_VERSION, "kind": kubeschedconfig.KIND, **fields}


def one_profile(**profile: Any) -> dict[str, Any]:
    return ksc(profiles=[{"schedulerName": "p", **profile}])


def test_a_realistic_configuration_translates() -> None:
    """Profiles, plugins, pluginConfig, backoff, leader election and the kubeconfig carry over."""
    t = translate(yaml.safe_load(REALISTIC))
    s = t.settings
    assert s.scheduler_names == ("default-scheduler", "packer")
    assert s.percentage_of_nodes_to_score == 40
    assert (s.queue.initial_backoff_seconds, s.queue.max_backoff_seconds) == (2, 20)
    le = s.leader_election
    assert (le.lease_duration_seconds, le.renew_deadline_seconds, le.retry_period_seconds) == (
        30, 20, 4,
    )  # fmt: skip
    assert (le.resource_name, le.resource_namespace) == ("lasched-packer", "scheduling")
    assert s.kubeconfig == "/etc/kubernetes/scheduler.conf"
    packer = s.profiles[1]
    assert packer.scoring_strategy == "MostAllocated"
    assert packer.resource_weights == {"cpu": 2, "memory": 1}
    assert packer.percentage_of_nodes_to_score == 100

    fw = build(packer, s)
    names = at(fw)
    assert names[P.FILTER] == [
        "NodeUnschedulable", "NodeAffinity", "NodePorts", "LatencyFilter", "NodeResourcesFit",
        "VolumeRestrictions", "NodeVolumeLimits", "VolumeBinding", "VolumeZone",
        "NodeResourceTopologyMatch", "PodTopologySpread", "InterPodAffinity",
    ]  # fmt: skip
    assert names[P.PRE_BIND] == []  # disabled at preBind
    assert names[P.RESERVE] == ["Coscheduling", "VolumeBinding", "NodeResourceTopologyMatch"]
    assert [(p.name, w) for p, w in fw.scores] == [
        ("NodeResourcesFit", 5), ("NodeAffinity", 2), ("NodeResourceTopologyMatch", 1),
        ("PodTopologySpread", 2), ("InterPodAffinity", 2),
    ]  # fmt: skip
    # Disabled at score only, ImageLocality keeps its (cheap) PreScore, as a plugin does
    # in kube-scheduler.
    assert names[P.PRE_SCORE] == [
        "NodeAffinity", "NodeResourceTopologyMatch", "PodTopologySpread", "InterPodAffinity",
        "ImageLocality",
    ]  # fmt: skip
    assert fw.percentage_of_nodes_to_score == 100
    [preemption] = [p for p in fw.post_filters if isinstance(p, DefaultPreemption)]
    assert (
        preemption.min_candidate_nodes_percentage,
        preemption.min_candidate_nodes_absolute,
    ) == (20, 50)
    assert at(build(s.profiles[0], s)) == at(build())  # a profile of defaults is the default


def test_ignored_fields_are_warned_about_by_path() -> None:
    """Each field lasched has no use for is one warning that names it."""
    warnings = translate(yaml.safe_load(REALISTIC)).warnings
    assert [w.split(" is ignored")[0] for w in warnings] == [
        "parallelism",
        "clientConnection.qps",
        "clientConnection.burst",
    ]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (ksc(enableProfiling=True), "enableProfiling"),
        (ksc(leaderElection={"resourceLock": "endpointsleases"}), "leaderElection.resourceLock"),
        (ksc(clientConnection={"contentType": "application/vnd.kubernetes.protobuf"}),
         "clientConnection.contentType"),
        (ksc(extenders=[{"urlPrefix": "http://x"}]), "extenders"),
        (one_profile(pluginConfig=[{"name": "Coscheduling",
                                    "args": {"permitWaitingTimeSeconds": 30}}]),
         "profiles[0].pluginConfig[0].args.permitWaitingTimeSeconds"),
        (one_profile(pluginConfig=[{"name": "NodeResourcesFit",
                                    "args": {"ignoredResources": ["example.com/x"]}}]),
         "profiles[0].pluginConfig[0].args.ignoredResources"),
        (one_profile(pluginConfig=[{"name": "TaintToleration", "args": {"x": 1}}]),
         "profiles[0].pluginConfig[0].args.x"),
        (one_profile(plugins={"filter": {"enabled": [{"name": "NodePorts", "weight": 3}]}}),
         "profiles[0].plugins.filter.enabled[0].weight"),
        (one_profile(pluginConfig=[{"name": "DynamicResources", "args": {"x": 1}}]),
         "profiles[0].pluginConfig[0]"),
    ],
    ids=[
        "profiling", "resource-lock", "content-type", "extenders", "coscheduling-timeout",
        "ignored-resources", "no-args", "weight-off-score", "args-of-a-missing-plugin",
    ],
)  # fmt: skip
def test_an_ignored_field_is_a_warning_naming_it(data: dict[str, Any], field: str) -> None:
    """The configuration is accepted; the warning says which field did nothing."""
    (warning,) = translate(data).warnings
    assert warning.startswith(f"{field} is ignored: ")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            one_profile(plugins={"score": {"enabled": [{"name": "NodeAffinity"},
                                                       {"name": "Foo", "weight": 1}]}}),
            'profiles[0].plugins.score.enabled[1].name: unknown plugin "Foo"; lasched has: '
            "CloudTier, Coscheduling, DefaultBinder, DefaultPreemption, GangPreemption, "
            "ImageLocality, InterPodAffinity, LatencyFilter, LatencyScore, NodeAffinity, "
            "NodePorts, NodeResourceTopologyMatch, "
            "NodeResourcesBalancedAllocation, NodeResourcesFit, NodeUnschedulable, "
            "NodeVolumeLimits, PodTopologySpread, PrioritySort, SchedulingGates, "
            "TaintToleration, VolumeBinding, VolumeRestrictions, VolumeZone",
        ),
        (
            one_profile(plugins={"multiPoint": {"enabled": [{"name": "EBSLimits"}]}}),
            'profiles[0].plugins.multiPoint.enabled[0].name: lasched has no plugin '
            '"EBSLimits" (NodeVolumeLimits counts CSI volumes',
        ),
        (
            one_profile(plugins={"score": {"enabled": [{"name": "NetworkOverhead"}]}}),
            '"NetworkOverhead" (use LatencyFilter and LatencyScore',
        ),
        (
            one_profile(plugins={"queueSort": {"enabled": [{"name": "TopologicalSort"}]}}),
            '"TopologicalSort" (use PrioritySort)',
        ),
        (
            one_profile(plugins={"filter": {"disabled": [{"name": "TaintTolerations"}]}}),
            'profiles[0].plugins.filter.disabled[0].name: unknown plugin "TaintTolerations"',
        ),
        (
            one_profile(plugins={"postBind": {"enabled": [{"name": "Coscheduling"}]}}),
            "profiles[0].plugins.postBind.enabled[0].name: lasched runs no plugin at postBind",
        ),
        (
            one_profile(plugins={"filter": {"enabled": [{"name": "*"}]}}),
            'profiles[0].plugins.filter.enabled[0].name: "*" disables every default plugin',
        ),
        (
            one_profile(pluginConfig=[{"name": "NodeResourcesFit", "args": {
                "scoringStrategy": {"type": "RequestedToCapacityRatio"}}}]),
            "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio.shape: "
            "Required value: at least one point must be specified",
        ),
        (
            one_profile(pluginConfig=[{"name": "NodeResourcesFit", "args": {"scoringStrategy": {
                "resources": [{"name": "nvidia.com/gpu", "weight": 1}]}}}]),
            "profiles[0].pluginConfig[0].args.scoringStrategy.resources[0].name: lasched's "
            "NodeResourcesFit scores cpu and memory with LeastAllocated, not 'nvidia.com/gpu' "
            "(RequestedToCapacityRatio scores any resource)",
        ),
        (
            one_profile(pluginConfig=[{"name": "NodeAffinity", "args": {"addedAffinity": {}}}]),
            "",  # an empty addedAffinity is no affinity at all
        ),
        (
            one_profile(pluginConfig=[{"name": "NodeAffinity", "args": {"addedAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {}}}}]),
            "profiles[0].pluginConfig[0].args.addedAffinity is not supported yet",
        ),
        (
            one_profile(pluginConfig=[{"name": "NodePorts"}, {"name": "NodePorts"}]),
            'profiles[0].pluginConfig[1].name: "NodePorts" is configured twice '
            "(also at profiles[0].pluginConfig[0])",
        ),
        (
            one_profile(pluginConfig=[{"name": "Foo", "args": {}}]),
            'profiles[0].pluginConfig[0].name: unknown plugin "Foo"',
        ),
        (
            one_profile(plugin={}),
            "profiles[0].plugin: unknown field (not in kube-scheduler's "
            "kubescheduler.config.k8s.io/v1)",
        ),
        (
            {**ksc(), "apiVersion": "kubescheduler.config.k8s.io/v1beta3"},
            "apiVersion must be kubescheduler.config.k8s.io/v1, not "
            "'kubescheduler.config.k8s.io/v1beta3'",
        ),
        (ksc(leaderElection={"leaseDuration": 15}), "leaderElection.leaseDuration must be a "
         "positive duration such as 15s, not 15"),
        (ksc(leaderElection={"leaseDuration": "5s"}), "leaderElection.leaseDuration (5) must be "
         "greater than leaderElection.renewDeadline (10)"),
        (ksc(podInitialBackoffSeconds=5, podMaxBackoffSeconds=2),
         "podMaxBackoffSeconds (2.0) must not be below podInitialBackoffSeconds (5.0)"),
        (ksc(percentageOfNodesToScore=101),
         "percentageOfNodesToScore must be an integer from 0 to 100, not 101"),
        (ksc(profiles=[{}, {}]),
         "profiles[1].schedulerName 'default-scheduler' is used by an earlier profile"),
        (
            ksc(profiles=[
                {"schedulerName": "a", "pluginConfig": [
                    {"name": "PrioritySort", "args": {"agingMaxBoost": 5}}]},
                {"schedulerName": "b"},
            ]),
            "profiles[1].pluginConfig: the args of PrioritySort differ from profiles[0]'s",
        ),
    ],
    ids=[
        "unknown-plugin", "ebs-limits", "network-overhead", "topological-sort",
        "unknown-disabled", "post-bind", "enable-star", "shapeless", "gpu-weight",
        "empty-added-affinity", "added-affinity", "config-twice", "config-unknown", "typo",
        "v1beta3", "duration-type", "lease-vs-renew", "backoff-order", "percentage",
        "duplicate-profile", "queue-sort-args-differ",
    ],
)  # fmt: skip
def test_errors_name_the_field(data: dict[str, Any], message: str) -> None:
    """A plugin lasched lacks, a value it cannot honour, a field v1 does not have: errors."""
    if not message:
        translate(data)
        return
    with pytest.raises(ConfigError) as err:
        translate(data)
    assert message in str(err.value)


def test_preemption_candidates_cannot_both_be_zero() -> None:
    """As kube-scheduler's validation: a dry run shortlisting no node would preempt nothing."""
    data = one_profile(
        pluginConfig=[
            {
                "name": "DefaultPreemption",
                "args": {"minCandidateNodesPercentage": 0, "minCandidateNodesAbsolute": 0},
            }
        ]
    )
    with pytest.raises(ConfigError, match=r"minCandidateNodesPercentage and .* cannot both be"):
        translate(data)
    one = one_profile(
        pluginConfig=[{"name": "DefaultPreemption", "args": {"minCandidateNodesAbsolute": 0}}]
    )
    [pre] = [p for p in build(translate(one).settings.profiles[0]).post_filters
             if isinstance(p, DefaultPreemption)]  # fmt: skip
    assert (pre.min_candidate_nodes_percentage, pre.min_candidate_nodes_absolute) == (10, 0)


def test_disabling_a_plugin_lasched_lacks_is_allowed() -> None:
    """A kube-scheduler default that lasched does not have is simply not there to disable."""
    data = one_profile(
        plugins={"filter": {"disabled": [{"name": "VolumeZone"}, {"name": "NodePorts"}]}}
    )
    t = translate(data)
    assert t.warnings == ()
    assert "NodePorts" not in at(build(t.settings.profiles[0], t.settings))[P.FILTER]


def test_no_profiles_is_kube_schedulers_default_profile() -> None:
    """Without profiles: one profile, default-scheduler, with the default plugins."""
    s = translate(ksc()).settings
    assert s.scheduler_names == ("default-scheduler",)
    assert at(build(s.profiles[0], s)) == at(build())


def test_an_unnamed_lease_is_lascheds_own() -> None:
    """resourceName defaults to lasched, never to kube-scheduler's own Lease."""
    assert translate(ksc()).settings.leader_election.resource_name == "lasched"


def test_lasched_plugin_args_reach_their_settings() -> None:
    """PrioritySort's aging is process-wide; LatencyScore's cloud fallback the profile's."""
    data = one_profile(
        pluginConfig=[
            {"name": "PrioritySort", "args": {"agingPointsPerMinute": 2, "agingMaxBoost": 40}},
            {"name": "LatencyScore", "args": {"cloudFallback": True}},
        ]
    )
    s = translate(data).settings
    assert (s.queue.aging_points_per_minute, s.queue.aging_max_boost) == (2, 40)
    assert s.profiles[0].plugin_args["LatencyScore"] == {"cloudFallback": True}


def test_args_of_a_plugin_that_reads_its_own_are_passed_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A registered plugin without a reader here gets its args through plugin_args."""
    monkeypatch.setattr(kubeschedconfig, "_ARGS", {})
    args = {"kind": "NodePortsArgs", "anything": [1, 2]}
    s = translate(one_profile(pluginConfig=[{"name": "NodePorts", "args": args}])).settings
    assert s.profiles[0].plugin_args == {"NodePorts": {"anything": [1, 2]}}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (ksc(), True),
        ({"apiVersion": "kubescheduler.config.k8s.io/v1beta3"}, True),
        ({"kind": "KubeSchedulerConfiguration"}, True),
        ({"profiles": [{"schedulerName": "lasched"}]}, False),
        (None, False),
    ],
    ids=["v1", "older-version", "kind-only", "lasched-file", "empty"],
)  # fmt: skip
def test_the_format_is_told_by_api_version_and_kind(data: Any, expected: bool) -> None:
    """lasched's own file has neither; a KubeSchedulerConfiguration has its group or kind."""
    assert is_kube_scheduler_configuration(data) is expected


def test_run_config_accepts_either_format(tmp_path: Path) -> None:
    """``--config`` reads lasched's own file and a KubeSchedulerConfiguration alike."""
    ours = tmp_path / "lasched.yaml"
    ours.write_text("profiles:\n  - schedulerName: mine\n")
    theirs = tmp_path / "scheduler-config.yaml"
    theirs.write_text(REALISTIC)
    assert cli._load_config(str(ours))[0].scheduler_names == ("mine",)
    settings, warnings = cli._load_config(str(theirs))
    assert settings.scheduler_names == ("default-scheduler", "packer")
    assert any(w.startswith("parallelism is ignored") for w in warnings)


def test_run_reports_a_configuration_error_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``lasched run`` exits 2 with the field and the plugin in the message."""
    f = tmp_path / "scheduler-config.yaml"
    f.write_text(yaml.safe_dump(one_profile(plugins={"score": {"enabled": [{"name": "Foo"}]}})))
    assert cli.main(["run", "--config", str(f)]) == 2
    assert 'profiles[0].plugins.score.enabled[0].name: unknown plugin "Foo"' in (
        capsys.readouterr().err
    )


_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(list(_UNITS))), min_size=1))
def test_go_durations_parse_to_their_seconds(parts: list[tuple[int, str]]) -> None:
    """``1h2m3s500ms``: the sum of its parts, as Go's time.ParseDuration reads it."""
    text = "".join(f"{n}{unit}" for n, unit in parts)
    seconds = parse_duration(text)
    assert seconds == pytest.approx(sum(n * _UNITS[u] for n, u in parts))


@pytest.mark.parametrize("text", ["", "15", "s", "1x", "1.5.5s", "--1s", "1s "])
def test_what_is_not_a_go_duration_is_refused(text: str) -> None:
    """Only Go's duration syntax is a duration."""
    assert parse_duration(text) is None


@given(
    st.dictionaries(
        st.sampled_from(["TaintToleration", "NodeAffinity", "NodeResourcesFit", "LatencyScore",
                         "NodeResourcesBalancedAllocation"]),
        st.integers(1, 100),
        min_size=1,
    )
)  # fmt: skip
def test_score_weights_of_a_configuration_are_the_frameworks(weights: dict[str, int]) -> None:
    """Any weights given at score are the weights the profile's framework scores with."""
    enabled = [{"name": n, "weight": w} for n, w in weights.items()]
    s = translate(one_profile(plugins={"score": {"enabled": enabled}})).settings
    built = {p.name: w for p, w in build(s.profiles[0], s).scores}
    for name, weight in weights.items():
        assert built[name] == weight


def fit_strategy(**strategy: Any) -> dict[str, Any]:
    return one_profile(pluginConfig=[{"name": "NodeResourcesFit", "args": {"scoringStrategy": {
        "type": "RequestedToCapacityRatio", **strategy}}}])  # fmt: skip


def test_requested_to_capacity_ratio_translates_with_its_shape() -> None:
    """The shape and any resources, extended ones too, reach the profile's NodeResourcesFit."""
    data = fit_strategy(
        requestedToCapacityRatio={"shape": [{"utilization": 0, "score": 0},
                                            {"utilization": 100, "score": 10}]},
        resources=[{"name": "nvidia.com/gpu", "weight": 3}, {"name": "cpu"}],
    )  # fmt: skip
    t = translate(data)
    assert t.warnings == ()
    profile = t.settings.profiles[0]
    assert profile.scoring_strategy == "RequestedToCapacityRatio"
    assert profile.scoring_shape == ((0, 0), (100, 10))
    assert profile.resource_weights == {"nvidia.com/gpu": 3, "cpu": 1}
    fit = next(p for p, _ in build(profile, t.settings).scores if p.name == "NodeResourcesFit")
    assert isinstance(fit, NodeResourcesFit) and fit.strategy == "RequestedToCapacityRatio"


SHAPE = "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio.shape"


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([{"utilization": 50, "score": 1}, {"utilization": 50, "score": 2}],
         f"{SHAPE}[1].utilization: Invalid value: 50: utilization values must be sorted in "
         "increasing order"),
        ([{"utilization": 101, "score": 1}],
         f"{SHAPE}[0].utilization: Invalid value: 101: not in valid range [0, 100]"),
        ([{"utilization": 0, "score": 0}, {"utilization": 100, "score": 100}],
         f"{SHAPE}[1].score: Invalid value: 100: not in valid range [0, 10]"),
        ([], f"{SHAPE}: Required value: at least one point must be specified"),
        ([{"utilization": "50%", "score": 1}],
         f"{SHAPE}[0].utilization must be an integer from -2147483648 to 2147483647, not '50%'"),
        ([{"utilization": 0, "scor": 1}], f"{SHAPE}[0].scor: unknown field"),
    ],
    ids=["unsorted", "utilization-range", "score-range", "empty", "not-a-number", "typo"],
)  # fmt: skip
def test_a_bad_shape_names_its_field(shape: list[dict[str, Any]], message: str) -> None:
    """A shape kube-scheduler's validation refuses is an error naming the point and field."""
    with pytest.raises(ConfigError) as err:
        translate(fit_strategy(requestedToCapacityRatio={"shape": shape}))
    assert message in str(err.value)


def test_a_shape_for_another_strategy_is_ignored_with_a_warning() -> None:
    """requestedToCapacityRatio under MostAllocated does nothing, and says so."""
    data = fit_strategy(type="MostAllocated", requestedToCapacityRatio={"shape": []})
    (warning,) = translate(data).warnings
    assert warning.startswith(
        "profiles[0].pluginConfig[0].args.scoringStrategy.requestedToCapacityRatio is ignored"
    )


def test_image_locality_is_a_default_score_plugin_that_takes_no_args() -> None:
    """ImageLocality scores with weight 1 unless disabled; args given to it are ignored."""
    s = translate(one_profile(pluginConfig=[{"name": "ImageLocality", "args": {"x": 1}}]))
    assert s.warnings == (
        "profiles[0].pluginConfig[0].args.x is ignored: ImageLocality takes no args",
    )
    assert ("ImageLocality", 1) in [
        (p.name, w) for p, w in build(s.settings.profiles[0], s.settings).scores
    ]
    off = translate(one_profile(plugins={"score": {"disabled": [{"name": "ImageLocality"}]}}))
    assert "ImageLocality" not in at(build(off.settings.profiles[0], off.settings))[P.SCORE]


def test_node_resource_topology_match_is_accepted_with_its_args() -> None:
    """scheduler-plugins' NUMA plugin and its scoring strategy carry over; its cache
    settings are ignored with a warning naming them."""
    t = translate(
        one_profile(
            plugins={"multiPoint": {"enabled": [{"name": "NodeResourceTopologyMatch"}]}},
            pluginConfig=[
                {
                    "name": "NodeResourceTopologyMatch",
                    "args": {
                        "scoringStrategy": {
                            "type": "MostAllocated",
                            "resources": [{"name": "nvidia.com/gpu", "weight": 3}],
                        },
                        "cacheResyncPeriodSeconds": 5,
                    },
                }
            ],
        )
    )
    fw = build(t.settings.profiles[0], t.settings)
    plugin = next(p for p in fw.filters if p.name == "NodeResourceTopologyMatch")
    assert (plugin.strategy, plugin.resources) == ("MostAllocated", {"nvidia.com/gpu": 3})  # type: ignore[attr-defined]
    assert any("cacheResyncPeriodSeconds is ignored" in w for w in t.warnings)
    with pytest.raises(ConfigError, match=r"scoringStrategy.type must be LeastAllocated"):
        translate(
            one_profile(
                pluginConfig=[
                    {"name": "NodeResourceTopologyMatch",
                     "args": {"scoringStrategy": {"type": "Random"}}}
                ]
            )
        )  # fmt: skip
