"""Real probes: ICMP echo to loopback in the detected mode, and TCP-connect RTTs.

The ICMP tests need raw sockets (root, as here and in CI) and fail without
them. The datagram-mode tests run the probe in a private network namespace
(``unshare -n``) where ``net.ipv4.ping_group_range`` can be opened and
CAP_NET_RAW dropped without touching the host's settings.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import uvloop

from lasched_agent import icmp, methods, tcp
from lasched_protocol import Target


async def test_detected_mode_pings_loopback() -> None:
    """Start-up detection finds a working ICMP mode and it measures a positive RTT."""
    mode = await icmp.detect_mode()
    assert mode is not None, "neither raw nor datagram ICMP sockets work here"
    rtt = await icmp.ping("127.0.0.1", mode=mode, timeout=2.0)
    assert 0 < rtt < 1


async def test_raw_mode_pings_loopback() -> None:
    """With CAP_NET_RAW (root), the raw socket opens and aioping measures a positive RTT."""
    assert icmp.unavailable_reason("raw") is None
    rtt = await icmp.ping_raw("127.0.0.1", timeout=2.0)
    assert 0 < rtt < 1


async def test_icmp_probe_method_reports_icmp() -> None:
    """The ICMP probe method pings a target's address and is named icmp on the wire."""
    mode = await icmp.detect_mode()
    assert mode is not None
    method = methods.icmp_method(mode, timeout=2.0)
    assert method.name == "icmp"
    assert await method.probe(Target("self", "127.0.0.1", "node")) > 0


def test_echo_request_checksum_verifies_and_reply_matching() -> None:
    """Our echo request sums to zero and only a reply with our sequence and payload matches."""
    req = icmp.echo_request(socket.AF_INET, seq=513, payload=b"12345678")
    assert icmp.internet_checksum(req) == 0
    reply = bytes([0, 0]) + req[2:]
    assert icmp.is_echo_reply(socket.AF_INET, reply, seq=513, payload=b"12345678")
    assert not icmp.is_echo_reply(socket.AF_INET, reply, seq=514, payload=b"12345678")
    assert not icmp.is_echo_reply(socket.AF_INET, reply, seq=513, payload=b"87654321")
    assert not icmp.is_echo_reply(socket.AF_INET, req, seq=513, payload=b"12345678")


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


async def test_tcp_connect_rtt_to_a_listener(listening: int) -> None:
    """Connecting to a listening port measures the SYN / SYN-ACK round trip."""
    rtt = await tcp.connect_rtt("127.0.0.1", listening, timeout=2.0)
    assert 0 < rtt < 1


async def test_tcp_connect_rtt_to_a_closed_port(closed_port: int) -> None:
    """A refused connection (RST) is still a round trip and yields an RTT."""
    rtt = await tcp.connect_rtt("127.0.0.1", closed_port, timeout=2.0)
    assert 0 < rtt < 1


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listener whose accept queue is full, so the kernel drops further SYNs."""
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(socket.socket())
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        for _ in range(3):
            client = stack.enter_context(socket.socket())
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(("127.0.0.1", port))
        time.sleep(0.05)  # let the handshakes that fit complete
        yield port


async def test_tcp_probe_without_answer_times_out(full_backlog: int) -> None:
    """A SYN that gets no answer ends in TimeoutError (an OSError: a lost probe)."""
    with pytest.raises(TimeoutError):
        await tcp.connect_rtt("127.0.0.1", full_backlog, timeout=0.3)


async def test_tcp_method_uses_target_port_else_default(listening: int, closed_port: int) -> None:
    """A target's own port wins; one without a port gets the default."""
    method = methods.tcp_method(default_port=closed_port, timeout=2.0)
    assert method.name == "tcp"
    assert await method.probe(Target("a", "127.0.0.1", "endpoint", port=listening)) > 0
    assert await method.probe(Target("b", "127.0.0.1", "node")) > 0


async def test_choose_tcp_when_asked() -> None:
    """--method tcp skips ICMP detection altogether."""
    chosen = await methods.choose("tcp", tcp_port=10250, timeout=1.0)
    assert (chosen.name, chosen.timeout) == ("tcp", 1.0)


def test_probes_work_on_uvloop(listening: int) -> None:
    """The agent's loop (uvloop) runs every probe: raw ICMP, TCP connect and the detection."""

    async def probe_all() -> tuple[float, float, icmp.IcmpMode | None]:
        raw = await icmp.ping_raw("127.0.0.1", timeout=2.0)
        connect = await tcp.connect_rtt("127.0.0.1", listening, timeout=2.0)
        return raw, connect, await icmp.detect_mode()

    raw, connect, mode = uvloop.run(probe_all())
    assert raw > 0
    assert connect > 0
    assert mode is not None


# --- datagram mode and no ICMP at all, in a private network namespace ---------------

_SCRIPT = """
import uvloop
from lasched_agent import icmp, methods

async def main():
    mode = await icmp.detect_mode()
    rtt = await icmp.ping_dgram("127.0.0.1", timeout=2.0) if mode == "dgram" else 0.0
    auto = await methods.choose("auto", tcp_port=10250, timeout=1.0)
    try:
        await methods.choose("icmp", tcp_port=10250, timeout=1.0)
        refused = "no"
    except methods.NoIcmpError as e:
        refused = str(e)
    print(mode, rtt, auto.name, refused, sep="|")

uvloop.run(main())
"""


def _netns_available() -> bool:
    if not (shutil.which("unshare") and shutil.which("setpriv") and shutil.which("ip")):
        return False
    probe = subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True)
    return probe.returncode == 0


netns = pytest.mark.skipif(
    not _netns_available(), reason="needs unshare -n and setpriv (root with CAP_SYS_ADMIN)"
)


def _run_in_netns(ping_group_range: str, *, net_raw: bool) -> list[str]:
    drop = "" if net_raw else "setpriv --bounding-set -net_raw --inh-caps -net_raw"
    shell = (
        "ip link set lo up && "
        f"echo '{ping_group_range}' > /proc/sys/net/ipv4/ping_group_range && "
        f'exec {drop} "$0" -c "$1"'
    )
    out = subprocess.run(
        ["unshare", "-n", "sh", "-c", shell, sys.executable, _SCRIPT],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip().split("|")


@netns
def test_datagram_mode_without_net_raw() -> None:
    """Without CAP_NET_RAW but inside ping_group_range, detection picks dgram and it pings."""
    mode, rtt, auto, refused = _run_in_netns("0 0", net_raw=False)
    assert (mode, auto, refused) == ("dgram", "icmp", "no")
    assert 0 < float(rtt) < 1


@netns
def test_datagram_mode_preferred_when_both_work() -> None:
    """With CAP_NET_RAW and inside ping_group_range, detection prefers dgram."""
    mode, rtt, auto, _ = _run_in_netns("0 0", net_raw=True)
    assert (mode, auto) == ("dgram", "icmp")
    assert 0 < float(rtt) < 1


@netns
def test_tcp_fallback_without_any_icmp() -> None:
    """Without CAP_NET_RAW and outside ping_group_range, auto falls back to TCP; icmp refuses."""
    mode, _, auto, refused = _run_in_netns("1 0", net_raw=False)
    assert (mode, auto) == ("None", "tcp")
    assert "--method icmp: neither raw ICMP sockets (CAP_NET_RAW)" in refused
