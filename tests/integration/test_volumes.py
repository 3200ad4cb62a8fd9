"""Volumes on the real control plane: a StatefulSet with required anti-affinity per
hostname, a zone spread constraint and a claim on a local ``WaitForFirstConsumer``
volume lands one pod per zone, each on a node that has a free volume, and
kube-controller-manager's PV controller completes the binds lasched starts at
PreBind; a claim no volume can satisfy gets a FailedScheduling event naming it,
and ``lasched explain`` names VolumeBinding for every node.

kube-scheduler has one answer here too: the volumes, the anti-affinity and the
spread leave exactly one node per zone (in zone b either of two). The second
test holds lasched to it: a real kube-scheduler places the same StatefulSet,
one pod at a time, and for each pod its extender (:class:`Witness`) asks
lasched, following beside it, which nodes lasched finds feasible in the same
cluster; both sets must be equal for every pod, and an unsatisfiable claim
leaves its pod pending in both, for the same reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from bench import oracle
from lasched import settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod

ZONE = "topology.kubernetes.io/zone"
# Zone a: a volume on vol-a1 only; zone b: on both nodes; zone c: on vol-c1.
NODES = [
    nodes.NodeSpec(name="vol-a1", zone="a", labels={"vol-test": "yes"}),
    nodes.NodeSpec(name="vol-a2", zone="a", labels={"vol-test": "yes"}),
    nodes.NodeSpec(name="vol-b1", zone="b", labels={"vol-test": "yes"}),
    nodes.NodeSpec(name="vol-b2", zone="b", labels={"vol-test": "yes"}),
    nodes.NodeSpec(name="vol-c1", zone="c", labels={"vol-test": "yes"}),
]
WITH_VOLUME = ("vol-a1", "vol-b1", "vol-b2", "vol-c1")


def local_volume(name: str, node: str, storage_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "local": {"path": "/mnt/disks/vol1"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
            ]}]}},
        },
    }  # fmt: skip


def stateful_set(
    name: str, storage_class: str, *, scheduler: str = "lasched", ordered: bool = False
) -> dict[str, Any]:
    """Three replicas with the anti-affinity, the spread and a claim each; ``ordered``: one
    pod at a time, each created once the one before is Ready."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "serviceName": name,
            "podManagementPolicy": "OrderedReady" if ordered else "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    **pod(name, scheduler=scheduler)["spec"],
                    "nodeSelector": {"vol-test": "yes"},
                    "affinity": {"podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": labels},
                             "topologyKey": "kubernetes.io/hostname"}
                        ]
                    }},
                    "topologySpreadConstraints": [
                        {"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule",
                         "labelSelector": {"matchLabels": labels}}
                    ],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                         "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
async def volume_nodes(kc: KubeClient) -> list[str]:
    await nodes.create_nodes(kc, NODES)
    await nodes.wait_ready(kc, [n.name for n in NODES])
    return [n.name for n in NODES]


async def test_local_volumes_place_a_stateful_set_as_kube_scheduler_would(
    kc: KubeClient, namespace: str, volume_nodes: list[str], run_scheduler: SchedulerFactory
) -> None:
    """One pod per zone, each on a node with a free local volume, its claim Bound to it;
    an unsatisfiable claim is named in the event, and explain names VolumeBinding."""
    storage_class = f"local-{namespace}"
    await kc.post("/apis/storage.k8s.io/v1/storageclasses", {
        "metadata": {"name": storage_class}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    })  # fmt: skip
    for n in WITH_VOLUME:
        await kc.post(
            "/api/v1/persistentvolumes", local_volume(f"{namespace}-{n}", n, storage_class)
        )
    port = await run_scheduler(settings.parse({"leaderElection": {"leaderElect": False}}))
    await kc.post(
        f"/apis/apps/v1/namespaces/{namespace}/statefulsets", stateful_set("web", storage_class)
    )

    async def placed() -> dict[str, str] | None:
        got = {f"web-{i}": await node_of_or_none(kc, namespace, f"web-{i}") for i in range(3)}
        return {k: v for k, v in got.items() if v} if all(got.values()) else None

    where: dict[str, str] = await eventually(placed, timeout=60)
    zone_of = {n.name: str(n.zone) for n in NODES}
    assert sorted(zone_of[n] for n in where.values()) == ["a", "b", "c"], where
    assert set(where.values()) <= set(WITH_VOLUME), where

    async def claims_bound() -> dict[str, str] | None:
        out = {}
        for i in range(3):
            c = await kc.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-web-{i}")
            if c.get("status", {}).get("phase") != "Bound":
                return None
            out[f"web-{i}"] = c["spec"]["volumeName"]
        return out

    volumes = await eventually(claims_bound, timeout=60)
    for pod_name, volume in volumes.items():
        assert volume == f"{namespace}-{where[pod_name]}", (pod_name, volume, where)

    # No volume holds 100Gi: the claim is named, and VolumeBinding rejects every node.
    await kc.post(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
        "metadata": {"name": "huge"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                 "resources": {"requests": {"storage": "100Gi"}}},
    })  # fmt: skip
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod(
        "needs-huge", nodeSelector={"vol-test": "yes"},
        volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "huge"}}],
    ))  # fmt: skip

    async def failed() -> str | None:
        for e in await events_for(kc, namespace, "needs-huge"):
            if e["reason"] == "FailedScheduling":
                return str(e["note"])
        return None

    note = await eventually(failed, timeout=30)
    assert 'node(s) didn\'t find available persistent volumes to bind (claim "huge")' in note
    answer = await explain(port, f"{namespace}/needs-huge")
    plugins = {v["node"]: v["rejections"][0]["plugin"] for v in answer["filter"]["nodes"]
               if v["node"] in volume_nodes}  # fmt: skip
    assert plugins == dict.fromkeys(volume_nodes, "VolumeBinding"), plugins


