"""The latency pipeline on a real network: agents in node namespaces, the hub, the cache.

Three nodes with asymmetric one-way delays (:mod:`tests.realnet.netlab`) each
run a real ``python -m lasched_agent`` probing with ICMP. The scheduler's real
:class:`~lasched.latency.hub.AgentHub` serves them over aiohttp on the lab's
control address and folds their samples into a real
:class:`~lasched.latency.cache.LatencyCache`. Only token checking is the
test's own (:class:`FixedTokens`): this is about the network, not Kubernetes.

An agent runs as root in its namespace, where ``net.ipv4.ping_group_range``
is closed ("1 0"), so it would take the ``raw`` mode (aioping). Each node
namespace opens that sysctl (it is per network namespace; the root
namespace's is untouched) so the agent takes ``dgram``, the mode a DaemonSet
without capabilities uses. aioping stamps its send time before a Python
checksum and a loop turn, so ``raw`` reads higher, most of all on a busy
machine, and the test's margin is for the machine, not for the method.

A pair's cached RTT (the EWMA) passes when it is within 2 ms + 15 % of the
configured round trip d(src -> dst) + d(dst -> src); see docs/testing.md for
what was measured.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType, web

import lasched_protocol as proto
from lasched.latency.cache import LatencyCache
from lasched.latency.hub import PATH, AgentHub, AuthError, HubOptions, Identity
from tests.realnet.netlab import NetLab

NODES = ("a", "b", "c")
DELAYS_MS = {
    ("a", "b"): 4.0,
    ("b", "a"): 6.0,
    ("a", "c"): 15.0,
    ("c", "a"): 15.0,
    ("b", "c"): 2.0,
    ("c", "b"): 3.0,
}
PAIRS = [(s, d) for s in NODES for d in NODES if s != d]
AGENT_USER = "system:serviceaccount:lasched-system:lasched-agent"
TOKENS = {node: f"token-of-{node}" for node in NODES}
RAW_CLIENT_NODE = "z"
"""The node the test's own WebSocket client speaks for: not a lab node."""
INTERVAL_S = 1.0
PROBES_PER_TARGET = 5
PROBE_TIMEOUT_S = 0.5
SETTLED_REPORTS = 5
SETTLE_TIMEOUT_S = 30.0
TOLERANCE_MS = 2.0
TOLERANCE_RATIO = 0.15


def tolerance_ms(configured_ms: float) -> float:
    return TOLERANCE_MS + TOLERANCE_RATIO * configured_ms


def close_to(measured_ms: float, configured_ms: float, base_ms: float = 0.0) -> bool:
    """Within tolerance of the configured RTT, allowing up to ``base_ms`` more: the lab's own."""
    low = configured_ms - tolerance_ms(configured_ms)
    return low <= measured_ms <= configured_ms + base_ms + tolerance_ms(configured_ms)


