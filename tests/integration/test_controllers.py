"""The dev cluster's kube-controller-manager: workloads own, create and recreate their pods.

Deployments and Jobs create pods that lasched schedules, a deleted pod is
replaced, a deleted namespace is finalised, and a node that stops
heartbeating is tainted and its pods evicted, as in a real cluster.
"""

from __future__ import annotations

from typing import Any

from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import ensure_namespace
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import eventually, pods

UNREACHABLE = "node.kubernetes.io/unreachable"


def template(app: str, pool: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "schedulerName": "lasched",
            "nodeSelector": {"pool": pool},
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                }
            ],
            **spec,
        },
    }


def deployment(name: str, pool: str, replicas: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": template(name, pool, **spec),
        },
    }


async def live_bound(kc: KubeClient, namespace: str, app: str) -> dict[str, str]:
    """Pods of ``app`` not being deleted -> their node ("" while pending)."""
    return {
        name: p["spec"].get("nodeName", "")
        for name, p in (await pods(kc, namespace)).items()
        if p["metadata"].get("labels", {}).get("app") == app
        and not p["metadata"].get("deletionTimestamp")
    }


async def make_pool(kc: KubeClient, pool: str, count: int) -> list[str]:
    specs = nodes.uniform(count, prefix=pool, cpu="4", labels={"pool": pool})
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, [s.name for s in specs])
    return [s.name for s in specs]


async def test_deployment_pods_are_scheduled_and_a_deleted_one_replaced(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A Deployment of 5 replicas: its ReplicaSet's pods bind; a deleted pod is recreated
    and bound too."""
    await make_pool(kc, "deploy", 2)
    await run_scheduler()
    await kc.post(
        f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("web", "deploy", 5)
    )

    async def five_bound() -> dict[str, str] | None:
        placed = await live_bound(kc, namespace, "web")
        return placed if len(placed) == 5 and all(placed.values()) else None

    first = await eventually(five_bound, timeout=60)
    victim = sorted(first)[0]
    await kc.delete(f"/api/v1/namespaces/{namespace}/pods/{victim}")
    after = await eventually(
        lambda: _replaced(kc, namespace, set(first), victim), timeout=60, interval=0.2
    )
    assert victim not in after
    deploy = await kc.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
    await eventually(lambda: _available(kc, namespace, "web", 5), timeout=60)
    assert deploy["spec"]["replicas"] == 5


async def _replaced(
    kc: KubeClient, namespace: str, before: set[str], victim: str
) -> dict[str, str] | None:
    placed = await live_bound(kc, namespace, "web")
    fresh = set(placed) - before
    return placed if len(placed) == 5 and fresh and all(placed.values()) else None


async def _available(kc: KubeClient, namespace: str, name: str, n: int) -> bool:
    d = await kc.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    return int((d.get("status") or {}).get("availableReplicas") or 0) == n


async def test_job_creates_its_parallel_pods(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A Job with parallelism 4 gets 4 pods from the job controller, all bound by lasched."""
    await make_pool(kc, "job", 2)
    await run_scheduler()
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "train"},
        "spec": {
            "parallelism": 4,
            "completions": 8,
            "template": template("train", "job", restartPolicy="Never"),
        },
    }
    await kc.post(f"/apis/batch/v1/namespaces/{namespace}/jobs", job)

    async def four_bound() -> bool:
        placed = await live_bound(kc, namespace, "train")
        return len(placed) >= 4 and sum(1 for n in placed.values() if n) >= 4

    await eventually(four_bound, timeout=60)
    owned = [
        p
        for p in (await pods(kc, namespace)).values()
        if p["metadata"].get("labels", {}).get("app") == "train"
    ]
    assert all(
        any(r["kind"] == "Job" for r in p["metadata"].get("ownerReferences", [])) for p in owned
    )


async def test_deleted_namespace_is_finalised(kc: KubeClient) -> None:
    """Deleting a namespace with objects in it completes: the namespace controller empties it."""
    await ensure_namespace(kc, "doomed")
    await kc.post(
        "/api/v1/namespaces/doomed/configmaps", {"metadata": {"name": "c"}, "data": {"a": "b"}}
    )
    await kc.delete("/api/v1/namespaces/doomed")

    async def gone() -> bool:
        try:
            await kc.get("/api/v1/namespaces/doomed")
        except ApiError as e:
            return e.not_found
        return False

    await eventually(gone, timeout=60, interval=0.5)


