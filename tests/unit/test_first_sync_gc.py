"""The cyclic collector rests through the informers' first lists, only in lasched's own process."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio.client import Configuration

from lasched import scheduler as scheduler_module
from lasched.kube.client import KubeClient
from lasched.scheduler import Scheduler
from lasched.settings import Settings


@pytest.fixture
async def client() -> AsyncIterator[KubeClient]:
    kc = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        yield kc
    finally:
        await kc.close()
        gc.unfreeze()
        gc.enable()


def synced(sched: Scheduler) -> None:
    sched.pod_informer.synced.set()
    sched.node_informer.synced.set()
    for inf in sched._storage_informers():
        inf.synced.set()
    sched._topologies_known.set()  # discovery answered: no NodeResourceTopology API


async def test_collector_rests_until_synced_then_what_exists_is_frozen(client: KubeClient) -> None:
    """With tune_gc the collector is off while the first lists arrive, frozen and on after."""
    gc.unfreeze()
    sched = Scheduler(client, Settings(), tune_gc=True)
    waiting = asyncio.create_task(sched._first_sync())
    await asyncio.sleep(0.01)
    assert not gc.isenabled()
    assert not waiting.done()
    synced(sched)
    await asyncio.wait_for(waiting, 1)
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0


async def test_an_embedded_scheduler_leaves_the_collector_alone(client: KubeClient) -> None:
    """Without tune_gc (tests, the demo) the host program's collector is untouched."""
    gc.unfreeze()
    sched = Scheduler(client, Settings())
    waiting = asyncio.create_task(sched._first_sync())
    await asyncio.sleep(0.01)
    assert gc.isenabled()
    synced(sched)
    await asyncio.wait_for(waiting, 1)
    assert gc.get_freeze_count() == 0


async def test_an_apiserver_that_never_answers_cannot_keep_the_collector_off(
    client: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past FIRST_SYNC_GC_PAUSE the collector is back on, while the scheduler still waits."""
    monkeypatch.setattr(scheduler_module, "FIRST_SYNC_GC_PAUSE", 0.02)
    sched = Scheduler(client, Settings(), tune_gc=True)
    waiting = asyncio.create_task(sched._first_sync())
    await asyncio.sleep(0.1)
    assert gc.isenabled()
    assert not waiting.done()
    synced(sched)
    await asyncio.wait_for(waiting, 1)
