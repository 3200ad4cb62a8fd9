"""Priority: spec.priority from a PriorityClass, else the 'priority' annotation."""

from __future__ import annotations

from typing import Any

import pytest

from lasched.model.priority import effective_priority


@pytest.mark.parametrize(
    ("spec", "annotations", "expected"),
    [
        pytest.param({"priority": 0}, {"priority": "100"}, 100, id="annotation-when-no-class"),
        pytest.param({}, {"priority": "-5"}, -5, id="negative"),
        pytest.param(
            {"priority": 1000, "priorityClassName": "high"},
            {"priority": "5"},
            1000,
            id="class-wins",
        ),
        pytest.param({"priority": 7}, {}, 7, id="no-annotation"),
        pytest.param({}, {}, 0, id="nothing"),
    ],
)
def test_effective_priority(
    spec: dict[str, Any], annotations: dict[str, str], expected: int
) -> None:
    """The annotation counts only when no PriorityClass was chosen."""
    assert effective_priority(spec, annotations) == (expected, None)


@pytest.mark.parametrize("bad", ["high", "", "1e3", "3.5", "99999999999"])
def test_malformed_annotation_means_zero_and_an_error(bad: str) -> None:
    """A bad value is reported by name and the pod keeps priority 0."""
    prio, err = effective_priority({"priority": 0}, {"priority": bad})
    assert prio == 0
    assert err is not None
    assert f'priority="{bad}"' in err


@pytest.mark.parametrize(
    "bad",
    ["²", "١٢", "\uff15", "1_000", "inf", "NaN", "- 5"],
    ids=["superscript", "arabic-indic", "fullwidth", "underscore", "inf", "nan", "split-sign"],
)
def test_only_ascii_integers_are_priorities(bad: str) -> None:
    """Unicode digits that int() would take, and 'inf', are not priorities."""
    prio, err = effective_priority({"priority": 0}, {"priority": bad})
    assert prio == 0
    assert err == f'annotation priority="{bad}" is not an integer; using priority 0'


def test_huge_annotation_is_too_long_and_shown_cut() -> None:
    """A 256 KiB priority is refused by its length, in a short message."""
    prio, err = effective_priority({"priority": 7}, {"priority": "9" * 262_144})
    assert prio == 7
    assert err == (
        f'annotation priority="{"9" * 64}…": value too long (262144 characters; at most 64); '
        "using priority 7"
    )
