"""What a hostile client does to the agents' port does not reach the scheduler.

A flood of half-open connections from another process, and a client looping on
garbage tokens, while the scheduler keeps scheduling, an honest agent connects
and reports, the apiserver sees a bounded number of TokenReviews and the
process's open files stay under the cap. Then an agent sending bad frames is
closed each time without touching a second, honest agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import lasched_protocol as proto
from lasched import settings
from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.agents import agent_token
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import eventually, node_of, pod

NODES = ("edge-0", "edge-1")
MAX_CONNECTIONS = 600
PER_SOURCE = 32
HEADER_TIMEOUT = 3.0
FLOOD_SOURCES = 25  # 127.0.0.10 .. 127.0.0.34
FLOOD_PER_SOURCE = 44  # 1,100 in all: over the per-source cap, then over the total cap
GARBAGE_SOURCES = ("127.0.0.200", "127.0.0.201", "127.0.0.202")
REVIEWS_PER_SOURCE, BURST_PER_SOURCE = 2.0, 5

# Runs in its own process, so that the scheduler's open files are its own alone.
FLOOD = """
import asyncio, sys

async def main(port, sources, per_source):
    held = []
    for s in range(sources):
        for i in range(per_source):
            try:
                _, w = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(f"127.0.0.{10 + s}", 0)
                )
            except OSError:
                continue
            if i % 4 == 0:
                w.write(b"GET /agents/v1 HTTP/1.1\\r\\nHost: x\\r\\nAuthoriz")
            held.append(w)
    print(len(held), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*map(int, sys.argv[1:])))
"""


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def open_files() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


async def apiserver_token_reviews(kc: KubeClient) -> float:
    """TokenReviews the apiserver has served, by its own count."""
    total = 0.0
    for family in text_string_to_metric_families(await kc.text("/metrics")):
        for s in family.samples:
            if s.name == "apiserver_request_total" and s.labels.get("resource") == "tokenreviews":
                total += s.value
    return total


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/agents/v1"


def samples(seq: int, rtts: dict[str, float]) -> bytes:
    return proto.encode(
        proto.Samples(
            seq=seq,
            time=time.time(),
            samples=tuple(
                proto.Sample(t, "icmp", 5, 0.0, ms, ms, ms, 0.1) for t, ms in rtts.items()
            ),
        )
    )


async def connect(
    http: aiohttp.ClientSession, port: int, token: str, node: str, *, within: float
) -> aiohttp.ClientWebSocketResponse:
    """Connect as an agent does: retry refusals and resets until ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        try:
            ws = await http.ws_connect(url(port), headers={"Authorization": f"Bearer {token}"})
            hello = proto.Hello(seq=0, node=node, agent_version="test", methods=("icmp",))
            await ws.send_bytes(proto.encode(hello))
            msg = await ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            assert isinstance(proto.decode(msg.data), proto.Targets)
            return ws
        except (aiohttp.ClientError, ConnectionError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"no connection within {within} s: {e!r}") from e
            await asyncio.sleep(0.2)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def port(kc: KubeClient, run_scheduler: SchedulerFactory) -> int:
    await nodes.create_nodes(kc, [nodes.NodeSpec(name=n) for n in NODES])
    await nodes.wait_ready(kc, list(NODES))
    cfg = settings.parse(
        {
            "server": {
                "maxConnections": MAX_CONNECTIONS,
                "maxConnectionsPerSource": PER_SOURCE,
                "headerTimeoutSeconds": HEADER_TIMEOUT,
            },
            "latency": {
                "reportIntervalSeconds": 1,
                "ttlSeconds": 60,
                "tokenReview": {
                    "missesPerSecond": 10,
                    "missBurst": 20,
                    "missesPerSourcePerSecond": REVIEWS_PER_SOURCE,
                    "missBurstPerSource": BURST_PER_SOURCE,
                },
            },
        }
    )
    return await run_scheduler(cfg)


