"""Fan-out: one connection to every scheduler replica, all fed by one prober.

lasched runs as several replicas. Only the leader schedules, any follower may
lead next, and each replica's latency cache holds only what agents stream to
it. So every replica must receive every agent's samples: a leader missing
half the nodes' RTTs fails their hard limits closed, and so would the next
leader after a failover.

How (``--fan-out``, :class:`FanOut`):

* **Replicas from DNS.** The scheduler URL's host is looked up every
  ``resolve_seconds``; with a headless Service it answers one address per
  ready replica. Each (address, port) gets its own
  :class:`~lasched_agent.stream.AgentClient`, whose URL names the address and
  whose ``Host`` header (and TLS server name) stays the URL's host name.
* **Changes.** A connection whose address left the answer is closed (1001);
  a new address is connected. A failed lookup, or an answer with no address,
  changes nothing: the connections already open keep going (and reconnect
  on their own) until an answer says otherwise. While there is no
  connection at all, a failed lookup is retried sooner, with backoff.
* **One prober, every connection.** Each round's batch is offered to every
  connection. Each keeps its own bounded latest-per-target buffer, its own
  ``seq`` numbers, heartbeats and reconnect backoff, so a replica that is
  down or slow holds back no other.
* **New replicas catch up at once.** A new connection starts with the latest
  sample of every target measured so far (at most ``buffer_limit``), sent
  right after its ``Hello``, instead of waiting for the rotation to come
  round to each target again.
* **Targets.** Replicas compute the same targets; whichever connection
  brings a ``Targets``, the most recent one received is applied, and one
  equal to what is already applied is not applied again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from lasched_agent import __version__
from lasched_agent.backoff import Backoff
from lasched_agent.clock import Clock, SystemClock
from lasched_agent.numa import TopologyWatch
from lasched_agent.prober import Prober
from lasched_agent.stream import AgentClient
from lasched_protocol import Sample, Target, Targets

log = logging.getLogger(__name__)

Address = tuple[str, int]
"""One replica: (IP address, port)."""

Resolver = Callable[[str, int], Awaitable[Iterable[Address]]]
"""(host, port) -> the replicas' addresses. Raises :class:`OSError` when the lookup fails."""

_DEFAULT_PORTS = {"ws": 80, "wss": 443}


