"""``kubectl lasched`` (the ``kubectl-lasched`` executable) against a lasched on the dev cluster.

The plugin reaches lasched only through the apiserver's proxy, as it does in a
cluster. Here lasched runs in the test process, so the test gives it what the
chart gives it in a cluster: a pod (on a kwok node whose address is this
machine's non-loopback one, with ``hostNetwork``, so its pod IP is that address)
and a Service selecting it. The apiserver proxies to that address, where lasched
listens; it proxies to no loopback address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from lasched import app, settings
from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace
from tests.integration.helpers import events_for, eventually, pod

EXE = Path(sys.executable).with_name("kubectl-lasched")
HOST_NODE = "host-node"
LASCHED_NS = "lasched-system"
RTTS = {"small-0": {HOST_NODE: 0.7}}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def outside_address() -> str:
    """This machine's address on a non-loopback interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError as e:
            raise AssertionError(f"this test needs a non-loopback IPv4 address: {e}") from e
        address: str = s.getsockname()[0]
    assert not address.startswith("127."), "this test needs a non-loopback IPv4 address"
    return address


def replica_pod_name() -> str:
    """The Lease holder's pod: lasched's identity is its hostname (a pod's name) + ``_``..."""
    host = socket.gethostname()
    return host if _DNS_LABEL.fullmatch(host) and len(host) <= 253 else "lasched-0"


async def plugin(*args: str, kubeconfig: Path) -> tuple[int, str, str]:
    """Run ``kubectl-lasched`` as kubectl would, without blocking lasched's event loop."""
    proc = await asyncio.create_subprocess_exec(
        str(EXE), "--kubeconfig", str(kubeconfig), "--lasched-namespace", LASCHED_NS, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def expose(kc: KubeClient, *, port: int, address: str) -> str:
    """A pod standing for the lasched replica at ``address``, and the Service the chart
    renders; returns the pod's name."""
    await nodes.create_nodes(kc, [nodes.NodeSpec(name=HOST_NODE, cpu="4")])
    await nodes.wait_ready(kc, [HOST_NODE])
    internal = {"type": "InternalIP", "address": address}

    async def address_kept() -> bool:
        """kwok keeps a node's addresses once it has them; its first status report after
        start may still replace ours, so set it until it is there."""
        node = await kc.get(f"/api/v1/nodes/{HOST_NODE}")
        if internal in (node["status"].get("addresses") or []):
            return True
        await kc.patch(f"/api/v1/nodes/{HOST_NODE}/status", {"status": {"addresses": [internal]}})
        return False

    await eventually(address_kept, timeout=30, interval=0.5)
    labels = {"app.kubernetes.io/name": "lasched", "app.kubernetes.io/component": "scheduler"}
    name = replica_pod_name()
    await kc.post(f"/api/v1/namespaces/{LASCHED_NS}/pods", {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": HOST_NODE,
            "hostNetwork": True,
            "containers": [{
                "name": "lasched", "image": "lasched:0.1.0",
                "ports": [{"name": "http", "containerPort": port, "hostPort": port}],
            }],
        },
    })  # fmt: skip
    await kc.post(f"/api/v1/namespaces/{LASCHED_NS}/services", {
        "metadata": {"name": "lasched"},
        "spec": {"selector": labels,
                 "ports": [{"name": "http", "port": 10271, "targetPort": "http"}]},
    })  # fmt: skip

    async def serving() -> bool:
        try:
            text = await kc.text(
                f"/api/v1/namespaces/{LASCHED_NS}/services/lasched:http/proxy/readyz"
            )
        except ApiError:
            return False
        return text.strip() == "ok"

    async def pod_ip() -> bool:
        pod = await kc.get(f"/api/v1/namespaces/{LASCHED_NS}/pods/{name}")
        return bool(pod["status"].get("podIP") == address)

    await eventually(pod_ip, timeout=30)
    await eventually(serving, timeout=60, interval=0.3)
    return name