class FixedTokens:
    """Each known token is one node's agent; any other token is refused with 401."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._nodes = {token: node for node, token in tokens.items()}

    async def authenticate(self, token: str, *, source: str) -> Identity:
        node = self._nodes.get(token)
        if node is None:
            raise AuthError(401, "unknown token")
        return Identity(username=AGENT_USER, node=node)


class RecordingHub(AgentHub):
    """The real hub, also keeping every sample it folds into the cache, by pair."""

    def __init__(
        self,
        cache: LatencyCache,
        *,
        authenticator: FixedTokens,
        peers: Callable[[], Mapping[str, str]],
        on_change: Callable[[], None],
        options: HubOptions,
    ) -> None:
        super().__init__(
            cache, authenticator=authenticator, peers=peers, on_change=on_change, options=options
        )
        self.samples: collections.defaultdict[tuple[str, str], list[proto.Sample]] = (
            collections.defaultdict(list)
        )

    def ingest(self, node: str, batch: proto.Samples, *, known: set[str]) -> bool:
        for s in batch.samples:
            if s.target in known and s.median_ms is not None:
                self.samples[(node, s.target)].append(s)
        return super().ingest(node, batch, known=known)

    def reports(self, pair: tuple[str, str]) -> int:
        return len(self.samples[pair])


@dataclass
class Agent:
    """One agent process in a node namespace and the file its logs go to."""

    node: str
    process: asyncio.subprocess.Process
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.log.read_text(errors="replace")))


class ChangeLog:
    """The hub's ``on_change``: records when it was called and every pair's cached RTT then."""

    def __init__(self, cache: LatencyCache) -> None:
        self._cache = cache
        self.calls: list[tuple[float, dict[tuple[str, str], float]]] = []

    def __call__(self) -> None:
        rtts = {p: rtt.ms for p in PAIRS if (rtt := self._cache.get(*p)) is not None}
        self.calls.append((time.monotonic(), rtts))


@dataclass
class Pipeline:
    """A lab with one agent per node, reporting to a hub in this process."""

    lab: NetLab
    cache: LatencyCache
    hub: RecordingHub
    changes: ChangeLog
    url: str
    workdir: Path
    base_ms: float
    """The lab's own RTT with no delay configured (its delay line's overhead): about 0.4 ms
    on an idle machine, ~3 ms on a slow one, where every probe carries it."""
    agents: dict[str, Agent] = field(default_factory=dict)

    async def start_agent(self, *, node: str, name: str, token: str) -> Agent:
        """``python -m lasched_agent`` in ``node``'s namespace, saying it is ``name``."""
        token_file = self.workdir / f"{name}.token"
        token_file.write_text(token + "\n")
        log = self.workdir / f"{name}.log"
        argv = [
            *(sys.executable, "-m", "lasched_agent", "--scheduler", self.url),
            *("--node", name, "--token-file", str(token_file), "--method", "icmp"),
            *("--probes-per-target", str(PROBES_PER_TARGET)),
            *("--probe-timeout", str(PROBE_TIMEOUT_S)),
        ]
        with log.open("wb") as out:
            process = await self.lab.exec_in(node, argv, stdout=out, stderr=out)
        agent = Agent(name, process, log)
        self.agents[name] = agent
        return agent

    def logs(self) -> str:
        return "\n".join(
            f"--- agent {name} (exit code {a.process.returncode}), last lines:\n{a.tail()}"
            for name, a in self.agents.items()
        )

    def state(self) -> str:
        """Every pair's cached RTT and its last reports' medians, for failure messages."""
        rows = []
        for src, dst in PAIRS:
            rtt = self.cache.get(src, dst)
            got = "none" if rtt is None else f"{rtt.ms:.2f} ms p90 {rtt.p90_ms} age {rtt.age_s:.1f}"
            medians = " ".join(f"{s.median_ms:.2f}" for s in self.hub.samples[(src, dst)][-8:])
            rows.append(f"\n{src}->{dst}: {got}; last medians {medians}")
        return "".join(rows)

    @contextlib.contextmanager
    def diagnosed(self) -> Iterator[None]:
        """On any failure in the block, print each agent's last log lines."""
        try:
            yield
        except BaseException:
            print(self.logs())
            raise

    async def until(self, done: Callable[[], bool], *, timeout: float) -> float | None:
        """Seconds until ``done()``, or None after ``timeout``; fails if an agent exits."""
        start = time.monotonic()
        while not done():
            for a in self.agents.values():
                if a.process.returncode is not None and a.node in NODES:
                    pytest.fail(f"agent {a.node} exited with {a.process.returncode}")
            if time.monotonic() - start > timeout:
                return None
            await asyncio.sleep(0.1)
        return time.monotonic() - start

    async def wait_for(self, what: str, done: Callable[[], bool], *, timeout: float) -> float:
        """Seconds until ``done()``; fails with the cache's state after ``timeout``."""
        took = await self.until(done, timeout=timeout)
        if took is None:
            pytest.fail(f"not within {timeout} s: {what}. {self.state()}")
        return took

    def rtt_near(self, pair: tuple[str, str], configured_ms: float) -> bool:
        rtt = self.cache.get(*pair)
        return rtt is not None and close_to(rtt.ms, configured_ms, self.base_ms)

    def fresh_reports(self, pairs: list[tuple[str, str]], at_least: int) -> bool:
        for pair in pairs:
            rtt = self.cache.get(*pair)
            if rtt is None or rtt.stale or self.hub.reports(pair) < at_least:
                return False
        return True


