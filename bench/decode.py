"""How much CPU one pod watch event costs to decode: generated models vs ours.

    python -m bench.decode [--events N]

Prints microseconds per event for kubernetes_asyncio's generated ``V1Pod``
(json + deserialize, what a generated-client informer does) and for orjson
plus :class:`lasched.model.pod.PodInfo`, as medians over five rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import orjson
from kubernetes_asyncio.client import ApiClient

from lasched.model.pod import PodInfo


def sample_pod(i: int) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"web-{i}",
            "namespace": "default",
            "uid": f"00000000-0000-0000-0000-{i:012d}",
            "resourceVersion": str(1000 + i),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "web", "tier": "frontend"},
        },
        "spec": {
            "schedulerName": "lasched",
            "nodeName": f"node-{i % 100}",
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                }
            ],
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
            ],
        },
        "status": {"phase": "Running", "podIP": "10.64.0.1"},
    }


class _Response:
    def __init__(self, data: str) -> None:
        self.data = data


async def measure(events: int) -> tuple[float, float]:
    frames = [orjson.dumps({"type": "MODIFIED", "object": sample_pod(i)}) for i in range(events)]
    api = ApiClient()
    generated, ours = [], []
    try:
        for _ in range(5):
            t = time.perf_counter()
            for f in frames:
                ev = json.loads(f)
                # deserialize() reads only .data, as of the RESTResponse it expects.
                api.deserialize(_Response(json.dumps(ev["object"])), "V1Pod")  # type: ignore[arg-type]
            generated.append((time.perf_counter() - t) / events * 1e6)
            t = time.perf_counter()
            for f in frames:
                PodInfo(orjson.loads(f)["object"])
            ours.append((time.perf_counter() - t) / events * 1e6)
    finally:
        await api.close()
    return statistics.median(generated), statistics.median(ours)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000)
    args = ap.parse_args()
    gen, own = asyncio.run(measure(args.events))
    print("| decoder | µs per pod event (median of 5) |")
    print("|---|---|")
    print(f"| kubernetes_asyncio V1Pod | {gen:.1f} |")
    print(f"| orjson + PodInfo | {own:.1f} |")
    print(f"\nratio: {gen / own:.1f}x")


if __name__ == "__main__":
    main()
