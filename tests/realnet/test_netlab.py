"""The network lab: real namespaces whose RTTs are the configured per-direction delays.

A measured RTT passes when it is within 2 ms + 10 % of d(a -> b) + d(b -> a).
The delay line itself adds to every round trip (two passes through a Python
process, each a wake-up): about 0.3 ms on an idle machine, ~3 ms on a slow or
busy one. So a ping check measures the RTT to ``z``, a node no delay applies
to, right after, and compares the difference: the delay the lab added.

Tests marked ``realnet`` need root, network namespaces and /dev/net/tun; on a
machine without them they fail with what is missing, they are never skipped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.realnet import netlab
from tests.realnet.delayline import Config, ConfigError, DelayQueue, parse_config
from tests.realnet.netlab import (
    NetLab,
    NetLabError,
    free_octet,
    leftovers,
    missing_requirements,
    remove_stale_labs,
)

DELAYS_MS = {
    ("a", "b"): 5.0,
    ("b", "a"): 10.0,
    ("a", "c"): 20.0,
    ("c", "a"): 20.0,
    ("b", "c"): 2.0,
    ("c", "b"): 3.0,
}
PAIRS = [(s, d) for s in "abc" for d in "abc" if s != d]


def untraced() -> dict[str, str]:
    """Our environment without coverage's: a process that times round trips runs as is
    (measuring a Python process under `make test`'s coverage slows its connect by ms)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}


def close_to(measured_ms: float, configured_ms: float) -> bool:
    return abs(measured_ms - configured_ms) <= 2.0 + 0.1 * configured_ms


BASE = "z"
"""A node in every ping-checked lab with no delay to or from it: its RTT is the lab's own."""


async def added_rtt_ms(lab: NetLab, src: str, dst: str, configured_ms: float) -> list[float]:
    """What the lab adds to the RTT from src to dst: ping(src, dst) less ping(src, z).

    Each try is a pair of back-to-back medians of 5 pings, so the delay line's
    own overhead at that moment cancels. Up to three tries, stopping at the
    first close to ``configured_ms``: a machine's hiccup only adds to one
    ping, while a wrong delay is wrong in all three.
    """
    added: list[float] = []
    for _ in range(3):
        rtt = await lab.ping_rtt(src, dst)
        added.append(round(rtt - await lab.ping_rtt(src, BASE), 3))
        if close_to(added[-1], configured_ms):
            break
    return added


async def run(argv: list[str], *, stdin: str | None = None) -> str:
    """stdout of a command that must succeed."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(stdin.encode() if stdin else None)
    assert proc.returncode == 0, argv
    return out.decode()


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[NetLab]:
    """Nodes a, b and c with the asymmetric DELAYS_MS, shared by the module."""
    async with NetLab(["a", "b", "c", BASE], delays_ms=DELAYS_MS) as lab:
        yield lab


# -- the lab on real namespaces -----------------------------------------------


@pytest.mark.realnet
@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{s}-{d}" for s, d in PAIRS])
async def test_ping_rtt_is_the_sum_of_both_directions(lab: NetLab, src: str, dst: str) -> None:
    """The lab adds d(src -> dst) + d(dst -> src) to the RTT from src to dst."""
    configured = lab.configured_rtt_ms(src, dst)
    added = await added_rtt_ms(lab, src, dst, configured)
    assert close_to(added[-1], configured), f"{src}->{dst}: added {added} ms, not {configured}"


@pytest.mark.realnet
@pytest.mark.parametrize("src", ["a", "b", "c"])
async def test_control_address_is_reached_without_delay(lab: NetLab, src: str) -> None:
    """A node pings the root namespace's control address in under 2 ms."""
    assert await lab.ping_rtt(src, lab.control_address) < 2.0


TCP_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as c:
    c.sendall(b"hello from " + sys.argv[3].encode() + b"\\n")
    print(c.makefile().readline(), end="")
"""


@pytest.mark.realnet
async def test_tcp_from_a_node_reaches_a_server_in_the_root_namespace(lab: NetLab) -> None:
    """A process started with exec_in talks TCP to a server on control_address."""

    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(upper, lab.control_address, 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        argv = [sys.executable, "-c", TCP_CLIENT, lab.control_address, str(port), "b"]
        proc = await lab.exec_in("b", argv)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err.decode()
    assert out == b"HELLO FROM B\n"


TCP_SERVER = """
import hashlib, socket, sys
s = socket.create_server((sys.argv[1], 0))
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.sendall(c.recv(1))
h = hashlib.sha256()
while data := c.recv(65536):
    h.update(data)
c.sendall(h.hexdigest().encode())
c.close()
"""

TCP_TIMED_CLIENT = """
import hashlib, json, socket, sys, time
blob = bytes(range(256)) * 1024
t0 = time.perf_counter()
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
t1 = time.perf_counter()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c.sendall(b"x")
assert c.recv(1) == b"x"
t2 = time.perf_counter()
c.sendall(blob)
c.shutdown(socket.SHUT_WR)
digest = b""
while data := c.recv(100):
    digest += data
print(json.dumps({
    "connect_ms": (t1 - t0) * 1000,
    "echo_ms": (t2 - t1) * 1000,
    "intact": digest.decode() == hashlib.sha256(blob).hexdigest(),
}))
"""


async def timed_exchange(lab: NetLab, src: str, dst: str) -> dict[str, Any]:
    """One TCP connection from ``src`` to a server on ``dst``: its timings and integrity."""
    server_node = lab.node(dst)
    server = await lab.exec_in(
        dst, [sys.executable, "-c", TCP_SERVER, server_node.address], env=untraced()
    )
    assert server.stdout is not None
    port = (await asyncio.wait_for(server.stdout.readline(), 10)).decode().strip()
    client = await lab.exec_in(
        src, [sys.executable, "-c", TCP_TIMED_CLIENT, server_node.address, port], env=untraced()
    )
    out, err = await asyncio.wait_for(client.communicate(), 20)
    assert client.returncode == 0, err.decode()
    await asyncio.wait_for(server.wait(), 10)
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.realnet
async def test_tcp_between_nodes_takes_the_configured_rtt(lab: NetLab) -> None:
    """Connecting and a 1-byte echo from a to c take one RTT each; 256 KiB arrive intact.

    The configured delay is a floor that a loaded machine only adds to, so
    the fastest of up to three exchanges is the one compared.
    """
    configured = lab.configured_rtt_ms("a", "c")
    tries = []
    for _ in range(3):
        result = await timed_exchange(lab, "a", "c")
        assert result["intact"]
        tries.append(result)
        if close_to(result["connect_ms"], configured) and close_to(result["echo_ms"], configured):
            break
    best = min(tries, key=lambda r: float(r["connect_ms"]) + float(r["echo_ms"]))
    assert close_to(best["connect_ms"], configured), tries
    assert close_to(best["echo_ms"], configured), tries


@pytest.mark.realnet
async def test_set_delays_changes_the_rtt() -> None:
    """After set_delays the RTT is the new sum, without restarting the lab."""
    async with NetLab(["a", "b", BASE]) as lab:
        assert close_to((added := await added_rtt_ms(lab, "a", "b", 0.0))[-1], 0.0), added
        await lab.set_delays({("a", "b"): 15, ("b", "a"): 5})
        assert close_to((added := await added_rtt_ms(lab, "a", "b", 20.0))[-1], 20.0), added


@pytest.mark.realnet
async def test_teardown_leaves_nothing_behind() -> None:
    """Leaving the lab kills its processes and removes its namespaces, veth and lock."""
    async with NetLab(["a", "b"], delays_ms={("a", "b"): 1}) as lab:
        lab_id, control = lab.id, lab.control_address
        sleeper = await lab.exec_in("a", ["sleep", "600"])
        assert len(leftovers(lab_id)) == 5  # 3 namespaces, the root veth, the lock file
    assert leftovers(lab_id) == []
    assert sleeper.returncode is not None
    block = ".".join(control.split(".")[:2]) + "."
    assert block not in await run(["ip", "-4", "route", "show", "table", "all"])
    assert f"lsn-{lab_id}-" not in await run(["ip", "netns", "list"])


@pytest.mark.realnet
async def test_failed_setup_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A delay line that cannot start fails the set-up with its stderr, and nothing remains."""
    monkeypatch.setattr(netlab, "_DELAYLINE_MODULE", "tests.realnet.no_such_module")
    lab = NetLab(["a", "b"])
    with pytest.raises(NetLabError, match=r"delay line did not start.*No module named"):
        async with lab:
            pass
    assert leftovers(lab.id) == []


@pytest.mark.realnet
async def test_a_dead_runs_lab_is_removed_and_a_live_one_kept() -> None:
    """Namespaces whose lock nobody holds are deleted; a running lab's are not."""
    stale = "dead00"
    async with NetLab(["a", "b", BASE], delays_ms={("a", "b"): 3}) as live:
        await run(
            ["ip", "-batch", "-"],
            stdin=f"netns add lsn-{stale}-r\nnetns add lsn-{stale}-x\n"
            f"link add name lsn-{stale} type veth peer name ctl netns lsn-{stale}-r\n",
        )
        removed = await remove_stale_labs()
        assert stale in removed
        assert live.id not in removed
        assert leftovers(stale) == []
        assert close_to((added := await added_rtt_ms(live, "a", "b", 3.0))[-1], 3.0), added


# -- pure parts: no namespaces ------------------------------------------------


def ipv4(src: str, dst: str, tag: int = 0) -> bytes:
    """A minimal IPv4 header from src to dst; ``tag`` makes packets distinguishable."""
    header = bytes([0x45, 0, 0, 20, tag >> 8, tag & 0xFF]) + bytes(6)
    return header + ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed


def config(delays_ms: dict[str, dict[str, float]], jitter_ms: float = 0) -> Config:
    nodes = {"a": "10.9.1.0/24", "b": "10.9.2.0/24"}
    return parse_config(
        json.dumps({"nodes": nodes, "delays_ms": delays_ms, "jitter_ms": jitter_ms})
    )


def test_delay_queue_holds_each_direction_for_its_own_delay() -> None:
    """a->b waits 5 ms, b->a 10 ms, a packet from outside the lab not at all."""
    q = DelayQueue(config({"a": {"b": 5}, "b": {"a": 10}}))
    ab, ba = ipv4("10.9.1.2", "10.9.2.2"), ipv4("10.9.2.2", "10.9.1.2")
    outside = ipv4("10.9.250.1", "10.9.1.2")
    for packet in (ab, ba, outside):
        q.push(packet, now=1.0)
    assert q.pop_due(1.0) == [outside]
    assert q.next_due() == pytest.approx(1.005)
    assert q.pop_due(1.0049) == []
    assert q.pop_due(1.005) == [ab]
    assert q.pop_due(1.010) == [ba]
    assert q.next_due() is None


def test_jitter_never_reorders_a_pair() -> None:
    """With jitter almost as large as the delay, a->b packets still leave in arrival order."""
    q = DelayQueue(config({"a": {"b": 10}}, jitter_ms=9))
    packets = [ipv4("10.9.1.2", "10.9.2.2", tag) for tag in range(200)]
    for i, packet in enumerate(packets):
        q.push(packet, now=i * 0.0001)
    assert q.pop_due(1.0) == packets


def test_a_shortened_delay_does_not_overtake_waiting_packets() -> None:
    """After a reload to a shorter delay, new packets wait behind the old ones."""
    q = DelayQueue(config({"a": {"b": 10}}))
    old, new = ipv4("10.9.1.2", "10.9.2.2", 1), ipv4("10.9.1.2", "10.9.2.2", 2)
    q.push(old, now=0.0)
    q.reconfigure(config({"a": {"b": 1}}))
    q.push(new, now=0.001)
    assert q.pop_due(0.005) == []
    assert q.pop_due(0.010) == [old, new]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"nodes": {"a": "10.9.1.0/33"}}', "nodes.a"),
        ('{"nodes": {"a": "10.9.1.0/24"}, "delays_ms": {"a": {"z": 1}}}', "delays_ms.a.z"),
        ('{"nodes": {"a": "10.9.1.0/24"}, "delays_ms": {"z": {}}}', "delays_ms.z"),
        ('{"nodes": {"a": "10.9.1.0/24"}, "delays_ms": {"a": {"a": -1}}}', "delays_ms.a.a"),
        ('{"jitter_ms": "3"}', "jitter_ms"),
        ('{"tun": "a-name-longer-than-15"}', "tun"),
        ('{"seed": 1.5}', "seed"),
    ],
    ids=["subnet", "unknown-dst", "unknown-src", "negative", "jitter-type", "tun", "seed"],
)
def test_a_bad_config_names_the_field(text: str, field: str) -> None:
    """Every config error starts with the field that is wrong."""
    with pytest.raises(ConfigError, match=rf"^{field}\b"):
        parse_config(text)


