"""The scheduler process: one root TaskGroup of named, guarded tasks.

SIGTERM and SIGINT start a graceful stop: no new pods are dequeued, in-flight
binds and events finish within ``shutdownGraceSeconds``, then the process
exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal

from lasched import debugapi, explain, extender, server
from lasched.kube.client import KubeClient
from lasched.kube.delegated import DelegatedAuthorizer
from lasched.scheduler import Scheduler
from lasched.settings import Settings

log = logging.getLogger(__name__)


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    serving: asyncio.Future[int] | None = None,
    own_process: bool = False,
) -> None:
    """Run until ``stop`` is set or a termination signal arrives.

    ``serving``, if given, receives the HTTP port once the server listens.
    ``own_process``: nothing else runs in this process (``lasched run``), so the
    scheduler may manage the garbage collector.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with await KubeClient.from_kubeconfig(settings.kubeconfig) as client:
        sched = Scheduler(client, settings, tune_gc=own_process)
        debug = debug_api(sched, authorize=DelegatedAuthorizer(client))
        routes = [sched.hub.add_routes, debug.add_routes]
        if settings.extender.enabled:
            ext = extender.Extender(
                latency_filter=sched.latency_filter,
                # kube-scheduler places these pods: no plan of lasched's would see them placed.
                latency_score=sched.latency_score.unplanned(),
                node_info=extender.known_nodes(sched.cache, sched.node),
                ready=lambda: sched.synced,
                prefix=settings.extender.url_prefix,
            )
            routes.append(ext.add_routes)
            log.info("serving kube-scheduler's extender API at %s/{filter,prioritize}", ext.prefix)
        runner = await server.start(
            server.build_app(problems=sched.health, extra_routes=routes),
            host=settings.server.bind_address,
            port=settings.server.port,
            limits=settings.server,
        )
        port = server.bound_port(runner)
        log.info(
            "lasched serving profiles=%s api=%s http_port=%d",
            ",".join(settings.scheduler_names), client.host, port,
        )  # fmt: skip
        if serving is not None and not serving.done():
            serving.set_result(port)
        try:
            task = asyncio.create_task(sched.run(), name="scheduler")
            stopper = asyncio.create_task(stop.wait(), name="stop-signal")
            done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()  # the scheduler ended on its own: surface why
                return
            log.info("stopping: finishing in-flight binds")
            await sched.shutdown()
            await sched.hub.close()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            stopper.cancel()
            await runner.cleanup()
    log.info("stopped")


def debug_api(sched: Scheduler, *, authorize: debugapi.Authorizer) -> debugapi.DebugApi:
    """``/debug/explain`` and ``/debug/latency`` over the scheduler's live parts."""
    sources = explain.Sources(
        pod=sched.pod,
        profiles=sched.profiles,
        cache=sched.cache,
        queue=sched.queue,
        waiting=sched.waiting,
        gang=sched.gang,
        latency_filter=sched.latency_filter,
    )
    endpoints = [e.name for e in sched.settings.latency.endpoints]
    return debugapi.DebugApi(
        explain=functools.partial(explain.explain, sources),
        latency=lambda: explain.latency_matrix(
            sched.latency,
            nodes=(ni.name for ni in sched.cache.node_infos()),
            endpoints=endpoints,
            agents=sched.hub.nodes,
            topology=None if sched.sites is None else sched.sites.describe(),
        ),
        ready=lambda: sched.synced,
        authorize=authorize,
    )
