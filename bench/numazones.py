"""The ``numa`` scenario's pure parts: the nodes' zones, the workload, and the zone check.

Every NUMA zone is alike (``ZONE_CPU`` CPUs, ``ZONE_MEMORY_GI`` GiB, ``ZONE_GPUS`` GPUs), and
a node has 2 to 8 of them, so its totals are the zones' sums. The workload is drawn from a
seed: gangs of single-numa GPU training pods (Guaranteed: CPU, memory and GPUs in one zone,
or the kubelet's Topology Manager refuses them) beside ordinary Burstable pods, which pin
nothing and take CPU from the shared pool.

**The zone check.** Nothing here runs a kubelet, so what a real one would do is judged
after the run from the NodeResourceTopology objects and the placements: on each node, the
most of its NUMA pods that can be given a zone each, every zone holding what its pods take
(a search over assignments, the zones' symmetry pruned). A pod left over is one a kubelet
with ``single-numa-node`` would refuse (TopologyAffinityError), whichever zones it chose.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

GPU = "nvidia.com/gpu"
POLICY = "numa.scheduling.kubenexus.io/policy"
RESOURCES = "numa.scheduling.kubenexus.io/resources"
ZONE_CPU = 8
ZONE_MEMORY_GI = 32
ZONE_GPUS = 2
ZONE_COUNTS = (2, 4, 6, 8)
NRT_PATH = "/apis/topology.node.k8s.io/v1alpha2/noderesourcetopologies"
SEARCH_STEPS = 200_000
"""Assignments tried per node before the check settles for the best found so far."""


@dataclass(frozen=True, slots=True)
class Need:
    """What one NUMA-constrained pod takes from its zone (CPU in millicores, memory in GiB)."""

    milli_cpu: int
    memory_gi: int
    gpus: int


def zones_of(index: int) -> int:
    """Node ``index``'s zone count: 2, 4, 6, 8 in turn."""
    return ZONE_COUNTS[index % len(ZONE_COUNTS)]


def node_totals(zones: int) -> tuple[str, str, dict[str, str]]:
    """A node's CPU, memory and extended resources: its zones' sums."""
    return str(ZONE_CPU * zones), f"{ZONE_MEMORY_GI * zones}Gi", {GPU: str(ZONE_GPUS * zones)}


def topology(name: str, zones: int) -> dict[str, Any]:
    """The node's NodeResourceTopology: ``single-numa-node``, pod scope, every zone free."""
    amounts = {"cpu": str(ZONE_CPU), "memory": f"{ZONE_MEMORY_GI}Gi", GPU: str(ZONE_GPUS)}
    return {
        "apiVersion": "topology.node.k8s.io/v1alpha2",
        "kind": "NodeResourceTopology",
        "metadata": {"name": name, "labels": {"bench": "numa"}},
        "attributes": [
            {"name": "topologyManagerPolicy", "value": "single-numa-node"},
            {"name": "topologyManagerScope", "value": "pod"},
        ],
        "zones": [
            {
                "name": f"node-{i}",
                "type": "Node",
                "resources": [
                    {"name": r, "capacity": v, "allocatable": v, "available": v}
                    for r, v in amounts.items()
                ],
            }
            for i in range(zones)
        ],
    }


# ---- the workload ----------------------------------------------------------------------

MEMBER_SHAPES = ((5000, 16, 1), (2000, 8, 1), (3000, 12, 1), (6000, 24, 2))
"""(millicores, GiB, GPUs) of a training pod: each fits one zone, and the first asks more
CPUs per GPU than a zone has, so where a node's totals admit a third such pod beside two
in its zones (as a scheduler without a NUMA view counts them), no zone holds it."""


@dataclass(frozen=True, slots=True)
class PodPlan:
    name: str
    need: Need | None
    """None: an ordinary pod (Burstable, pins nothing)."""
    group: str | None = None
    group_size: int = 0


