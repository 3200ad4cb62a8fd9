"""Delay labels placed by a static RTT file, on the real control plane."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from lasched import settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod

RTTS = {
    "edge-1": {"edge-2": 12.0, "edge-3": 41.0, "cloud-1": 60.0},
}


def delayed(name: str, **labels: str) -> dict[str, Any]:
    body = pod(name)
    body["metadata"]["labels"] = labels
    return body


async def test_delay_labels_follow_the_static_rtt_file(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """delay_edge-1 admits only nodes within the budget; an unknown source stays pending."""
    rtt_file = tmp_path / "rtt.json"
    rtt_file.write_bytes(orjson.dumps(RTTS))
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=n) for n in ("edge-1", "edge-2", "edge-3", "cloud-1")]
    )
    await nodes.wait_ready(kc, ["edge-1", "edge-2", "edge-3", "cloud-1"])
    cfg = settings.parse({"latency": {"staticFile": str(rtt_file)}})
    await run_scheduler(cfg)

    await kc.post(f"/api/v1/namespaces/{namespace}/pods", delayed("tight", **{"delay_edge-1": "5"}))
    await kc.post(
        f"/api/v1/namespaces/{namespace}/pods", delayed("loose", **{"delay_edge-1": "25"})
    )
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", delayed("lost", **{"delay_edge-9": "5"}))

    assert await eventually(lambda: node_of(kc, namespace, "tight")) == "edge-1"
    assert await eventually(lambda: node_of(kc, namespace, "loose")) in {"edge-1", "edge-2"}

    async def scheduled_note() -> str:
        evs = [e for e in await events_for(kc, namespace, "loose") if e["reason"] == "Scheduled"]
        return str(evs[0]["note"]) if evs else ""

    assert "rtt from edge-1 = " in await eventually(scheduled_note)

    async def lost_reason() -> str:
        evs = await events_for(kc, namespace, "lost")
        notes = [str(e["note"]) for e in evs if e["reason"] == "FailedScheduling"]
        return notes[0] if notes else ""

    assert "node(s) had no measured RTT from edge-9" in await eventually(lost_reason)
    assert await node_of(kc, namespace, "lost") == ""