async def _stop(process: asyncio.subprocess.Process, *, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` s; returns once the process is reaped."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)


async def _open_ping_group_range(lab: NetLab, node: str) -> None:
    """Let every group open ICMP datagram sockets in ``node``'s namespace only."""
    script = "printf '0 2147483647' > /proc/sys/net/ipv4/ping_group_range"
    proc = await lab.exec_in(node, ["sh", "-c", script])
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


@pytest.fixture(scope="module")
async def pipeline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    """Nodes a, b, c with DELAYS_MS, an agent on each, and the hub they report to."""
    async with NetLab(list(NODES)) as lab:
        # The slowest of three medians with no delay: the overhead a probe may carry.
        base_ms = max([await lab.ping_rtt("a", "b") for _ in range(3)])
        await lab.set_delays(DELAYS_MS)
        for node in NODES:
            await _open_ping_group_range(lab, node)
        cache = LatencyCache()
        changes = ChangeLog(cache)
        addresses = {n.name: n.address for n in lab.nodes}
        hub = RecordingHub(
            cache,
            authenticator=FixedTokens({**TOKENS, RAW_CLIENT_NODE: "token-of-the-test"}),
            peers=lambda: addresses,
            on_change=changes,
            options=HubOptions(interval_seconds=INTERVAL_S),
        )
        app = web.Application()
        hub.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, lab.control_address, 0)
            await site.start()
            port = runner.addresses[0][1]
            p = Pipeline(
                lab=lab,
                cache=cache,
                hub=hub,
                changes=changes,
                url=f"ws://{lab.control_address}:{port}{PATH}",
                workdir=tmp_path_factory.mktemp("agents"),
                base_ms=base_ms,
            )
            try:
                with p.diagnosed():
                    for node in NODES:
                        await p.start_agent(node=node, name=node, token=TOKENS[node])
                    await p.wait_for(
                        "all agents connected", lambda: hub.nodes == list(NODES), timeout=30
                    )
                yield p
            finally:
                for agent in p.agents.values():
                    await _stop(agent.process)
        finally:
            await hub.close()
            await runner.cleanup()


def _settled(p: Pipeline) -> Callable[[], bool]:
    return lambda: p.fresh_reports(PAIRS, SETTLED_REPORTS)


@pytest.mark.realnet
async def test_cached_rtts_are_the_configured_round_trips(pipeline: Pipeline) -> None:
    """Once settled, every ordered pair's cached RTT is d(src -> dst) + d(dst -> src)."""
    p = pipeline
    with p.diagnosed():
        await p.wait_for(f"{SETTLED_REPORTS} fresh reports for every pair", _settled(p), timeout=60)
        # A stalled machine can add tens of ms to one report, and the EWMA carries 30 % of
        # it; it must come back within a few reports, all six pairs at once.
        waited = await p.until(
            lambda: all(p.rtt_near(pair, p.lab.configured_rtt_ms(*pair)) for pair in PAIRS),
            timeout=SETTLE_TIMEOUT_S,
        )
        if waited is None:
            # The lab's own pings tell a starved machine from a wrong pipeline.
            pings = {f"{s}->{d}": round(await p.lab.ping_rtt(s, d), 2) for s, d in PAIRS}
            pytest.fail(
                f"cached RTTs not within tolerance in {SETTLE_TIMEOUT_S} s: {p.state()}"
                f"\nthe lab's own pings now: {pings}"
            )
        rtts = {pair: p.cache.get(*pair) for pair in PAIRS}
        print(
            f"within tolerance {waited:.1f} s after {SETTLED_REPORTS} reports;"
            f" the lab's own RTT {p.base_ms:.2f} ms"
        )
        for (src, dst), rtt in rtts.items():
            assert rtt is not None
            configured = p.lab.configured_rtt_ms(src, dst)
            medians = [s.median_ms for s in p.hub.samples[(src, dst)] if s.median_ms is not None]
            assert rtt.p90_ms is not None
            print(
                f"{src}->{dst} configured {configured:4.1f} ms: cached {rtt.ms:6.2f} ms,"
                f" p90 {rtt.p90_ms:6.2f} ms, median of {len(medians)} reports"
                f" {statistics.median(medians):6.2f} ms"
            )
            assert close_to(statistics.median(medians), configured, p.base_ms), (
                src,
                dst,
                medians,
                p.base_ms,
            )
            # The p90 of one 5-probe interval is its slowest probe: never faster than the
            # path, but one late wake-up on a busy machine can add tens of milliseconds.
            assert rtt.p90_ms >= configured - tolerance_ms(configured), f"{src}->{dst} p90"
            assert rtt.loss == 0.0
            assert rtt.source == "agent"
        assert {(s.src, s.dst) for s in p.cache.export_pairs()} == set(PAIRS)
        assert {s.method for ss in p.hub.samples.values() for s in ss} == {"icmp"}
        for node in NODES:
            assert p.agents[node].count(r"probing with icmp mode=dgram\b") == 1


AB, BA = ("a", "b"), ("b", "a")
SLOW_AB = {AB: 20.0, BA: 20.0}
FOLLOW_REPORTS = 8
"""Reports after a change until the EWMA (alpha 0.3) is within tolerance: 30 ms x 0.7^5 is
5 ms, under the 8 ms tolerance at 40 ms; one more for a round that straddles the change,
and one for a noisy report."""
FOLLOW_TIMEOUT_S = 20.0


@pytest.mark.realnet
async def test_the_cache_follows_a_delay_change(pipeline: Pipeline) -> None:
    """When a <-> b goes from 4 + 6 to 20 + 20 ms, both entries follow and on_change fires."""
    p = pipeline
    with p.diagnosed():
        await p.wait_for("settled before the change", _settled(p), timeout=60)
        before = p.cache.get(*AB)
        assert before is not None
        reports_before = {pair: p.hub.reports(pair) for pair in PAIRS}
        await p.lab.set_delays({**DELAYS_MS, **SLOW_AB})
        changed_at = time.monotonic()
        try:
            took = await p.wait_for(
                "a <-> b at 40 ms in the cache",
                lambda: all(p.rtt_near(pair, 40.0) for pair in (AB, BA)),
                timeout=FOLLOW_TIMEOUT_S,
            )
            reports = {pair: p.hub.reports(pair) - reports_before[pair] for pair in (AB, BA)}
            print(f"followed in {took:.1f} s, after {reports} reports")
            assert all(n <= FOLLOW_REPORTS for n in reports.values()), reports
            significant = [
                rtts
                for at, rtts in p.changes.calls
                if at >= changed_at and rtts.get(AB, 0.0) > before.ms + 1.0
            ]
            assert significant, f"on_change was not called for a -> b: {p.changes.calls[-5:]}"
            for pair in PAIRS:
                if pair not in (AB, BA):
                    since = [s.median_ms for s in p.hub.samples[pair][reports_before[pair] :]]
                    assert since, pair
                    median = statistics.median(m for m in since if m is not None)
                    configured = p.lab.configured_rtt_ms(*pair)
                    assert close_to(median, configured, p.base_ms), (pair, since, p.base_ms)
        finally:
            await p.lab.set_delays(DELAYS_MS)


@pytest.mark.realnet
async def test_a_wrong_token_and_a_garbage_frame_harm_nobody_else(pipeline: Pipeline) -> None:
    """A wrong token gets 401 again and again; a garbage frame closes only its connection."""
    p = pipeline
    with p.diagnosed():
        intruder = await p.start_agent(node="c", name="x", token="not-a-token")
        try:
            await p.wait_for(
                "three refusals in the intruder's log",
                lambda: intruder.count(r"refused the agent's token status=401") >= 3,
                timeout=30,
            )
            assert intruder.process.returncode is None, "the intruder gave up"
            assert intruder.count(r"connected to the scheduler") == 0
        finally:
            await _stop(intruder.process)
        assert "x" not in p.hub.nodes
        assert {s.src for s in p.cache.export_pairs()} == set(NODES)

        reports_before = {pair: p.hub.reports(pair) for pair in PAIRS}
        headers = {"Authorization": "Bearer token-of-the-test"}
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(p.url, headers=headers) as ws,
        ):
            await ws.send_bytes(proto.encode(proto.Hello(0, RAW_CLIENT_NODE, "test", ("icmp",))))
            targets = proto.decode((await ws.receive(timeout=10)).data)
            assert isinstance(targets, proto.Targets)
            assert {t.id for t in targets.targets} == set(NODES)
            assert RAW_CLIENT_NODE in p.hub.nodes
            await ws.send_bytes(b"\x00 this is not a frame")
            closing = await ws.receive(timeout=10)
            assert closing.type == WSMsgType.CLOSE, closing
            assert ws.close_code == WSCloseCode.INVALID_TEXT

        await p.wait_for(
            "the hub to drop the closed connection", lambda: p.hub.nodes == list(NODES), timeout=10
        )
        await p.wait_for(
            "two more reports for every pair",
            lambda: all(p.hub.reports(pair) >= reports_before[pair] + 2 for pair in PAIRS),
            timeout=30,
        )
        for node in NODES:
            assert p.agents[node].count(r"connected to the scheduler") == 1
            assert p.agents[node].count(r"connection ended") == 0