async def node_of_or_none(kc: KubeClient, namespace: str, name: str) -> str | None:
    try:
        return await node_of(kc, namespace, name) or None
    except Exception:
        return None  # the StatefulSet has not created it yet


async def explain(port: int, key: str) -> dict[str, Any]:
    async def get() -> dict[str, Any] | None:
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{port}/debug/explain", params={"pod": key}) as resp,
        ):
            if resp.status != 200:
                return None
            body: dict[str, Any] = orjson.loads(await resp.read())
            return body

    answer: dict[str, Any] = await eventually(get, timeout=20)
    return answer


class Witness:
    """kube-scheduler's extender: for each pod, the nodes kube-scheduler found feasible
    and the ones lasched's explain finds feasible, asked during the same call (the
    cluster cannot change in between: the pod waits for the answer). It admits every
    node it is sent, so kube-scheduler goes on to bind."""

    def __init__(self, lasched_feasible: Callable[[str], Awaitable[frozenset[str]]]) -> None:
        self.lasched_feasible = lasched_feasible
        self.seen: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/filter", self._filter)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        (port,) = [a[1] for a in self._runner.addresses if isinstance(a, tuple)]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _filter(self, request: web.Request) -> web.Response:
        args = orjson.loads(await request.read())
        meta = args["Pod"]["metadata"]
        names = [str(n) for n in args.get("NodeNames") or ()]
        key = f"{meta['namespace']}/{meta['name']}"
        self.seen.setdefault(key, (frozenset(names), await self.lasched_feasible(key)))
        answer = {"NodeNames": names, "FailedNodes": {}, "Error": ""}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")


async def test_kube_scheduler_and_lasched_find_the_same_nodes_for_each_pod(
    cluster: DevCluster,
    kc: KubeClient,
    *,
    namespace: str,
    volume_nodes: list[str],
    run_scheduler: SchedulerFactory,
    tmp_path: Path,
) -> None:
    """kube-scheduler places the StatefulSet pod by pod; for each, lasched's feasible nodes
    equal kube-scheduler's; an unsatisfiable claim leaves its pod pending in both."""
    storage_class = f"local-{namespace}"
    await kc.post("/apis/storage.k8s.io/v1/storageclasses", {
        "metadata": {"name": storage_class}, "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "WaitForFirstConsumer",
    })  # fmt: skip
    for n in WITH_VOLUME:
        await kc.post(
            "/api/v1/persistentvolumes", local_volume(f"{namespace}-{n}", n, storage_class)
        )
    await oracle.hold_lease(kc)  # lasched follows: it explains and binds nothing
    port = await run_scheduler(settings.parse(oracle.lasched_settings()))

    async def lasched_feasible(key: str) -> frozenset[str]:
        answer = await explain(port, key)
        return oracle.feasible_nodes(answer) & set(volume_nodes)

    witness = Witness(lasched_feasible)
    url = await witness.start()
    try:
        async with oracle.kube_scheduler(
            kubeconfig=cluster.kubeconfig, extender_url=url, workdir=tmp_path
        ) as child:
            await kc.post(
                f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
                stateful_set("web", storage_class, scheduler=oracle.SCHEDULER, ordered=True),
            )

            async def placed() -> dict[str, str] | None:
                got = {
                    f"web-{i}": await node_of_or_none(kc, namespace, f"web-{i}") for i in range(3)
                }
                return {k: v for k, v in got.items() if v} if all(got.values()) else None

            where: dict[str, str] = await eventually(placed, timeout=90)
            assert child.alive(), child.log_tail()
            # The first pod may go to any node with a volume; each set is the same in both.
            keys = [f"{namespace}/web-{i}" for i in range(3)]
            assert set(witness.seen) == set(keys), witness.seen
            for key in keys:
                kube, mine = witness.seen[key]
                assert kube == mine, (key, sorted(kube), sorted(mine))
            assert witness.seen[keys[0]][0] == frozenset(WITH_VOLUME)
            zone_of = {n.name: str(n.zone) for n in NODES}
            assert sorted(zone_of[n] for n in where.values()) == ["a", "b", "c"], where

            await kc.post(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
                "metadata": {"name": "huge"},
                "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                         "resources": {"requests": {"storage": "100Gi"}}},
            })  # fmt: skip
            await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod(
                "needs-huge", scheduler=oracle.SCHEDULER, nodeSelector={"vol-test": "yes"},
                volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "huge"}}],
            ))  # fmt: skip

            async def unschedulable() -> str | None:
                obj = await kc.get(f"/api/v1/namespaces/{namespace}/pods/needs-huge")
                cond = oracle.scheduled_condition(obj)
                return str(cond.get("message")) if cond is not None else None

            message = await eventually(unschedulable, timeout=30)
    finally:
        await witness.stop()
    # No node passed kube-scheduler's filters, so it never asked the extender.
    assert f"{namespace}/needs-huge" not in witness.seen
    assert "didn't find available persistent volumes to bind" in message, message
    answer = await explain(port, f"{namespace}/needs-huge")
    assert not oracle.feasible_nodes(answer) & set(volume_nodes)
    plugins = {v["node"]: v["rejections"][0]["plugin"] for v in answer["filter"]["nodes"]
               if v["node"] in volume_nodes}  # fmt: skip
    assert plugins == dict.fromkeys(volume_nodes, "VolumeBinding"), plugins
