"""Fan-out against local stand-ins for scheduler replicas, one aiohttp server per port.

The resolver is the test's: it answers with the servers' addresses, as a
headless Service's DNS would with the replicas' pod IPs. Rounds run on a
virtual clock; lookups, connections and backoff run in real (short) time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from aiohttp import web

from lasched_agent.__main__ import run as run_agent
from lasched_agent.backoff import Backoff
from lasched_agent.config import AgentConfig
from lasched_agent.fanout import Address, FanOut
from lasched_agent.prober import ProbeMethod, Prober
from lasched_protocol import Hello, Samples, Target, Targets
from tests.unit.agent.test_stream import RTTS, TARGETS, Peer, Scheduler, eventually
from tests.unit.agent.virtual_clock import VirtualClock

NAME = "lasched-replicas.test"
URL = f"ws://{NAME}:10271/agents/v1"
HELLO = Hello(0, "edge-1", "0.1.0", ("icmp",), 32)
INTERVAL = 5.0


@dataclass
class Replica(Scheduler):
    """A scheduler replica's agent endpoint that also records each upgrade's Host header."""

    address: Address = ("", 0)
    hosts: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hosts.append(request.headers.get("Host", ""))
        return await super().handle(request)


class Dns:
    """The resolver: answers with whatever addresses the test put in :attr:`answer`."""

    def __init__(self) -> None:
        self.answer: set[Address] = set()
        self.failing = False
        self.asked = 0

    async def __call__(self, host: str, port: int) -> set[Address]:
        assert (host, port) == (NAME, 10271)
        self.asked += 1
        if self.failing:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return set(self.answer)


StartReplica = Callable[[], Awaitable[Replica]]


@pytest.fixture
async def start_replica() -> AsyncIterator[StartReplica]:
    """Starts one more replica on its own port; all are stopped after the test."""
    runners: list[web.AppRunner] = []

    async def start() -> Replica:
        replica = Replica()
        replica.accepting.set()
        app = web.Application()
        app.router.add_get("/agents/v1", replica.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        replica.address = ("127.0.0.1", runner.addresses[0][1])
        return replica

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("token-one\n")
    return path


def make_fan_out(dns: Dns, clock: VirtualClock, token_file: Path | None) -> FanOut:
    return FanOut(
        url=URL,
        node="edge-1",
        prober=Prober(ProbeMethod.fixed(RTTS), probes_per_target=2, clock=clock),
        token_file=token_file,
        heartbeat_seconds=30.0,
        resolve_seconds=0.02,
        resolver=dns,
        backoff=lambda: Backoff(initial=0.01, maximum=0.05),
    )


@contextlib.asynccontextmanager
async def running(fan_out: FanOut) -> AsyncIterator[None]:
    """Run the fan-out for the block; it must still be running at the end."""
    task = asyncio.create_task(fan_out.run(), name="fan-out-under-test")
    try:
        yield
        assert not task.done(), task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def connected(*replicas: Replica) -> list[Peer]:
    """Each replica's next agent connection, past its Hello."""
    peers = [await r.peer() for r in replicas]
    for peer in peers:
        assert await peer.next() == HELLO
    return peers


async def send_targets(fan_out: FanOut, peer: Peer, targets: tuple[Target, ...]) -> None:
    await peer.send(Targets(seq=0, targets=targets, interval_seconds=INTERVAL))
    await eventually(lambda: fan_out.prober.targets == targets)


async def samples(peer: Peer) -> Samples:
    message = await peer.next()
    assert isinstance(message, Samples), message
    return message


