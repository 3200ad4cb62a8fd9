"""A userspace delay line: holds each IPv4 packet between two lab nodes for a set time.

The kernel has no netem qdisc, so the network lab (:mod:`tests.realnet.netlab`)
routes every packet from one node subnet to another onto the TUN device
``tun0`` of its router namespace. This program, started inside that namespace,

    ip netns exec lsn-<id>-r python -m tests.realnet.delayline --config delayline.json

reads each packet from ``tun0``, keeps it for d(source node -> destination node)
and writes it back; the kernel then forwards it to the destination. Delays are
per direction, so RTT(a, b) = d(a -> b) + d(b -> a).

Invariants:

- Packets of one (source, destination) pair leave in the order they came: a
  packet never overtakes an earlier one of its pair, whatever the jitter, and
  after a reload that shortens a delay the new packets wait for the old ones.
- A packet that is not IPv4, or whose source or destination is in no node's
  subnet, passes with no delay.
- No busy loop: the event loop sleeps in ``select()`` until a packet arrives or
  the next one is due. ``select()`` rather than ``epoll`` because its timeout
  has microsecond resolution; epoll's would add up to 1 ms per packet.

On stdout: ``ready`` once attached to the TUN device; ``reloaded`` (or
``reload failed: <reason>``) after SIGHUP made it re-read the config file.
SIGTERM or SIGINT ends it with exit code 0 and its counters on stderr.

The config file (JSON; delays and jitter in milliseconds)::

    {"tun": "tun0",
     "nodes": {"a": "10.200.1.0/24", "b": "10.200.2.0/24"},
     "delays_ms": {"a": {"b": 5}, "b": {"a": 10}},
     "jitter_ms": 0,
     "seed": null}

Jitter is uniform in [-jitter, +jitter], added to each packet's delay (never
below 0). Pairs missing from ``delays_ms`` have no delay.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import fcntl
import heapq
import ipaddress
import json
import os
import random
import selectors
import signal
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
_PR_SET_TIMERSLACK = 29

_READ_SIZE = 65536
_READS_PER_WAKEUP = 256
_MAX_CACHED_ADDRESSES = 4096

Pair = tuple[str, str]
_OTHER: Pair = ("", "")
"""The pair of every packet that is not between two lab nodes."""


class ConfigError(ValueError):
    """The config cannot be used; the message names the field."""


@dataclass(frozen=True, slots=True)
class Config:
    """A validated config; delays and jitter in seconds."""

    tun: str
    subnets: Mapping[str, ipaddress.IPv4Network]
    delays: Mapping[Pair, float]
    jitter: float
    seed: int | None


def _milliseconds(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{field} must be a number of milliseconds, not {value!r}")
    if not value >= 0:
        raise ConfigError(f"{field} must not be negative, got {value!r}")
    return float(value)


def parse_config(text: str) -> Config:
    """A :class:`Config` from the JSON text; raises :class:`ConfigError`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"config is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError("config must be a JSON object")
    tun = data.get("tun", "tun0")
    if not isinstance(tun, str) or not 0 < len(tun) <= 15:
        raise ConfigError(f"tun must be an interface name of 1 to 15 characters, not {tun!r}")
    nodes = data.get("nodes", {})
    if not isinstance(nodes, dict):
        raise ConfigError("nodes must be an object of node name -> subnet")
    subnets: dict[str, ipaddress.IPv4Network] = {}
    for name, subnet in nodes.items():
        try:
            subnets[name] = ipaddress.IPv4Network(subnet)
        except (ValueError, TypeError):
            raise ConfigError(f"nodes.{name} must be an IPv4 subnet, not {subnet!r}") from None
    delays_ms = data.get("delays_ms", {})
    if not isinstance(delays_ms, dict):
        raise ConfigError("delays_ms must be an object of source -> destination -> ms")
    delays: dict[Pair, float] = {}
    for src, row in delays_ms.items():
        if src not in subnets:
            raise ConfigError(f"delays_ms.{src}: no node {src!r} in nodes")
        if not isinstance(row, dict):
            raise ConfigError(f"delays_ms.{src} must be an object of destination -> ms")
        for dst, ms in row.items():
            if dst not in subnets:
                raise ConfigError(f"delays_ms.{src}.{dst}: no node {dst!r} in nodes")
            delays[(src, dst)] = _milliseconds(ms, f"delays_ms.{src}.{dst}") / 1000
    jitter = _milliseconds(data.get("jitter_ms", 0), "jitter_ms") / 1000
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError(f"seed must be an integer or null, not {seed!r}")
    return Config(tun=tun, subnets=subnets, delays=delays, jitter=jitter, seed=seed)


