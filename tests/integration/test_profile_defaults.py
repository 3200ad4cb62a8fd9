"""Each earlier system's default, as a profile option, on the real control plane.

latent-scheduler's: a pod with no latency annotation goes to the fitting node
with the lowest mean RTT to the other nodes (``defaultPreference: central``).
kubernetes-edge-scheduler's: edge nodes first, ``kubernetes.io/role=cloud``
nodes only when no edge node fits (``cloudTier: hard``).
"""

from __future__ import annotations

from pathlib import Path

import orjson

from lasched import settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import eventually, node_of, pod

# Mean RTT to the other nodes: ctr-b 3 ms, ctr-a 6 ms, ctr-c 7 ms.
RTTS = {"ctr-a": {"ctr-b": 2.0, "ctr-c": 10.0}, "ctr-b": {"ctr-c": 4.0}}


async def test_central_node_profile(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """Pods without latency annotations take the lowest-mean-RTT node that fits; the
    lasched profile beside it places by resources alone."""
    rtt_file = tmp_path / "rtt.json"
    rtt_file.write_bytes(orjson.dumps(RTTS))
    names = ["ctr-a", "ctr-b", "ctr-c"]
    central = {"pool": "central"}  # other tests' nodes stay in the cluster: only these
    await nodes.create_nodes(kc, [nodes.NodeSpec(name=n, cpu="2", labels=central) for n in names])
    await nodes.wait_ready(kc, names)
    cfg = settings.parse(
        {
            "latency": {"staticFile": str(rtt_file)},
            "profiles": [
                {"schedulerName": "my-latency-scheduler", "defaultPreference": "central"},
            ],
        }
    )
    await run_scheduler(cfg)
    pods = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(
        pods, pod("first", cpu="1500m", scheduler="my-latency-scheduler", nodeSelector=central)
    )
    assert await eventually(lambda: node_of(kc, namespace, "first")) == "ctr-b"
    # ctr-b is full for another 1.5 CPU: the next lowest mean RTT that fits is ctr-a.
    await kc.post(
        pods, pod("second", cpu="1500m", scheduler="my-latency-scheduler", nodeSelector=central)
    )
    assert await eventually(lambda: node_of(kc, namespace, "second")) == "ctr-a"


async def test_cloud_hard_tier_profile(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """An edge node that fits wins over a roomier cloud node; the cloud node is used only
    when no edge node fits the pod."""
    tier = {"pool": "tier"}  # other tests' nodes stay in the cluster: only these
    await nodes.create_nodes(
        kc,
        [
            nodes.NodeSpec(name="tier-edge-1", cpu="2", labels=tier),
            nodes.NodeSpec(
                name="tier-cloud-1", cpu="32", labels={**tier, "kubernetes.io/role": "cloud"}
            ),
        ],
    )
    await nodes.wait_ready(kc, ["tier-edge-1", "tier-cloud-1"])
    cfg = settings.parse({"profiles": [{"schedulerName": "custom-scheduler", "cloudTier": "hard"}]})
    await run_scheduler(cfg)
    pods = f"/api/v1/namespaces/{namespace}/pods"
    await kc.post(pods, pod("small", cpu="1", scheduler="custom-scheduler", nodeSelector=tier))
    assert await eventually(lambda: node_of(kc, namespace, "small")) == "tier-edge-1"
    await kc.post(pods, pod("big", cpu="1500m", scheduler="custom-scheduler", nodeSelector=tier))
    assert await eventually(lambda: node_of(kc, namespace, "big")) == "tier-cloud-1"
