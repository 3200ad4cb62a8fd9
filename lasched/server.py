"""The scheduler's HTTP server: health, readiness, Prometheus metrics, agents.

``/readyz`` means "able to take over or to go on", not "is leader": a warm
follower is ready and should receive agent streams. It fails (503, with one
line per reason) while an informer has not synced or has heard nothing from
the apiserver, not even a bookmark, within its idle timeout; for a while after
the event loop was blocked; and while the leader cannot renew its Lease
(docs/operations.md, "Readiness"). ``/healthz`` answers as long as the loop runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_async.aio.web import server_stats

from lasched import connguard
from lasched.settings import ServerSettings


def build_app(
    *,
    problems: Callable[[], list[str]],
    extra_routes: Iterable[Callable[[web.Application], None]] = (),
) -> web.Application:
    """Health, readiness and metrics, plus what ``extra_routes`` add (agents, extender)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        why = problems()
        if not why:
            return web.Response(text="ok")
        return web.Response(status=503, text="\n".join(why) + "\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/livez", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", server_stats)
    for add in extra_routes:
        add(app)
    return app


async def start(
    app: web.Application, *, host: str, port: int, limits: ServerSettings | None = None
) -> web.AppRunner:
    """Start serving; returns the runner, whose ``cleanup()`` stops it.

    Every connection passes through a :class:`~lasched.connguard.ConnectionGuard` with
    ``limits``' caps and timeouts (the defaults if None).
    """
    guard = connguard.ConnectionGuard(connguard.plan(limits or ServerSettings()))
    app.middlewares.append(guard.middleware)
    # aiohttp's own keep-alive timer only backs the guard's up; the guard closes first.
    backstop = guard.limits.idle_timeout + guard.limits.header_timeout + 1
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=backstop)
    await runner.setup()
    site = connguard.GuardedSite(runner, host, port, guard=guard)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port actually bound (useful when configured as 0)."""
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            return int(addr[1])
    raise RuntimeError("the server is not listening")
