"""ICMP echo RTTs, with or without CAP_NET_RAW.

Linux offers two ways for a process to ping:

``raw``
    ``socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)``, which needs CAP_NET_RAW. The
    socket sees every ICMP packet of the host, IP header included, so replies
    are matched by the echo identifier. :func:`ping_raw` uses aioping, which
    does exactly this.
``dgram``
    ``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)``, a "ping socket", allowed to
    any process whose group is within ``net.ipv4.ping_group_range``. The
    kernel sets the echo identifier to the socket's own (so it overwrites
    ours), delivers only the replies meant for this socket and strips the IP
    header. :func:`ping_dgram` implements it here, matching replies by
    sequence number and payload: aioping tries this mode only after the raw
    socket fails, so it cannot be chosen on purpose, and it does not check
    the payload.

:func:`detect_mode` tries ``dgram`` first, then ``raw``, and picks the first
mode that can both open its socket and get an answer from the loopback
address, so a sandbox that allows the socket but drops the packets is not
mistaken for a working one. ``dgram`` goes first because it needs the least
privilege, the kernel hands each socket only its own replies, and its RTTs
are the closer ones: aioping stamps the send time before it computes the
checksum in Python and waits a loop turn for writability, which adds a few
tenths of a millisecond, more on a busy loop.

Every ping opens its own socket and closes it. (aioping closes its socket on
a reply or a timeout; a raw ping cancelled in flight leaves its socket to the
garbage collector, which only happens at shutdown or when a round ends before
a ping's own timeout.) An RTT is measured with :func:`time.perf_counter` from
just before the send to when the reply is read. A ping that gets no reply
within ``timeout`` raises :class:`TimeoutError`; one the network refuses
raises another :class:`OSError`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
import socket
import struct
import time
from pathlib import Path
from typing import Literal

import aioping

from lasched_agent.net import resolve

log = logging.getLogger(__name__)

IcmpMode = Literal["raw", "dgram"]
MODES: tuple[IcmpMode, ...] = ("dgram", "raw")  # in order of preference

_ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
_ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
_PROTO = {socket.AF_INET: socket.IPPROTO_ICMP, socket.AF_INET6: socket.IPPROTO_ICMPV6}
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence
_TOKEN_BYTES = 8
_PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")

_sequence = itertools.count(random.randrange(1 << 16))


async def ping(address: str, *, mode: IcmpMode, timeout: float) -> float:
    """One echo round trip to ``address`` in seconds, using ``mode``. Safe to cancel."""
    if mode == "raw":
        return await ping_raw(address, timeout=timeout)
    return await ping_dgram(address, timeout=timeout)


async def ping_raw(address: str, *, timeout: float) -> float:
    """One echo round trip over a raw socket (needs CAP_NET_RAW), via aioping."""
    family, _ = await resolve(address)
    rtt: float = await aioping.ping(address, timeout=timeout, family=family)
    return rtt


async def ping_dgram(address: str, *, timeout: float) -> float:
    """One echo round trip over an unprivileged ICMP datagram socket. Safe to cancel."""
    family, sockaddr = await resolve(address)
    loop = asyncio.get_running_loop()
    seq = next(_sequence) & 0xFFFF
    token = os.urandom(_TOKEN_BYTES)
    packet = echo_request(family, seq=seq, payload=token)
    with socket.socket(family, socket.SOCK_DGRAM, _PROTO[family]) as sock:
        sock.setblocking(False)
        # No handshake for a datagram socket; connected, it can use sock_sendall
        # (uvloop has no sock_sendto).
        sock.connect(sockaddr)
        async with asyncio.timeout(timeout):
            sent = time.perf_counter()
            await loop.sock_sendall(sock, packet)
            while True:
                data = await loop.sock_recv(sock, 2048)
                received = time.perf_counter()
                if is_echo_reply(family, data, seq=seq, payload=token):
                    return received - sent


def echo_request(family: socket.AddressFamily, *, seq: int, payload: bytes) -> bytes:
    """An echo request with identifier 0 (a ping socket sets its own)."""
    header = _HEADER.pack(_ECHO_REQUEST[family], 0, 0, 0, seq)
    if family == socket.AF_INET6:
        return header + payload  # the kernel computes the ICMPv6 checksum
    checksum = internet_checksum(header + payload)
    return _HEADER.pack(_ECHO_REQUEST[family], 0, checksum, 0, seq) + payload


def is_echo_reply(family: socket.AddressFamily, data: bytes, *, seq: int, payload: bytes) -> bool:
    """Whether ``data`` (an ICMP message without IP header) answers our request ``seq``."""
    if len(data) < _HEADER.size + len(payload):
        return False
    kind, code, _, _, got_seq = _HEADER.unpack_from(data)
    return (
        kind == _ECHO_REPLY[family]
        and code == 0
        and got_seq == seq
        and data[_HEADER.size : _HEADER.size + len(payload)] == payload
    )


def internet_checksum(data: bytes) -> int:
    """The RFC 1071 ones' complement sum, as a host integer to pack in network order."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unavailable_reason(mode: IcmpMode) -> str | None:
    """Why ``mode``'s socket cannot be opened here, or ``None`` if it can."""
    kind = socket.SOCK_RAW if mode == "raw" else socket.SOCK_DGRAM
    try:
        socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP).close()
    except OSError as e:
        if mode == "raw":
            return f"raw ICMP socket refused ({e.strerror}): the agent lacks CAP_NET_RAW"
        return (
            f"ICMP datagram socket refused ({e.strerror}): group {os.getgid()} is outside "
            f"net.ipv4.ping_group_range ({_ping_group_range()})"
        )
    return None


async def detect_mode(
    *, verify_address: str = "127.0.0.1", timeout: float = 1.0
) -> IcmpMode | None:
    """The first of ``dgram``, ``raw`` that opens and gets an echo from ``verify_address``.

    ``None`` when neither works; each refusal is logged with its reason.
    """
    for mode in MODES:
        reason = unavailable_reason(mode)
        if reason is None:
            try:
                rtt = await ping(verify_address, mode=mode, timeout=timeout)
            except OSError as e:
                reason = f"{mode} ICMP socket opened but a ping to {verify_address} failed: {e!r}"
            else:
                log.info("icmp mode=%s works rtt_ms=%.3f to %s", mode, rtt * 1e3, verify_address)
                return mode
        log.info("icmp mode=%s unavailable: %s", mode, reason)
    return None


def _ping_group_range() -> str:
    try:
        return " ".join(_PING_GROUP_RANGE.read_text().split())
    except OSError:
        return "unknown"