async def debug_reader_token(kc: KubeClient, tmp_path: Path) -> Path:
    """A ServiceAccount's token with ``get`` on lasched's /debug paths (docs/operations.md)."""
    sa, rbac = (
        f"/api/v1/namespaces/{LASCHED_NS}/serviceaccounts",
        "/apis/rbac.authorization.k8s.io/v1",
    )
    await kc.post(sa, {"metadata": {"name": "sre"}})
    await kc.post(f"{rbac}/clusterroles", {
        "metadata": {"name": "lasched-debug-reader"},
        "rules": [{"nonResourceURLs": ["/debug/explain", "/debug/latency"], "verbs": ["get"]}],
    })  # fmt: skip
    await kc.post(f"{rbac}/clusterrolebindings", {
        "metadata": {"name": "lasched-debug-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "lasched-debug-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "sre", "namespace": LASCHED_NS}],
    })  # fmt: skip
    answer = await kc.post(
        f"{sa}/sre/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    path = tmp_path / "token"
    path.write_text(answer["status"]["token"])
    return path


@pytest.fixture(scope="module")
async def lasched(
    cluster: DevCluster, kc: KubeClient, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    """lasched leading on a Lease in lasched-system, reachable through the apiserver (one
    for the module: its pod and Service are the chart's, made once)."""
    tmp_path = tmp_path_factory.mktemp("kubectl-lasched")
    await ensure_namespace(kc, LASCHED_NS)
    await nodes.create_nodes(kc, [nodes.NodeSpec(name="small-0", cpu="1", memory="2Gi")])
    rtt = tmp_path / "rtt.json"
    rtt.write_bytes(orjson.dumps(RTTS))
    cfg = settings.parse({
        "kubeconfig": str(cluster.kubeconfig),
        "server": {"port": 0},
        "leaderElection": {"resourceNamespace": LASCHED_NS, "resourceName": "lasched"},
        "latency": {"staticFile": str(rtt)},
    })  # fmt: skip
    stop = asyncio.Event()
    serving: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(app.run(cfg, stop=stop, serving=serving), name="lasched-under-test")
    try:
        port = await asyncio.wait_for(asyncio.shield(serving), 30)
        replica = await expose(kc, port=port, address=outside_address())
        token = await debug_reader_token(kc, tmp_path)
        yield {"port": port, "replica": replica, "token": token}
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


async def test_explain_a_pending_pod_through_the_apiserver(
    cluster: DevCluster, kc: KubeClient, namespace: str, lasched: dict[str, Any], tmp_path: Path
) -> None:
    """``kubectl lasched explain POD -n NS`` prints why the pod waits; without a token the
    message says what to give; ``--server-url`` asks a scheduler directly."""
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("huge", cpu="100"))

    async def failed() -> bool:
        return any(
            e["reason"] == "FailedScheduling" for e in await events_for(kc, namespace, "huge")
        )

    await eventually(failed)
    token = str(lasched["token"])
    code, out, err = await plugin(
        "explain", "huge", "-n", namespace, "--token-file", token, kubeconfig=cluster.kubeconfig
    )
    assert code == 0, err
    print(out)
    assert f"{namespace}/huge  pending" in out, out
    assert "Insufficient cpu" in out, out
    assert "NodeResourcesFit" in out, out

    # namespace/name, flags before the subcommand, and the JSON answer.
    kubeconfig = cluster.kubeconfig
    code, out, err = await plugin(
        "--token-file", token, "--json", "explain", f"{namespace}/huge", kubeconfig=kubeconfig
    )
    assert code == 0, err
    answer = orjson.loads(out)
    assert answer["state"] == "pending"
    assert "Insufficient cpu" in answer["queue"]["reason"]

    code, out, err = await plugin("explain", "huge", "-n", namespace, kubeconfig=cluster.kubeconfig)
    assert code == 1
    assert "answered 401" in err, err
    assert "--token-file" in err, err

    direct = f"http://127.0.0.1:{lasched['port']}"
    code, out, err = await plugin(
        "explain", "pod/huge", "-n", namespace, "--server-url", direct, kubeconfig=kubeconfig
    )
    assert code == 0, err
    assert "Insufficient cpu" in out, out

    # kubectl's --context, and the namespace a context names as the default for -n.
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    config["clusters"].append({"name": "elsewhere", "cluster": {"server": "https://127.0.0.1:9"}})
    config["contexts"] = [
        {"name": "elsewhere", "context": {"cluster": "elsewhere", "user": "lasched-admin"}},
        {"name": "dev", "context": {**config["contexts"][0]["context"], "namespace": namespace}},
    ]
    config["current-context"] = "elsewhere"
    contexts = tmp_path / "contexts"
    contexts.write_text(yaml.safe_dump(config))
    code, out, err = await plugin("explain", "huge", "--context", "dev", "--token-file", token,
                                  kubeconfig=contexts)  # fmt: skip
    assert code == 0, err
    assert "Insufficient cpu" in out, out
    code, _, err = await plugin("explain", "huge", "--token-file", token, kubeconfig=contexts)
    assert code == 1
    assert "cannot reach the apiserver" in err, err

    code, out, err = await plugin("explain", "nobody", "-n", namespace, "--token-file", token,
                                  kubeconfig=cluster.kubeconfig)  # fmt: skip
    assert code == 1
    assert "404" in err and f"{namespace}/nobody" in err, err


async def test_status_and_latency(
    cluster: DevCluster, kc: KubeClient, lasched: dict[str, Any]
) -> None:
    """``status`` names the leader from the Lease, each replica's readiness, queue and agents
    from /readyz and /metrics, and the stale pairs; ``latency`` prints the matrix."""
    token = str(lasched["token"])
    code, out, err = await plugin("status", "--token-file", token, kubeconfig=cluster.kubeconfig)
    assert code == 0, err
    print(out)
    assert f"Lease {LASCHED_NS}/lasched" in out, out
    assert lasched["replica"] in out, out
    assert f"1 RTT pair on pod {lasched['replica']} (leader), 0 stale" in out, out

    code, out, err = await plugin("status", "--json", kubeconfig=cluster.kubeconfig)
    assert code == 0, err
    status = orjson.loads(out)
    assert status["lease"]["pod"] == socket.gethostname()
    assert status["lease"]["valid"] is True
    (replica,) = status["replicas"]
    assert replica["pod"] == lasched["replica"]
    assert replica["ready"] is True
    assert replica["leads"] is True
    assert set(replica["pending"]) == {"active", "backoff", "unschedulable"}
    assert "answered 401" in status["latency"]["error"]  # no token: the pairs stay unknown

    code, out, err = await plugin(
        "latency", "--pairs", "--token-file", token, kubeconfig=cluster.kubeconfig
    )
    assert code == 0, err
    assert "small-0" in out and HOST_NODE in out, out
    assert "0.7" in out, out


async def test_a_missing_installation_is_named(cluster: DevCluster, kc: KubeClient) -> None:
    """No lasched Service where the plugin looks: exit 1 with the flags to change."""
    code, _, err = await plugin(
        "status", "--lasched-namespace", "nowhere", kubeconfig=cluster.kubeconfig
    )
    assert code == 1
    assert "no Service nowhere/lasched" in err, err
