"""`lasched explain` and `lasched latency` against a scheduler on the real control plane.

Pods are rejected by resources, by taints and by latency (a static RTT file),
a gang member waits for its group, and a bound pod's node is scored again;
the CLI renders the same answers, and the RTT matrix exported in the static
format loads back as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from lasched import cli, settings
from lasched.kube.client import ApiError, KubeClient
from lasched.latency import static
from lasched.latency.cache import LatencyCache
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import eventually, pod

NODES = [
    nodes.NodeSpec(name="small-0", cpu="1", memory="2Gi"),
    nodes.NodeSpec(name="big-0", cpu="8", memory="16Gi"),
    nodes.NodeSpec(
        name="tainted-0", cpu="8", memory="16Gi", taints=[nodes.Taint("dedicated", "ml")]
    ),
    nodes.NodeSpec(name="far-0", cpu="8", memory="16Gi"),
]
# edge-a is a place (an endpoint, say); far-0 has no RTT from it at all.
RTTS = {"edge-a": {"small-0": 5.0, "big-0": 41.0, "tainted-0": 3.0}, "small-0": {"big-0": 0.8}}

JSON = dict[str, Any]


@pytest.fixture(scope="module")
async def cluster_nodes(kc: KubeClient) -> list[str]:
    await nodes.create_nodes(kc, NODES)
    await nodes.wait_ready(kc, [n.name for n in NODES])
    return [n.name for n in NODES]


@pytest.fixture
async def url(
    cluster_nodes: list[str],
    run_scheduler: SchedulerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[str]:
    """lasched with the static RTTs, and its base URL once its informers are synced."""
    monkeypatch.setenv("COLUMNS", "250")  # the CLI's tables, unwrapped
    rtt_file = tmp_path / "rtt.json"
    rtt_file.write_bytes(orjson.dumps(RTTS))
    cfg = settings.parse(
        {"latency": {"staticFile": str(rtt_file)}, "leaderElection": {"leaderElect": False}}
    )
    port = await run_scheduler(cfg)
    base = f"http://127.0.0.1:{port}"

    async def synced() -> bool:
        status, _ = await get(base, "/debug/latency")
        return status == 200

    await eventually(synced)
    yield base


async def get(base: str, path: str, *, token: str | None = None, **query: str) -> tuple[int, JSON]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(base + path, params=query, headers=headers) as resp,
    ):
        return resp.status, orjson.loads(await resp.read())


async def explained(base: str, key: str, ready: Any) -> JSON:
    """The explain answer once ``ready(answer)`` holds (the pod has been tried, say)."""

    async def check() -> JSON | None:
        status, body = await get(base, "/debug/explain", pod=key)
        if status == 404:
            return None  # the scheduler's informer has not seen the new pod yet
        assert status == 200, body
        return body if ready(body) else None

    answer: JSON = await eventually(check, timeout=30)
    return answer


def tried(answer: JSON) -> bool:
    q = answer.get("queue")
    return bool(q and q["attempts"] >= 1 and q["where"] in ("unschedulable", "backoff"))


def verdicts(answer: JSON) -> dict[str, list[JSON]]:
    return {v["node"]: v["rejections"] for v in answer["filter"]["nodes"]}


async def test_rejected_by_resources_and_taints(kc: KubeClient, namespace: str, url: str) -> None:
    """Each node says which plugin rejected the pod; the queue says when it was tried and why."""
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("huge", cpu="12"))
    answer = await explained(url, f"{namespace}/huge", tried)
    assert answer["state"] == "pending"
    assert answer["node"] is None
    q = answer["queue"]
    assert q["unschedulableSince"] is not None
    assert "0/4 nodes are available" in q["reason"]
    by_node = verdicts(answer)
    assert by_node["small-0"][0] == {
        "plugin": "NodeResourcesFit", "code": "Unschedulable", "reason": "Insufficient cpu"
    }  # fmt: skip
    assert by_node["big-0"][0]["reason"] == "Insufficient cpu"
    taint = by_node["tainted-0"]
    assert taint[0]["plugin"] == "TaintToleration"
    assert "untolerated taint {dedicated: ml}" in taint[0]["reason"]
    assert [r["plugin"] for r in taint] == ["TaintToleration", "NodeResourcesFit"]  # all, not first
    assert answer["filter"]["feasible"] == 0
    assert answer["scores"] is None
    assert answer["gang"] is None


async def test_rejected_by_a_taint_alone(kc: KubeClient, namespace: str, url: str) -> None:
    """A pod pinned to the tainted node: the taint is the one reason there."""
    body = pod("pinned", nodeSelector={"kubernetes.io/hostname": "tainted-0"})
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
    answer = await explained(url, f"{namespace}/pinned", tried)
    by_node = verdicts(answer)
    assert [r["plugin"] for r in by_node["tainted-0"]] == ["TaintToleration"]
    assert by_node["big-0"][0]["plugin"] == "NodeAffinity"
    assert "1 node(s) had untolerated taint {dedicated: ml}" in answer["filter"]["summary"]


async def test_rejected_by_latency_shows_the_rtt(kc: KubeClient, namespace: str, url: str) -> None:
    """delay_edge-a=10: the RTT, the limit and its origin per node; unknown RTTs say so."""
    body = pod("near", cpu="2")
    body["metadata"]["labels"] = {"delay_edge-a": "10"}
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
    answer = await explained(url, f"{namespace}/near", tried)
    by_node = verdicts(answer)
    big = by_node["big-0"][0]
    assert big["plugin"] == "LatencyFilter"
    assert big["detail"] == "rtt from edge-a = 41.0 ms > 10 ms (delay_edge-a, static)"
    assert by_node["far-0"][0]["detail"] == "no measured RTT from edge-a (delay_edge-a)"
    assert by_node["small-0"][0]["plugin"] == "NodeResourcesFit"  # near enough, too small
    assert by_node["tainted-0"][0]["plugin"] == "TaintToleration"

    out = await asyncio.to_thread(run_cli, ["explain", f"{namespace}/near", "--url", url])
    assert "rtt from edge-a = 41.0 ms > 10 ms (delay_edge-a, static)" in out
    assert "Filter: 0 of 4 nodes fit" in out


async def test_waiting_gang_member(kc: KubeClient, namespace: str, url: str) -> None:
    """Two of three members exist: gated before the queue, with the group's count."""
    for i in range(2):
        body = pod(f"w-{i}")
        body["metadata"]["labels"] = {
            "lasched.io/pod-group": "job",
            "lasched.io/min-available": "3",
        }
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)

    def gated(answer: JSON) -> bool:
        return bool(answer["gang"] and len(answer["gang"]["members"]) == 2)

    answer = await explained(url, f"{namespace}/w-1", gated)
    assert answer["queue"]["where"] == "gated"
    assert answer["preEnqueue"]["plugin"] == "Coscheduling"
    assert "2 of 3 members exist" in answer["preEnqueue"]["reason"]
    g = answer["gang"]
    assert (g["group"], g["placed"], g["required"], g["permitted"]) == (
        f"{namespace}/job",
        0,
        3,
        False,
    )
    assert {m["state"] for m in g["members"]} == {"gated"}

    out = await asyncio.to_thread(run_cli, ["explain", f"{namespace}/w-1", "--url", url])
    assert "0 placed of 3 required" in out
    assert "(gated: not tried)" in out


