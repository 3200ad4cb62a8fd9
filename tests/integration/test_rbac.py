"""lasched schedules under the ServiceAccount and RBAC of deploy/manifests (the Helm chart's
rendering), not as admin; the rights are enough and no more."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path

import yaml

from lasched import settings
from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import binaries, nodes
from lasched_dev.devcluster.apply import apply, load_manifests
from lasched_dev.devcluster.cluster import DevCluster, service_account_kubeconfig, workload_api
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod, pods
from tests.integration.test_volumes import local_volume

MANIFEST = Path(__file__).parents[2] / "deploy" / "manifests" / "lasched.yaml"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/lasched-system/leases"
NRTS = "/apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies"


def rbac_objects() -> list[dict[str, object]]:
    """Everything in the manifest but the workloads (no controllers run here)."""
    return [m for m in load_manifests(MANIFEST) if m["kind"] not in ("Deployment", "DaemonSet")]


def native_groups(namespace: str) -> str:
    """The collection of the gang API's objects lasched reads on the dev cluster's release."""
    api = workload_api(binaries.kubernetes_minor())
    assert api is not None, "the dev cluster serves a gang API from v1.35 on"
    kind = "podgroups" if api.podgroups else "workloads"
    return f"/apis/{api.group_version}/namespaces/{namespace}/{kind}"


async def status(call: Awaitable[object]) -> int:
    """The HTTP status of an API call: 200 for any success."""
    try:
        await call
    except ApiError as e:
        return e.status
    return 200


async def test_manifest_rbac_is_enough_to_schedule(
    cluster: DevCluster, kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Binds, preempts, binds a local volume at PreBind, and records Scheduled,
    FailedScheduling and Preempted events, with only the manifest's rights."""
    await apply(kc, rbac_objects())
    kubeconfig = await service_account_kubeconfig(
        cluster, kc, namespace="lasched-system", name="lasched"
    )
    await nodes.create_nodes(
        kc,
        [
            nodes.NodeSpec(name="rbac-0", cpu="4"),
            nodes.NodeSpec(name="rbac-1", cpu="2", labels={"pool": "rbac-preempt"}),
        ],
    )
    await nodes.wait_ready(kc, ["rbac-0", "rbac-1"])
    # A low-priority pod fills rbac-1, placed by hand as another scheduler would.
    low = pod("low", cpu="2", nodeName="rbac-1", scheduler="elsewhere")
    low["metadata"]["annotations"] = {"priority": "1"}
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", low)

    config = next(m for m in load_manifests(MANIFEST) if m["kind"] == "ConfigMap")
    cfg = settings.parse(yaml.safe_load(config["data"]["config.yaml"]))
    await run_scheduler(replace(cfg, kubeconfig=str(kubeconfig)))
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("fits", cpu="1"))
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("never", cpu="1000"))
    vip = pod("vip", cpu="2", nodeSelector={"pool": "rbac-preempt"})
    vip["metadata"]["annotations"] = {"priority": "1000"}
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", vip)
    # A WaitForFirstConsumer claim whose only volume is on rbac-0.
    sc = f"rbac-local-{namespace}"
    await kc.post("/apis/storage.k8s.io/v1/storageclasses", {
        "metadata": {"name": sc}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    })  # fmt: skip
    await kc.post("/api/v1/persistentvolumes", local_volume(f"rbac-{namespace}", "rbac-0", sc))
    await kc.post(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": sc,
                 "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod(
        "with-volume", volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
    ))  # fmt: skip
    assert await eventually(lambda: node_of(kc, namespace, "fits")) == "rbac-0"
    assert await eventually(lambda: node_of(kc, namespace, "with-volume"), timeout=30) == "rbac-0"
    assert await eventually(lambda: node_of(kc, namespace, "vip"), timeout=30) == "rbac-1"
    assert "low" not in await pods(kc, namespace)

    async def reasons() -> set[str]:
        evs = []
        for name in ("fits", "never", "low"):
            evs += await events_for(kc, namespace, name)
        got = {str(e["reason"]) for e in evs}
        return got if {"Scheduled", "FailedScheduling", "Preempted"} <= got else set()

    await eventually(reasons)


async def test_manifest_rbac_is_not_more_than_needed(
    cluster: DevCluster, kc: KubeClient, namespace: str
) -> None:
    """The scheduler's ServiceAccount reads nodes, NUMA topologies and its own Lease, but
    cannot create or update pods or topologies, read secrets, or touch another Lease; the
    agent's can do nothing."""
    await apply(kc, rbac_objects())
    kubeconfig = await service_account_kubeconfig(
        cluster, kc, namespace="lasched-system", name="lasched"
    )
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("victim"))
    other_lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "someone-else", "namespace": "lasched-system"},
        "spec": {"holderIdentity": "someone-else"},
    }
    await kc.post(LEASES, other_lease)
    async with await KubeClient.from_kubeconfig(str(kubeconfig)) as sa:
        assert await status(sa.get("/api/v1/nodes")) == 200
        # Its own Lease: readable (404 until a replica has created it, never 403).
        assert await status(sa.get(f"{LEASES}/lasched")) in (200, 404)
        assert await status(sa.get(f"{LEASES}/someone-else")) == 403
        assert await status(sa.request("PUT", f"{LEASES}/someone-else", body=other_lease)) == 403
        assert await status(sa.post(f"/api/v1/namespaces/{namespace}/pods", pod("intruder"))) == 403
        path = f"/api/v1/namespaces/{namespace}/pods/victim"
        assert await status(sa.patch(path, {"metadata": {}})) == 403
        assert await status(sa.get(f"/api/v1/namespaces/{namespace}/secrets")) == 403
        # NUMA zones: read, never written (the topology-updater publishes them).
        assert await status(sa.get(NRTS)) == 200
        assert await status(sa.post(NRTS, {"metadata": {"name": "forged"}})) == 403
        # Kubernetes' own PodGroups (Workloads on v1.35): read and their status condition
        # patched, never created.
        native = native_groups(namespace)
        assert await status(sa.get(native)) == 200
        assert await status(sa.post(native, {"metadata": {"name": "forged"}})) == 403
        # A v1.35 Workload has no status to write: its status is not granted either.
        writable = native.endswith("/podgroups")
        patched = await status(sa.patch(f"{native}/absent/status", {"status": {}}))
        assert patched == (404 if writable else 403)
        assert await status(sa.patch(f"{native}/absent", {"metadata": {}})) == 403
        # A pod group's controller: one object by name, never a list.
        jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        assert await status(sa.get(f"{jobs}/absent")) == 404
        assert await status(sa.get(jobs)) == 403
        replicasets = f"/apis/apps/v1/namespaces/{namespace}/replicasets"
        assert await status(sa.get(f"{replicasets}/absent")) == 404
        assert await status(sa.get(replicasets)) == 403

    agent_kubeconfig = await service_account_kubeconfig(
        cluster, kc, namespace="lasched-system", name="lasched-agent"
    )
    async with await KubeClient.from_kubeconfig(str(agent_kubeconfig)) as agent:
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": "x"},
        }
        for call in (
            agent.get("/api/v1/nodes"),
            agent.get("/api/v1/pods"),
            agent.get(f"/api/v1/namespaces/{namespace}/pods"),
            agent.get(f"{LEASES}/lasched"),
            agent.post("/apis/authentication.k8s.io/v1/tokenreviews", review),
        ):
            assert await status(call) == 403
