"""lasched run with a KubeSchedulerConfiguration schedules as its profiles say."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from lasched import cli
from lasched.kube.client import KubeClient
from lasched.settings import Settings
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import events_for, eventually, node_of, pod

# Three profiles: "packer" bin-packs (NodeResourcesFit MostAllocated as its only resource
# score) and has no TaintToleration at all; "spreader" is kube-scheduler's default profile;
# "shaped" bin-packs along a RequestedToCapacityRatio shape (the fuller, the better).
CONFIGURATION = """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: false
profiles:
  - schedulerName: packer
    plugins:
      score:
        disabled:
          - name: NodeResourcesBalancedAllocation
          - name: TaintToleration
      filter:
        disabled:
          - name: TaintToleration
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
            resources:
              - {name: cpu, weight: 1}
              - {name: memory, weight: 1}
  - schedulerName: spreader
  - schedulerName: shaped
    plugins:
      score:
        disabled:
          - name: NodeResourcesBalancedAllocation
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: RequestedToCapacityRatio
            requestedToCapacityRatio:
              shape:
                - {utilization: 0, score: 0}
                - {utilization: 100, score: 10}
            resources:
              - {name: cpu, weight: 1}
              - {name: memory, weight: 1}
"""


def configured(tmp_path: Path) -> Settings:
    """The settings ``lasched run --config`` reads from the file above."""
    path = tmp_path / "scheduler-config.yaml"
    path.write_text(CONFIGURATION)
    settings, ignored = cli._load_config(str(path))
    assert ignored == ()
    return settings


async def test_most_allocated_packs_onto_the_fuller_node(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """packer puts a pod beside a resident on the busier node; spreader on the idle one."""
    where = {"ksc-test": "pack"}
    await nodes.create_nodes(
        kc,
        [
            nodes.NodeSpec(name="pack-idle", cpu="8", memory="32Gi", labels=where),
            nodes.NodeSpec(name="pack-busy", cpu="8", memory="32Gi", labels=where),
        ],
    )
    await nodes.wait_ready(kc, ["pack-idle", "pack-busy"])
    resident = pod("resident", cpu="4", memory="16Gi", scheduler="elsewhere", nodeName="pack-busy")
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", resident)
    await run_scheduler(configured(tmp_path))

    packed = pod("packed", cpu="1", memory="1Gi", scheduler="packer", nodeSelector=where)
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", packed)
    assert await eventually(lambda: node_of(kc, namespace, "packed")) == "pack-busy"

    spread = pod("spread", cpu="1", memory="1Gi", scheduler="spreader", nodeSelector=where)
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", spread)
    assert await eventually(lambda: node_of(kc, namespace, "spread")) == "pack-idle"


async def test_a_filter_disabled_in_the_profile_is_off(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """Without TaintToleration at filter, a pod that tolerates nothing binds to a tainted
    node; the default profile refuses that node for the same pod."""
    where = {"ksc-test": "taint"}
    await nodes.create_nodes(
        kc,
        [
            nodes.NodeSpec(
                name="taint-big", cpu="32", memory="64Gi", labels=where,
                taints=[nodes.Taint("dedicated", "batch")],
            ),
            nodes.NodeSpec(name="taint-small", cpu="2", memory="4Gi", labels=where),
        ],
    )  # fmt: skip
    await nodes.wait_ready(kc, ["taint-big", "taint-small"])
    await run_scheduler(configured(tmp_path))

    untolerating = pod("untolerating", cpu="8", scheduler="packer", nodeSelector=where)
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", untolerating)
    assert await eventually(lambda: node_of(kc, namespace, "untolerating")) == "taint-big"

    refused = pod("refused", cpu="8", scheduler="spreader", nodeSelector=where)
    await kc.post(f"/api/v1/namespaces/{namespace}/pods", refused)

    async def failed() -> list[dict[str, object]]:
        evs = await events_for(kc, namespace, "refused")
        return [e for e in evs if e["reason"] == "FailedScheduling"]

    events = await eventually(failed)
    assert all("untolerated taint" in str(e["note"]) for e in events)
    assert await node_of(kc, namespace, "refused") == ""


async def test_requested_to_capacity_ratio_packs_along_its_shape(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """shaped puts each of a series of pods on the node its predecessors filled, until full."""
    where = {"ksc-test": "shape"}
    names = ["shape-a", "shape-b", "shape-c"]
    await nodes.create_nodes(
        kc, [nodes.NodeSpec(name=n, cpu="4", memory="16Gi", labels=where) for n in names]
    )
    await nodes.wait_ready(kc, names)
    await run_scheduler(configured(tmp_path))

    placed = []
    for i in range(6):  # 1 CPU each: four fill one node, the next two start another
        body = pod(f"shaped-{i}", cpu="1", memory="1Gi", scheduler="shaped", nodeSelector=where)
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
        placed.append(await eventually(partial(node_of, kc, namespace, f"shaped-{i}")))
    assert len(set(placed[:4])) == 1
    assert len(set(placed[4:])) == 1
    assert placed[4] != placed[0]
