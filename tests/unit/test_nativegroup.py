"""Kubernetes' own gang API: each release's objects and pod fields, read strictly."""

from __future__ import annotations

from typing import Any

import pytest

from lasched.model.nativegroup import (
    V1ALPHA1,
    V1ALPHA2,
    V1BETA1,
    NativeGroup,
    choose_api,
    condition_patch,
    native_group,
)
from lasched.model.podgroup import GroupError
from tests.unit.factories import make_pod


def podgroup(policy: Any, *, conditions: list[Any] | None = None) -> NativeGroup:
    obj: dict[str, Any] = {
        "apiVersion": "scheduling.k8s.io/v1beta1",
        "kind": "PodGroup",
        "metadata": {"name": "train", "namespace": "ml", "resourceVersion": "7", "generation": 2},
        "spec": {"schedulingPolicy": policy},
    }
    if conditions is not None:
        obj["status"] = {"conditions": conditions}
    return NativeGroup(obj)


def workload(groups: Any) -> NativeGroup:
    return NativeGroup(
        {
            "apiVersion": "scheduling.k8s.io/v1alpha1",
            "kind": "Workload",
            "metadata": {"name": "job", "namespace": "ml", "resourceVersion": "3"},
            "spec": {"podGroups": groups},
        }
    )


@pytest.mark.parametrize(
    ("served", "expected"),
    [
        ({"scheduling.k8s.io/v1beta1": frozenset({"podgroups", "workloads"})}, V1BETA1),
        ({"scheduling.k8s.io/v1alpha2": frozenset({"podgroups", "workloads"})}, V1ALPHA2),
        ({"scheduling.k8s.io/v1alpha1": frozenset({"workloads"})}, V1ALPHA1),
        # v1beta1 without PodGroups (an older server's PriorityClass era) is not it.
        ({"scheduling.k8s.io/v1beta1": frozenset({"priorityclasses"})}, None),
        ({}, None),
    ],
    ids=["v1.37", "v1.36", "v1.35", "v1beta1-without-podgroups", "none"],
)
def test_the_served_shape_is_chosen_newest_first(
    served: dict[str, frozenset[str]], expected: object
) -> None:
    """Discovery's answer picks the newest shape whose resource the server lists."""
    assert choose_api(served) is expected


def test_each_release_names_its_condition() -> None:
    """v1beta1 and v1alpha2 PodGroups have kube-scheduler's condition; v1alpha1 has none."""
    assert V1BETA1.condition == "PodGroupInitiallyScheduled"
    assert V1ALPHA2.condition == "PodGroupScheduled"
    assert V1ALPHA1.condition is None
    assert V1BETA1.path == "/apis/scheduling.k8s.io/v1beta1/podgroups"
    assert V1ALPHA1.path == "/apis/scheduling.k8s.io/v1alpha1/workloads"


def test_a_scheduling_group_keys_the_group_by_its_podgroup() -> None:
    """spec.schedulingGroup.podGroupName (v1.36 on) names the PodGroup in the namespace."""
    decl = native_group("ml", {"schedulingGroup": {"podGroupName": "train"}})
    assert decl is not None
    assert (decl.key, decl.ref, decl.template, decl.source) == (
        "ml/train",
        "ml/train",
        None,
        "native",
    )


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        ({"name": "job", "podGroup": "workers"}, "ml/job/workers"),
        ({"name": "job", "podGroup": "workers", "podGroupReplicaKey": "r1"}, "ml/job/workers/r1"),
    ],
    ids=["no-replica", "replica"],
)
def test_a_workload_ref_keys_the_group_by_workload_podgroup_and_replica(
    ref: dict[str, str], key: str
) -> None:
    """spec.workloadRef (v1.35): each replica of a Workload's podGroup is its own group."""
    decl = native_group("ml", {"workloadRef": ref})
    assert decl is not None
    assert (decl.key, decl.ref, decl.template) == (key, "ml/job", "workers")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"schedulingGroup": "train"}, "spec.schedulingGroup="),
        ({"schedulingGroup": {}}, "spec.schedulingGroup.podGroupName="),
        ({"schedulingGroup": {"podGroupName": 3}}, "spec.schedulingGroup.podGroupName=3"),
        ({"schedulingGroup": {"podGroupName": "x" * 300}}, "spec.schedulingGroup.podGroupName="),
        ({"workloadRef": {"podGroup": "w"}}, "spec.workloadRef.name="),
        ({"workloadRef": {"name": "job"}}, "spec.workloadRef.podGroup="),
        (
            {"workloadRef": {"name": "job", "podGroup": "w", "podGroupReplicaKey": 1}},
            "spec.workloadRef.podGroupReplicaKey=1",
        ),
        ({"workloadRef": []}, "spec.workloadRef=[]"),
    ],
    ids=[
        "not-object",
        "no-name",
        "name-int",
        "name-long",
        "no-workload",
        "no-podgroup",
        "replica-int",
        "ref-list",
    ],
)
def test_an_unreadable_reference_names_its_field(spec: dict[str, Any], field: str) -> None:
    """A reference that cannot be read is an error that names the field."""
    with pytest.raises(GroupError) as e:
        native_group("ml", spec)
    assert str(e.value).startswith(field)


