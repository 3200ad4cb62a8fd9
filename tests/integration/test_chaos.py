"""Chaos on the real control plane: lasched keeps running and every pod is bound once.

Each test breaks something lasched depends on, mid-work, and ends with the
same checks: every pod bound, no node over its allocatable, the scheduler
still running. The apiserver is stopped (SIGKILL or SIGTERM) and restarted
with etcd compacted meanwhile; a proxy silently stops forwarding the watches;
a paused leader wakes up after another replica took over. The longer soak is
``python -m bench run chaos``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import yaml

from lasched.kube.client import ApiError, KubeClient
from lasched.model.quantity import milli
from lasched.settings import HealthSettings, LeaderElectionSettings, Settings
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.apply import create_through_outage
from lasched_dev.devcluster.cluster import DevCluster
from lasched_dev.devcluster.faults import FreezingProxy
from lasched_dev.devcluster.processes import Child, free_port, spawn, terminate
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import eventually, pod

NODE_CPU = "4"
POD_CPU = "100m"
PER_NODE = milli(NODE_CPU) // milli(POD_CPU)


async def make_nodes(kc: KubeClient, pool: str, count: int) -> None:
    specs = nodes.uniform(count, prefix=pool, cpu=NODE_CPU, labels={"pool": pool})
    await nodes.create_nodes(kc, specs)
    await nodes.wait_ready(kc, [s.name for s in specs])


async def create_pods(kc: KubeClient, namespace: str, pool: str, names: list[str]) -> None:
    sem = asyncio.Semaphore(16)

    async def one(name: str) -> None:
        async with sem:
            body = pod(name, cpu=POD_CPU, nodeSelector={"pool": pool})
            await create_through_outage(kc, f"/api/v1/namespaces/{namespace}/pods", body)

    await asyncio.gather(*(one(n) for n in names))


async def bound(kc: KubeClient, namespace: str) -> int:
    """Pods bound so far, or -1 while the apiserver cannot answer."""
    try:
        items = (await kc.get(f"/api/v1/namespaces/{namespace}/pods"))["items"]
    except (ApiError, aiohttp.ClientError, OSError, TimeoutError):
        return -1
    return sum(1 for p in items if p["spec"].get("nodeName"))


async def assert_all_bound_within_capacity(kc: KubeClient, namespace: str, total: int) -> None:
    items = (await kc.get(f"/api/v1/namespaces/{namespace}/pods"))["items"]
    assert len(items) == total
    unbound = [p["metadata"]["name"] for p in items if not p["spec"].get("nodeName")]
    assert not unbound, f"{len(unbound)} pods not bound: {unbound[:10]}"
    per_node = Counter(p["spec"]["nodeName"] for p in items)
    assert max(per_node.values()) <= PER_NODE, per_node


async def metric(port: int, metric_name: str, /, **labels: str) -> float:
    """The sum of a metric's samples with these labels in lasched's /metrics (0 when absent)."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        if name == metric_name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


async def ready(port: int) -> bool:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as r:
        return r.status == 200


@pytest.mark.parametrize(
    "case", [("kill", True), ("sigterm", False)], ids=["kill-leader", "term-no-election"]
)
async def test_apiserver_restart_mid_burst(
    cluster: DevCluster,
    kc: KubeClient,
    namespace: str,
    run_scheduler: SchedulerFactory,
    case: tuple[str, bool],
) -> None:
    """The apiserver dies mid-burst and comes back with etcd compacted: lasched lives on.

    With leader election on and the apiserver away longer than the renew
    deadline, the leader steps down and takes the Lease again; every pod is
    bound, none twice, no node over capacity.
    """
    how, elect = case
    pool = f"restart-{how}"
    await make_nodes(kc, pool, 20)
    total = 600
    settings = Settings(
        leader_election=LeaderElectionSettings(
            leader_elect=elect, resource_name=f"chaos-{how}", resource_namespace="default",
            lease_duration_seconds=4, renew_deadline_seconds=3, retry_period_seconds=0.5,
        ),
    )  # fmt: skip
    sched = await run_scheduler(settings)
    creating = asyncio.create_task(
        create_pods(kc, namespace, pool, [f"p{i}" for i in range(total)])
    )
    await eventually(lambda: _at_least(kc, namespace, 60), timeout=60, interval=0.02)
    await cluster.stop_apiserver(kill=how == "kill")
    # Binds, Events and status writes in flight failed; watches broke.
    await cluster.compact_etcd()
    await asyncio.sleep(4.0)  # past the renew deadline: the leader must step down
    await cluster.start_apiserver()
    await asyncio.wait_for(creating, 120)
    await eventually(lambda: _at_least(kc, namespace, total), timeout=120, interval=0.5)
    assert not sched._task.done(), "lasched stopped"
    await assert_all_bound_within_capacity(kc, namespace, total)
    assert await metric(sched.port, "lasched_informer_relists_total", resource="pods") >= 1
    if elect:
        master = "lasched_leader_election_master_status"
        assert await metric(sched.port, master, name=f"chaos-{how}") == 1.0
    await eventually(lambda: ready(sched.port), timeout=30)


async def _at_least(kc: KubeClient, namespace: str, n: int) -> bool:
    return await bound(kc, namespace) >= n


