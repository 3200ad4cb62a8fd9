"""Hostile label and annotation values on the real control plane.

Each malformed value gets a Warning Event naming its label or annotation
(and no pod with an invalid limit is bound); none stalls or stops the
scheduler, so ordinary pods created after them are scheduled in bounded
time; and a note that would exceed the apiserver's 1,024 bytes is cut to
fit instead of being refused.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from lasched import settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod

NODES = ("hostile-edge-1", "hostile-edge-2")
# Both directions measured, so a pod whose limit were read as "no limit" would be bound.
RTTS = {NODES[0]: {NODES[1]: 12.0}, NODES[1]: {NODES[0]: 12.0}}
WIDE_PLACE = "\U0001f600" * 250  # a valid place name of 250 characters, 1,000 UTF-8 bytes


def hostile(
    name: str, *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    body = pod(name)
    body["metadata"]["labels"] = labels or {}
    body["metadata"]["annotations"] = annotations or {}
    return body


# name -> (pod, the label or annotation its Warning must name)
HOSTILE: dict[str, tuple[dict[str, Any], str]] = {
    "weight-superscript": (
        hostile("weight-superscript", annotations={"lasched.io/prefer-low-rtt": "users-eu=²"}),
        "lasched.io/prefer-low-rtt",
    ),
    "group-rtt-30000": (
        hostile(
            "group-rtt-30000",
            labels={"lasched.io/pod-group": "hostile", "lasched.io/min-available": "1"},
            annotations={"lasched.io/group-max-rtt": "1" * 29_999 + "x"},
        ),
        "lasched.io/group-max-rtt",
    ),
    "delay-inf": (hostile("delay-inf", labels={f"delay_{NODES[0]}": "inf"}), f"delay_{NODES[0]}"),
    "delay-overflow": (
        hostile("delay-overflow", labels={f"delay_{NODES[0]}": "1e999"}),
        f"delay_{NODES[0]}",
    ),
    # Quoted whole, this value would make a note of about 1,270 bytes (in 635 characters).
    "duration-non-ascii": (
        hostile("duration-non-ascii", annotations={"lasched.io/max-rtt": "users-eu=" + "é" * 600}),
        "lasched.io/max-rtt",
    ),
}


async def warnings(kc: KubeClient, namespace: str, name: str, reason: str) -> list[str]:
    return [
        str(e["note"])
        for e in await events_for(kc, namespace, name)
        if e["type"] == "Warning" and e["reason"] == reason
    ]


async def test_hostile_values_are_reported_and_scheduling_goes_on(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """Every hostile pod gets a Warning naming its field; ordinary pods after them bind."""
    rtt_file = tmp_path / "rtt.json"
    rtt_file.write_bytes(orjson.dumps(RTTS))
    await nodes.create_nodes(kc, [nodes.NodeSpec(name=n) for n in NODES])
    await nodes.wait_ready(kc, list(NODES))
    await run_scheduler(settings.parse({"latency": {"staticFile": str(rtt_file)}}))

    for body, _ in HOSTILE.values():
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
    wide = hostile("wide-place", annotations={"lasched.io/max-rtt": f"{WIDE_PLACE}=5ms"})
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", wide)
    start = time.monotonic()
    for i in range(3):
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod(f"ordinary-{i}"))

    async def ordinary_bound() -> bool:
        return all([await node_of(kc, namespace, f"ordinary-{i}") for i in range(3)])

    await eventually(ordinary_bound, timeout=30)
    assert time.monotonic() - start < 30

    for name, (_, field) in HOSTILE.items():

        async def named(name: str = name, field: str = field) -> list[str]:
            notes = await warnings(kc, namespace, name, "InvalidLatencyRequirement")
            return [n for n in notes if field in n]

        (note, *_) = await eventually(named, timeout=20)
        assert len(note.encode()) <= 1024, (name, len(note.encode()))

    # The valid requirement naming a wide place: its FailedScheduling note is over 1,024
    # bytes as composed, and is cut to fit rather than refused by the apiserver.
    async def failed_wide() -> list[str]:
        return await warnings(kc, namespace, "wide-place", "FailedScheduling")

    (note, *_) = await eventually(failed_wide, timeout=20)
    assert "node(s) had no measured RTT from \U0001f600" in note
    assert note.endswith("…") and len(note.encode()) <= 1024

    # An invalid limit never reads as "no limit": the pods wait with their error.
    await asyncio.sleep(2.0)
    for name in HOSTILE:
        assert await node_of(kc, namespace, name) == "", f"{name} was bound"
