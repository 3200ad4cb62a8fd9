"""lasched schedules under the ServiceAccount and RBAC of deploy/manifests, not as admin."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from lasched import settings
from lasched.devcluster import nodes
from lasched.devcluster.apply import apply, load_manifests
from lasched.devcluster.cluster import DevCluster, service_account_kubeconfig
from lasched.kube.client import ApiError, KubeClient
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod

MANIFEST = Path(__file__).parents[2] / "deploy" / "manifests" / "lasched.yaml"


async def test_manifest_rbac_is_enough_to_schedule(
    cluster: DevCluster, kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Binds, and records Scheduled and FailedScheduling, with only the manifest's rights."""
    rbac = [m for m in load_manifests(MANIFEST) if m["kind"] != "Deployment"]
    await apply(kc, rbac)
    kubeconfig = await service_account_kubeconfig(
        cluster, kc, namespace="lasched-system", name="lasched"
    )
    await nodes.create_nodes(kc, [nodes.NodeSpec(name="rbac-0", cpu="4")])
    await nodes.wait_ready(kc, ["rbac-0"])

    config = next(m for m in load_manifests(MANIFEST) if m["kind"] == "ConfigMap")
    cfg = settings.parse(yaml.safe_load(config["data"]["config.yaml"]))
    await run_scheduler(replace(cfg, kubeconfig=str(kubeconfig)))
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("fits", cpu="1"))
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("never", cpu="1000"))
    assert await eventually(lambda: node_of(kc, namespace, "fits")) == "rbac-0"

    async def reasons() -> set[str]:
        evs = await events_for(kc, namespace, "fits") + await events_for(kc, namespace, "never")
        got = {str(e["reason"]) for e in evs}
        return got if {"Scheduled", "FailedScheduling"} <= got else set()

    await eventually(reasons)


async def test_manifest_rbac_is_not_more_than_needed(
    cluster: DevCluster, kc: KubeClient, namespace: str
) -> None:
    """The ServiceAccount can read nodes but cannot create or update pods, or read secrets."""
    await apply(kc, [m for m in load_manifests(MANIFEST) if m["kind"] != "Deployment"])
    kubeconfig = await service_account_kubeconfig(
        cluster, kc, namespace="lasched-system", name="lasched"
    )
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("victim"))
    async with await KubeClient.from_kubeconfig(str(kubeconfig)) as sa:
        await sa.get("/api/v1/nodes")  # allowed
        with pytest.raises(ApiError) as err:
            await sa.post(f"/api/v1/namespaces/{namespace}/pods", pod("intruder"))
        assert err.value.status == 403
        with pytest.raises(ApiError) as err:
            await sa.patch(f"/api/v1/namespaces/{namespace}/pods/victim", {"metadata": {}})
        assert err.value.status == 403
        with pytest.raises(ApiError) as err:
            await sa.get(f"/api/v1/namespaces/{namespace}/secrets")
        assert err.value.status == 403