async def test_default_service_account_comes_from_its_controller(kc: KubeClient) -> None:
    """A new namespace's default ServiceAccount is created by the serviceaccount controller."""
    await kc.post("/api/v1/namespaces", {"metadata": {"name": "fresh-sa"}})

    async def sa() -> dict[str, Any] | None:
        try:
            return await kc.get("/api/v1/namespaces/fresh-sa/serviceaccounts/default")
        except ApiError as e:
            if e.not_found:
                return None
            raise

    await eventually(sa, timeout=30)


async def test_new_node_is_tainted_until_ready(kc: KubeClient) -> None:
    """TaintNodesByCondition is on: a new node starts not-ready-tainted, and the node
    lifecycle controller removes the taint once kwok reports it Ready."""
    spec = nodes.NodeSpec(name="tainted-at-birth", labels={"pool": "birth"})
    created = await kc.post("/api/v1/nodes", spec.manifest())
    keys = {t["key"] for t in (created.get("spec") or {}).get("taints") or []}
    assert "node.kubernetes.io/not-ready" in keys
    await nodes.wait_ready(kc, [spec.name])


async def partition(kc: KubeClient, node: str) -> None:
    """Cut a node's heartbeats off from the control plane, as a network partition would.

    A ValidatingAdmissionPolicy refuses kwok's renewals of the node's Lease and
    its writes of the node's status, so what kwok reports for it no longer arrives.
    """
    name = f"partition-{node}"
    await kc.post(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["coordination.k8s.io"],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["leases"],
                            "resourceNames": [node],
                        },
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["UPDATE"],
                            "resources": ["nodes/status"],
                            "resourceNames": [node],
                        },
                    ]
                },
                # kwok writes as the cluster's admin; the node lifecycle controller's own
                # writes to the node's status must still go through.
                "validations": [
                    {
                        "expression": "request.userInfo.username != 'lasched-admin'",
                        "message": f"node {node} is cut off for this test",
                    }
                ],
            },
        },
    )
    await kc.post(
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
        {
            "metadata": {"name": name},
            "spec": {"policyName": name, "validationActions": ["Deny"]},
        },
    )


async def test_node_that_stops_heartbeating_is_tainted_and_its_pods_evicted(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """One node's heartbeats stop reaching the apiserver: the node lifecycle controller
    marks it unreachable, taints it, evicts its pods, and the Deployment's replacements
    bind on the other node."""
    names = await make_pool(kc, "lost", 2)
    await run_scheduler()
    tolerate = [
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}
    ]
    body = deployment("edge", "lost", 4, tolerations=tolerate)
    await kc.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", body)

    async def all_bound() -> dict[str, str] | None:
        placed = await live_bound(kc, namespace, "edge")
        return placed if len(placed) == 4 and all(placed.values()) else None

    placed = await eventually(all_bound, timeout=60)
    lost = next(iter(placed.values()))
    kept = next(n for n in names if n != lost)
    await partition(kc, lost)

    async def tainted() -> bool:
        node = await kc.get(f"/api/v1/nodes/{lost}")
        taints = (node.get("spec") or {}).get("taints") or []
        return any(t["key"] == UNREACHABLE and t["effect"] == "NoExecute" for t in taints)

    await eventually(tainted, timeout=150, interval=1.0)

    async def moved() -> bool:
        now = await live_bound(kc, namespace, "edge")
        return len(now) == 4 and all(n == kept for n in now.values())

    await eventually(moved, timeout=60, interval=0.5)
    on_lost = {name for name, node in placed.items() if node == lost}

    async def evictions() -> set[str]:
        listing = await kc.get(
            f"/api/v1/namespaces/{namespace}/events", fieldSelector="reason=TaintManagerEviction"
        )
        return {e["involvedObject"]["name"] for e in listing["items"]}

    # The taint eviction controller says which pods it evicted, and why.
    await eventually(lambda: _superset(evictions(), on_lost), timeout=30)


async def _superset(have: Any, want: set[str]) -> bool:
    return bool(set(await have) >= want)
