"""Scenario ``chaos``: the apiserver dies again and again mid-burst; who recovers, how fast.

A soak of what tests/integration/test_chaos.py checks once. Per peer and
round: the first half of ``pods`` pods (100m each) is created on ``nodes``
kwok nodes of 4 CPU; once a third of it is bound, kube-apiserver is stopped
(SIGKILL and SIGTERM in alternate rounds) while creations, bindings and
Events are in flight, etcd is compacted, and after ``down_seconds`` (longer
than lasched's renew deadline of 10 s, so a leading lasched must step down
and take its Lease again) the apiserver starts again; then the second half
is created. Measured per round: **recovery**, from the apiserver answering
again to the last pod of both halves bound; whether the peer's process
survived; pods bound over a node's capacity (must be 0). A round that does
not recover keeps the last lines of the peer's log in its sample.

Peers run as their own processes (bench/peers.py): lasched with leader
election on, kube-scheduler (tuned) with it off, alternating in order.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from bench import peers
from bench.throughput import Progress, delete_pods
from lasched.kube.client import ApiError, KubeClient
from lasched.model.quantity import milli
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.apply import create_through_outage
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace

SCENARIO = "chaos"
VERSION = 1
NODE_CPU = "4"
POD_CPU = "100m"


@dataclass(frozen=True, slots=True)
class Config:
    nodes: int = 20
    pods: int = 600
    rounds: int = 5
    down_seconds: float = 12.0
    peers: tuple[str, ...] = ("lasched", "kube-scheduler-tuned")
    timeout: float = 180.0
    controller_manager: bool = True  # run kube-controller-manager in the dev cluster


@dataclass(slots=True)
class Sample:
    peer: str
    round: int
    how: str
    recovery_s: float | None  # None: not every pod bound within the timeout
    bound: int
    survived: bool
    over_capacity: int
    log_tail: str = ""  # the peer's last log lines, when the round did not recover
    exit_code: int | None = None  # the peer's, if it exited (negative: the signal)


def _pod(name: str, scheduler: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"bench": SCENARIO}},
        "spec": {
            "schedulerName": scheduler,
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": POD_CPU, "memory": "64Mi"}},
                }
            ],
        },
    }


async def _placement(kc: KubeClient, ns: str) -> tuple[int, Counter[str]]:
    try:
        items = (await kc.get(f"/api/v1/namespaces/{ns}/pods"))["items"]
    except (ApiError, aiohttp.ClientError, OSError, TimeoutError):
        return -1, Counter()
    per_node = Counter(n for p in items if (n := p["spec"].get("nodeName")))
    return sum(per_node.values()), per_node


async def one_round(
    *, cluster: DevCluster, kc: KubeClient, peer: peers.Peer, cfg: Config, rnd: int,
    progress: Progress,
) -> Sample:  # fmt: skip
    ns = f"chaos-{peer.key}-{rnd}"
    label = f"{peer.key} round {rnd + 1}"
    how = "kill" if rnd % 2 == 0 else "sigterm"
    await ensure_namespace(kc, ns)
    running = await peers.start(peer, kubeconfig=cluster.kubeconfig, workdir=cluster.workdir / ns)
    sem = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        async with sem:
            await create_through_outage(
                kc, f"/api/v1/namespaces/{ns}/pods", _pod(f"p{i}", peer.scheduler_name)
            )

    async def create_all(first: int, last: int) -> None:
        await asyncio.gather(*(create(i) for i in range(first, last)))

    half = cfg.pods // 2
    try:
        creating = asyncio.create_task(create_all(0, half), name=f"create-{ns}")
        deadline = time.monotonic() + cfg.timeout
        while (await _placement(kc, ns))[0] < half // 3:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{label}: a third of the pods not bound before the fault")
            await asyncio.sleep(0.05)
        progress(f"{label}: apiserver down ({how})", 0, 1)
        await cluster.stop_apiserver(kill=how == "kill")
        await cluster.compact_etcd()
        await asyncio.sleep(cfg.down_seconds)
        await cluster.start_apiserver()
        back = time.monotonic()
        progress(f"{label}: apiserver down ({how})", 1, 1)
        await creating
        await create_all(half, cfg.pods)
        recovery: float | None = None
        bound, per_node = 0, Counter[str]()
        while time.monotonic() < back + cfg.timeout:
            bound, per_node = await _placement(kc, ns)
            progress(f"{label}: bound after the restart", max(bound, 0), cfg.pods)
            if bound == cfg.pods:
                recovery = time.monotonic() - back
                break
            await asyncio.sleep(0.25)
        capacity = milli(NODE_CPU) // milli(POD_CPU)
        over = sum(max(0, n - capacity) for n in per_node.values())
        tail = "" if recovery is not None else running.child.log_tail(30)
        popen = running.child.popen
        code = popen.poll() if popen is not None else None
        return Sample(
            peer=peer.key, round=rnd, how=how, recovery_s=recovery, bound=bound,
            survived=running.alive(), over_capacity=over, log_tail=tail, exit_code=code,
        )  # fmt: skip
    finally:
        await running.stop()
        await delete_pods(kc, ns)


async def run(cfg: Config, progress: Progress) -> list[Sample]:
    samples: list[Sample] = []
    async with (
        DevCluster(controller_manager=cfg.controller_manager) as cluster,
        await cluster.client() as kc,
    ):
        specs = nodes.uniform(cfg.nodes, prefix="chaos", cpu=NODE_CPU, memory="16Gi")
        await nodes.create_nodes(kc, specs, progress=lambda d, t: progress("kwok nodes", d, t))
        await nodes.wait_ready(kc, [s.name for s in specs], timeout=120)
        for rnd in range(cfg.rounds):
            order = cfg.peers if rnd % 2 == 0 else tuple(reversed(cfg.peers))
            for key in order:
                peer = peers.PEERS[key]
                sample = await one_round(
                    cluster=cluster, kc=kc, peer=peer, cfg=cfg, rnd=rnd, progress=progress
                )
                samples.append(sample)
    return samples


def summarise(samples: list[Sample]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(s.peer for s in samples):
        mine = [s for s in samples if s.peer == key]
        rec = [s.recovery_s for s in mine if s.recovery_s is not None]
        out[key] = {
            "rounds": len(mine),
            "recovered": len(rec),
            "survived": sum(s.survived for s in mine),
            "over_capacity": sum(s.over_capacity for s in mine),
            "recovery_s": {"median": statistics.median(rec), "min": min(rec), "max": max(rec)}
            if rec
            else None,
        }
    return out


def to_json(cfg: Config, samples: list[Sample], env: dict[str, str]) -> dict[str, Any]:
    return {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": asdict(cfg),
        "environment": env,
        "summary": summarise(samples),
        "samples": [asdict(s) for s in samples],
    }


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"## chaos: kube-apiserver stopped mid-burst, {cfg['rounds']} rounds per peer",
        "",
        f"{cfg['nodes']} kwok nodes, bursts of {cfg['pods']} pods, apiserver down "
        f"{cfg['down_seconds']:g} s per round with etcd compacted meanwhile (SIGKILL and "
        "SIGTERM alternating), half of each burst created before the fault and half after. "
        "Recovery: from the apiserver answering again to the last pod bound; median (min to "
        "max) over the rounds.",
        "",
        "| peer | rounds recovered | process survived | pods over capacity | recovery, s |",
        "|---|---|---|---|---|",
    ]
    for key, s in result["summary"].items():
        r = s["recovery_s"]
        rec = f"{r['median']:.1f} ({r['min']:.1f} to {r['max']:.1f})" if r else "none"
        lines.append(
            f"| {peers.LABELS.get(key, key)} | {s['recovered']}/{s['rounds']} "
            f"| {s['survived']}/{s['rounds']} | {s['over_capacity']} | {rec} |"
        )
    lines += ["", f"Machine: {result['environment'].get('machine', '')}", ""]
    return "\n".join(lines)
