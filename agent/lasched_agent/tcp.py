"""TCP-connect RTTs: the fallback when the agent may not send ICMP.

The RTT is the time a non-blocking ``connect()`` takes: the SYN goes out and
the answer comes back. Either answer counts: SYN/ACK (a listener) or RST
(``ECONNREFUSED``, nobody listening), since both are one network round trip.
The address is resolved before the clock starts, and no stream objects are
built, so what is timed is the handshake and one event-loop wake-up. The
socket is then closed with ``SO_LINGER`` 0, which resets the connection
instead of leaving it in TIME_WAIT on this node.

A probe that gets no answer within ``timeout`` raises :class:`TimeoutError`;
any other failure (no route, host unreachable) raises :class:`OSError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time

from lasched_agent.net import resolve

_LINGER_RESET = struct.pack("ii", 1, 0)


async def connect_rtt(address: str, port: int, *, timeout: float) -> float:
    """Seconds from ``connect()`` to SYN/ACK or RST from ``address:port``. Safe to cancel."""
    family, sockaddr = await resolve(address, port)
    loop = asyncio.get_running_loop()
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        async with asyncio.timeout(timeout):
            start = time.perf_counter()
            # A refusal means the RST came back: that is a round trip too.
            with contextlib.suppress(ConnectionRefusedError):
                await loop.sock_connect(sock, sockaddr)
            return time.perf_counter() - start