def workload(*, zones_total: int, seed: int, gpu_fill: float) -> list[PodPlan]:
    """Gangs of 2 to 4 training pods until their GPUs reach ``gpu_fill`` of the cluster's,
    and two ordinary pods per zone, interleaved."""
    rng = random.Random(seed)
    target = gpu_fill * zones_total * ZONE_GPUS
    gangs: list[list[PodPlan]] = []
    gpus = 0
    while gpus < target:
        g = len(gangs)
        size = rng.randint(2, 4)
        cpu, mem, gpu = rng.choice(MEMBER_SHAPES)
        members = [
            PodPlan(f"train-{g}-{i}", Need(cpu, mem, gpu), f"train-{g}", size) for i in range(size)
        ]
        gangs.append(members)
        gpus += size * gpu
    ordinary = [PodPlan(f"web-{i}", None) for i in range(2 * zones_total)]
    out: list[PodPlan] = []
    step = max(1, len(ordinary) // max(1, len(gangs)))
    for g, members in enumerate(gangs):
        out += members
        out += ordinary[g * step : (g + 1) * step]
    out += ordinary[len(gangs) * step :]
    return out


def body(plan: PodPlan, scheduler: str, *, numa: bool) -> dict[str, Any]:
    """The pod; ``numa``: a training pod carries KubeNexus's annotations."""
    labels = {"bench": "numa"}
    annotations: dict[str, str] = {}
    if plan.need is None:
        resources: dict[str, Any] = {"requests": {"cpu": "500m", "memory": "512Mi"}}
    else:
        amounts = {
            "cpu": f"{plan.need.milli_cpu}m",
            "memory": f"{plan.need.memory_gi}Gi",
            GPU: str(plan.need.gpus),
        }
        resources = {"requests": amounts, "limits": dict(amounts)}
        assert plan.group is not None
        labels |= {"lasched.io/pod-group": plan.group,
                   "lasched.io/min-available": str(plan.group_size)}  # fmt: skip
        if numa:
            annotations = {POLICY: "single-numa", RESOURCES: f"cpu,memory,{GPU}"}
    return {
        "metadata": {"name": plan.name, "labels": labels, "annotations": annotations},
        "spec": {
            "schedulerName": scheduler,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {"name": "main", "image": "registry.k8s.io/pause:3.10", "resources": resources}
            ],
        },
    }


# ---- the zone check ----------------------------------------------------------------------


def zones_from_nrt(obj: Mapping[str, Any]) -> list[Need]:
    """A NodeResourceTopology's Node zones' allocatable, as :class:`Need` amounts."""
    out = []
    for z in obj.get("zones") or ():
        if z.get("type") != "Node":
            continue
        got = {r["name"]: str(r["allocatable"]) for r in z.get("resources") or ()}
        cpu = got.get("cpu", "0")
        milli = int(cpu[:-1]) if cpu.endswith("m") else int(cpu) * 1000
        mem = got.get("memory", "0")
        gi = int(mem[:-2]) if mem.endswith("Gi") else int(mem) >> 30
        out.append(Need(milli, gi, int(got.get(GPU, "0"))))
    return out


def need_of(pod: Mapping[str, Any]) -> Need | None:
    """A bound pod's zone need: its limits when it is a Guaranteed GPU pod, else None."""
    total = Need(0, 0, 0)
    for c in pod["spec"].get("containers") or ():
        limits = (c.get("resources") or {}).get("limits") or {}
        if GPU not in limits:
            return None
        cpu, mem = str(limits["cpu"]), str(limits["memory"])
        milli = int(cpu[:-1]) if cpu.endswith("m") else int(cpu) * 1000
        total = Need(
            total.milli_cpu + milli,
            total.memory_gi + int(mem.removesuffix("Gi")),
            total.gpus + int(limits[GPU]),
        )
    return total


def most_in_zones(zones: Sequence[Need], pods: Sequence[Need]) -> int:
    """The most of ``pods`` that can each be given one of ``zones`` (depth-first search,
    largest pods first, zones with the same room tried once, at most SEARCH_STEPS steps)."""
    order = sorted(pods, key=lambda p: (p.gpus, p.milli_cpu, p.memory_gi), reverse=True)
    left = [[z.milli_cpu, z.memory_gi, z.gpus] for z in zones]
    best = 0
    steps = 0

    def search(i: int, placed: int) -> None:
        nonlocal best, steps
        steps += 1
        if placed + (len(order) - i) <= best or steps > SEARCH_STEPS:
            return
        if i == len(order):
            best = placed
            return
        p = order[i]
        tried: set[tuple[int, ...]] = set()
        for room in left:
            key = tuple(room)
            if key in tried or room[0] < p.milli_cpu or room[1] < p.memory_gi or room[2] < p.gpus:
                continue
            tried.add(key)
            room[0] -= p.milli_cpu
            room[1] -= p.memory_gi
            room[2] -= p.gpus
            search(i + 1, placed + 1)
            room[0] += p.milli_cpu
            room[1] += p.memory_gi
            room[2] += p.gpus
        search(i + 1, placed)  # this pod left without a zone

    search(0, 0)
    return best