@contextlib.asynccontextmanager
async def flood(port: int) -> AsyncIterator[int]:
    """1,100 half-open connections from another process; yields how many it opened."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOOD, str(port), str(FLOOD_SOURCES), str(FLOOD_PER_SOURCE),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        yield int(line)
    finally:
        proc.kill()
        await proc.wait()


async def garbage_tokens(port: int, stop: asyncio.Event) -> dict[int, int]:
    """Upgrade requests with a new garbage token each, looping from a few addresses until
    ``stop``; the count of each status answered."""
    statuses: dict[int, int] = {}

    async def loop(http: aiohttp.ClientSession, source: str, worker: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            headers = {"Authorization": f"Bearer garbage-{source}-{worker}-{i}"}
            try:
                async with http.get(url(port), headers=headers) as resp:
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
            except aiohttp.ClientError:
                statuses[0] = statuses.get(0, 0) + 1
                await asyncio.sleep(0.05)

    sessions = [
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8, local_addr=(src, 0)))
        for src in GARBAGE_SOURCES
    ]
    try:
        async with asyncio.TaskGroup() as tg:
            for http, src in zip(sessions, GARBAGE_SOURCES, strict=True):
                for worker in range(8):
                    tg.create_task(loop(http, src, worker), name=f"garbage-{src}-{worker}")
    finally:
        for http in sessions:
            await http.close()
    return statuses


async def test_a_flood_and_garbage_tokens_leave_the_scheduler_working(
    kc: KubeClient, namespace: str, port: int, http: aiohttp.ClientSession
) -> None:
    """During 1,100 half-open connections and a garbage-token loop: a new pod is scheduled,
    an honest agent connects and reports, TokenReviews stay bounded, open files stay under
    the cap, and the flood is closed after the header timeout."""
    token = await agent_token(kc, node="edge-0")
    reviews_before = await apiserver_token_reviews(kc)
    refused_before = {
        r: metric("lasched_http_connections_refused_total", reason=r)
        for r in ("total_cap", "per_source_cap", "header_timeout")
    }
    stored_before = metric("lasched_agent_samples_total", outcome="stored")
    files_before = open_files()
    peak = {"files": files_before, "open": 0.0}
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            peak["files"] = max(peak["files"], open_files())
            peak["open"] = max(peak["open"], metric("lasched_http_connections"))
            await asyncio.sleep(0.02)

    started = time.monotonic()
    async with flood(port) as opened, asyncio.TaskGroup() as tg:
        watcher = tg.create_task(watch(), name="watch-files")
        garbage = tg.create_task(garbage_tokens(port, stop), name="garbage-tokens")
        assert opened == FLOOD_SOURCES * FLOOD_PER_SOURCE

        await kc.post(f"/api/v1/namespaces/{namespace}/pods", pod("during-the-flood"))
        assert await eventually(lambda: node_of(kc, namespace, "during-the-flood"), timeout=10)

        ws = await connect(http, port, token, "edge-0", within=HEADER_TIMEOUT + 5)
        for seq in (1, 2, 3):
            await ws.send_bytes(samples(seq, {"edge-1": 2.0}))

        async def arrived() -> bool:
            return metric("lasched_agent_samples_total", outcome="stored") - stored_before >= 3

        assert await eventually(arrived, timeout=5)
        # The flood has had its header timeout: every connection it held is closed.
        await asyncio.sleep(max(0.0, started + HEADER_TIMEOUT + 1 - time.monotonic()))
        stop.set()
        await watcher
        statuses = await garbage
    elapsed = time.monotonic() - started

    assert not ws.closed
    await ws.close()
    refused = {
        r: metric("lasched_http_connections_refused_total", reason=r) - before
        for r, before in refused_before.items()
    }
    assert refused["per_source_cap"] > 0 and refused["total_cap"] > 0, refused
    assert refused["header_timeout"] >= MAX_CONNECTIONS - 50, refused
    assert peak["open"] <= MAX_CONNECTIONS
    # The scheduler's side of the port, plus this test's few client sockets.
    assert peak["files"] - files_before <= MAX_CONNECTIONS + 100, peak
    assert sum(statuses.values()) >= 100, statuses
    assert statuses.get(429, 0) > statuses.get(401, 0), statuses
    bound = len(GARBAGE_SOURCES) * (BURST_PER_SOURCE + REVIEWS_PER_SOURCE * elapsed) + 2
    reviews = await apiserver_token_reviews(kc) - reviews_before
    assert 1 <= reviews <= bound, (reviews, bound, statuses)


async def test_an_agent_flooding_bad_frames_never_affects_an_honest_one(
    kc: KubeClient, port: int, http: aiohttp.ClientSession
) -> None:
    """Garbage, oversized and non-finite frames close the sender with 1007 or 1009 every
    time; the honest agent's connection stays open and its samples keep arriving."""
    honest = await connect(http, port, await agent_token(kc, node="edge-0"), "edge-0", within=5)
    bad_token = await agent_token(kc, node="edge-1")
    frames = [
        (b"\x00\x01 not a frame", 1007),
        (b'{"v":1,"type":"samples","seq":1,"time":1,"samples":[{"median":NaN}]}', 1007),
        (b'{"v":1,"type":"samples","seq":1,"time":1,"samples":[{"median":Infinity}]}', 1007),
        (b'{"v":1,"type":"heartbeat","seq":1,"time":1e999}', 1007),
        # A well-formed report of a finite but absurd RTT: once it drove the network
        # coordinates to overflow, and every later report touching them (the honest
        # agent's) failed.
        (samples(1, {"edge-0": 2.0}).replace(b"2.0", b"1e150"), 1007),
        (b"x" * (proto.MAX_FRAME_BYTES + 1), 1009),
    ] * 3
    stored = metric("lasched_agent_samples_total", outcome="stored")
    for seq, (frame, code) in enumerate(frames, start=1):
        bad = await connect(http, port, bad_token, "edge-1", within=5)
        await bad.send_bytes(frame)
        msg = await bad.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE, msg
        assert bad.close_code == code, (frame[:40], msg)
        await honest.send_bytes(samples(seq, {"edge-1": 2.0}))

    async def arrived() -> bool:
        return metric("lasched_agent_samples_total", outcome="stored") - stored >= len(frames)

    outcomes = ("stored", "unknown_target", "lost")
    assert await eventually(arrived, timeout=5), (
        f"{len(frames)} reports sent; samples by outcome: "
        f"{ {o: metric('lasched_agent_samples_total', outcome=o) for o in outcomes} }"
        f" (stored before: {stored}); honest closed: {honest.closed} ({honest.close_code})"
    )
    assert not honest.closed
    await honest.close()
