"""The local control plane behaves as a real cluster does."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.binaries import KUBERNETES_VERSION, kubernetes_minor
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace, workload_api
from lasched_dev.devcluster.processes import pid_alive
from tests.integration.helpers import eventually, pod


async def test_apiserver_reports_pinned_version(kc: KubeClient) -> None:
    """kube-apiserver was built with version ldflags and says which release it is."""
    v = await kc.get("/version")
    assert v["gitVersion"] == KUBERNETES_VERSION


async def test_kwok_nodes_become_ready(kc: KubeClient) -> None:
    """Nodes created by the helper are picked up by kwok and turn Ready."""
    specs = nodes.uniform(5, prefix="ready", regions=["r1", "r2"])
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, [s.name for s in specs], timeout=30)
    n = await kc.get("/api/v1/nodes/ready-1")
    assert n["metadata"]["labels"]["topology.kubernetes.io/region"] == "r2"
    assert n["status"]["allocatable"]["cpu"] == "8"


async def test_many_nodes_created_at_once_are_untainted_promptly() -> None:
    """150 nodes created at once are Ready and untainted within 15 s, and
    kube-controller-manager added no label to them.

    The node lifecycle controller takes each new node's not-ready taint off from a
    client limited to kube-controller-manager's --kube-api-qps. At its default (20 a
    second), with nodes lacking the beta os and arch labels a kubelet registers
    (which the controller then added, two requests more per node), 150 nodes took
    about 30 s and 1,000 nearly 4 minutes (docs/devcluster.md, "Many nodes at once").
    """
    async with DevCluster() as c, await c.client() as kc:
        specs = nodes.uniform(150, prefix="many", regions=["r1", "r2", "r3"])
        await nodes.create_nodes(kc, specs)
        await nodes.wait_ready(kc, [s.name for s in specs], timeout=15)
        listing = await kc.get("/api/v1/nodes", labelSelector="type=kwok")
        for node in listing["items"]:
            for entry in node["metadata"].get("managedFields") or []:
                if entry["manager"] == "kube-controller-manager":
                    written = entry.get("fieldsV1", {}).get("f:metadata", {})
                    assert "f:labels" not in written, node["metadata"]["name"]


async def test_kwok_nodes_renew_leases_and_report_status_as_kubelets_do(kc: KubeClient) -> None:
    """Nodes renew their Lease every 10 s and leave an unchanged status alone for minutes.

    kwok's other heartbeat stage would patch every node's status every 20 to 25 s
    on top of the Lease; the cluster gives it the heartbeat-with-lease stage.
    """
    specs = nodes.uniform(3, prefix="beat")
    await nodes.create_nodes(kc, specs)
    names = [s.name for s in specs]
    await nodes.wait_ready(kc, names, timeout=30)

    async def heartbeats() -> dict[str, str]:
        out = {}
        for name in names:
            n = await kc.get(f"/api/v1/nodes/{name}")
            ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
            out[name] = ready["lastHeartbeatTime"]
        return out

    async def renewals() -> dict[str, str]:
        return {
            name: (
                await kc.get(
                    f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
                )
            )["spec"]["renewTime"]
            for name in names
        }

    first_beats, first_renewals = await heartbeats(), await renewals()
    await asyncio.sleep(27)  # past kwok's 20 to 25 s status heartbeat, and two Lease renewals
    assert await heartbeats() == first_beats
    later = await renewals()
    assert all(later[n] != first_renewals[n] for n in names)


async def test_text_answers_read_as_text(kc: KubeClient) -> None:
    """KubeClient.text reads a non-JSON endpoint such as the apiserver's /metrics."""
    metrics = await kc.text("/metrics")
    assert "# TYPE apiserver_request_duration_seconds histogram" in metrics


async def test_pods_bound_to_kwok_nodes_run(kc: KubeClient, namespace: str) -> None:
    """kwok plays the kubelet: a pod bound to its node reaches Running."""
    await nodes.create_nodes(kc, [nodes.NodeSpec(name="runner-0")])
    await nodes.wait_ready(kc, ["runner-0"])
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("p", nodeName="runner-0"))

    async def running() -> bool:
        p = await kc.get(f"/api/v1/namespaces/{namespace}/pods/p")
        return bool(p["status"].get("phase") == "Running")

    await eventually(running)


