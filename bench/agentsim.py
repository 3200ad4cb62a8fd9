"""Simulated node agents: one real ``AgentClient`` per kwok node, answering from an RTT matrix.

    python -m bench.agentsim <spec.json>

kwok nodes have no network, so each node's agent is lasched-agent's own
client speaking the real protocol over a real WebSocket, with a probe that
answers from a table (``ProbeMethod.fixed``): what the agent on a node would
measure to each other node and to each user endpoint. Each agent presents a
token bound to an agent pod on its node (``lasched_dev.devcluster.agents``), so
lasched's TokenReview sees the identity a DaemonSet pod would have.

The spec (written by the latency scenario) is JSON::

    {"url": "ws://127.0.0.1:PORT/agents/v1",
     "agents": {"<node>": {"token_file": "...", "rtts": {"<target>": ms, ...}}, ...}}

Runs in its own process, so the agents' CPU is neither the benchmark's nor
a scheduler's; it runs until terminated. The spec is read again when its
modification time changes (checked every ``RECHECK_SECONDS``), and each
agent's table is updated in place: a route degrades while the agents run
(the drift scenario). Write a new spec beside it and rename it over the old,
so it is never read half-written.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from lasched_agent.prober import ProbeMethod, Prober
from lasched_agent.stream import AgentClient

RECHECK_SECONDS = 0.25


async def _reload(path: Path, tables: dict[str, dict[str, float]]) -> None:
    """Update ``tables`` in place whenever the spec at ``path`` changes (see the module)."""
    seen = (await asyncio.to_thread(path.stat)).st_mtime_ns
    while True:
        await asyncio.sleep(RECHECK_SECONDS)
        mtime = (await asyncio.to_thread(path.stat)).st_mtime_ns
        if mtime == seen:
            continue
        seen = mtime
        spec = orjson.loads(await asyncio.to_thread(path.read_bytes))
        for node, table in tables.items():
            fresh = spec["agents"].get(node, {}).get("rtts", {})
            table.clear()  # no await between clear and update: no probe sees it empty
            table.update(fresh)


async def run(spec: dict[str, Any], path: Path | None = None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
        asyncio.TaskGroup() as tg,
    ):
        clients = []
        for node, agent in spec["agents"].items():
            client = AgentClient(
                url=spec["url"],
                node=node,
                # One probe per target per round: the table has no jitter to sample.
                prober=Prober(
                    ProbeMethod.fixed(agent["rtts"]),
                    probes_per_target=1,
                    max_targets_per_round=1024,
                ),
                token_file=Path(agent["token_file"]),
                heartbeat_seconds=10,
                session=session,
            )
            clients.append(tg.create_task(client.run(), name=f"agent:{node}"))
        if path is not None:
            tables = {node: agent["rtts"] for node, agent in spec["agents"].items()}
            clients.append(tg.create_task(_reload(path, tables), name="reload"))
        await stop.wait()
        for task in clients:
            task.cancel()


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    path = Path(sys.argv[1])
    asyncio.run(run(orjson.loads(path.read_bytes()), path))


if __name__ == "__main__":
    main()
