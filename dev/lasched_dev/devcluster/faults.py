"""A TCP proxy that can go silent: the network faults that send no error.

A watch through a NAT or a load balancer that has lost the connection's
state stays open and delivers nothing: no RST, no FIN, no error, because
the client, waiting for events, sends nothing that could draw a reset.
:class:`FreezingProxy` reproduces that on loopback: clients connect to it
instead of the apiserver, and :meth:`FreezingProxy.freeze` makes every
connection open at that moment a lost flow. The server's bytes are no
longer forwarded; the client's next bytes (a new request on a pooled
connection) draw a reset, as a middlebox answers a packet of a flow it does
not know. Connections made afterwards are forwarded normally, as a new flow
through a NAT would be. :meth:`FreezingProxy.reset` closes them all.

Used by the chaos tests (tests/integration/test_chaos.py) and the chaos
soak (``python -m bench run chaos``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Self

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


@dataclass(eq=False)
class _Flow:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    frozen: asyncio.Event = field(default_factory=asyncio.Event)  # set: forward nothing
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for w in (self.client, self.upstream):
            with contextlib.suppress(OSError, RuntimeError):
                w.transport.abort()


class FreezingProxy:
    """Forwards 127.0.0.1:<port> to ``target``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._flows: set[_Flow] = set()
        self.connections = 0

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.reset()
        if self._server is not None:
            await self._server.wait_closed()

    @property
    def open_flows(self) -> int:
        return len(self._flows)

    def freeze(self) -> int:
        """Stop forwarding on every open connection, keeping it open; returns how many."""
        for flow in self._flows:
            flow.frozen.set()
        log.info("proxy :%d froze %d connections", self.port, len(self._flows))
        return len(self._flows)

    def reset(self) -> int:
        """Close every open connection at once (as a restarted middlebox would)."""
        flows = list(self._flows)
        for flow in flows:
            flow.close()
        self._flows.clear()
        return len(flows)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        flow = _Flow(client=writer, upstream=up_writer)
        self._flows.add(flow)
        flow.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, flow, up=True), name="proxy-up"),
            asyncio.create_task(self._pump(up_reader, writer, flow, up=False), name="proxy-down"),
        ]
        try:
            await asyncio.gather(*flow.tasks, return_exceptions=True)
        finally:
            self._flows.discard(flow)
            flow.close()

    @staticmethod
    async def _pump(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, flow: _Flow, *, up: bool
    ) -> None:
        while True:
            data = await src.read(_CHUNK)
            if flow.frozen.is_set():
                if up:  # the client speaks on a lost flow: it gets a reset
                    flow.close()
                    return
                await asyncio.Event().wait()  # the server's bytes go nowhere
            if not data:
                break
            dst.write(data)
            await dst.drain()
        with contextlib.suppress(OSError, RuntimeError):
            dst.write_eof()
