"""A pod's priority: ``spec.priority``, or the ``priority`` annotation.

The Priority admission plugin gives every pod a ``spec.priority`` (0 unless a
PriorityClass says otherwise), so "unset" means: no ``priorityClassName``.
Only then is the annotation of the earlier Python scheduler honoured
(``priority: "100"``). A malformed annotation yields priority 0 and an error
text for a Warning Event; the pod is never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ANNOTATION = "priority"
_INT32 = (-(2**31), 2**31 - 1)


def effective_priority(
    spec: Mapping[str, Any], annotations: Mapping[str, str]
) -> tuple[int, str | None]:
    """(priority, error) where error explains a rejected annotation."""
    spec_priority = spec.get("priority")
    if spec.get("priorityClassName") or ANNOTATION not in annotations:
        return int(spec_priority or 0), None
    raw = annotations[ANNOTATION]
    try:
        value = int(raw.strip())
    except ValueError:
        return int(spec_priority or 0), (
            f'annotation {ANNOTATION}="{raw}" is not an integer; using priority '
            f"{int(spec_priority or 0)}"
        )
    if not _INT32[0] <= value <= _INT32[1]:
        return int(spec_priority or 0), (
            f'annotation {ANNOTATION}="{raw}" is outside the 32-bit range of priorities; '
            f"using priority {int(spec_priority or 0)}"
        )
    return value, None
