"""A thin JSON client for the Kubernetes API.

kubernetes_asyncio is used for what it does well and rarely: reading a
kubeconfig or the in-cluster service account (including exec plugins and token
rotation), in :mod:`lasched.kube.kubeconfig`, which loads only that part of it.
Watches go through one aiohttp session, every other request through
:mod:`lasched.kube.http1`'s lean pool; answers are decoded with orjson, because
the generated models cost far more CPU per object than the scheduler can afford
on its hot paths (see docs/architecture.md, "Decoding" and "Requests").

Errors: every non-2xx answer raises :class:`ApiError` carrying the HTTP status
and the apiserver's ``Status`` reason and message.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlencode, urlsplit

import aiohttp
import orjson

from lasched.kube.http1 import Http1Pool
from lasched.kube.kubeconfig import load_configuration

if TYPE_CHECKING:
    from kubernetes_asyncio.client.configuration import Configuration

JSON = dict[str, Any]

# Watch events of large objects exceed aiohttp's default read buffer.
_READ_BUFSIZE = 2**21


def system_resolver() -> aiohttp.abc.AbstractResolver:
    """The system's resolver (getaddrinfo in a thread), never aiodns.

    aiohttp picks aiodns's c-ares resolver whenever aiodns is importable (the
    agent's aioping brings it along), and pycares' channel shutdown can abort
    the whole process: a storm of refused connections during an apiserver
    restart did so, with no Python traceback. Connections are pooled, so a
    lookup is rare and a thread per lookup costs nothing that matters.
    """
    return aiohttp.ThreadedResolver()


class ApiError(Exception):
    """The apiserver answered with an error status."""

    def __init__(self, *, status: int, reason: str, message: str, body: JSON | None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def gone(self) -> bool:
        return self.status == 410


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Client-side rate settings, stated so that benchmarks compare like with like."""

    max_connections: int = 64
    user_agent: str = "lasched"


def _ssl_context(cfg: Configuration) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cfg.ssl_ca_cert)
    if cfg.cert_file:
        ctx.load_cert_chain(cfg.cert_file, keyfile=cfg.key_file)
    if not cfg.verify_ssl:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class KubeClient:
    """JSON requests to one apiserver; cancelling any call is safe."""

    def __init__(self, cfg: Configuration, options: ClientOptions | None = None) -> None:
        self._cfg = cfg
        self.options = options or ClientOptions()
        self.host: str = (cfg.host or "").rstrip("/")
        tls = _ssl_context(cfg)
        # Streams (watches) on aiohttp; every other request on the lean pool.
        connector = aiohttp.TCPConnector(
            limit=self.options.max_connections, ssl=tls, resolver=system_resolver()
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            read_bufsize=_READ_BUFSIZE,
            headers={
                "User-Agent": self.options.user_agent,
                "Accept": "application/json",
                # Uncompressed, as kube-scheduler's client asks (DisableCompression): aiohttp
                # would ask for gzip, and the apiserver then compresses a streaming list and
                # the watch that follows it for this client alone (WatchListCompression),
                # CPU on both sides that a scheduler near its apiserver does not win back.
                "Accept-Encoding": "identity",
            },
        )
        self._pool = Http1Pool(self.host, ssl_context=tls, limit=self.options.max_connections)
        self._base_path = urlsplit(self.host).path
        self._fixed_headers = {
            "User-Agent": self.options.user_agent,
            "Accept": "application/json",
        }
        self._companions: list[KubeClient] = []

    @classmethod
    async def from_kubeconfig(
        cls, kubeconfig: str | None, options: ClientOptions | None = None, *,
        context: str | None = None,
    ) -> Self:  # fmt: skip
        return cls(await load_configuration(kubeconfig, context=context), options)

    def companion(self, options: ClientOptions) -> KubeClient:
        """A client for the same apiserver and credentials with a connection pool of its own.

        For requests that others can cause (token reviews on behalf of agents): they then
        cannot take the connections the scheduler's own requests need. Closed with this one.
        """
        other = KubeClient(self._cfg, options)
        self._companions.append(other)
        return other

    async def close(self) -> None:
        for other in self._companions:
            await other.close()
        await self._pool.close()
        await self._session.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        auth = await self._cfg.auth_settings()
        bearer = auth.get("BearerToken")
        if bearer and bearer.get("value"):
            headers["Authorization"] = bearer["value"]
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _url(self, path: str, params: Mapping[str, str | int | bool] | None) -> str:
        if not params:
            return self.host + path
        return f"{self.host}{path}?{_query(params)}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> JSON:
        """One request; the decoded JSON answer (``{}`` for an empty body).

        ``headers``: more request headers (never the credentials, which come from the
        configuration)."""
        data = orjson.dumps(body) if body is not None else None
        raw = await self._send(
            method, path, params, data=data,
            content_type=content_type if data is not None else None, timeout=timeout,
            extra=headers,
        )  # fmt: skip
        if not raw:
            return {}
        decoded: JSON = orjson.loads(raw)
        return decoded

    async def text(self, path: str, *, timeout: float | None = 30.0) -> str:
        """A GET whose answer is text, not JSON (``/metrics``, ``/version`` of some servers)."""
        raw = await self._send("GET", path, None, timeout=timeout, accept="text/plain, */*")
        return raw.decode()

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str | int | bool] | None,
        *,
        data: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None,
        accept: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> bytes:
        """The raw body of a 2xx answer; any other status raises :class:`ApiError`."""
        headers = {**self._fixed_headers, **(extra or {}), **await self._headers(content_type)}
        if accept:
            headers["Accept"] = accept
        target = self._base_path + path
        if params:
            target += "?" + _query(params)
        status, raw = await self._pool.request(method, target, headers, data, timeout)
        if status >= 300:
            raise _api_error(status, raw)
        return raw

    async def get(self, path: str, **params: str | int | bool) -> JSON:
        return await self.request("GET", path, params=params)

    async def post(self, path: str, body: Any) -> JSON:
        return await self.request("POST", path, body=body)

    async def delete(self, path: str, body: Any = None) -> JSON:
        return await self.request("DELETE", path, body=body)

    async def patch(self, path: str, body: Any, *, patch_type: str = "merge") -> JSON:
        content_type = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }[patch_type]
        return await self.request("PATCH", path, body=body, content_type=content_type)

    async def stream(
        self,
        path: str,
        *,
        params: Mapping[str, str | int | bool],
        timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[JSON]:
        """Yield each JSON line of a watch stream as it arrives.

        ``read_timeout``: the longest silence between two reads before the
        stream fails with a :class:`TimeoutError` (a connection that stays
        open but delivers nothing). Cancelling the consumer closes the connection.
        """
        headers = await self._headers(None)
        async with self._session.get(
            self._url(path, params),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=10, sock_read=read_timeout),
        ) as resp:
            if resp.status >= 300:
                raise _api_error(resp.status, await resp.read())
            # readline() keeps partial lines buffered across chunks.
            while line := await resp.content.readline():
                if line.strip():
                    yield orjson.loads(line)


def _query(params: Mapping[str, str | int | bool]) -> str:
    return urlencode(
        {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
    )


def _api_error(status: int, raw: bytes) -> ApiError:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        return ApiError(
            status=status,
            reason=str(body.get("reason", "")),
            message=str(body.get("message", "")),
            body=body,
        )
    return ApiError(status=status, reason="", message=raw[:200].decode(errors="replace"), body=None)
