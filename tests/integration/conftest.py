"""Fixtures for tests against the real local control plane.

There is deliberately no skip: if etcd, kube-apiserver or kwok cannot be
built or started, every test here errors with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import replace
from typing import Any, Self

import pytest

from lasched import app
from lasched.kube.client import KubeClient
from lasched.settings import Settings
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace

pytestmark = pytest.mark.integration

_ns_counter = itertools.count()


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[DevCluster]:
    """A fresh control plane per test module (about 3 s once binaries are built)."""
    async with DevCluster() as c:
        yield c


@pytest.fixture(scope="module")
async def kc(cluster: DevCluster) -> AsyncIterator[KubeClient]:
    async with await cluster.client() as client:
        yield client


@pytest.fixture
async def namespace(kc: KubeClient, request: pytest.FixtureRequest) -> str:
    name = f"t{next(_ns_counter)}-{request.node.name[:40].lower().replace('_', '-')}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-").strip("-")
    await ensure_namespace(kc, name)
    return name


class RunningScheduler(int):
    """A lasched started by ``run_scheduler``: its HTTP port (the int itself), and a way to
    stop this one alone, as SIGTERM would (the others keep running)."""

    _stop: asyncio.Event
    _task: asyncio.Task[None]

    def __new__(cls, port: int, *, stop: asyncio.Event, task: asyncio.Task[None]) -> Self:
        started = super().__new__(cls, port)
        started._stop, started._task = stop, task
        return started

    @property
    def port(self) -> int:
        return int(self)

    async def stop(self) -> None:
        """Stop gracefully and wait for it; raises whatever made it fail."""
        self._stop.set()
        await asyncio.wait_for(self._task, 30)


SchedulerFactory = Callable[..., Coroutine[Any, Any, RunningScheduler]]
"""``await run_scheduler(settings=None)`` starts lasched and returns its HTTP port (a
:class:`RunningScheduler`, which can also be stopped alone)."""


@pytest.fixture
async def run_scheduler(cluster: DevCluster) -> AsyncIterator[SchedulerFactory]:
    """Start lasched in this process against the cluster; stopped after the test."""
    running: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def start(settings: Settings | None = None) -> RunningScheduler:
        base = settings or Settings()
        kubeconfig = base.kubeconfig or str(cluster.kubeconfig)
        cfg = replace(base, kubeconfig=kubeconfig, server=replace(base.server, port=0))
        stop = asyncio.Event()
        serving: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            app.run(cfg, stop=stop, serving=serving), name="lasched-under-test"
        )
        running.append((stop, task))
        waiter = asyncio.ensure_future(asyncio.wait_for(asyncio.shield(serving), 30))
        await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiter.cancel()
            task.result()  # it failed to start: say why
        return RunningScheduler(await waiter, stop=stop, task=task)

    yield start
    for stop, task in running:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