async def test_bound_pod_scores_are_a_reevaluation(
    kc: KubeClient, namespace: str, url: str
) -> None:
    """A bound pod: its node is scored without the pod on it, and labelled a re-evaluation."""
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("web", cpu="500m"))
    answer = await explained(url, f"{namespace}/web", lambda a: a["state"] == "bound")
    node = answer["node"]
    assert node in ("small-0", "big-0", "far-0")
    assert answer["queue"] is None
    scores = answer["scores"]
    assert scores["reevaluation"] is True
    assert scores["currentNode"] == node
    rows = {r["node"]: r for r in scores["nodes"]}
    assert set(rows) == {"small-0", "big-0", "far-0"}  # tainted-0 does not fit
    assert {"NodeResourcesFit", "NodeResourcesBalancedAllocation"} <= set(scores["weights"])
    for row in rows.values():
        assert row["total"] == sum(s * scores["weights"][p] for p, s in row["plugins"].items())
    assert next(v for v in answer["filter"]["nodes"] if v["node"] == node)["feasible"]

    out = await asyncio.to_thread(run_cli, ["explain", f"{namespace}/web", "--url", url, "--json"])
    assert orjson.loads(out)["node"] == node
    out = await asyncio.to_thread(run_cli, ["explain", f"{namespace}/web", "--url", url])
    assert "a re-evaluation" in out