async def resolve(host: str, port: int) -> set[Address]:
    """Every address ``host`` resolves to (a headless Service: one per ready replica)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return {(str(sockaddr[0]), int(sockaddr[1])) for *_, sockaddr in infos}


class FanOut:
    """Streams this node's samples to every scheduler replica the URL's host resolves to.

    Takes :class:`~lasched_agent.stream.AgentClient`'s arguments (each
    connection is one), plus ``resolve_seconds`` (how often to look the
    replicas up again), ``resolver`` (default :func:`resolve`; tests answer
    with local servers) and ``backoff``, which makes each connection's
    :class:`~lasched_agent.backoff.Backoff`::

        fan_out = FanOut(
            url="ws://lasched-replicas.lasched-system.svc:10271/agents/v1",
            node="edge-1",
            prober=Prober(ProbeMethod.fixed({"edge-2": 1.5})),
        )
        task = asyncio.create_task(fan_out.run(), name="agent")
    """

    def __init__(
        self,
        *,
        url: str,
        node: str,
        prober: Prober,
        token_file: Path | None = None,
        heartbeat_seconds: float = 10.0,
        buffer_limit: int = 4096,
        resolve_seconds: float = 15.0,
        resolver: Resolver | None = None,
        backoff: Callable[[], Backoff] = Backoff,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float = 10.0,
        agent_version: str = __version__,
        topology: TopologyWatch | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"url must be a ws:// or wss:// URL with a host, not {url!r}")
        if resolve_seconds <= 0:
            raise ValueError(f"resolve_seconds must be positive, not {resolve_seconds}")
        if buffer_limit < 1:
            raise ValueError(f"buffer_limit must be at least 1, not {buffer_limit}")
        if heartbeat_seconds <= 0:
            raise ValueError(f"heartbeat_seconds must be positive, not {heartbeat_seconds}")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, not {connect_timeout}")
        self.url = url
        self.node = node
        self.prober = prober
        self.resolve_seconds = resolve_seconds
        self.buffer_limit = buffer_limit
        self._host = parts.hostname
        self._port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self._host_header = parts.netloc.rpartition("@")[2]
        self._parts = parts
        self._resolver: Resolver = resolver or resolve
        self._token_file = token_file
        self._heartbeat_seconds = heartbeat_seconds
        self._agent_version = agent_version
        self._backoff = backoff
        self._clock: Clock = clock or SystemClock()
        self._session = session
        self._connect_timeout = connect_timeout
        self._topology = topology
        self._clients: dict[Address, AgentClient] = {}
        self._tasks: dict[Address, asyncio.Task[None]] = {}
        self._latest: OrderedDict[str, tuple[float, Sample]] = OrderedDict()
        self._applied: tuple[tuple[Target, ...], float] | None = None

    @property
    def clients(self) -> Mapping[Address, AgentClient]:
        """The connection to each replica, by address (read-only)."""
        return MappingProxyType(self._clients)

    async def run(self) -> None:
        """Probe, look the replicas up and stream to each, until cancelled; cancelling is safe.

        On cancellation every connection is closed with 1001 and outstanding
        probes are cancelled. Named tasks run inside: ``agent-prober``,
        ``agent-resolver``, ``agent-topology`` (with a ``topology``) and one
        ``agent-connection:<address>:<port>`` per replica; if one fails (a
        bug), the others are cancelled and the failure propagates in an
        :class:`ExceptionGroup`.
        """
        async with contextlib.AsyncExitStack() as stack:
            session = self._session
            if session is None:
                timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout)
                # The system's resolver: aiohttp would pick aiodns (aioping brings it), whose
                # c-ares channel shutdown can abort the process.
                connector = aiohttp.TCPConnector(resolver=aiohttp.ThreadedResolver())
                session = await stack.enter_async_context(
                    aiohttp.ClientSession(timeout=timeout, connector=connector)
                )
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self.prober.run(self._offer), name="agent-prober")
                    tg.create_task(self._resolve_forever(session, tg), name="agent-resolver")
                    if self._topology is not None:
                        tg.create_task(self._topology.run(), name="agent-topology")
            finally:
                self._clients.clear()
                self._tasks.clear()

    def _offer(self, time: float, samples: tuple[Sample, ...]) -> None:
        for s in samples:
            self._latest.pop(s.target, None)
            self._latest[s.target] = (time, s)
        while len(self._latest) > self.buffer_limit:
            self._latest.popitem(last=False)
        for client in self._clients.values():
            client.offer(time, samples)

    async def _resolve_forever(self, session: aiohttp.ClientSession, tg: asyncio.TaskGroup) -> None:
        retry = Backoff(initial=min(0.5, self.resolve_seconds), maximum=self.resolve_seconds)
        while True:
            found = await self._lookup()
            if found:
                retry.reset()
                self._update(found, session, tg)
            delay = self.resolve_seconds if found or self._clients else retry.next_delay()
            await self._clock.sleep(delay)

    async def _lookup(self) -> set[Address]:
        """The replicas' addresses; empty (and logged) when the lookup fails."""
        try:
            async with asyncio.timeout(self._connect_timeout):
                found = set(await self._resolver(self._host, self._port))
        except OSError as e:  # socket.gaierror and TimeoutError included
            log.warning(
                "cannot resolve the scheduler's replicas host=%s error=%r; keeping connections=%d",
                self._host, e, len(self._clients),
            )  # fmt: skip
            return set()
        if not found:
            log.warning(
                "no address for the scheduler's replicas host=%s; keeping connections=%d",
                self._host, len(self._clients),
            )  # fmt: skip
        return found

    def _update(
        self, found: set[Address], session: aiohttp.ClientSession, tg: asyncio.TaskGroup
    ) -> None:
        """Close the connections to replicas gone from ``found``; connect the new ones."""
        for address in sorted(self._clients.keys() - found):
            log.info("replica gone address=%s; closing its connection", _show(address))
            del self._clients[address]
            self._tasks.pop(address).cancel()  # closes with 1001; the task group reaps it
        for address in sorted(found - self._clients.keys()):
            log.info("replica found address=%s; connecting", _show(address))
            client = AgentClient(
                url=self._url_for(address),
                node=self.node,
                prober=self.prober,
                token_file=self._token_file,
                heartbeat_seconds=self._heartbeat_seconds,
                buffer_limit=self.buffer_limit,
                backoff=self._backoff(),
                clock=self._clock,
                session=session,
                connect_timeout=self._connect_timeout,
                agent_version=self._agent_version,
                host=self._host_header,
                on_targets=self._apply_targets,
                topology=self._topology,
            )
            self._catch_up(client)
            self._clients[address] = client
            self._tasks[address] = tg.create_task(
                client.stream(session), name=f"agent-connection:{_show(address)}"
            )

    def _url_for(self, address: Address) -> str:
        ip, port = address
        host = f"[{ip}]" if ":" in ip else ip
        return urlunsplit(self._parts._replace(netloc=f"{host}:{port}"))

    def _catch_up(self, client: AgentClient) -> None:
        """Give a new connection the latest sample of every target, in batches of one time."""
        batch: list[Sample] = []
        batch_time = 0.0
        for time, sample in self._latest.values():
            if batch and time != batch_time:
                client.offer(batch_time, tuple(batch))
                batch = []
            batch_time = time
            batch.append(sample)
        if batch:
            client.offer(batch_time, tuple(batch))

    def _apply_targets(self, message: Targets) -> None:
        applied = (message.targets, message.interval_seconds)
        if applied == self._applied:
            return
        self._applied = applied
        self.prober.set_targets(message.targets, interval=message.interval_seconds)
        log.info(
            "targets updated count=%d interval_s=%g seq=%d",
            len(message.targets), message.interval_seconds, message.seq,
        )  # fmt: skip


def _show(address: Address) -> str:
    ip, port = address
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