async def test_kubernetes_workload_api_is_served_beside_lasched_podgroup_crd(
    kc: KubeClient, namespace: str
) -> None:
    """Kubernetes' own Workload and PodGroup kinds (scheduling.k8s.io) are served with
    their feature gates on, so a pod may name a native gang; lasched's PodGroup CRD
    (scheduling.x-k8s.io/v1alpha1) is served beside them, a PodGroup of the same name
    in each group."""
    api = workload_api(kubernetes_minor((await kc.get("/version"))["gitVersion"]))
    assert api is not None
    kinds = {r["kind"] for r in (await kc.get(f"/apis/{api.group_version}"))["resources"]}
    assert "Workload" in kinds
    assert ("PodGroup" in kinds) == api.podgroups

    await kc.post(
        f"/apis/scheduling.x-k8s.io/v1alpha1/namespaces/{namespace}/podgroups",
        {
            "apiVersion": "scheduling.x-k8s.io/v1alpha1",
            "kind": "PodGroup",
            "metadata": {"name": "gang"},
            "spec": {"minMember": 2},
        },
    )
    if api.group_version != "scheduling.k8s.io/v1beta1":
        return  # the objects below are written in v1beta1's schema (Kubernetes v1.37)
    await kc.post(
        f"/apis/{api.group_version}/namespaces/{namespace}/podgroups",
        {
            "apiVersion": api.group_version,
            "kind": "PodGroup",
            "metadata": {"name": "gang"},
            "spec": {"schedulingPolicy": {"gang": {"minCount": 2}}},
        },
    )
    member = pod("member", schedulingGroup={"podGroupName": "gang"})
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", member)
    got = await kc.get(f"/api/v1/namespaces/{namespace}/pods/member")
    # The apiserver drops a gated field when its gate is off.
    assert got["spec"]["schedulingGroup"] == {"podGroupName": "gang"}
    native = await kc.get(f"/apis/{api.group_version}/namespaces/{namespace}/podgroups/gang")
    assert native["spec"]["schedulingPolicy"]["gang"]["minCount"] == 2
    ours = await kc.get(f"/apis/scheduling.x-k8s.io/v1alpha1/namespaces/{namespace}/podgroups/gang")
    assert ours["spec"]["minMember"] == 2


async def test_rbac_is_enforced(kc: KubeClient, namespace: str, cluster: DevCluster) -> None:
    """A ServiceAccount with no bindings is authenticated but may not list pods."""
    await kc.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "nobody"}}
    )
    token = await kc.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/nobody/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    review = await kc.post(
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": f"system:serviceaccount:{namespace}:nobody",
                "resourceAttributes": {"verb": "list", "resource": "pods"},
            },
        },
    )
    assert review["status"]["allowed"] is False
    assert token["status"]["token"]


async def test_priority_and_fairness_is_on(kc: KubeClient) -> None:
    """API Priority and Fairness serves its default flow schemas."""
    schemas = await kc.get("/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas")
    names = {s["metadata"]["name"] for s in schemas["items"]}
    assert "system-leader-election" in names


async def test_pods_need_a_service_account(kc: KubeClient) -> None:
    """ServiceAccount admission is on: a pod naming a ServiceAccount that does not exist
    is refused."""
    await ensure_namespace(kc, "no-sa")
    with pytest.raises(ApiError) as err:
        await kc.post("/api/v1/namespaces/no-sa/pods", pod("p", serviceAccountName="nobody"))
    assert err.value.status == 403
    assert "serviceaccount" in err.value.message.lower()


async def test_stop_leaves_no_process_behind() -> None:
    """Stopping a cluster ends etcd, kube-apiserver, kube-controller-manager and kwok."""
    c = DevCluster()
    await c.start()
    names = [child.name for child in c.children]
    assert names == ["etcd", "kube-apiserver", "kube-controller-manager", "kwok"]
    pids = [child.pid for child in c.children]
    assert all(pid_alive(p) for p in pids)
    await c.stop()
    await asyncio.sleep(1.5)  # past the watchdog's period: nothing is started again
    assert not any(pid_alive(p) for p in pids)
    assert c.children == []


async def test_a_cluster_without_the_controller_manager_still_schedules_pods() -> None:
    """controller_manager=False: no kube-controller-manager, nodes become Ready untainted,
    and ensure_namespace() creates the default ServiceAccount itself."""
    async with DevCluster(controller_manager=False) as c, await c.client() as kc:
        assert [child.name for child in c.children] == ["etcd", "kube-apiserver", "kwok"]
        spec = nodes.NodeSpec(name="bare-0")
        created = await kc.post("/api/v1/nodes", spec.manifest())
        assert not (created.get("spec") or {}).get("taints")
        await nodes.wait_ready(kc, [spec.name])
        await ensure_namespace(kc, "bare")
        await kc.post("/api/v1/namespaces/bare/pods", pod("p"))


async def test_controller_manager_is_started_again_when_it_exits(cluster: DevCluster) -> None:
    """kube-controller-manager exits when it loses its Lease; the cluster restarts it, as
    kubelet restarts a static pod."""
    (kcm,) = [c for c in cluster.children if c.name == "kube-controller-manager"]
    os.kill(kcm.pid, signal.SIGKILL)

    async def restarted() -> bool:
        now = [c for c in cluster.children if c.name == "kube-controller-manager"]
        return bool(now) and now[0].pid != kcm.pid and now[0].alive()

    await eventually(restarted, timeout=10)
    assert cluster.controller_manager_restarts >= 1
