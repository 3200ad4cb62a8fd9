"""lasched schedules pods on the real control plane."""

from __future__ import annotations

from typing import Any

import aiohttp

from lasched import settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod, pods


async def test_pod_is_bound_to_a_node_that_fits(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A pod that fits only the big node is bound there, with a Scheduled event."""
    await nodes.create_nodes(
        kc,
        [
            nodes.NodeSpec(name="fit-small", cpu="1", memory="2Gi"),
            nodes.NodeSpec(name="fit-big", cpu="16", memory="64Gi"),
        ],
    )
    await nodes.wait_ready(kc, ["fit-small", "fit-big"])
    await run_scheduler()
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("needs-4", cpu="4", memory="8Gi"))

    assert await eventually(lambda: node_of(kc, namespace, "needs-4")) == "fit-big"

    async def scheduled_event() -> list[dict[str, object]]:
        return [e for e in await events_for(kc, namespace, "needs-4") if e["reason"] == "Scheduled"]

    (event,) = await eventually(scheduled_event)
    assert event["type"] == "Normal"
    assert event["reportingController"] == "lasched"
    assert event["note"] == f"Successfully assigned {namespace}/needs-4 to fit-big"


async def test_unschedulable_pod_waits_then_binds_when_a_node_fits(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """No node fits: FailedScheduling and PodScheduled=False; a new big node binds it."""
    await run_scheduler()
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("huge", cpu="100", memory="1Gi"))

    async def failed() -> list[dict[str, object]]:
        return [
            e for e in await events_for(kc, namespace, "huge") if e["reason"] == "FailedScheduling"
        ]

    (event,) = await eventually(failed)
    assert event["type"] == "Warning"
    assert "Insufficient cpu" in str(event["note"])
    assert str(event["note"]).startswith("0/")

    async def condition() -> dict[str, object] | None:
        p = (await pods(kc, namespace))["huge"]
        for c in p["status"].get("conditions") or []:
            if c["type"] == "PodScheduled":
                return dict(c)
        return None

    cond = await eventually(condition)
    assert cond["status"] == "False"
    assert cond["reason"] == "Unschedulable"

    await nodes.create_nodes(kc, [nodes.NodeSpec(name="giant", cpu="128", memory="512Gi")])
    assert await eventually(lambda: node_of(kc, namespace, "huge"), timeout=15) == "giant"


async def test_pods_of_other_schedulers_are_left_alone(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A pod for default-scheduler stays pending; ours beside it is bound."""
    await nodes.create_nodes(kc, [nodes.NodeSpec(name="shared-0")])
    await run_scheduler()
    await kc.post(
        f"/api/v1/namespaces/{namespace}/pods", pod("theirs", scheduler="default-scheduler")
    )
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("ours"))
    assert await eventually(lambda: node_of(kc, namespace, "ours"))
    assert await node_of(kc, namespace, "theirs") == ""


async def test_capacity_used_by_other_schedulers_is_counted(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A widget taken by a pod bound elsewhere is not offered again."""
    widget = "example.com/widget"
    await nodes.create_nodes(
        kc,
        [
            nodes.NodeSpec(name="taken", extended={widget: "1"}),
            nodes.NodeSpec(name="spare", extended={widget: "1"}),
        ],
    )
    await nodes.wait_ready(kc, ["taken", "spare"])

    def wants_widget(name: str, **spec: Any) -> dict[str, Any]:
        body = pod(name, **spec)
        container = body["spec"]["containers"][0]
        container["resources"]["requests"][widget] = "1"
        container["resources"]["limits"] = {widget: "1"}
        return body

    await kc.post(
        f"/api/v1/namespaces/{namespace}/pods",
        wants_widget("squatter", nodeName="taken", scheduler="elsewhere"),
    )
    await run_scheduler()
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", wants_widget("first"))
    assert await eventually(lambda: node_of(kc, namespace, "first")) == "spare"

    await kc.post(f"/api/v1/namespaces/{namespace}/pods", wants_widget("second"))

    async def failed() -> list[dict[str, object]]:
        evs = await events_for(kc, namespace, "second")
        return [e for e in evs if e["reason"] == "FailedScheduling"]

    (event,) = await eventually(failed)
    # Every node lacks a free widget: 'taken' to the squatter, 'spare' to 'first'.
    total = len((await kc.get("/api/v1/nodes"))["items"])
    assert event["note"] == (
        f"0/{total} nodes are available: {total} Insufficient {widget}. preemption: 0/{total} "
        f"nodes are available: {total} No preemption victims found for incoming pod."
    )
    assert await node_of(kc, namespace, "second") == ""


async def test_profiles_serve_other_schedulers_names(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """One process with two profiles binds pods written for either name."""
    await nodes.create_nodes(kc, [nodes.NodeSpec(name="profiles-0")])
    cfg = settings.parse(
        {"profiles": [{"schedulerName": "lasched"}, {"schedulerName": "custom-scheduler"}]}
    )
    await run_scheduler(cfg)
    await kc.post(
        f"/api/v1/namespaces/{namespace}/pods", pod("legacy", scheduler="custom-scheduler")
    )
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("native"))
    assert await eventually(lambda: node_of(kc, namespace, "legacy"))
    assert await eventually(lambda: node_of(kc, namespace, "native"))

    async def reporter() -> str:
        evs = [e for e in await events_for(kc, namespace, "legacy") if e["reason"] == "Scheduled"]
        return str(evs[0]["reportingController"]) if evs else ""

    assert await eventually(reporter) == "custom-scheduler"


async def test_health_readiness_and_metrics(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """/readyz turns ready once synced; /metrics counts the attempt with kube-scheduler's name."""
    await nodes.create_nodes(kc, [nodes.NodeSpec(name="metrics-0")])
    port = await run_scheduler()
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:

        async def ready() -> bool:
            async with http.get(f"{base}/readyz") as r:
                return r.status == 200

        await eventually(ready)
        async with http.get(f"{base}/livez") as r:
            assert r.status == 200
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("counted"))
        assert await eventually(lambda: node_of(kc, namespace, "counted"))

        async def scraped() -> str:
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
            want = 'lasched_schedule_attempts_total{profile="lasched",result="scheduled"}'
            return text if want in text else ""

        text = await eventually(scraped)
        assert "lasched_pending_pods{" in text
        assert "lasched_framework_extension_point_duration_seconds_bucket{" in text


async def test_gated_pod_waits_until_its_scheduling_gates_are_removed(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """spec.schedulingGates hold the pod (no bind attempt); removing them schedules it."""
    await nodes.create_nodes(kc, [nodes.NodeSpec(name="gate-0")])
    await nodes.wait_ready(kc, ["gate-0"])
    await run_scheduler()
    body = pod("gated", schedulingGates=[{"name": "example.com/quota"}])
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("witness"))
    assert await eventually(lambda: node_of(kc, namespace, "witness"))
    assert await node_of(kc, namespace, "gated") == ""
    evs = await events_for(kc, namespace, "gated")
    assert not [e for e in evs if e["reason"] == "FailedScheduling"]  # never tried

    await kc.patch(
        f"/api/v1/namespaces/{namespace}/pods/gated",
        [{"op": "remove", "path": "/spec/schedulingGates"}],
        patch_type="json",
    )
    assert await eventually(lambda: node_of(kc, namespace, "gated"))
