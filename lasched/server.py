"""The scheduler's HTTP server: health, readiness, Prometheus metrics, agents.

``/readyz`` means "informers synced", not "is leader": a warm follower is
ready to take over and should receive agent streams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_async.aio.web import server_stats


def build_app(
    *,
    synced: Callable[[], bool],
    extra_routes: Iterable[Callable[[web.Application], None]] = (),
) -> web.Application:
    """Health, readiness and metrics, plus what ``extra_routes`` add (agents, extender)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if synced():
            return web.Response(text="ok")
        return web.Response(status=503, text="informers not synced")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", server_stats)
    for add in extra_routes:
        add(app)
    return app


async def start(app: web.Application, *, host: str, port: int) -> web.AppRunner:
    """Start serving; returns the runner, whose ``cleanup()`` stops it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (useful when configured as 0)."""
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            return int(addr[1])
    raise RuntimeError("the server is not listening")
