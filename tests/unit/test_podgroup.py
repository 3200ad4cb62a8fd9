"""Group declarations in every accepted spelling, and their errors."""

from __future__ import annotations

import pytest

from lasched.model.podgroup import GroupError, declared_group


@pytest.mark.parametrize(
    ("labels", "annotations", "key", "minimum", "source"),
    [
        (
            {"lasched.io/pod-group": "train", "lasched.io/min-available": "8"},
            {},
            "ns/train",
            8,
            "lasched",
        ),
        (
            {
                "pod-group.scheduling.kubenexus.io/name": "job",
                "pod-group.scheduling.kubenexus.io/min-available": "4",
            },
            {},
            "ns/job",
            4,
            "kubenexus",
        ),
        ({"scheduling.x-k8s.io/pod-group": "spark"}, {}, "ns/spark", None, "podgroup"),
        ({}, {"pod-group": "group-a"}, "ns/group-a", None, "annotation"),
        ({}, {"pod-group": "group-a", "pod-group-size": "3"}, "ns/group-a", 3, "annotation"),
    ],
    ids=["lasched", "kubenexus", "scheduler-plugins", "annotation-all-seen", "annotation-sized"],
)
def test_spellings(
    labels: dict[str, str], annotations: dict[str, str], key: str, minimum: int | None, source: str
) -> None:
    """Each spelling names a namespaced group and its min-available."""
    decl = declared_group("ns", labels, annotations)
    assert decl is not None
    assert (decl.key, decl.min_available, decl.source) == (key, minimum, source)


def test_no_group() -> None:
    """A pod without any spelling is not in a group."""
    assert declared_group("ns", {"app": "x"}, {}) is None


@pytest.mark.parametrize(
    ("labels", "annotations", "message"),
    [
        ({"lasched.io/pod-group": "g", "lasched.io/min-available": "zero"}, {}, '"zero" is not'),
        ({"lasched.io/pod-group": "g", "lasched.io/min-available": "0"}, {}, '"0" is not'),
        ({"lasched.io/pod-group": "g"}, {}, "needs lasched.io/min-available"),
        (
            {
                "lasched.io/pod-group": "g",
                "lasched.io/min-available": "2",
                "lasched.io/timeout-seconds": "soon",
            },
            {},
            "not a number of seconds",
        ),
        ({"pod-group.scheduling.kubenexus.io/name": "g"}, {}, "needs pod-group.scheduling"),
        ({}, {"pod-group": "g", "pod-group-size": "-1"}, '"-1" is not a positive integer'),
    ],
    ids=["word", "zero", "missing-min", "bad-timeout", "kubenexus-missing-min", "negative-size"],
)
def test_invalid_declarations_name_the_value(
    labels: dict[str, str], annotations: dict[str, str], message: str
) -> None:
    """Invalid declarations raise GroupError quoting what was wrong."""
    with pytest.raises(GroupError) as err:
        declared_group("ns", labels, annotations)
    assert message in str(err.value)