async def test_silent_watch_is_noticed_and_restarted(
    cluster: DevCluster,
    kc: KubeClient,
    namespace: str,
    run_scheduler: SchedulerFactory,
    tmp_path: Path,
) -> None:
    """Through a proxy that keeps the watch open but forwards nothing, new pods still bind."""
    pool = "silent"
    await make_nodes(kc, pool, 4)
    host, _, port = cluster.api_url.removeprefix("https://").partition(":")
    async with FreezingProxy(host, int(port)) as proxy:
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
        kubeconfig = tmp_path / "through-proxy"
        kubeconfig.write_text(yaml.safe_dump(config))
        idle = 5.0
        sched = await run_scheduler(
            replace(
                Settings(),
                kubeconfig=str(kubeconfig),
                leader_election=LeaderElectionSettings(leader_elect=False),
                health=HealthSettings(watch_idle_timeout_seconds=idle),
            )
        )
        await create_pods(kc, namespace, pool, ["before"])
        await eventually(lambda: _at_least(kc, namespace, 1), timeout=30)
        # "before" may have come in the first list; a pod created after it was bound can
        # only come through the pods watch, so once it binds that watch's connection is
        # open (and is frozen below, not opened after the freeze).
        await create_pods(kc, namespace, pool, ["watched"])
        await eventually(lambda: _at_least(kc, namespace, 2), timeout=30)
        frozen = proxy.freeze()
        assert frozen >= 2, "the informers' watches go through the proxy"
        frozen_at = time.monotonic()
        names = [f"after-{i}" for i in range(20)]
        await create_pods(kc, namespace, pool, names)
        await eventually(lambda: _at_least(kc, namespace, 22), timeout=idle + 30, interval=0.2)
        took = time.monotonic() - frozen_at
        assert took < idle + 20, f"20 pods took {took:.1f} s after the watch went silent"
        restarts = "lasched_informer_watch_restarts_total"
        assert await metric(sched.port, restarts, resource="pods", reason="silent") >= 1
        assert not sched._task.done()
        await assert_all_bound_within_capacity(kc, namespace, 22)


# ---- a paused leader wakes up after another replica took over ------------------


@pytest.fixture
async def two_replicas(
    cluster: DevCluster, kc: KubeClient, tmp_path: Path
) -> AsyncIterator[list[tuple[Child, int]]]:
    """Two ``lasched run`` processes with a short lease."""
    config = tmp_path / "lasched.yaml"
    config.write_text(
        "leaderElection:\n  resourceName: paused\n"
        "  leaseDurationSeconds: 4\n  renewDeadlineSeconds: 3\n  retryPeriodSeconds: 0.5\n"
    )
    children = []
    for i in range(2):
        port = free_port()
        argv = [
            sys.executable, "-m", "lasched", "run", "--config", str(config),
            "--kubeconfig", str(cluster.kubeconfig), "--port", str(port),
        ]  # fmt: skip
        children.append((spawn(f"lasched-{i}", argv, log_dir=tmp_path, detached=False), port))
    yield children
    for child, _ in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGCONT)
        await asyncio.to_thread(terminate, child.pid, grace=10)


async def leads(port: int) -> bool:
    try:
        return await metric(port, "lasched_leader_election_master_status", name="paused") == 1.0
    except aiohttp.ClientError:
        return False


async def test_resumed_leader_schedules_nothing(
    kc: KubeClient, namespace: str, two_replicas: list[tuple[Child, int]]
) -> None:
    """A leader paused past its lease, then resumed, makes no scheduling attempt or bind."""
    pool = "paused"
    await make_nodes(kc, pool, 4)

    async def who_leads() -> tuple[Child, int] | None:
        states = [await leads(p) for _, p in two_replicas]
        return two_replicas[states.index(True)] if sum(states) == 1 else None

    leader = await eventually(who_leads, timeout=30)
    follower = next(r for r in two_replicas if r is not leader)
    await create_pods(kc, namespace, pool, [f"a{i}" for i in range(20)])
    await eventually(lambda: _at_least(kc, namespace, 20), timeout=30)
    attempts = "lasched_schedule_attempts_total"
    binds = "lasched_binding_duration_seconds_count"
    before = (await metric(leader[1], attempts), await metric(leader[1], binds))

    os.kill(leader[0].pid, signal.SIGSTOP)
    await eventually(lambda: leads(follower[1]), timeout=15, interval=0.1)
    await create_pods(kc, namespace, pool, [f"b{i}" for i in range(20)])
    os.kill(leader[0].pid, signal.SIGCONT)
    # The resumed process sees the new pods at once (its watch resumes) while
    # its Lease renewal has not run yet: it must not schedule them.
    await create_pods(kc, namespace, pool, [f"c{i}" for i in range(20)])
    await eventually(lambda: _at_least(kc, namespace, 60), timeout=30)
    await asyncio.sleep(2.0)
    after = (await metric(leader[1], attempts), await metric(leader[1], binds))
    assert after == before, f"the resumed leader tried to schedule: {before} -> {after}"
    assert leader[0].alive() and follower[0].alive()
    assert not await leads(leader[1])
    await assert_all_bound_within_capacity(kc, namespace, 60)


async def readyz(port: int) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as r:
        return r.status, await r.text()


async def test_readiness_fails_after_a_blocked_loop(run_scheduler: SchedulerFactory) -> None:
    """/readyz says 503 with the reason after the loop was blocked, then 200 again."""
    sched = await run_scheduler(
        Settings(
            leader_election=LeaderElectionSettings(leader_elect=False),
            health=HealthSettings(loop_blocked_seconds=1.0),
        )
    )
    await eventually(lambda: ready(sched.port), timeout=30)
    time.sleep(1.5)  # noqa: ASYNC251  (blocking the loop is the point)
    await asyncio.sleep(0.5)  # the monitor's timer runs late and records it
    status, text = await readyz(sched.port)
    assert status == 503
    assert "event loop blocked for 1." in text
    await eventually(lambda: ready(sched.port), timeout=5)
