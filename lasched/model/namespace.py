"""Namespace: its name and labels, what a pod affinity term's namespaceSelector reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Namespace:
    __slots__ = ("key", "labels", "resource_version")

    def __init__(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self.key: str = meta["name"]
        self.resource_version: str = meta.get("resourceVersion", "")
        labels = meta.get("labels") or {}
        # Labels are strings by the API's schema; anything else cannot match a selector.
        self.labels: dict[str, str] = {
            k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)
        }
