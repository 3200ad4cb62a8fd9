"""The scheduling cycle alone, in process: CPU per pod at N nodes, and its decisions.

    python -m bench.hotpath [--nodes 1000] [--pods 2000]
                            [--pods-shape mixed|uniform|pod-affinity|pod-anti-affinity
                                          |preferred-topology-spreading]
                            [--existing 3] [--priorities] [--rounds 5] [--profile]
                            [--batching]

No apiserver: a :class:`~lasched.scheduler.Scheduler` with the default
settings gets ``--nodes`` synthetic nodes (a seeded mix of sizes, existing
load, a few tainted and cordoned nodes) and schedules ``--pods`` seeded pods
(five request sizes, all alike, or scheduler_perf's pods with required pod
affinity in a zone, anti-affinity per host or a soft spread over zones) one
after another, as
:meth:`~lasched.cycle.SchedulingCycle.schedule_one` does up to the binding
cycle: PreFilter, Filter, PreScore, Score, select, assume, Reserve, Permit;
PostFilter for a pod that fits nowhere.

It prints CPU microseconds per cycle (median and range over ``--rounds``)
and a digest of every decision. With the framework's random tie-break
seeded, the digest depends only on the decisions: a change that must not
alter them (a faster Filter or Score) must leave it unchanged. ``--profile``
prints cProfile's top functions of one round. ``--batching`` passes each
pod's cycle, as the scheduler does, so that opportunistic batching applies
(docs/architecture.md); its hints change the digest, and the number of pods
placed on a hint is printed.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import hashlib
import itertools
import pstats
import random
import statistics
import time
from pathlib import Path
from typing import Any, cast

import yaml

from lasched.framework.interface import Code, CycleState
from lasched.framework.runtime import FitError
from lasched.kube.client import KubeClient
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.plugins.preemption import DefaultPreemption
from lasched.scheduler import Scheduler
from lasched.settings import Settings

SEED = 20251123
# Seconds a read of the framework's clock stands for in a replay (about a hinted cycle's
# cost at 1,000 nodes), so a batch grows old as it would at that pace.
CYCLE_SECONDS = 50e-6


class _NoClient:
    """Stands in for the API client: the cycle itself never does I/O."""

    def companion(self, options: object) -> _NoClient:
        """The token reviews' own client (never used here)."""
        return self


