"""lasched's Filter verdicts held to kube-scheduler's on generated clusters (bench/oracle.py).

A real kube-scheduler of the dev cluster's release judges every generated
pod and tells its feasible nodes to a recording extender; lasched, following
beside it, explains the same pod on the same cluster. Any difference fails
with the seed, the scene, the pod, both sets and the cluster. The scenes have
storage too (bench/oraclestorage.py): the four volume plugins judge as well.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson

from bench import oracle
from lasched import kubeschedconfig, settings
from lasched.kube.client import KubeClient
from lasched.settings import Settings
from lasched_dev.devcluster.cluster import DevCluster
from tests.integration.conftest import SchedulerFactory

SEEDS = (1, 2)
CASES_PER_SEED = 160  # four scenes of 40 pending pods each
NAMESPACES = ("oracle-a", "oracle-b")


async def judged(
    cluster: DevCluster,
    kc: KubeClient,
    run_scheduler: SchedulerFactory,
    workdir: Path,
    *,
    lasched: Settings,
    seeds: tuple[int, ...],
    cases: int,
    first_scene: int = 0,
) -> list[oracle.Tally]:
    """lasched following with ``lasched`` settings, kube-scheduler recording: judge."""
    await oracle.hold_lease(kc)
    port = await run_scheduler(lasched)
    recorder = oracle.Recorder()
    extender_url = await recorder.start()
    tallies = []
    try:
        async with (
            oracle.kube_scheduler(
                kubeconfig=cluster.kubeconfig, extender_url=extender_url, workdir=workdir
            ) as child,
            oracle.Oracle(
                kc, lasched_url=f"http://127.0.0.1:{port}", recorder=recorder, namespaces=NAMESPACES
            ) as judge,
        ):
            for seed in seeds:
                tallies.append(await judge.run(seed, cases=cases, first_scene=first_scene))
            assert child.alive(), child.log_tail()
    finally:
        await recorder.stop()
    return tallies


def test_a_scene_is_the_same_for_the_same_seed_and_index() -> None:
    """generate() is a function of its arguments: a reported seed and scene reproduce."""
    one = oracle.generate(3, 5, prefix="x", namespaces=NAMESPACES)
    assert one == oracle.generate(3, 5, prefix="x", namespaces=NAMESPACES)
    assert one != oracle.generate(3, 6, prefix="x", namespaces=NAMESPACES)
    assert len(one.pending) == oracle.PODS_PER_SCENE


async def test_lasched_finds_the_nodes_kube_scheduler_finds(
    cluster: DevCluster, kc: KubeClient, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """Every generated pod: lasched's feasible nodes equal kube-scheduler's, node for node."""
    started = time.monotonic()
    tallies = await judged(
        cluster, kc, run_scheduler, tmp_path,
        lasched=settings.parse(oracle.lasched_settings()), seeds=SEEDS, cases=CASES_PER_SEED,
    )  # fmt: skip
    elapsed = time.monotonic() - started

    mismatches = [m for t in tallies for m in t.mismatches]
    assert not mismatches, f"{len(mismatches)} mismatch(es):\n\n" + "\n\n".join(
        str(m) for m in mismatches[:5]
    )
    cases = sum(t.cases for t in tallies)
    print(f"oracle: {cases} pods in {sum(t.scenes for t in tallies)} scenes, {elapsed:.1f} s")
    for t in tallies:
        print(orjson.dumps(t.to_json()).decode())
    assert cases == len(SEEDS) * CASES_PER_SEED
    # The cases reach every outcome, and the plugins under test reject nodes or pods.
    assert all(sum(getattr(t, f) for t in tallies) > 0 for f in ("none_feasible", "some_feasible"))
    rejected = sum((t.rejections for t in tallies), start=Counter[str]())
    for plugin in (
        "InterPodAffinity", "PodTopologySpread", "NodeAffinity", "NodeResourcesFit",
        "VolumeBinding", "VolumeZone", "NodeVolumeLimits", "VolumeRestrictions (PreFilter)",
    ):  # fmt: skip
        assert rejected[plugin] > 0, rejected


async def test_a_filter_lasched_leaves_out_is_caught(
    cluster: DevCluster, kc: KubeClient, run_scheduler: SchedulerFactory, tmp_path: Path
) -> None:
    """lasched without the two plugins' Filters: the oracle reports the nodes it admits
    that kube-scheduler rejects, with the seed, the scene and the pod."""
    disabled = [{"name": "InterPodAffinity"}, {"name": "PodTopologySpread"}]
    crippled = kubeschedconfig.translate({
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "leaderElection": oracle.lasched_settings()["leaderElection"],
        "profiles": [
            {"schedulerName": oracle.SCHEDULER, "plugins": {"filter": {"disabled": disabled}}}
        ],
    }).settings  # fmt: skip
    (tally,) = await judged(
        cluster, kc, run_scheduler, tmp_path,
        lasched=crippled, seeds=(1,), cases=oracle.PODS_PER_SCENE, first_scene=100,
    )  # fmt: skip
    assert tally.mismatches
    for m in tally.mismatches:
        assert m.kube < m.lasched, m  # only ever more permissive
        assert str(m).startswith(f"seed 1 scene 100: pod {m.pod['metadata']['namespace']}/")
