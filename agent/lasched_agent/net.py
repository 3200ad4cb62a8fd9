"""Turning a target's address into a socket address, without a thread for IP literals.

Targets are almost always node InternalIPs, so the common case parses the
literal; only a name goes through the resolver (a thread-pool call).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

SockAddr = tuple[Any, ...]


async def resolve(address: str, port: int = 0) -> tuple[socket.AddressFamily, SockAddr]:
    """The family and socket address for ``address``; raises :class:`OSError` if unknown."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        pass
    else:
        if ip.version == 4:
            return socket.AF_INET, (address, port)
        if "%" not in address:  # a zone index needs the resolver to become a scope id
            return socket.AF_INET6, (address, port, 0, 0)
    infos = await asyncio.get_running_loop().getaddrinfo(address, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise socket.gaierror(f"no address for {address!r}")
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr
