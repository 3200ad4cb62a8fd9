"""The agent's WebSocket client against a small local scheduler endpoint, over real sockets.

Rounds run on a virtual clock, so the test decides when a batch of samples
exists; the connection, heartbeats and backoff run in real (short) time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import WSMsgType, web

from lasched_agent.__main__ import run as run_agent
from lasched_agent.backoff import Backoff
from lasched_agent.config import AgentConfig
from lasched_agent.numa import TopologyWatch
from lasched_agent.prober import ProbeMethod, Prober
from lasched_agent.stream import AgentClient
from lasched_protocol import (
    ACCEPTS_TOPOLOGY,
    Heartbeat,
    Hello,
    Message,
    Samples,
    Target,
    Targets,
    Topology,
    decode,
    encode,
)
from tests import fake_sysfs
from tests.fake_sysfs import DISPLAY_3D, NVIDIA
from tests.unit.agent.virtual_clock import VirtualClock

WAIT = 5.0  # real seconds any single expected event may take
TARGETS = (
    Target("edge-2", "10.0.0.2", "node"),
    Target("users-eu", "192.0.2.10", "endpoint", port=443),
)
RTTS = {"edge-2": 1.5, "users-eu": 40.0}


@dataclass
class Peer:
    """One agent connection as the scheduler sees it."""

    ws: web.WebSocketResponse
    authorization: str | None
    inbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None

    async def next(self) -> Message:
        return await asyncio.wait_for(self.inbox.get(), WAIT)

    async def next_of(self, kind: type[Message]) -> Message:
        while not isinstance(message := await self.next(), kind):
            pass
        return message

    async def send(self, message: Message) -> None:
        await self.ws.send_bytes(encode(message))

    async def wait_closed(self) -> int | None:
        await asyncio.wait_for(self.closed.wait(), WAIT)
        return self.close_code


@dataclass
class Scheduler:
    """A stand-in for the scheduler's ``GET /agents/v1`` endpoint."""

    url: str = ""
    peers: asyncio.Queue[Peer] = field(default_factory=asyncio.Queue)
    refuse: list[int] = field(default_factory=list)  # statuses for the next upgrades
    accepting: asyncio.Event = field(default_factory=asyncio.Event)
    refused: int = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.refuse or not self.accepting.is_set():
            self.refused += 1
            return web.Response(status=self.refuse.pop(0) if self.refuse else 503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        peer = Peer(ws, request.headers.get("Authorization"))
        await self.peers.put(peer)
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                await peer.inbox.put(decode(msg.data))
        peer.close_code = ws.close_code
        peer.closed.set()
        return ws

    async def peer(self) -> Peer:
        return await asyncio.wait_for(self.peers.get(), WAIT)


@pytest.fixture
async def scheduler() -> AsyncIterator[Scheduler]:
    sched = Scheduler()
    sched.accepting.set()
    app = web.Application()
    app.router.add_get("/agents/v1", sched.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sched.url = f"ws://127.0.0.1:{port}/agents/v1"
    yield sched
    await runner.cleanup()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("token-one\n")
    return path


def make_client(
    sched: Scheduler, token_file: Path | None, clock: VirtualClock, **kwargs: float
) -> AgentClient:
    prober = Prober(ProbeMethod.fixed(RTTS), probes_per_target=2, clock=clock)
    return AgentClient(
        url=sched.url,
        node="edge-1",
        prober=prober,
        token_file=token_file,
        heartbeat_seconds=kwargs.get("heartbeat_seconds", 30.0),
        backoff=Backoff(initial=0.01, maximum=0.05),
    )


@contextlib.asynccontextmanager
async def running(client: AgentClient) -> AsyncIterator[asyncio.Task[None]]:
    """Run the client for the block; it must still be running at the end."""
    task = asyncio.create_task(client.run(), name="agent-under-test")
    try:
        yield task
        assert not task.done(), task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def eventually(condition: Callable[[], object]) -> None:
    """Poll ``condition`` in real time until it holds, for at most WAIT seconds."""
    step = 0.005
    for _ in range(int(WAIT / step)):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"still false after {WAIT}s")


async def rotate_token(path: Path, token: str) -> None:
    await asyncio.to_thread(path.write_text, token + "\n")


async def test_hello_first_with_bearer_token_reread_on_reconnect(
    scheduler: Scheduler, token_file: Path
) -> None:
    """Each connection starts with Hello (seq 0) and carries the token file's current content."""
    client = make_client(scheduler, token_file, VirtualClock())
    async with running(client):
        first = await scheduler.peer()
        assert first.authorization == "Bearer token-one"
        assert await first.next() == Hello(0, "edge-1", "0.1.0", ("icmp",), 32)
        await rotate_token(token_file, "token-two")  # as the kubelet does
        await first.ws.close()
        second = await scheduler.peer()
        assert second.authorization == "Bearer token-two"
        assert await second.next() == Hello(0, "edge-1", "0.1.0", ("icmp",), 32)
    assert client.connections == 2


async def test_targets_lead_to_one_samples_per_interval_with_increasing_seq(
    scheduler: Scheduler, token_file: Path
) -> None:
    """After Targets, every interval sends one Samples; seq grows by one per frame."""
    clock = VirtualClock()
    client = make_client(scheduler, token_file, clock)
    async with running(client):
        peer = await scheduler.peer()
        assert isinstance(await peer.next(), Hello)
        await peer.send(Targets(seq=0, targets=TARGETS, interval_seconds=5.0))
        await eventually(lambda: client.prober.targets)
        sent: list[Message] = []
        for _ in range(3):
            await clock.advance(5.0)
            sent.append(await peer.next())
    assert [m.seq for m in sent] == [1, 2, 3]
    assert all(isinstance(m, Samples) for m in sent)
    first = sent[0]
    assert isinstance(first, Samples)
    assert first.time == clock.time() - 10.0
    by_target = {s.target: s for s in first.samples}
    assert set(by_target) == {"edge-2", "users-eu"}
    assert (by_target["edge-2"].min_ms, by_target["edge-2"].count) == (1.5, 2)
    assert (by_target["users-eu"].median_ms, by_target["users-eu"].loss) == (40.0, 0.0)


async def test_heartbeat_sent_while_connected(scheduler: Scheduler, token_file: Path) -> None:
    """A Heartbeat goes out every heartbeat_seconds, also with no targets."""
    client = make_client(scheduler, token_file, VirtualClock(), heartbeat_seconds=0.05)
    async with running(client):
        peer = await scheduler.peer()
        assert isinstance(await peer.next(), Hello)
        beats = [await peer.next(), await peer.next()]
    assert all(isinstance(b, Heartbeat) for b in beats)
    assert [b.seq for b in beats] == [1, 2]
    assert isinstance(beat := beats[0], Heartbeat)
    assert 0 < beat.time <= time.time()


async def test_samples_buffered_while_disconnected_are_flushed_after_reconnect(
    scheduler: Scheduler, token_file: Path
) -> None:
    """Rounds measured during an outage are sent after reconnecting, latest per target."""
    clock = VirtualClock()
    client = make_client(scheduler, token_file, clock)
    async with running(client):
        peer = await scheduler.peer()
        await peer.next_of(Hello)
        await peer.send(Targets(seq=0, targets=TARGETS, interval_seconds=5.0))
        await eventually(lambda: client.prober.targets)
        await clock.advance(5.0)
        assert isinstance(await peer.next(), Samples)

        scheduler.accepting.clear()  # the scheduler restarts: upgrades fail for a while
        await peer.ws.close()
        await eventually(lambda: scheduler.refused >= 2)  # the agent keeps trying
        await clock.advance(15.0)  # three rounds measured while disconnected
        assert len(client.buffer) == 2  # latest sample per target only
        last_round = clock.time()

        scheduler.accepting.set()
        again = await scheduler.peer()
        assert isinstance(await again.next(), Hello)
        flushed = await again.next()
    assert isinstance(flushed, Samples)
    assert flushed.seq == 1
    assert flushed.time == last_round
    assert {s.target for s in flushed.samples} == {"edge-2", "users-eu"}
    assert len(client.buffer) == 0


async def test_garbage_frame_from_scheduler_closes_1007_and_reconnects(
    scheduler: Scheduler, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A frame that does not decode is logged, closed with 1007, and the agent reconnects."""
    client = make_client(scheduler, token_file, VirtualClock())
    async with running(client):
        peer = await scheduler.peer()
        await peer.next_of(Hello)
        await peer.ws.send_bytes(b"\x00 not json")
        assert await peer.wait_closed() == 1007
        again = await scheduler.peer()
        assert isinstance(await again.next(), Hello)
    assert "malformed frame from the scheduler: frame is not JSON" in caplog.text


async def test_refused_token_is_logged_and_retried(
    scheduler: Scheduler, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """HTTP 401 and 403 on the upgrade are logged as a token refusal; the agent keeps trying."""
    scheduler.refuse = [401, 403]
    client = make_client(scheduler, token_file, VirtualClock())
    with caplog.at_level(logging.ERROR, logger="lasched_agent"):
        async with running(client):
            peer = await scheduler.peer()
            assert isinstance(await peer.next(), Hello)
    refusals = [r for r in caplog.records if "refused the agent's token" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.ERROR, logging.ERROR]
    assert "status=401" in refusals[0].getMessage()


async def test_policy_close_after_hello_is_logged_and_retried(
    scheduler: Scheduler, token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A close with 1008 after Hello is logged with the scheduler's reason; the agent retries."""
    client = make_client(scheduler, token_file, VirtualClock())
    async with running(client):
        peer = await scheduler.peer()
        await peer.next_of(Hello)
        await peer.ws.close(code=1008, message=b"token is for node edge-7")
        again = await scheduler.peer()
        assert isinstance(await again.next(), Hello)
    [record] = [r for r in caplog.records if "refused this agent" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "close code 1008, reason 'token is for node edge-7'" in record.getMessage()


async def test_missing_token_file_is_logged_and_retried(
    scheduler: Scheduler, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a token file the agent does not connect, says why, and connects once it appears."""
    token_file = tmp_path / "later"
    client = make_client(scheduler, token_file, VirtualClock())
    async with running(client):
        await eventually(lambda: "cannot read the agent's token" in caplog.text)
        assert scheduler.peers.empty()
        await rotate_token(token_file, "token-late")
        peer = await scheduler.peer()
        assert peer.authorization == "Bearer token-late"


async def test_cancelling_closes_with_going_away(scheduler: Scheduler, token_file: Path) -> None:
    """Stopping the client closes its WebSocket with 1001."""
    client = make_client(scheduler, token_file, VirtualClock())
    task = asyncio.create_task(client.run(), name="agent-under-test")
    peer = await scheduler.peer()
    await peer.next_of(Hello)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await peer.wait_closed() == 1001


async def test_agent_run_stops_on_request(scheduler: Scheduler, tmp_path: Path) -> None:
    """The agent's main coroutine connects with TCP probing and stops cleanly when asked."""
    cfg = AgentConfig(scheduler_url=scheduler.url, node="edge-1", token_file=None, method="tcp")
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(cfg, stop=stop), name="agent-main")
    peer = await scheduler.peer()
    assert await peer.next() == Hello(0, "edge-1", "0.1.0", ("tcp",), 32)
    assert peer.authorization is None
    stop.set()
    await asyncio.wait_for(agent, WAIT)
    assert await peer.wait_closed() == 1001


def with_topology(client: AgentClient, root: Path, clock: VirtualClock) -> TopologyWatch:
    client.topology = TopologyWatch(root, policy="single-numa-node", interval=60, clock=clock)
    return client.topology


async def test_topology_goes_to_a_scheduler_that_accepts_it_and_again_on_change(
    scheduler: Scheduler, token_file: Path, tmp_path: Path
) -> None:
    """After a Targets accepting topology, the zones go out; a new GPU found at the next scan
    sends them again, on the same connection's seq."""
    clock = VirtualClock()
    root = fake_sysfs.build(
        tmp_path, {0: ("0-3", 1024), 1: ("4-7", 1024)}, [(NVIDIA, DISPLAY_3D, 1)]
    )
    client = make_client(scheduler, token_file, clock)
    with_topology(client, root, clock)
    async with running(client):
        peer = await scheduler.peer()
        await peer.next_of(Hello)
        await peer.send(Targets(0, TARGETS, 5.0, accepts=(ACCEPTS_TOPOLOGY, "from-the-future")))
        first = await peer.next_of(Topology)
        assert isinstance(first, Topology) and first.seq == 1
        assert first.policy == "single-numa-node"
        assert dict(first.zones[1].resources)["nvidia.com/gpu"] == 1
        fake_sysfs.build(tmp_path, {}, [(NVIDIA, DISPLAY_3D, 0)])
        await clock.advance(60.0)
        second = await peer.next_of(Topology)
    assert isinstance(second, Topology) and second.seq > first.seq
    assert dict(second.zones[0].resources)["nvidia.com/gpu"] == 1


async def test_an_older_scheduler_gets_no_topology(
    scheduler: Scheduler, token_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Targets without accepts (a scheduler older than the agent): samples flow, no
    Topology is sent, and the agent says why once."""
    clock = VirtualClock()
    root = fake_sysfs.build(tmp_path, {0: ("0-3", 1024)})
    client = make_client(scheduler, token_file, clock)
    with_topology(client, root, clock)
    async with running(client):
        peer = await scheduler.peer()
        await peer.next_of(Hello)
        await peer.send(Targets(0, TARGETS, 5.0))
        await peer.send(Targets(1, TARGETS, 5.0))
        await eventually(lambda: client.prober.targets and client.topology.report)  # type: ignore[union-attr]
        sent = []
        for _ in range(2):
            await clock.advance(5.0)
            sent.append(await peer.next())
    assert all(isinstance(m, Samples) for m in sent)
    assert caplog.text.count("does not accept topology reports") == 1
