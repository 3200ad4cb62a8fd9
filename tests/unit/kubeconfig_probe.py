"""Run by tests/unit/test_kubeconfig.py in a fresh interpreter, where no test has
imported kubernetes_asyncio yet:

    python -m tests.unit.kubeconfig_probe SPEC.json

SPEC names a kubeconfig, its contexts and what each must present to the TLS
server this starts (a bearer token, a client certificate's common name), and the
in-cluster files. The probe connects with lasched's own client for each, then
prints one JSON line: what each connection presented, which kubernetes_asyncio
modules were loaded meanwhile, and whether the whole client still works when
imported afterwards.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from lasched.kube.client import KubeClient


async def _whoami(request: web.Request) -> web.Response:
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    cn = ""
    for rdn in (peer or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
    return web.json_response({"auth": request.headers.get("Authorization", ""), "cn": cn})


async def _serve(spec: dict[str, Any]) -> tuple[web.AppRunner, int]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=spec["ca"])
    tls.load_cert_chain(spec["serving_cert"], spec["serving_key"])
    tls.verify_mode = ssl.CERT_OPTIONAL
    app = web.Application()
    app.router.add_get("/whoami", _whoami)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", spec["port"], ssl_context=tls)
    await site.start()
    return runner, spec["port"]


async def _ask(client: KubeClient) -> dict[str, Any]:
    async with client:
        return await client.get("/whoami")


async def _probe(spec: dict[str, Any]) -> dict[str, Any]:
    runner, _ = await _serve(spec)
    seen: dict[str, Any] = {}
    try:
        for context in spec["contexts"]:
            client = await KubeClient.from_kubeconfig(spec["kubeconfig"], context=context)
            seen[context] = await _ask(client)
        seen["exec-refreshed"] = await _exec_refreshed(spec)
        seen["in-cluster"] = await _in_cluster(spec)
    finally:
        await runner.cleanup()
    return seen


async def _exec_refreshed(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Two requests through one exec-plugin client, each past the refresh interval."""
    from lasched.kube import kubeconfig

    kubeconfig.REFRESH_SECONDS = 0.0
    try:
        async with await KubeClient.from_kubeconfig(spec["kubeconfig"], context="exec") as client:
            return [await client.get("/whoami"), await client.get("/whoami")]
    finally:
        kubeconfig.REFRESH_SECONDS = 60.0


async def _in_cluster(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The service account's token, then the rotated one, through one client."""
    import kubernetes_asyncio.config.incluster_config as incluster

    # The loader reads these module constants when called: point them at the test's files.
    incluster.SERVICE_TOKEN_FILENAME = spec["sa_token"]
    incluster.SERVICE_CERT_FILENAME = spec["ca"]
    incluster.TOKEN_REFRESH_PERIOD = datetime.timedelta(0)
    seen = []
    async with await KubeClient.from_kubeconfig(None) as client:
        seen.append(await client.get("/whoami"))
        await asyncio.to_thread(Path(spec["sa_token"]).write_text, "rotated-token")
        seen.append(await client.get("/whoami"))
    return seen


def _whole_client_works(spec: dict[str, Any]) -> list[str]:
    """Import the complete client after the light one: what a caller elsewhere may do."""
    import kubernetes_asyncio
    from kubernetes_asyncio import client, watch
    from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api, V1Pod
    from kubernetes_asyncio.config import kube_config

    from lasched.kube.kubeconfig import load_configuration

    async def use() -> list[str]:
        cfg = await load_configuration(spec["kubeconfig"], context=spec["contexts"][0])
        api = await kube_config.new_client_from_config(spec["kubeconfig"])
        try:
            return [
                type(cfg).__name__,
                str(isinstance(cfg, Configuration)),
                str(isinstance(api, ApiClient)),
                str(client.ApiClient is ApiClient),
                type(CoreV1Api(api)).__name__,
                V1Pod(metadata=client.V1ObjectMeta(name="p")).metadata.name,
                watch.Watch.__name__,
                kubernetes_asyncio.dynamic.DynamicClient.__name__,
                str(kubernetes_asyncio.__version__ == client.__version__),
            ]
        finally:
            await api.close()

    return asyncio.run(use())


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    seen = asyncio.run(_probe(spec))
    loaded = sorted(m for m in sys.modules if m.startswith("kubernetes_asyncio"))
    whole = _whole_client_works(spec)
    print(json.dumps({"seen": seen, "loaded": loaded, "whole": whole}))


if __name__ == "__main__":
    main()
