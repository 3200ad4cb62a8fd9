"""Read-only debug endpoints: ``GET /debug/explain?pod=ns/name`` and ``GET /debug/latency``.

``lasched explain`` and ``lasched latency`` read these. Both answer JSON and
change nothing (see :mod:`lasched.explain`); they are served on the
scheduler's HTTP port beside ``/metrics``.

Who may ask:

* a client on the loopback interface (the scheduler's own host or pod, which
  is also where ``kubectl port-forward`` connects from), without credentials;
* anyone else with ``Authorization: Bearer <token>`` whose token the
  apiserver accepts (TokenReview) and who may ``get`` the path as a
  non-resource URL (SubjectAccessReview), as kube-scheduler checks its own
  ``/debug`` paths. A ClusterRole with ``nonResourceURLs: ["/debug/*"]`` and
  ``verbs: [get]`` grants it; lasched itself then needs ``create`` on
  ``tokenreviews`` and ``subjectaccessreviews``.

Answers: 200 with the JSON; 400 for a missing or malformed ``pod``; 401
without an accepted token; 403 when the review says no (or could not be
made); 404 for a pod lasched does not know; 503 until the informers synced.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from lasched.model.pod import PodKey, pod_key

log = logging.getLogger(__name__)

EXPLAIN_PATH = "/debug/explain"
LATENCY_PATH = "/debug/latency"
PROXIED_AUTHORIZATION = "X-Lasched-Authorization"
"""``Bearer <token>`` as in ``Authorization``, which the apiserver's proxy consumes:
``kubectl lasched`` sends the token here when it comes through that proxy."""

Authorizer = Callable[[str, str], Awaitable[str | None]]
"""(bearer token, path) -> None when allowed, else the reason it is not
(:class:`lasched.kube.delegated.DelegatedAuthorizer` asks the apiserver)."""


JSON = dict[str, Any]


class DebugApi:
    """The two routes, over one scheduler's answers."""

    def __init__(
        self,
        *,
        explain: Callable[[PodKey], JSON | None],
        latency: Callable[[], JSON],
        ready: Callable[[], bool],
        authorize: Authorizer | None = None,
    ) -> None:
        """``explain``: :func:`lasched.explain.explain` of a pod (None: unknown);
        ``latency``: :func:`lasched.explain.latency_matrix`; ``ready``: the
        informers have synced."""
        self._explain = explain
        self._latency = latency
        self._ready = ready
        self._authorize = authorize

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(EXPLAIN_PATH, self.explain)
        app.router.add_get(LATENCY_PATH, self.latency)

    async def explain(self, request: web.Request) -> web.Response:
        if (refused := await self._check(request)) is not None:
            return refused
        raw = request.query.get("pod", "")
        namespace, _, name = raw.partition("/")
        if not namespace or not name or "/" in name:
            return _error(400, f"pod must be given as namespace/name, not {raw!r}")
        answer = self._explain(pod_key(namespace, name))
        if answer is None:
            return _error(
                404, f"lasched does not know pod {namespace}/{name} (no such pod, or it finished)"
            )
        return _json(answer)

    async def latency(self, request: web.Request) -> web.Response:
        if (refused := await self._check(request)) is not None:
            return refused
        return _json(self._latency())

    async def _check(self, request: web.Request) -> web.Response | None:
        """None when the request may be answered, else the refusal."""
        if not _loopback(request.remote):
            headers = request.headers
            header = headers.get("Authorization") or headers.get(PROXIED_AUTHORIZATION) or ""
            token = header[7:].strip() if header.startswith("Bearer ") else ""
            if not token:
                return _error(401, "a bearer token is required from outside the scheduler's host")
            if self._authorize is None:
                return _error(403, "this scheduler answers debug requests from loopback only")
            why = await self._authorize(token, request.path)
            if why is not None:
                log.info("debug request from %s refused: %s", request.remote, why)
                return _error(403, why)
        if not self._ready():
            return _error(503, "informers not synced yet")
        return None


def _loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _json(body: object) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps({"error": message}), content_type="application/json"
    )