async def test_every_replica_gets_hello_then_the_same_samples(
    start_replica: StartReplica, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Both resolved replicas get Hello with the token and the service's Host, then each
    round's Samples, same content and seq; identical Targets from both apply once."""
    a, b = await start_replica(), await start_replica()
    dns, clock = Dns(), VirtualClock()
    dns.answer = {a.address, b.address}
    fan_out = make_fan_out(dns, clock, token_file)
    with caplog.at_level(logging.INFO, logger="lasched_agent"):
        async with running(fan_out):
            pa, pb = await connected(a, b)
            assert a.hosts == b.hosts == [f"{NAME}:10271"]
            assert pa.authorization == pb.authorization == "Bearer token-one"
            await send_targets(fan_out, pa, TARGETS)
            await pb.send(Targets(seq=9, targets=TARGETS, interval_seconds=INTERVAL))
            for seq in (1, 2):
                await clock.advance(INTERVAL)
                sa, sb = await samples(pa), await samples(pb)
                assert sa == sb
                assert sa.seq == seq
                assert {s.target for s in sa.samples} == {"edge-2", "users-eu"}
    assert caplog.text.count("targets updated") == 1


async def test_a_replica_gone_from_dns_is_closed_and_the_others_keep_streaming(
    start_replica: StartReplica, token_file: Path
) -> None:
    """An address no longer in the answer: its connection closes with 1001, the rest go on."""
    a, b = await start_replica(), await start_replica()
    dns, clock = Dns(), VirtualClock()
    dns.answer = {a.address, b.address}
    fan_out = make_fan_out(dns, clock, token_file)
    async with running(fan_out):
        pa, pb = await connected(a, b)
        await send_targets(fan_out, pa, TARGETS)
        await clock.advance(INTERVAL)
        assert (await samples(pa)).seq == (await samples(pb)).seq == 1

        dns.answer = {a.address}
        assert await pb.wait_closed() == 1001
        assert set(fan_out.clients) == {a.address}
        await clock.advance(INTERVAL)
        assert (await samples(pa)).seq == 2
        assert b.peers.empty()  # not reconnected


async def test_a_new_replica_is_connected_and_caught_up_at_once(
    start_replica: StartReplica, token_file: Path
) -> None:
    """A replica that appears gets Hello, then at once the latest samples measured before it
    came, then every round like the others."""
    a, c = await start_replica(), await start_replica()
    dns, clock = Dns(), VirtualClock()
    dns.answer = {a.address}
    fan_out = make_fan_out(dns, clock, token_file)
    async with running(fan_out):
        (pa,) = await connected(a)
        await send_targets(fan_out, pa, TARGETS)
        await clock.advance(INTERVAL)
        first = await samples(pa)

        dns.answer = {a.address, c.address}
        (pc,) = await connected(c)
        caught_up = await samples(pc)  # no round has run since
        assert caught_up == first

        await clock.advance(INTERVAL)
        sa, sc = await samples(pa), await samples(pc)
        assert (sa.seq, sc.seq) == (2, 2)
        assert sa.samples == sc.samples


async def test_the_most_recent_targets_from_any_replica_apply(
    start_replica: StartReplica, token_file: Path
) -> None:
    """Replicas that disagree for a while (one saw a node first): the latest Targets wins."""
    a, b = await start_replica(), await start_replica()
    dns, clock = Dns(), VirtualClock()
    dns.answer = {a.address, b.address}
    fan_out = make_fan_out(dns, clock, token_file)
    async with running(fan_out):
        pa, pb = await connected(a, b)
        await send_targets(fan_out, pa, TARGETS)
        await send_targets(fan_out, pb, TARGETS[:1])
        await send_targets(fan_out, pa, TARGETS)
        await clock.advance(INTERVAL)
        assert {s.target for s in (await samples(pb)).samples} == {"edge-2", "users-eu"}


async def test_a_replica_that_is_down_holds_back_no_other_and_gets_what_it_missed(
    start_replica: StartReplica, token_file: Path
) -> None:
    """Upgrades refused by one replica: the other streams every round, and the first gets
    the latest sample per target once it accepts again."""
    a, b = await start_replica(), await start_replica()
    b.accepting.clear()
    dns, clock = Dns(), VirtualClock()
    dns.answer = {a.address, b.address}
    fan_out = make_fan_out(dns, clock, token_file)
    async with running(fan_out):
        (pa,) = await connected(a)
        await send_targets(fan_out, pa, TARGETS)
        for seq in (1, 2, 3):
            await clock.advance(INTERVAL)
            assert (await samples(pa)).seq == seq
        await eventually(lambda: b.refused >= 2)  # its own backoff, its own retries
        assert len(fan_out.clients[b.address].buffer) == 2

        b.accepting.set()
        (pb,) = await connected(b)
        flushed = await samples(pb)
    assert flushed.seq == 1
    assert flushed.time == clock.time()
    assert {s.target for s in flushed.samples} == {"edge-2", "users-eu"}


async def test_a_failed_lookup_keeps_the_connections(
    start_replica: StartReplica, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A lookup that fails at start is retried; one that fails later closes nothing."""
    a = await start_replica()
    dns, clock = Dns(), VirtualClock()
    dns.failing = True
    dns.answer = {a.address}
    fan_out = make_fan_out(dns, clock, token_file)
    async with running(fan_out):
        await eventually(lambda: dns.asked >= 2)
        assert not fan_out.clients
        dns.failing = False
        (pa,) = await connected(a)

        dns.failing = True
        asked = dns.asked
        await eventually(lambda: dns.asked >= asked + 3)
        await send_targets(fan_out, pa, TARGETS)
        await clock.advance(INTERVAL)
        assert (await samples(pa)).seq == 1
        assert not pa.closed.is_set()
    assert "cannot resolve the scheduler's replicas host=lasched-replicas.test" in caplog.text


async def test_each_connection_names_its_address_and_keeps_the_host_name() -> None:
    """IPv6 addresses are bracketed in the URL, path and query kept; Host is the URL's name."""

    async def resolver(host: str, port: int) -> set[Address]:
        assert (host, port) == (NAME, 443)  # wss's default port
        return {("::1", 9)}

    fan_out = FanOut(
        url=f"wss://{NAME}/agents/v1?x=1",
        node="edge-1",
        prober=Prober(ProbeMethod.fixed(RTTS)),
        resolver=resolver,
        backoff=lambda: Backoff(initial=0.01, maximum=0.05),
    )
    async with running(fan_out):
        await eventually(lambda: fan_out.clients)
        client = fan_out.clients[("::1", 9)]
    assert client.url == "wss://[::1]:9/agents/v1?x=1"
    assert client.host == NAME


async def test_agent_main_with_fan_out_resolves_the_url(
    start_replica: StartReplica, tmp_path: Path
) -> None:
    """``--fan-out`` wires the resolver in: a literal address resolves to itself."""
    a = await start_replica()
    ip, port = a.address
    cfg = AgentConfig(
        scheduler_url=f"ws://{ip}:{port}/agents/v1",
        node="edge-1",
        token_file=None,
        method="tcp",
        fan_out=True,
    )
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(cfg, stop=stop), name="agent-main")
    peer = await a.peer()
    assert await peer.next() == replace(HELLO, methods=("tcp",))
    assert a.hosts == [f"{ip}:{port}"]
    stop.set()
    await asyncio.wait_for(agent, 5)
    assert await peer.wait_closed() == 1001