class DelayQueue:
    """Packets in with the time they came, packets out when due: no I/O, no clock.

    One heap holds every waiting packet as (release time, arrival number,
    packet). A pair's release times never decrease, and arrival numbers break
    ties, so each pair leaves in arrival order.
    """

    def __init__(self, config: Config, *, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random(config.seed)
        self._heap: list[tuple[float, int, bytes]] = []
        self._arrivals = 0
        self._last_release: dict[Pair, float] = {}
        self._nodes: dict[bytes, str | None] = {}
        self.config = config
        self.delayed = 0
        self.passed = 0

    def reconfigure(self, config: Config) -> None:
        """Use ``config`` for packets pushed from now on."""
        self.config = config
        self._nodes.clear()

    def __len__(self) -> int:
        return len(self._heap)

    def _node_of(self, address: bytes) -> str | None:
        try:
            return self._nodes[address]
        except KeyError:
            pass
        ip = ipaddress.IPv4Address(address)
        node = next((n for n, net in self.config.subnets.items() if ip in net), None)
        if len(self._nodes) >= _MAX_CACHED_ADDRESSES:
            self._nodes.clear()
        self._nodes[address] = node
        return node

    def pair_of(self, packet: bytes) -> Pair:
        """(source node, destination node), or ``("", "")`` if it is no lab pair."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return _OTHER
        src = self._node_of(packet[12:16])
        dst = self._node_of(packet[16:20])
        if src is None or dst is None:
            return _OTHER
        return (src, dst)

    def push(self, packet: bytes, now: float) -> None:
        """Queue ``packet``, which arrived at ``now``."""
        pair = self.pair_of(packet)
        delay = self.config.delays.get(pair, 0.0) if pair != _OTHER else 0.0
        if delay > 0 and self.config.jitter > 0:
            delay = max(0.0, delay + self._rng.uniform(-self.config.jitter, self.config.jitter))
        release = max(now + delay, self._last_release.get(pair, now))
        self._last_release[pair] = release
        if delay > 0:
            self.delayed += 1
        else:
            self.passed += 1
        heapq.heappush(self._heap, (release, self._arrivals, packet))
        self._arrivals += 1

    def pop_due(self, now: float) -> list[bytes]:
        """Every packet due at ``now``, in release order."""
        due: list[bytes] = []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due

    def next_due(self) -> float | None:
        """When the next packet is due, or None if none waits."""
        return self._heap[0][0] if self._heap else None


def open_tun(name: str) -> int:
    """A non-blocking fd attached to TUN device ``name`` (created if missing)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class _Line:
    """The I/O around a :class:`DelayQueue`: reads the TUN fd, writes due packets back."""

    def __init__(self, fd: int, queue: DelayQueue, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._queue = queue
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self.write_errors = 0

    def on_readable(self) -> None:
        for _ in range(_READS_PER_WAKEUP):
            try:
                packet = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            # Timestamp each packet as read: one stamp for the whole batch would
            # send a packet that arrived during the batch out early.
            self._queue.push(packet, self._loop.time())
        self.release()

    def _on_timer(self) -> None:
        self._timer = None
        self.release()

    def release(self) -> None:
        """Write every due packet, then wake up when the next one is due."""
        for packet in self._queue.pop_due(self._loop.time()):
            try:
                os.write(self._fd, packet)
            except OSError as e:
                self.write_errors += 1
                print(f"delayline: dropped a packet of {len(packet)} bytes: {e}", file=sys.stderr)
        when = self._queue.next_due()
        if self._timer is not None and (when is None or self._timer.when() != when):
            self._timer.cancel()
            self._timer = None
        if when is not None and self._timer is None:
            self._timer = self._loop.call_at(when, self._on_timer)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _reload(path: Path, queue: DelayQueue) -> None:
    try:
        config = parse_config(path.read_text())
        if config.tun != queue.config.tun:
            raise ConfigError(f"tun cannot change while running ({queue.config.tun!r})")
    except (OSError, ConfigError) as e:
        print(f"reload failed: {e}", flush=True)
        return
    queue.reconfigure(config)
    print("reloaded", flush=True)


async def _serve(path: Path, config: Config) -> int:
    try:
        fd = open_tun(config.tun)
    except OSError as e:
        print(f"delayline: cannot attach to TUN device {config.tun!r}: {e}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    queue = DelayQueue(config)
    line = _Line(fd, queue, loop)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, path, queue)
    loop.add_reader(fd, line.on_readable)
    try:
        print("ready", flush=True)
        await stop.wait()
    finally:
        loop.remove_reader(fd)
        line.close()
        os.close(fd)
    print(
        f"delayline: {queue.delayed} packets delayed, {queue.passed} passed, "
        f"{len(queue)} still queued, {line.write_errors} write errors",
        file=sys.stderr,
    )
    return 0


def _select_loop() -> asyncio.AbstractEventLoop:
    # The kernel may defer a sleeping task's wake-up by its timer slack (50 us by default).
    ctypes.CDLL(None).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
    return asyncio.SelectorEventLoop(selectors.SelectSelector())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realnet.delayline")
    parser.add_argument("--config", type=Path, required=True, help="the JSON config file")
    args = parser.parse_args(argv)
    try:
        with asyncio.Runner(loop_factory=_select_loop) as runner:
            return runner.run(_serve(args.config, parse_config(args.config.read_text())))
    except (OSError, ConfigError) as e:
        print(f"delayline: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