def node_json(i: int, rng: random.Random) -> dict[str, Any]:
    cpu, mem = rng.choice([("8", "32Gi"), ("16", "64Gi"), ("4", "16Gi"), ("32", "128Gi")])
    spec: dict[str, Any] = {}
    if i % 97 == 0:
        spec["taints"] = [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    if i % 89 == 0:
        spec["unschedulable"] = True
    alloc = {"cpu": cpu, "memory": mem, "pods": "110", "ephemeral-storage": "100Gi"}
    return {
        "metadata": {
            "name": f"node-{i}",
            "labels": {
                "kubernetes.io/hostname": f"node-{i}",
                "topology.kubernetes.io/zone": f"z{i % 3}",
            },
            "resourceVersion": "1",
        },
        "spec": spec,
        "status": {
            "allocatable": alloc,
            "capacity": alloc,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


SHAPES = [("100m", "128Mi"), ("500m", "1Gi"), ("1", "4Gi"), ("250m", "512Mi"), (None, None)]


# scheduler_perf's pods with inter-pod affinity terms (bench/scheduler_perf/templates).
TEMPLATES = {
    "pod-affinity": "pod-with-pod-affinity.yaml",
    "pod-anti-affinity": "pod-with-pod-anti-affinity.yaml",
    "preferred-topology-spreading": "pod-with-preferred-topology-spreading.yaml",
}
TEMPLATE_NAMESPACE = "sched-0"  # one of the namespaces their terms name


def pod_json(
    name: str,
    rng: random.Random,
    *,
    node: str = "",
    uniform: bool = False,
    priority: int = 0,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    cpu, mem = SHAPES[0] if uniform else rng.choices(SHAPES, weights=[60, 15, 8, 12, 5])[0]
    requests = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v is not None}
    spec: dict[str, Any] = {
        "schedulerName": "lasched",
        "priority": priority,
        "containers": [{"name": "main", "resources": {"requests": requests}}],
    }
    metadata: dict[str, Any] = {"name": name, "namespace": "bench", "uid": f"uid-{name}"}
    if template is not None:
        spec = {**copy.deepcopy(template["spec"]), "schedulerName": "lasched"}
        labels = dict(template["metadata"]["labels"])
        metadata |= {"namespace": TEMPLATE_NAMESPACE, "labels": labels}
    if node:
        spec["nodeName"] = node
    return {
        "metadata": metadata,
        "spec": spec,
        "status": {"phase": "Running" if node else "Pending"},
    }


def load_template(shape: str) -> dict[str, Any] | None:
    if shape not in TEMPLATES:
        return None
    path = Path(__file__).with_name("scheduler_perf") / "templates" / TEMPLATES[shape]
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def build(nodes: int, existing: int) -> Scheduler:
    """A scheduler whose cache holds ``nodes`` nodes and ``existing`` bound pods per node."""
    rng = random.Random(SEED)
    sched = Scheduler(cast(KubeClient, _NoClient()), Settings())
    for i in range(nodes):
        sched.cache.add_node(Node(node_json(i, rng)))
    for i in range(nodes * existing):
        node = f"node-{rng.randrange(nodes)}"
        sched.cache.add_pod(PodInfo(pod_json(f"existing-{i}", rng, node=node)))
    return sched


def pending(
    pods: int, *, uniform: bool, priorities: bool, template: dict[str, Any] | None = None
) -> list[PodInfo]:
    rng = random.Random(SEED + 1)
    return [
        PodInfo(
            pod_json(
                f"p-{i}",
                rng,
                uniform=uniform,
                priority=rng.randrange(3) if priorities else 0,
                template=template,
            )
        )
        for i in range(pods)
    ]


def one_round(
    nodes: int, existing: int, pods: list[PodInfo], *, batching: bool = False
) -> tuple[float, str, int, int]:
    """CPU seconds per cycle, the digest of the decisions, how many fitted nowhere, and
    how many were placed on a batch's hint.

    CPU time, not wall time: on a shared machine it is what a neighbour
    disturbs least. A pod that fits nowhere goes through PostFilter
    (preemption); its FailedScheduling message and the preemption's choice
    (node and victims, not carried out) are part of the digest.
    """
    sched = build(nodes, existing)
    fw = sched.profiles["lasched"].framework
    fw._rng = random.Random(SEED + 2)  # the tie-break: seeded so decisions repeat
    for plugin in fw.post_filters:  # and preemption's dry run, from its offset
        for p in (plugin, getattr(plugin, "_preemption", None)):
            if isinstance(p, DefaultPreemption):
                p.rng = random.Random(SEED + 3)
    # A batch's age on a clock of cycles (CYCLE_SECONDS each) rather than the wall's, so
    # the pods a batch serves, and so the decisions, repeat from round to round.
    ticks = itertools.count()
    fw.clock = lambda: next(ticks) * CYCLE_SECONDS
    digest = hashlib.sha256()
    unschedulable = hinted = 0
    node_list = sched.cycle.nodes()
    t0 = time.process_time()
    for cycle, pod in enumerate(pods, start=1):
        state = CycleState()
        result = fw.schedule(state, pod, node_list, cycle=cycle if batching else None)
        if isinstance(result, FitError):
            unschedulable += 1
            nominated = fw.run_post_filters(state, pod, result)
            choice = "-"
            if nominated is not None:
                victims = ",".join(v.key for v in nominated.victims)
                choice = f"{nominated.nominated_node}[{victims}]"
            digest.update(f"{pod.key}:{result.summary()}:{choice};".encode())
            continue
        assumed = sched.cache.assume(pod, result.node)
        st = fw.run_reserve(state, assumed, result.node)
        if st.ok:
            permit, _ = fw.run_permit(state, assumed, result.node)
            assert permit.ok or permit.code is Code.WAIT
        digest.update(f"{pod.key}:{result.node};".encode())
        hinted += batching and result.evaluated == 1 and len(node_list) > 1
    elapsed = time.process_time() - t0
    return elapsed / len(pods), digest.hexdigest()[:16], unschedulable, hinted


def main() -> None:
    doc = __doc__ or ""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--pods-shape",
        choices=("mixed", "uniform", *TEMPLATES),
        default="mixed",
        help=(
            "mixed: five request sizes; uniform: all 100m/128Mi, as the throughput scenario;"
            " pod-affinity, pod-anti-affinity, preferred-topology-spreading: scheduler_perf's"
            " pods of that name"
        ),
    )
    ap.add_argument(
        "--existing", type=int, default=3, help="pods bound per node before the first cycle"
    )
    ap.add_argument(
        "--priorities", action="store_true", help="pending pods of priority 0 to 2 (preemption)"
    )
    ap.add_argument("--profile", action="store_true", help="cProfile one round")
    ap.add_argument(
        "--batching", action="store_true", help="opportunistic batching, as the scheduler does"
    )
    args = ap.parse_args()
    pods = pending(
        args.pods,
        uniform=args.pods_shape == "uniform",
        priorities=args.priorities,
        template=load_template(args.pods_shape),
    )
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        one_round(args.nodes, args.existing, pods, batching=args.batching)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    per_cycle: list[float] = []
    digests = set()
    unschedulable = hinted = 0
    for _ in range(args.rounds):
        seconds, digest, unschedulable, hinted = one_round(
            args.nodes, args.existing, pods, batching=args.batching
        )
        per_cycle.append(seconds * 1e6)
        digests.add(digest)
    assert len(digests) == 1, f"placements differ between rounds: {digests}"
    print(f"nodes={args.nodes} pods={args.pods} ({args.pods_shape}) rounds={args.rounds}")
    print(
        f"CPU µs per scheduling cycle: median {statistics.median(per_cycle):.0f} "
        f"(range {min(per_cycle):.0f} to {max(per_cycle):.0f})"
    )
    print(f"decisions digest: {digests.pop()} ({unschedulable} fitted nowhere)")
    if args.batching:
        print(f"placed on a batch's hint: {hinted} of {args.pods}")


if __name__ == "__main__":
    main()
