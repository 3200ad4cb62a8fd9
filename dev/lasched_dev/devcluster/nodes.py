"""Fake nodes for the local control plane, managed by kwok.

A node carries the ``kwok.x-k8s.io/node: fake`` annotation that the kwok
process selects on; kwok then keeps its Ready condition and lease fresh and
runs the pods bound to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster.cluster import KWOK_NODE_ANNOTATION, KWOK_STATUS_ANNOTATION

REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"
BETA_OS_LABEL = "beta.kubernetes.io/os"
BETA_ARCH_LABEL = "beta.kubernetes.io/arch"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """What a fake node offers. Quantities use Kubernetes notation."""

    name: str
    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "110"
    ephemeral_storage: str = "100Gi"
    extended: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Taint] = ()
    region: str | None = None
    zone: str | None = None
    unschedulable: bool = False
    images: Sequence[tuple[Sequence[str], int]] = ()
    """``status.images`` as a kubelet reports them: (names, sizeBytes) each; kwok's status
    patches leave them in place."""

    def manifest(self) -> dict[str, Any]:
        labels = {
            "kubernetes.io/hostname": self.name,
            OS_LABEL: "linux",
            ARCH_LABEL: "amd64",
            "type": "kwok",
            **self.labels,
        }
        # A kubelet registers its Node with the beta os and arch labels too (v1.37
        # still does). A node without them gets them from the node lifecycle
        # controller, a GET and a PATCH per node out of the same client budget as
        # taking the not-ready taint off, which then comes off new nodes at half
        # the pace (docs/devcluster.md, "Many nodes at once").
        for stable, beta in ((OS_LABEL, BETA_OS_LABEL), (ARCH_LABEL, BETA_ARCH_LABEL)):
            labels.setdefault(beta, labels[stable])
        if self.region:
            labels[REGION_LABEL] = self.region
        if self.zone:
            labels[ZONE_LABEL] = self.zone
        resources = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": self.ephemeral_storage,
            **self.extended,
        }
        spec: dict[str, Any] = {}
        if self.taints:
            spec["taints"] = [
                {"key": t.key, "value": t.value, "effect": t.effect} for t in self.taints
            ]
        if self.unschedulable:
            spec["unschedulable"] = True
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {KWOK_NODE_ANNOTATION: "fake"},
            },
            "spec": spec,
            "status": {
                "capacity": resources,
                "allocatable": resources,
                **({"images": [{"names": list(n), "sizeBytes": b} for n, b in self.images]}
                   if self.images else {}),
            },
        }  # fmt: skip


def uniform(
    count: int,
    *,
    prefix: str = "node",
    regions: Sequence[str] = (),
    zones_per_region: int = 1,
    **kwargs: Any,
) -> list[NodeSpec]:
    """``count`` alike nodes, spread round-robin over regions and their zones."""
    specs = []
    for i in range(count):
        region = zone = None
        if regions:
            region = regions[i % len(regions)]
            zone = f"{region}-{chr(ord('a') + (i // len(regions)) % zones_per_region)}"
        specs.append(NodeSpec(name=f"{prefix}-{i}", region=region, zone=zone, **kwargs))
    return specs


async def create_nodes(
    kc: KubeClient,
    specs: Sequence[NodeSpec],
    *,
    concurrency: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Create the nodes (an existing node of the same name is left as it is)."""
    sem = asyncio.Semaphore(concurrency)
    done = 0

    async def one(spec: NodeSpec) -> None:
        nonlocal done
        async with sem:
            try:
                await kc.post("/api/v1/nodes", spec.manifest())
            except ApiError as e:
                if not e.conflict:
                    raise
        done += 1
        if progress:
            progress(done, len(specs))

    async with asyncio.TaskGroup() as tg:
        for spec in specs:
            tg.create_task(one(spec), name=f"create-node-{spec.name}")


# Taints the node lifecycle controller keeps on a node until it is Ready and reachable.
CONDITION_TAINTS = frozenset({"node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"})


def _ready(node: Mapping[str, Any]) -> bool:
    taints = (node.get("spec") or {}).get("taints") or []
    if any(t.get("key") in CONDITION_TAINTS for t in taints):
        return False
    for cond in node.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


async def fail(kc: KubeClient, name: str, *, status: str = "False") -> None:
    """The node's kubelet says NotReady (``status="Unknown"``: the node lifecycle
    controller's word for a node it cannot reach). kwok stops reporting for it until
    :func:`recover`; kube-controller-manager then taints it as it would a real one."""
    if status not in ("False", "Unknown"):
        raise ValueError(f"a failed node's Ready status is False or Unknown, not {status!r}")
    path = f"/api/v1/nodes/{name}"
    await kc.patch(path, {"metadata": {"annotations": {KWOK_STATUS_ANNOTATION: "custom"}}})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {
        "type": "Ready",
        "status": status,
        "reason": "KubeletNotReady" if status == "False" else "NodeStatusUnknown",
        "message": "failed by the test harness",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    # Strategic merge: conditions merge by type, so the others stay as kwok wrote them.
    await kc.patch(f"{path}/status", {"status": {"conditions": [ready]}}, patch_type="strategic")


async def recover(kc: KubeClient, name: str) -> None:
    """Undo :func:`fail`: kwok reports for the node again and makes it Ready."""
    await kc.patch(
        f"/api/v1/nodes/{name}", {"metadata": {"annotations": {KWOK_STATUS_ANNOTATION: None}}}
    )


async def wait_ready(kc: KubeClient, names: Sequence[str], *, timeout: float = 60.0) -> None:
    """Return once every named node reports Ready and carries no not-ready or unreachable
    taint (the node lifecycle controller removes them); raise TimeoutError otherwise."""
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        listing = await kc.get("/api/v1/nodes", labelSelector="type=kwok")
        ready = {n["metadata"]["name"] for n in listing.get("items", []) if _ready(n)}
        missing = wanted - ready
        if not missing:
            return
        if time.monotonic() > deadline:
            sample = ", ".join(sorted(missing)[:5])
            raise TimeoutError(f"{len(missing)} node(s) not Ready after {timeout:.0f} s: {sample}")
        await asyncio.sleep(0.2)
