"""What many pods repeat is held once: tolerations, short strings, empty maps."""

from __future__ import annotations

import orjson

from lasched.model import sharing
from lasched.model.pod import PodInfo
from tests.unit.factories import pod_json

DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
     "tolerationSeconds": 300},
]  # fmt: skip


def decoded(name: str, **fields: object) -> PodInfo:
    """A pod as an informer gets it: every string its own object, fresh from JSON."""
    body = pod_json(name, labels={"app": "web", "zone": "z1"}, node="node-7")
    body["spec"].update(fields)
    return PodInfo(orjson.loads(orjson.dumps(body)))


def test_pods_with_equal_tolerations_hold_one_list() -> None:
    a = decoded("a", tolerations=DEFAULT_TOLERATIONS)
    b = decoded("b", tolerations=DEFAULT_TOLERATIONS)
    assert a.tolerations == DEFAULT_TOLERATIONS
    assert a.tolerations is b.tolerations


def test_different_tolerations_stay_apart() -> None:
    other = [{**DEFAULT_TOLERATIONS[0], "tolerationSeconds": 60}]
    a = decoded("a", tolerations=DEFAULT_TOLERATIONS)
    b = decoded("b", tolerations=other)
    assert b.tolerations == other
    assert a.tolerations is not b.tolerations


def test_repeated_strings_are_one_object() -> None:
    a, b = decoded("a"), decoded("b")
    assert a.node_name == "node-7"
    assert a.node_name is b.node_name
    assert a.namespace is b.namespace
    assert a.labels["app"] is b.labels["app"]
    assert a.phase is b.phase and a.scheduler_name is b.scheduler_name


def test_a_pod_without_maps_or_tolerations_shares_the_empty_ones() -> None:
    body = pod_json("bare")
    body["metadata"].pop("labels", None)
    body["spec"].pop("tolerations", None)
    pod = PodInfo(body)
    assert pod.labels == {} and pod.annotations == {} and pod.affinity == {}
    assert pod.labels is sharing.EMPTY and pod.annotations is sharing.EMPTY
    assert pod.tolerations == []


def test_the_memo_of_toleration_lists_is_bounded() -> None:
    """A cluster of ever-new toleration lists does not grow the memo past its limit."""
    for i in range(sharing._TOLERATIONS_KEPT + 10):
        tolerations = [{"key": f"k{i}", "operator": "Exists"}]
        assert decoded(f"p{i}", tolerations=tolerations).tolerations == tolerations
    assert len(sharing._tolerations) <= sharing._TOLERATIONS_KEPT


def test_odd_values_are_kept_as_they_are() -> None:
    """Values the apiserver would never send still decode: shared or not, they stay equal."""
    weird = [{"key": "k", "operator": "Exists", "tolerationSeconds": 1.5e300}]
    pod = decoded("odd", tolerations=weird)
    assert pod.tolerations == weird
    labels = sharing.shared_values({"n": 3, "s": "x"})  # type: ignore[dict-item]
    assert labels == {"n": 3, "s": "x"}
    assert sharing.shared_str(7) == 7  # type: ignore[arg-type,comparison-overlap]
    assert sharing.shared_tolerations([{"k": {1, 2}}]) == [{"k": {1, 2}}]
