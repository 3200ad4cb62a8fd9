"""Small helpers that read the apiserver's view (never the scheduler's)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from lasched.kube.client import KubeClient


def pod(
    name: str,
    *,
    cpu: str = "100m",
    memory: str = "128Mi",
    scheduler: str = "lasched",
    **spec: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "schedulerName": scheduler,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": cpu, "memory": memory}},
                }
            ],
            **spec,
        },
    }


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, interval: float = 0.1
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s; last value: {last!r}")


async def pods(kc: KubeClient, namespace: str) -> dict[str, dict[str, Any]]:
    listing = await kc.get(f"/api/v1/namespaces/{namespace}/pods")
    return {p["metadata"]["name"]: p for p in listing["items"]}


async def node_of(kc: KubeClient, namespace: str, name: str) -> str:
    p = await kc.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    return str(p["spec"].get("nodeName", ""))


async def events_for(kc: KubeClient, namespace: str, name: str) -> list[dict[str, Any]]:
    listing = await kc.get(
        f"/apis/events.k8s.io/v1/namespaces/{namespace}/events",
        fieldSelector=f"regarding.name={name}",
    )
    return list(listing["items"])
