"""PodDisruptionBudget: which pods it covers and how many may still go."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lasched.model import selector


class PDB:
    __slots__ = ("disruptions_allowed", "key", "namespace", "resource_version", "selector")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self.namespace: str = meta.get("namespace", "default")
        self.key = f"{self.namespace}/{meta['name']}"
        self.resource_version: str = meta.get("resourceVersion", "")
        self.selector: dict[str, Any] | None = (obj.get("spec") or {}).get("selector")
        self.disruptions_allowed: int = int(
            (obj.get("status") or {}).get("disruptionsAllowed") or 0
        )

    def covers(self, namespace: str, labels: Mapping[str, str]) -> bool:
        # An empty selector in policy/v1 selects every pod of the namespace.
        return namespace == self.namespace and selector.matches(self.selector, labels)
