"""Sites inferred from RTTs become node labels that topology spread uses, on the real control
plane."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from lasched import cli, settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import eventually, pod, pods

SITE = "topology.lasched.io/site"
TIER = "topology.lasched.io/tier"
MEMBERS = {
    "east-1": "east",
    "east-2": "east",
    "east-3": "east",
    "west-1": "west",
    "west-2": "west",
    "west-3": "west",
    "dc-1": "dc",
    "dc-2": "dc",
}
# Measured within a site: about 0.3 ms; between the edge sites 8 ms, to the data centre 25 ms.
ACROSS = {frozenset({"east", "west"}): 8.0, frozenset({"east", "dc"}): 25.0,
          frozenset({"west", "dc"}): 25.0}  # fmt: skip


def rtt_file(path: Path) -> Path:
    rows: dict[str, dict[str, float]] = {}
    for i, (a, sa) in enumerate(MEMBERS.items()):
        rows[a] = {}
        for j, (b, sb) in enumerate(MEMBERS.items()):
            if a != b:
                # A little asymmetry and spread, as measurements have.
                rows[a][b] = (
                    0.25 + 0.02 * ((i + j) % 4) if sa == sb else ACROSS[frozenset({sa, sb})]
                )
    path.write_bytes(orjson.dumps(rows))
    return path


def run_cli(argv: list[str]) -> str:
    """``lasched <argv>`` with its output captured (synchronous: run it in a thread)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(argv)
    assert code == 0, buf.getvalue()
    return buf.getvalue()


async def node_labels(kc: KubeClient) -> dict[str, dict[str, str]]:
    listing = await kc.get("/api/v1/nodes")
    return {
        n["metadata"]["name"]: n["metadata"].get("labels") or {}
        for n in listing["items"]
        if n["metadata"]["name"] in MEMBERS
    }


def spread(name: str) -> dict[str, Any]:
    body = pod(
        name,
        topologySpreadConstraints=[
            {
                "maxSkew": 1,
                "topologyKey": SITE,
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "spread"}},
            }
        ],
    )
    body["metadata"]["labels"] = {"app": "spread"}
    return body


async def test_inferred_sites_are_labels_that_topology_spread_uses(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """Three measured sites become site and tier labels; six spread pods go two to a site."""
    await nodes.create_nodes(
        kc,
        [
            nodes.NodeSpec(name=n, labels={"kubernetes.io/role": "cloud"} if site == "dc" else {})
            for n, site in MEMBERS.items()
        ],
    )
    await nodes.wait_ready(kc, list(MEMBERS))
    cfg = settings.parse(
        {
            "latency": {
                "staticFile": str(rtt_file(tmp_path / "rtt.json")),
                "topology": {"enabled": True, "writeLabels": True, "intervalSeconds": 1},
            }
        }
    )
    port = await run_scheduler(cfg)

    async def labelled() -> dict[str, dict[str, str]] | None:
        got = await node_labels(kc)
        return got if all(SITE in labels for labels in got.values()) else None

    labels = await eventually(labelled)
    by_truth: dict[str, set[str]] = {}
    for n, site in MEMBERS.items():
        by_truth.setdefault(site, set()).add(labels[n][SITE])
    assert all(len(names) == 1 for names in by_truth.values())
    assert len({next(iter(names)) for names in by_truth.values()}) == 3
    assert {n: labels[n][TIER] for n in MEMBERS} == {
        n: "cloud" if site == "dc" else "edge" for n, site in MEMBERS.items()
    }

    url = f"http://127.0.0.1:{port}"
    shown = orjson.loads(await asyncio.to_thread(run_cli, ["latency", "--url", url, "--json"]))
    topology = shown["topology"]
    assert topology["writeLabels"] is True
    assert {n: topology["nodes"][n]["site"] for n in MEMBERS} == {
        n: labels[n][SITE] for n in MEMBERS
    }
    table = await asyncio.to_thread(run_cli, ["latency", "--url", url])
    assert "Inferred topology" in table and "8 nodes in 3 site(s)" in table

    for i in range(6):
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", spread(f"spread-{i}"))

    async def placed() -> list[str] | None:
        bound = [p["spec"].get("nodeName") for p in (await pods(kc, namespace)).values()]
        return bound if len(bound) == 6 and all(bound) else None

    bound = await eventually(placed, timeout=30)
    per_site = Counter(labels[n][SITE] for n in bound)
    assert sorted(per_site.values()) == [2, 2, 2]
