"""Inter-pod affinity and topology spread on the real control plane.

Each test has kwok nodes of its own (a ``pool`` label its pods select), so the
tests of the module share one control plane without sharing nodes. Pods and
Deployments are written as users write them; what is checked is where the
apiserver says they went, the Events on them, and what ``lasched explain``
prints.

Malformed terms cannot be created through today's apiserver, which
validates them; a pod stored before a check was added, or restored from an
old backup, still reaches a scheduler. The test that needs such pods writes
them into etcd, past the apiserver's validation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

import aiohttp
import orjson
import pytest

from lasched import cli
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod, pods

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
ANTI_AFFINITY = "didn't match pod anti-affinity rules"
SPREAD = "didn't match pod topology spread constraints"
AFFINITY = "didn't match pod affinity rules"


async def pool(kc: KubeClient, name: str, zones: dict[str, int]) -> dict[str, str]:
    """Nodes labelled ``pool=<name>``, ``zones[z]`` of them in zone ``z``, Ready on
    return: node -> zone."""
    specs = [
        nodes.NodeSpec(name=f"{name}-{zone}-{i}", zone=zone, labels={"pool": name})
        for zone, count in zones.items()
        for i in range(count)
    ]
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, [s.name for s in specs])
    return {s.name: str(s.zone) for s in specs}


def selects(app: str) -> dict[str, Any]:
    return {"matchLabels": {"app": app}}


def term(app: str, key: str) -> dict[str, Any]:
    return {"labelSelector": selects(app), "topologyKey": key}


def labelled(name: str, app: str, node_pool: str, **spec: Any) -> dict[str, Any]:
    body = pod(name, nodeSelector={"pool": node_pool}, **spec)
    body["metadata"]["labels"] = {"app": app}
    return body


async def bound_by_app(kc: KubeClient, namespace: str, app: str) -> dict[str, str]:
    """Live pods labelled ``app`` -> their node ("" while pending)."""
    return {
        name: p["spec"].get("nodeName", "")
        for name, p in (await pods(kc, namespace)).items()
        if p["metadata"].get("labels", {}).get("app") == app
        and not p["metadata"].get("deletionTimestamp")
    }


async def notes(kc: KubeClient, namespace: str, name: str, reason: str) -> list[str]:
    return [str(e["note"]) for e in await events_for(kc, namespace, name) if e["reason"] == reason]


def rows(table: str, names: Sequence[str]) -> dict[str, str]:
    """Each node's line in ``lasched explain``'s table."""
    lines = table.splitlines()
    return {n: next((line for line in lines if f" {n} " in line), "") for n in names}


def run_cli(argv: Sequence[str]) -> str:
    """``lasched <argv>``, its output captured (synchronous: run it in a thread)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(list(argv))
    assert code == 0, buf.getvalue()
    return buf.getvalue()


async def test_deployment_spreads_one_per_node_balanced_over_zones(
    kc: KubeClient,
    namespace: str,
    run_scheduler: SchedulerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Anti-affinity per hostname and zone spread: one replica per node, zones within
    maxSkew; the replica that fits nowhere waits with both plugins' reasons."""
    monkeypatch.setenv("COLUMNS", "250")  # explain's table, unwrapped
    zones = await pool(kc, "spread", {"zone-a": 3, "zone-b": 1, "zone-c": 1})
    port = await run_scheduler()
    template = labelled(
        "unused",
        "web",
        "spread",
        affinity={
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [term("web", HOST)]
            }
        },
        topologySpreadConstraints=[
            {
                "maxSkew": 1,
                "topologyKey": ZONE,
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": selects("web"),
            }
        ],
    )
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": template["spec"]},
        },
    }
    apps = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    await kc.post(apps, deployment)

    async def four_bound() -> dict[str, str]:
        placed = await bound_by_app(kc, namespace, "web")
        return placed if len(placed) == 4 and all(placed.values()) else {}

    placed = await eventually(four_bound, timeout=30)
    assert len(set(placed.values())) == 4, placed  # one per node
    assert set(placed.values()) <= set(zones)
    # zone-b and zone-c have one node each: two replicas in zone-a, one in each other.
    assert Counter(zones[n] for n in placed.values()) == {"zone-a": 2, "zone-b": 1, "zone-c": 1}

    await kc.patch(f"{apps}/web", {"spec": {"replicas": 5}})

    async def fifth() -> str:
        pending = [n for n, node in (await bound_by_app(kc, namespace, "web")).items() if not node]
        return pending[0] if pending else ""

    extra = await eventually(fifth, timeout=30)
    (note, *_) = await eventually(lambda: notes(kc, namespace, extra, "FailedScheduling"))
    # zone-a's three nodes fail the spread (a third replica there would make the skew 2),
    # zone-b's and zone-c's nodes the anti-affinity (each holds a replica).
    assert f"3 node(s) {SPREAD} ({ZONE}=zone-a)" in note, note
    assert f"2 node(s) {ANTI_AFFINITY}" in note, note
    await asyncio.sleep(1.0)
    assert await node_of(kc, namespace, extra) == ""

    out = await asyncio.to_thread(
        run_cli, ["explain", f"{namespace}/{extra}", "--url", f"http://127.0.0.1:{port}"]
    )
    row = rows(out, list(zones))
    free_a = next(n for n, z in zones.items() if z == "zone-a" and n not in placed.values())
    assert "PodTopologySpread" in row[free_a], out
    assert f"{ZONE}=zone-a" in row[free_a], out
    for n, z in zones.items():
        if z != "zone-a":
            assert "InterPodAffinity" in row[n], out
            assert ANTI_AFFINITY in row[n], out


