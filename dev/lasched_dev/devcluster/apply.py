"""``kubectl apply --server-side`` for a list of manifests, using discovery."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from lasched.kube.client import ApiError, KubeClient


def load_manifests(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a (multi-document) YAML file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


async def _resource_path(
    kc: KubeClient, api_version: str, kind: str, cache: dict[str, list[dict[str, Any]]]
) -> tuple[str, bool]:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if base not in cache:
        cache[base] = (await kc.get(base))["resources"]
    for r in cache[base]:
        if r["kind"] == kind and "/" not in r["name"]:
            return f"{base}/{r['name']}", bool(r["namespaced"])
    raise LookupError(f"the apiserver serves no {kind} in {api_version}")


async def apply(
    kc: KubeClient,
    manifests: Iterable[Mapping[str, Any]],
    *,
    field_manager: str = "lasched-devcluster",
) -> None:
    """Server-side apply each object in order (namespaces before their contents)."""
    discovery: dict[str, list[dict[str, Any]]] = {}
    for m in manifests:
        collection, namespaced = await _resource_path(kc, m["apiVersion"], m["kind"], discovery)
        meta = m["metadata"]
        if namespaced:
            group_base, plural = collection.rsplit("/", 1)
            ns = meta.get("namespace", "default")
            collection = f"{group_base}/namespaces/{ns}/{plural}"
        await kc.request(
            "PATCH",
            f"{collection}/{meta['name']}",
            params={"fieldManager": field_manager, "force": True},
            body=dict(m),
            content_type="application/apply-patch+yaml",
        )


async def create_through_outage(
    kc: KubeClient, path: str, body: Mapping[str, Any], *, pause: float = 0.2
) -> None:
    """POST ``body`` to ``path``, retrying while the apiserver is away or overloaded.

    For chaos tests and soaks, where the apiserver is stopped on purpose: a
    refused connection, a 5xx or a 429 is tried again after ``pause``; 409
    means an earlier try got through; any other answer raises.
    """
    while True:
        try:
            await kc.post(path, body)
            return
        except ApiError as e:
            if e.conflict:
                return
            if e.status < 500 and e.status != 429:
                raise
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass
        await asyncio.sleep(pause)
