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


@pytest.mark.parametrize(
    ("labels", "annotations", "message"),
    [
        ({"lasched.io/pod-group": "g", "lasched.io/min-available": "²"}, {},
         'label lasched.io/min-available="²" is not a positive integer'),
        ({"lasched.io/pod-group": "g", "lasched.io/min-available": "٣"}, {},
         '"٣" is not a positive integer'),
        ({"lasched.io/pod-group": "g", "lasched.io/min-available": "\uff11"}, {},
         '"\uff11" is not a positive integer'),
        ({"lasched.io/pod-group": "g", "lasched.io/min-available": "1_0"}, {},
         '"1_0" is not a positive integer'),
        ({"lasched.io/pod-group": "g", "lasched.io/min-available": "2147483648"}, {},
         "must be at most 2147483647"),
        ({"pod-group.scheduling.kubenexus.io/name": "g",
          "pod-group.scheduling.kubenexus.io/min-available": "²"}, {},
         'label pod-group.scheduling.kubenexus.io/min-available="²" is not a positive integer'),
        ({}, {"pod-group": "g", "pod-group-size": "1" * 30_000},
         "annotation pod-group-size=\"" + "1" * 64 + "…\": value too long (30000 characters; "
         "at most 64)"),
        ({}, {"pod-group": "g" * 300}, "value too long (300 characters; at most 253)"),
        ({}, {"pod-group": " "}, 'annotation pod-group="" names no group'),
    ],
    ids=["superscript", "arabic-indic", "fullwidth", "underscore", "int32", "kubenexus",
         "huge-size", "long-name", "blank-name"],
)  # fmt: skip
def test_sizes_and_names_are_strict_and_bounded(
    labels: dict[str, str], annotations: dict[str, str], message: str
) -> None:
    """Sizes are ASCII integers 1..2^31-1 and names at most 253 characters, else GroupError."""
    with pytest.raises(GroupError) as err:
        declared_group("ns", labels, annotations)
    assert message in str(err.value)
    assert len(str(err.value)) < 250


@pytest.mark.parametrize(
    ("timeout", "message"),
    [
        ("inf", '"inf" is not a finite number of seconds'),
        ("nan", '"nan" is not a finite number of seconds'),
        ("1e999", '"1e999" is not a finite number of seconds'),
        ("0", "must be within (0, 86400]"),
        ("86401", "must be within (0, 86400]"),
        ("٣", "is not a number of seconds"),
        ("9" * 65, "value too long (65 characters; at most 64)"),
    ],
)
def test_timeout_is_finite_and_at_most_a_day(timeout: str, message: str) -> None:
    """lasched.io/timeout-seconds is a finite number of seconds within (0, 86400]."""
    labels = {
        "lasched.io/pod-group": "g",
        "lasched.io/min-available": "2",
        "lasched.io/timeout-seconds": timeout,
    }
    with pytest.raises(GroupError) as err:
        declared_group("ns", labels, {})
    assert str(err.value).startswith("label lasched.io/timeout-seconds=")
    assert message in str(err.value)


def test_timeout_accepts_decimals() -> None:
    """A decimal or exponent timeout within range is read as seconds."""
    labels = {
        "lasched.io/pod-group": "g",
        "lasched.io/min-available": "2",
        "lasched.io/timeout-seconds": "1.5e2",
    }
    decl = declared_group("ns", labels, {})
    assert decl is not None and decl.timeout_seconds == 150.0