async def test_required_pod_affinity_lands_in_the_zone_of_its_peer(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A pod that must share a zone with an app=db pod is placed in that zone."""
    zones = await pool(kc, "near", {"zone-p": 2, "zone-q": 2, "zone-r": 2})
    await run_scheduler()
    create = f"/api/v1/namespaces/{namespace}/pods"
    db_node = "near-zone-q-1"
    assert zones[db_node] == "zone-q"
    await kc.post(create, labelled("db", "db", "near", nodeName=db_node))
    for i in range(4):
        body = labelled(
            f"client-{i}",
            "client",
            "near",
            affinity={
                "podAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [term("db", ZONE)]
                }
            },
        )
        await kc.post(create, body)
    for i in range(4):
        placed = await eventually(partial(node_of, kc, namespace, f"client-{i}"))
        assert zones.get(placed) == "zone-q", placed


async def test_preferred_anti_affinity_spreads_what_resources_would_pack(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """On one big node and two small ones, pods that prefer to be apart take a node each;
    alike pods without the preference all go to the big node (least allocated)."""
    big, small = "prefer-big", ["prefer-small-0", "prefer-small-1"]
    specs = [nodes.NodeSpec(name=big, cpu="64", memory="256Gi", labels={"pool": "prefer"})]
    specs += [
        nodes.NodeSpec(name=n, cpu="4", memory="8Gi", labels={"pool": "prefer"}) for n in small
    ]
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, [big, *small])
    await run_scheduler()
    create = f"/api/v1/namespaces/{namespace}/pods"
    apart = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": term("apart", HOST)}
            ]
        }
    }
    for i in range(3):
        await kc.post(create, labelled(f"apart-{i}", "apart", "prefer", affinity=apart))
        assert await eventually(partial(node_of, kc, namespace, f"apart-{i}"))
    for i in range(2):
        await kc.post(create, labelled(f"packed-{i}", "packed", "prefer"))
        assert await eventually(partial(node_of, kc, namespace, f"packed-{i}")) == big
    placed = await bound_by_app(kc, namespace, "apart")
    assert sorted(placed.values()) == sorted([big, *small]), placed


async def put_in_etcd(cluster: DevCluster, body: dict[str, Any]) -> None:
    """Store ``body`` (a complete Pod) under its key, as the apiserver stores pods."""
    meta = body["metadata"]
    key = f"/registry/pods/{meta['namespace']}/{meta['name']}".encode()
    payload = {
        "key": base64.b64encode(key).decode(),
        "value": base64.b64encode(orjson.dumps(body)).decode(),
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{cluster.etcd_url}/v3/kv/put", json=payload) as resp,
    ):
        resp.raise_for_status()


async def stored_before_validation(
    cluster: DevCluster, kc: KubeClient, namespace: str, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """A pod with ``spec`` merged in, written to etcd past the apiserver's validation.

    The apiserver fills in a pod's defaults on create: one is created for
    another scheduler, read back, deleted, and written under ``name`` with ``spec``.
    """
    create = f"/api/v1/namespaces/{namespace}/pods"
    seed = await kc.post(create, pod(f"{name}-template", scheduler="nobody"))
    await kc.request("DELETE", f"{create}/{name}-template", body={"gracePeriodSeconds": 0})
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "spec": dict(seed["spec"])}
    body["metadata"] = {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "creationTimestamp": seed["metadata"]["creationTimestamp"],
        "labels": {"app": "garbled"},
    }
    body["spec"].update(spec, schedulerName="lasched", nodeSelector={"pool": "garbled"})
    body["status"] = {"phase": "Pending", "qosClass": seed["status"].get("qosClass", "Burstable")}
    await put_in_etcd(cluster, body)
    return body


async def test_a_malformed_term_warns_and_waits_while_others_bind(
    cluster: DevCluster, kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """A pod whose term no apiserver accepts today gets a Warning naming the field and
    stays Pending; pods after it bind."""
    await pool(kc, "garbled", {"zone-p": 2})
    await run_scheduler()
    anti = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {
                        "matchExpressions": [
                            {"key": "app", "operator": "Sideways", "values": ["x"]}
                        ]
                    },
                    "topologyKey": HOST,
                }
            ]
        }
    }
    await stored_before_validation(cluster, kc, namespace, "sideways", {"affinity": anti})
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": ZONE,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "two words"}},
        }
    ]
    await stored_before_validation(
        cluster, kc, namespace, "spaced", {"topologySpreadConstraints": spread}
    )
    for i in range(3):
        await kc.post(
            f"/api/v1/namespaces/{namespace}/pods", labelled(f"fine-{i}", "fine", "garbled")
        )

    expected = {
        "sideways": (
            "InvalidPodAffinity",
            "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
            ".labelSelector.matchExpressions[0].operator: 'Sideways'",
        ),
        "spaced": (
            "InvalidTopologySpreadConstraint",
            "spec.topologySpreadConstraints[0].labelSelector.matchLabels[app]",
        ),
    }
    for name, (reason, field) in expected.items():

        async def warned(name: str = name, reason: str = reason) -> list[str]:
            return [
                str(e["note"])
                for e in await events_for(kc, namespace, name)
                if e["type"] == "Warning" and e["reason"] == reason
            ]

        (note, *_) = await eventually(warned)
        assert field in note, note
        (failed, *_) = await eventually(partial(notes, kc, namespace, name, "FailedScheduling"))
        assert field in failed, failed
    for i in range(3):
        assert await eventually(partial(node_of, kc, namespace, f"fine-{i}"))
    for name in expected:
        assert await node_of(kc, namespace, name) == ""


async def test_a_pod_waiting_for_its_peer_binds_as_soon_as_the_peer_appears(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Required affinity to an absent pod: Pending; the peer's arrival requeues it (a
    cluster event and its queueing hint), bound within seconds, not at the 5-minute flush."""
    zones = await pool(kc, "late", {"zone-p": 2, "zone-q": 2})
    port = await run_scheduler()
    create = f"/api/v1/namespaces/{namespace}/pods"
    follower = labelled(
        "follower",
        "follower",
        "late",
        affinity={
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [term("leader", ZONE)]
            }
        },
    )
    await kc.post(create, follower)
    (note, *_) = await eventually(lambda: notes(kc, namespace, "follower", "FailedScheduling"))
    # Each node names the domain it found empty (zone-p, zone-q).
    assert f"2 node(s) {AFFINITY} ({ZONE}=zone-p)" in note, note
    assert f"2 node(s) {AFFINITY} ({ZONE}=zone-q)" in note, note
    await asyncio.sleep(2.0)
    # Parked after one attempt: nothing but a cluster event (or the flush) moves it.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"http://127.0.0.1:{port}/debug/explain", params={"pod": f"{namespace}/follower"}
        ) as resp,
    ):
        queue = orjson.loads(await resp.read())["queue"]
    assert (queue["where"], queue["attempts"]) == ("unschedulable", 1), queue
    assert await node_of(kc, namespace, "follower") == ""

    started = time.monotonic()
    await kc.post(create, labelled("leader", "leader", "late", nodeName="late-zone-q-0"))
    placed = await eventually(lambda: node_of(kc, namespace, "follower"), timeout=15)
    assert time.monotonic() - started < 15
    assert zones.get(placed) == "zone-q", placed
