"""Builders of NodeResourceTopology and NUMA-annotated pod JSON for unit tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lasched.model.numa import POLICY_ANNOTATION, RESOURCES_ANNOTATION
from lasched.model.pod import PodInfo

GPU = "nvidia.com/gpu"


def nrt_json(
    name: str,
    zones: Sequence[Mapping[str, str | int]],
    *,
    policy: str = "single-numa-node",
    scope: str = "pod",
    rv: str = "1",
    allocatable: Sequence[Mapping[str, str | int]] | None = None,
) -> dict[str, Any]:
    """A NodeResourceTopology whose zone ``node-i`` has ``zones[i]`` available (and, unless
    ``allocatable`` says otherwise, as much allocatable and capacity); a zone that does not
    say has 64Gi of memory."""
    zones = [{"memory": "64Gi", **z} for z in zones]
    alloc = [{"memory": "64Gi", **z} for z in (allocatable or zones)]
    return {
        "apiVersion": "topology.node.k8s.io/v1alpha2",
        "kind": "NodeResourceTopology",
        "metadata": {"name": name, "resourceVersion": rv},
        "attributes": [
            {"name": "topologyManagerPolicy", "value": policy},
            {"name": "topologyManagerScope", "value": scope},
        ],
        "zones": [
            {
                "name": f"node-{i}",
                "type": "Node",
                "resources": [
                    {"name": r, "capacity": alloc[i][r], "allocatable": alloc[i][r], "available": v}
                    for r, v in zone.items()
                ],
            }
            for i, zone in enumerate(zones)
        ],
    }


def container(name: str, *, guaranteed: bool = True, **requests: str | int) -> dict[str, Any]:
    """A container requesting ``requests`` (``gpu=`` for nvidia.com/gpu); with
    ``guaranteed`` its limits equal them (and it asks 1Gi of memory unless it says)."""
    if guaranteed:
        requests.setdefault("memory", "1Gi")
    req = {(GPU if k == "gpu" else k): str(v) for k, v in requests.items()}
    res: dict[str, Any] = {"requests": req}
    if guaranteed:
        res["limits"] = dict(req)
    c: dict[str, Any] = {"name": name, "resources": res}
    return c


def numa_pod(
    name: str,
    *,
    containers: Sequence[dict[str, Any]] | None = None,
    init: Sequence[dict[str, Any]] = (),
    policy: str | None = None,
    resources: str | None = None,
    node: str | None = None,
    priority: int = 0,
    **requests: str | int,
) -> PodInfo:
    """A pod, pending unless bound to ``node``; one Guaranteed container of ``requests``
    unless ``containers`` given."""
    annotations = {}
    if policy is not None:
        annotations[POLICY_ANNOTATION] = policy
    if resources is not None:
        annotations[RESOURCES_ANNOTATION] = resources
    spec: dict[str, Any] = {
        "schedulerName": "lasched",
        "containers": list(containers or [container("c", guaranteed=True, **requests)]),
    }
    if init:
        spec["initContainers"] = list(init)
    if node is not None:
        spec["nodeName"] = node
    if priority:
        spec["priority"] = priority
    return PodInfo(
        {
            "metadata": {
                "name": name, "namespace": "default", "uid": f"uid-{name}",
                "resourceVersion": "1", "annotations": annotations,
            },
            "spec": spec,
            "status": {"phase": "Running" if node else "Pending"},
        }
    )  # fmt: skip