def test_missing_requirements_are_all_named() -> None:
    """Not root, no ip command and no TUN device are each reported."""
    missing = missing_requirements(euid=1000, ip=None, tun=Path("/nonexistent/tun"))
    assert len(missing) == 3
    assert "root" in missing[0]
    assert "iproute2" in missing[1]
    assert "/nonexistent/tun" in missing[2]


def test_free_octet_skips_blocks_with_routes_inside() -> None:
    """A /16 holding any route is taken; a broader route around it is not."""
    used = [
        ipaddress.IPv4Network("10.200.250.0/24"),
        ipaddress.IPv4Network("10.201.0.0/16"),
        ipaddress.IPv4Network("10.0.0.0/8"),
    ]
    assert free_octet(used) == 202


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nodes": []}, "nodes"),
        ({"nodes": ["a", "a"]}, "unique"),
        ({"nodes": ["r"]}, "'r'"),
        ({"nodes": ["Upper"]}, "'Upper'"),
        ({"nodes": ["a"], "delays_ms": {("a", "z"): 1}}, "no node 'z'"),
        ({"nodes": ["a", "b"], "delays_ms": {("a", "b"): -1}}, "non-negative"),
        ({"nodes": ["a"], "jitter_ms": -1}, "jitter_ms"),
    ],
    ids=["empty", "duplicate", "router-name", "uppercase", "unknown-node", "negative", "jitter"],
)
def test_netlab_arguments_are_checked(kwargs: dict[str, object], message: str) -> None:
    """Bad nodes, delays or jitter raise ValueError naming the problem, before any I/O."""
    with pytest.raises(ValueError, match=message):
        NetLab(**kwargs)  # type: ignore[arg-type]