async def test_unknown_and_malformed_pods(url: str) -> None:
    """404 for a pod lasched does not know, 400 for a name without a namespace."""
    status, body = await get(url, "/debug/explain", pod="nowhere/nothing")
    assert (status, body["error"]) == (
        404, "lasched does not know pod nowhere/nothing (no such pod, or it finished)"
    )  # fmt: skip
    status, body = await get(url, "/debug/explain", pod="nothing")
    assert status == 400
    assert "namespace/name" in body["error"]


async def test_latency_matrix_exports_to_the_static_format(url: str, tmp_path: Path) -> None:
    """The matrix has each pair's freshness; its export loads back as the same RTTs."""
    status, data = await get(url, "/debug/latency")
    assert status == 200
    pairs = {(p["src"], p["dst"]): p for p in data["pairs"]}
    assert pairs["edge-a", "big-0"]["ms"] == 41.0
    assert pairs["edge-a", "big-0"]["source"] == "static"
    assert pairs["edge-a", "big-0"]["stale"] is False
    assert data["ttlSeconds"] == 30

    for name in ("rtt.json", "rtt.csv"):
        out = await asyncio.to_thread(
            run_cli, ["latency", "--url", url, "--export", str(tmp_path / name)]
        )
        assert f"wrote 4 pairs to {tmp_path / name}" in out
        assert "edge-a" in out
        cache = LatencyCache()
        assert static.load(tmp_path / name, cache) == 4
        back = {(s, d): r.ms for s, d, r in cache.pairs()}
        assert back == {(s, d): ms for s, row in RTTS.items() for d, ms in row.items()}

    png = tmp_path / "rtt.png"
    await asyncio.to_thread(run_cli, ["latency", "--url", url, "--png", str(png), "--pairs"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_from_elsewhere_a_token_with_access_is_needed(
    kc: KubeClient, namespace: str, url: str
) -> None:
    """Off loopback: no token 401, a token without access 403, with /debug/* get 200."""
    port = url.rsplit(":", 1)[1]
    remote = f"http://{outside_address()}:{port}"
    status, body = await get(remote, "/debug/latency")
    assert status == 401, body

    await kc.post(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "sre"}})
    token = (
        await kc.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/sre/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
    )["status"]["token"]
    status, body = await get(remote, "/debug/latency", token=token)
    assert status == 403
    assert f"system:serviceaccount:{namespace}:sre may not get /debug/latency" in body["error"]

    role = f"lasched-debug-{namespace}"[:63]
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    try:
        await kc.post(f"{rbac}/clusterroles", {
            "metadata": {"name": role},
            "rules": [{"nonResourceURLs": ["/debug/*"], "verbs": ["get"]}],
        })  # fmt: skip
    except ApiError as e:
        if not e.conflict:
            raise
    await kc.post(f"{rbac}/clusterrolebindings", {
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "sre", "namespace": namespace}],
    })  # fmt: skip

    async def allowed() -> bool:
        status, _ = await get(remote, "/debug/latency", token=token)
        return status == 200

    await eventually(allowed)


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


def run_cli(argv: list[str]) -> str:
    """``lasched <argv>`` with its output captured (the CLI is synchronous: run in a thread)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(argv)
    assert code == 0, buf.getvalue()
    return buf.getvalue()
