"""Choosing how this agent probes: ICMP in a mode that works here, or TCP connect.

``auto`` prefers ICMP (an echo costs the target nothing but its kernel) and
falls back to TCP connect when neither ICMP mode is allowed; ``icmp`` and
``tcp`` insist. The choice is made once, at start-up, and announced in
``Hello.methods`` and in every ``Sample.method``.
"""

from __future__ import annotations

import logging

from lasched_agent import icmp, tcp
from lasched_agent.config import MethodChoice
from lasched_agent.prober import ProbeMethod
from lasched_protocol import Target

log = logging.getLogger(__name__)


class NoIcmpError(RuntimeError):
    """``--method icmp`` was asked for, but neither ICMP mode works here."""


async def choose(requested: MethodChoice, *, tcp_port: int, timeout: float) -> ProbeMethod:
    """The probe for ``requested``; raises :class:`NoIcmpError` if ``icmp`` cannot work."""
    mode = None if requested == "tcp" else await icmp.detect_mode()
    if mode is not None:
        log.info("probing with icmp mode=%s timeout_s=%g", mode, timeout)
        return icmp_method(mode, timeout=timeout)
    if requested == "icmp":
        raise NoIcmpError(
            "--method icmp: neither raw ICMP sockets (CAP_NET_RAW) nor ICMP datagram sockets "
            "(net.ipv4.ping_group_range) work here; grant one, or use --method auto or tcp"
        )
    if requested == "auto":
        log.warning("no ICMP mode works here (reasons above): falling back to TCP connect")
    log.info("probing with tcp connect default_port=%d timeout_s=%g", tcp_port, timeout)
    return tcp_method(default_port=tcp_port, timeout=timeout)


def icmp_method(mode: icmp.IcmpMode, *, timeout: float) -> ProbeMethod:
    async def probe(target: Target) -> float:
        return await icmp.ping(target.address, mode=mode, timeout=timeout)

    return ProbeMethod(name="icmp", probe=probe, timeout=timeout)


def tcp_method(*, default_port: int, timeout: float) -> ProbeMethod:
    """TCP connect to each target's port, or ``default_port`` for a target without one."""

    async def probe(target: Target) -> float:
        port = target.port or default_port
        return await tcp.connect_rtt(target.address, port, timeout=timeout)

    return ProbeMethod(name="tcp", probe=probe, timeout=timeout)