def test_a_pod_names_its_native_group_before_labels() -> None:
    """The pod's own spec field wins over lasched's labels; a bad one is the pod's group_error."""
    pod = make_pod(
        "a",
        labels={"lasched.io/pod-group": "other", "lasched.io/min-available": "2"},
        schedulingGroup={"podGroupName": "train"},
    )
    assert pod.group is not None and pod.group.key == "default/train"
    bad = make_pod("b", schedulingGroup={"podGroupName": ""})
    assert bad.group is None
    assert bad.group_error is not None and "spec.schedulingGroup.podGroupName" in bad.group_error


def test_a_gang_policy_gives_min_count() -> None:
    """A gang PodGroup's minCount is the group's min-available."""
    g = podgroup({"gang": {"minCount": 3}})
    p = g.policy(None)
    assert (g.key, g.kind, g.generation, p.min_count, p.gang, p.problem) == (
        "ml/train", "PodGroup", 2, 3, True, None,
    )  # fmt: skip
    assert p.source == "gang minCount of PodGroup ml/train"


def test_a_basic_policy_is_no_gang() -> None:
    """A basic PodGroup schedules its members one by one."""
    p = podgroup({"basic": {}}).policy(None)
    assert (p.min_count, p.gang, p.problem) == (None, False, None)


@pytest.mark.parametrize(
    ("policy", "problem"),
    [
        ({"gang": {"minCount": 0}}, "spec.schedulingPolicy.gang.minCount=0 is not a positive"),
        ({"gang": {"minCount": "3"}}, "spec.schedulingPolicy.gang.minCount='3' is not"),
        ({"gang": {"minCount": True}}, "spec.schedulingPolicy.gang.minCount=true is not"),
        ({"gang": {"minCount": 2**31}}, "spec.schedulingPolicy.gang.minCount=2147483648 is not"),
        ({"gang": {}}, "spec.schedulingPolicy.gang.minCount=null is not"),
        ({"basic": {}, "gang": {"minCount": 2}}, "spec.schedulingPolicy must set exactly one"),
        ({}, "spec.schedulingPolicy must set exactly one"),
        ("gang", "spec.schedulingPolicy='gang' is not an object"),
    ],
    ids=["zero", "string", "bool", "over-int32", "missing", "both", "neither", "not-object"],
)
def test_an_unreadable_policy_is_a_problem_naming_the_field(policy: Any, problem: str) -> None:
    """A policy that cannot be read keeps the members waiting with the field named."""
    p = podgroup(policy).policy(None)
    assert p.problem is not None
    assert p.problem.startswith("PodGroup ml/train: ")
    assert problem in p.problem


def test_a_workload_has_a_policy_per_podgroup() -> None:
    """A v1.35 Workload's podGroups each carry a policy; an unknown name is a problem."""
    w = workload(
        [
            {"name": "workers", "policy": {"gang": {"minCount": 4}}},
            {"name": "driver", "policy": {"basic": {}}},
            {"name": "bad", "policy": {"gang": {"minCount": -1}}},
        ]
    )
    assert w.kind == "Workload"
    assert w.policy("workers").min_count == 4
    assert w.policy("driver").gang is False
    bad = w.policy("bad").problem
    assert bad is not None and "spec.podGroups[2].policy.gang.minCount=-1" in bad
    missing = w.policy("nope").problem
    assert missing == "Workload ml/job has no podGroup 'nope'"


def test_a_workload_without_a_list_of_podgroups_is_a_problem() -> None:
    """spec.podGroups that is not a list is named."""
    p = workload({"workers": 3}).policy("workers")
    assert p.problem is not None and "spec.podGroups" in p.problem


def test_condition_true_when_scheduled() -> None:
    """A round that placed min-available members writes the condition True, reason Scheduled."""
    patch = condition_patch(
        podgroup({"gang": {"minCount": 3}}),
        condition="PodGroupInitiallyScheduled",
        scheduled=True,
        message="3 of 3 members placed",
        now="2026-01-01T00:00:00Z",
    )
    assert patch == {
        "status": {
            "conditions": [
                {
                    "type": "PodGroupInitiallyScheduled",
                    "status": "True",
                    "reason": "Scheduled",
                    "message": "3 of 3 members placed",
                    "observedGeneration": 2,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }


def test_condition_never_turns_back_from_true() -> None:
    """Once True, a later failed round writes nothing (the API makes True terminal)."""
    done = [{"type": "PodGroupInitiallyScheduled", "status": "True", "reason": "Scheduled"}]
    g = podgroup({"gang": {"minCount": 3}}, conditions=done)
    patch = condition_patch(
        g, condition="PodGroupInitiallyScheduled", scheduled=False, message="x", now="t"
    )
    assert patch is None


def test_condition_unchanged_is_not_written_and_keeps_its_transition_time() -> None:
    """The same outcome again writes nothing; a new message keeps the transition time."""
    old = {
        "type": "PodGroupScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "2 of 3",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    g = podgroup({"gang": {"minCount": 3}}, conditions=[old])

    def again(message: str) -> dict[str, Any] | None:
        return condition_patch(
            g, condition="PodGroupScheduled", scheduled=False, message=message, now="later"
        )

    assert again("2 of 3") is None
    patch = again("1 of 3")
    assert patch is not None
    assert patch["status"]["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
