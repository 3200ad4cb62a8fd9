"""A pod's priority: ``spec.priority``, or the ``priority`` annotation.

The Priority admission plugin gives every pod a ``spec.priority`` (0 unless a
PriorityClass says otherwise), so "unset" means: no ``priorityClassName``.
Only then is the annotation of the earlier Python scheduler honoured
(``priority: "100"``, ASCII digits with an optional sign, at most 64
characters). A malformed annotation yields priority 0 and an error
text for a Warning Event; the pod is never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lasched.model.strict import integer, shown, too_long

ANNOTATION = "priority"
_INT32 = (-(2**31), 2**31 - 1)


def effective_priority(
    spec: Mapping[str, Any], annotations: Mapping[str, str]
) -> tuple[int, str | None]:
    """(priority, error) where error explains a rejected annotation."""
    fallback = int(spec.get("priority") or 0)
    if spec.get("priorityClassName") or ANNOTATION not in annotations:
        return fallback, None
    raw = annotations[ANNOTATION]
    if problem := too_long(raw):
        return fallback, (
            f"annotation {ANNOTATION}={shown(raw, length=False)}: {problem}; "
            f"using priority {fallback}"
        )
    value = integer(raw)
    if value is None:
        return fallback, (
            f"annotation {ANNOTATION}={shown(raw)} is not an integer; using priority {fallback}"
        )
    if not _INT32[0] <= value <= _INT32[1]:
        return fallback, (
            f"annotation {ANNOTATION}={shown(raw)} is outside the 32-bit range of priorities; "
            f"using priority {fallback}"
        )
    return value, None
