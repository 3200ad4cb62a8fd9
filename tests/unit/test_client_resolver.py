"""The scheduler's API client resolves names with the system's resolver, never aiodns."""

from __future__ import annotations

import aiohttp
from kubernetes_asyncio.client import Configuration

from lasched.kube.client import ClientOptions, KubeClient


async def test_api_client_and_its_companion_use_the_threaded_resolver() -> None:
    """aiodns is importable here (aioping needs it), yet neither pool resolves through it."""
    cfg = Configuration()
    cfg.host = "https://127.0.0.1:6443"
    cfg.verify_ssl = False
    async with KubeClient(cfg) as client:
        companion = client.companion(ClientOptions(max_connections=4))
        for c in (client, companion):
            connector = c._session.connector
            assert isinstance(connector, aiohttp.TCPConnector)
            assert isinstance(connector._resolver, aiohttp.ThreadedResolver)
