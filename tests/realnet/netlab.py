"""A network lab: node namespaces joined through a router that delays each direction.

The kernel has no netem qdisc, so delays come from a userspace delay line
(:mod:`tests.realnet.delayline`) on a TUN device in the router namespace.
Everything else is the kernel's own networking: real veths, real routes, real
ICMP and TCP, so ``ping`` from node ``a`` to node ``b`` measures
d(a -> b) + d(b -> a)::

    root namespace            router lsn-<id>-r                 nodes
    lsn-<id> 10.X.250.1 ----- ctl 10.X.250.2
                              n1  10.X.1.1 ------------------- eth0 10.X.1.2  lsn-<id>-a
                              n2  10.X.2.1 ------------------- eth0 10.X.2.2  lsn-<id>-b
                              tun0 <-> delay line

In the router, a packet that comes in on ``n<i>`` for a node subnet
(10.X.0.0/17) is routed by table 100 to ``tun0``; the delay line writes it back
after the delay, it comes in on ``tun0`` and the main table forwards it to the
destination's veth. Packets for the router's own addresses are delivered by the
local table before any rule, and packets to or from the root namespace's
control address never match the rule: neither is delayed.

Invariants:

- Teardown is deleting the root end of the control veth and the lab's
  namespaces, after killing every process in them. Everything else the lab made
  (veths, ``tun0``, routes, rules, sysctls) lives inside those namespaces; in the
  root namespace there is only that veth and one route through it, which goes
  with it. No sysctl of the root namespace is touched.
- A lab holds an exclusive ``flock`` on ``/run/lasched-netlab/<id>.lock`` from
  before its first namespace exists until its last one is gone. A lab that
  starts deletes every ``lsn-<id>-*`` namespace whose lock is free: its owner
  died without teardown. Live labs, in this process or another, are never
  touched, and their 10.X.0.0/16 blocks are never reused while they live.
- Every process the lab starts gets ``PR_SET_PDEATHSIG``, so a killed test run
  leaves no delay line behind (the namespaces go at the next lab's start).

Errors: :class:`NetLabError` when the machine lacks something (the message
lists exactly what), a command fails (the message has its stderr) or the delay
line does not start; :class:`ValueError` for a bad argument, naming it.

``python -m tests.realnet.netlab ping <address>`` is the ICMP echo that
:meth:`NetLab.ping_rtt` runs inside a node namespace, so that no ``ping``
binary is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from lasched_dev.devcluster.processes import pid_alive

LOCK_DIR = Path("/run/lasched-netlab")
NETNS_DIR = Path("/run/netns")
TUN_DEVICE = Path("/dev/net/tun")
PREFIX = "lsn-"
MAX_NODES = 126
"""Node subnets are 10.X.1.0/24 ... 10.X.126.0/24, inside the delayed 10.X.0.0/17."""

_REPO_ROOT = Path(__file__).resolve().parents[2]
_DELAYLINE_MODULE = "tests.realnet.delayline"
_NODE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?\Z")
_ROUTER = "r"
_CONTROL_OCTET = 250
_DELAY_TABLE = 100
_RULE_PREF = 1000
_OCTETS: tuple[int, ...] = (*range(200, 255), *range(128, 200))
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

Delays = Mapping[tuple[str, str], float]
"""One-way delays in milliseconds: ``{("a", "b"): 5.0}`` is d(a -> b); missing pairs are 0."""

Stream = int | IO[Any] | None


class NetLabError(RuntimeError):
    """The lab cannot be built, used or removed; the message says what is missing or failed."""


@dataclass(frozen=True, slots=True)
class LabNode:
    """A node namespace: ``address`` on its ``eth0``, ``gateway`` the router's end."""

    name: str
    namespace: str
    address: str
    gateway: str
    subnet: str


def missing_requirements(*, euid: int, ip: str | None, tun: Path) -> list[str]:
    """What this machine lacks for a lab, in words; empty when nothing is missing."""
    missing = []
    if euid != 0:
        missing.append(f"root (running as uid {euid})")
    if ip is None:
        missing.append("the `ip` command on PATH (Debian package iproute2)")
    if not tun.exists():
        missing.append(f"{tun} (the tun kernel module; in a container: --device /dev/net/tun)")
    return missing


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _python_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: ours) with the repository on PYTHONPATH, for ``python -m tests...``."""
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), out.get("PYTHONPATH")) if p)
    return out


async def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    """stdout of ``argv``; raises NetLabError with its stderr if it fails and ``check``."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(None if stdin is None else stdin.encode())
    if check and proc.returncode != 0:
        script = f"\ninput was:\n{stdin}" if stdin else ""
        raise NetLabError(
            f"`{shlex.join(argv)}` exited with {proc.returncode}: {err.decode().strip()}{script}"
        )
    return out.decode()


async def _ip_batch(lines: Iterable[str], *, netns: str | None = None) -> None:
    """Run ``ip`` commands (one per line, without ``ip``) in one process."""
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    await _run(argv, stdin="".join(f"{line}\n" for line in lines))


async def _sysctl(netns: str, values: Mapping[str, str]) -> None:
    """Write ``/proc/sys/<key>`` inside ``netns`` (keys like ``net/ipv4/ip_forward``)."""
    script = 'for kv; do printf %s "${kv#*=}" > "/proc/sys/${kv%%=*}" || exit 1; done'
    pairs = [f"{k}={v}" for k, v in values.items()]
    await _run(["ip", "netns", "exec", netns, "sh", "-c", script, "sh", *pairs])


def _ipv6_off() -> dict[str, str]:
    if not Path("/proc/sys/net/ipv6").exists():  # IPv6 disabled at boot
        return {}
    return {f"net/ipv6/conf/{c}/disable_ipv6": "1" for c in ("all", "default")}


def _namespaces() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def _lab_namespaces(lab_id: str) -> list[str]:
    return [n for n in _namespaces() if n.startswith(f"{PREFIX}{lab_id}-")]


def _lab_ids(namespaces: Iterable[str]) -> set[str]:
    return {n[len(PREFIX) :].split("-", 1)[0] for n in namespaces if n.startswith(PREFIX)}


def _root_link(lab_id: str) -> str:
    return f"{PREFIX}{lab_id}"


def _lock_path(lab_id: str) -> Path:
    return LOCK_DIR / f"{lab_id}.lock"


def _link_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path`` (created if missing), or None if held."""
    path.parent.mkdir(mode=0o755, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


@contextlib.asynccontextmanager
async def _allocation_lock(timeout: float = 120.0) -> AsyncIterator[None]:
    """Serialises lab set-ups on this machine: ids, address blocks and stale clean-up."""
    deadline = time.monotonic() + timeout
    while (fd := _try_lock(LOCK_DIR / "allocation.lock")) is None:
        if time.monotonic() > deadline:
            raise NetLabError(f"another lab set-up held {LOCK_DIR}/allocation.lock for {timeout} s")
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        os.close(fd)


async def _kill_everything_in(netns: str, *, timeout: float = 5.0) -> None:
    out = await _run(["ip", "netns", "pids", netns], check=False)
    pids = [int(p) for p in out.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(int(timeout / 0.02)):
        if not any(pid_alive(p) for p in pids):
            return
        await asyncio.sleep(0.02)


async def _delete_lab(lab_id: str) -> None:
    """Best effort: kill every process in the lab's namespaces, delete them and the root veth."""
    if _link_exists(_root_link(lab_id)):
        await _run(["ip", "link", "del", _root_link(lab_id)], check=False)
    namespaces = _lab_namespaces(lab_id)
    for netns in namespaces:
        await _kill_everything_in(netns)
    if namespaces:
        stdin = "".join(f"netns del {n}\n" for n in namespaces)
        await _run(["ip", "-force", "-batch", "-"], stdin=stdin, check=False)


def leftovers(lab_id: str) -> list[str]:
    """What of lab ``lab_id`` still exists: namespaces, the root veth, the lock file."""
    found = [f"namespace {n}" for n in _lab_namespaces(lab_id)]
    if _link_exists(_root_link(lab_id)):
        found.append(f"link {_root_link(lab_id)} in the root namespace")
    if _lock_path(lab_id).exists():
        found.append(f"lock file {_lock_path(lab_id)}")
    return found


async def remove_stale_labs() -> list[str]:
    """Delete every lab whose owner died without tearing it down; returns their ids.

    A lab is stale when nobody holds its lock file. Runs under the allocation
    lock, so no lab is half-way through being created meanwhile.
    """
    removed = []
    async with _allocation_lock():
        for lab_id in sorted(_lab_ids(_namespaces())):
            fd = _try_lock(_lock_path(lab_id))
            if fd is None:
                continue
            try:
                await _delete_lab(lab_id)
            finally:
                _lock_path(lab_id).unlink(missing_ok=True)
                os.close(fd)
            removed.append(lab_id)
    return removed


def _used_networks(routes_json: str, addresses_json: str) -> list[ipaddress.IPv4Network]:
    nets = []
    for route in json.loads(routes_json):
        dst = route.get("dst")
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.IPv4Network(dst, strict=False))
    for link in json.loads(addresses_json):
        for a in link.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                nets.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False))
    return nets


def free_octet(used: Iterable[ipaddress.IPv4Network]) -> int:
    """X such that no route or address in ``used`` lies inside 10.X.0.0/16."""
    used = list(used)
    for x in _OCTETS:
        block = ipaddress.IPv4Network(f"10.{x}.0.0/16")
        if not any(n.subnet_of(block) for n in used):
            return x
    raise NetLabError("every candidate block 10.128-254.0.0/16 is in use in the root namespace")


class NetLab:
    """Node namespaces behind a router whose delays are set per direction.

    ``async with NetLab(["a", "b"], delays_ms={("a", "b"): 5, ("b", "a"): 10}) as lab:``
    builds the namespaces and starts the delay line; leaving the block kills
    every process the lab started and removes everything it made, and raises
    :class:`NetLabError` if something could not be removed. If set-up fails,
    what it made so far is removed before the error propagates.

    Cancelling the ``async with`` entry is safe (the partial lab is removed);
    cancelling its exit may leave namespaces behind, which the next lab removes.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        delays_ms: Delays | None = None,
        jitter_ms: float = 0.0,
        seed: int | None = None,
        ready_timeout: float = 10.0,
    ) -> None:
        if isinstance(nodes, str) or not nodes:
            raise ValueError(f"nodes must be a non-empty sequence of names, not {nodes!r}")
        if len(nodes) > MAX_NODES:
            raise ValueError(f"nodes: at most {MAX_NODES} nodes, got {len(nodes)}")
        for name in nodes:
            if not _NODE_NAME.match(name) or name == _ROUTER:
                raise ValueError(
                    f"nodes: {name!r} must be 1-32 characters of a-z, 0-9 and inner '-', not 'r'"
                )
        if len(set(nodes)) != len(nodes):
            raise ValueError(f"nodes must be unique, got {list(nodes)}")
        self._names = tuple(nodes)
        self._delays = self._checked_delays(delays_ms or {})
        self._jitter_ms = _non_negative(jitter_ms, "jitter_ms")
        self._seed = seed
        self._ready_timeout = ready_timeout
        self._id: str | None = None
        self._octet: int | None = None
        self._lock_fd: int | None = None
        self._workdir: Path | None = None
        self._delayline: asyncio.subprocess.Process | None = None
        self._processes: list[asyncio.subprocess.Process] = []
        self._reload_lock = asyncio.Lock()

    # -- what a test reads --------------------------------------------------

    def _built(self) -> tuple[str, int]:
        if self._id is None or self._octet is None:
            raise NetLabError("the lab is not set up: use `async with NetLab(...) as lab`")
        return self._id, self._octet

    @property
    def id(self) -> str:
        """The lab's unique id: its namespaces are ``lsn-<id>-r`` and ``lsn-<id>-<node>``."""
        return self._built()[0]

    @property
    def router_namespace(self) -> str:
        return f"{PREFIX}{self.id}-{_ROUTER}"

    @property
    def control_address(self) -> str:
        """The root namespace's address on the control veth; reached from nodes with no delay."""
        return f"10.{self._built()[1]}.{_CONTROL_OCTET}.1"

    @property
    def nodes(self) -> tuple[LabNode, ...]:
        """The nodes in the order given, with their namespaces and addresses."""
        lab_id, x = self._built()
        return tuple(
            LabNode(
                name=name,
                namespace=f"{PREFIX}{lab_id}-{name}",
                address=f"10.{x}.{i}.2",
                gateway=f"10.{x}.{i}.1",
                subnet=f"10.{x}.{i}.0/24",
            )
            for i, name in enumerate(self._names, start=1)
        )

    def node(self, name: str) -> LabNode:
        """The node called ``name``; ValueError if there is none."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise ValueError(f"node: no node {name!r} in this lab ({', '.join(self._names)})")

    def delay_ms(self, src: str, dst: str) -> float:
        """The configured one-way delay from ``src`` to ``dst``."""
        return self._delays.get((src, dst), 0.0)

    def configured_rtt_ms(self, a: str, b: str) -> float:
        """d(a -> b) + d(b -> a): what a ping between them should take."""
        return self.delay_ms(a, b) + self.delay_ms(b, a)

    # -- life cycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._id is not None:
            raise NetLabError(f"a NetLab is entered once; lab {self._id} was already")
        missing = missing_requirements(euid=os.geteuid(), ip=shutil.which("ip"), tun=TUN_DEVICE)
        if missing:
            raise NetLabError("the network lab needs " + "; ".join(missing))
        try:
            await self._build()
            await self._start_delayline()
        except BaseException:
            await self._teardown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._teardown()

    async def _build(self) -> None:
        await remove_stale_labs()
        async with _allocation_lock():
            self._id = self._new_id()
            self._lock_fd = _try_lock(_lock_path(self._id))
            if self._lock_fd is None:
                raise NetLabError(f"lock {_lock_path(self._id)} is held by another process")
            self._octet = free_octet(
                _used_networks(
                    await _run(["ip", "-j", "-4", "route", "show", "table", "all"]),
                    await _run(["ip", "-j", "-4", "address", "show"]),
                )
            )
            await self._make_namespaces()
        self._workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{self._id}-"))
        self._write_config()

    @staticmethod
    def _new_id() -> str:
        taken = _lab_ids(_namespaces())
        while True:
            lab_id = secrets.token_hex(3)
            if lab_id not in taken and not _lock_path(lab_id).exists():
                return lab_id

    async def _make_namespaces(self) -> None:
        lab_id, x = self._built()
        router, root_link = self.router_namespace, _root_link(lab_id)
        nodes = self.nodes
        try:
            await _ip_batch(
                [
                    f"netns add {router}",
                    *(f"netns add {n.namespace}" for n in nodes),
                    f"link add name {root_link} type veth peer name ctl netns {router}",
                    *(
                        f"link add name n{i} netns {router} type veth"
                        f" peer name eth0 netns {n.namespace}"
                        for i, n in enumerate(nodes, start=1)
                    ),
                ]
            )
        except NetLabError as e:
            raise NetLabError(
                "cannot create network namespaces and veths"
                f" (needs CAP_SYS_ADMIN and CAP_NET_ADMIN): {e}"
            ) from None
        # rp_filter off: packets written back to tun0 come in there, from node subnets whose
        # routes point elsewhere. IPv6 off: nothing but the lab's IPv4 crosses tun0.
        sysctls = {"net/ipv4/ip_forward": "1"}
        for conf in ("all", "default", "ctl", *(f"n{i}" for i in range(1, len(nodes) + 1))):
            sysctls[f"net/ipv4/conf/{conf}/rp_filter"] = "0"
        sysctls.update(_ipv6_off())
        await _sysctl(router, sysctls)
        delayed = f"10.{x}.0.0/17"
        await _ip_batch(
            [
                "link set lo up",
                f"address add 10.{x}.{_CONTROL_OCTET}.2/24 dev ctl",
                "link set ctl up",
                "tuntap add dev tun0 mode tun",
                "link set tun0 up",
                f"route add default dev tun0 table {_DELAY_TABLE}",
                *(
                    line
                    for i, n in enumerate(nodes, start=1)
                    for line in (
                        f"address add {n.gateway}/24 dev n{i}",
                        f"link set n{i} up",
                        f"rule add iif n{i} to {delayed} lookup {_DELAY_TABLE} pref {_RULE_PREF}",
                    )
                ),
            ],
            netns=router,
        )
        for n in nodes:
            await _ip_batch(
                [
                    "link set lo up",
                    f"address add {n.address}/24 dev eth0",
                    "link set eth0 up",
                    f"route add default via {n.gateway}",
                ],
                netns=n.namespace,
            )
        await _ip_batch(
            [
                f"address add {self.control_address}/24 dev {root_link}",
                f"link set {root_link} up",
                f"route add {delayed} via 10.{x}.{_CONTROL_OCTET}.2 dev {root_link}",
            ]
        )

    def _config_path(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "delayline.json"

    def _write_config(self) -> None:
        rows: dict[str, dict[str, float]] = {}
        for (src, dst), ms in self._delays.items():
            rows.setdefault(src, {})[dst] = ms
        config = {
            "tun": "tun0",
            "nodes": {n.name: n.subnet for n in self.nodes},
            "delays_ms": rows,
            "jitter_ms": self._jitter_ms,
            "seed": self._seed,
        }
        path = self._config_path()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=1))
        tmp.replace(path)

    def _delayline_log(self) -> str:
        assert self._workdir is not None
        try:
            return (self._workdir / "delayline.log").read_text(errors="replace").strip()
        except OSError:
            return ""

    async def _start_delayline(self) -> None:
        assert self._workdir is not None
        with (self._workdir / "delayline.log").open("wb") as log:
            self._delayline = await asyncio.create_subprocess_exec(
                *("ip", "netns", "exec", self.router_namespace, sys.executable),
                *("-m", _DELAYLINE_MODULE, "--config", str(self._config_path())),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=_python_env(),
                cwd=_REPO_ROOT,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        line = await self._delayline_line()
        if line != "ready":
            raise NetLabError(
                f"the delay line did not start (said {line!r}, exit code "
                f"{self._delayline.returncode}): {self._delayline_log()}"
            )

    async def _delayline_line(self) -> str:
        assert self._delayline is not None and self._delayline.stdout is not None
        try:
            async with asyncio.timeout(self._ready_timeout):
                raw = await self._delayline.stdout.readline()
        except TimeoutError:
            return f"nothing in {self._ready_timeout} s"
        if not raw:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._delayline.wait()
        return raw.decode(errors="replace").strip()

    async def _teardown(self) -> None:
        try:
            for proc in [*self._processes, self._delayline]:
                if proc is not None:
                    await _stop(proc)
            self._processes.clear()
            if self._id is not None:
                await _delete_lab(self._id)
        finally:
            if self._id is not None:
                _lock_path(self._id).unlink(missing_ok=True)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
        if self._id is not None:
            left = leftovers(self._id)
            if left:
                raise NetLabError(f"lab {self._id} could not remove: {', '.join(left)}")

    # -- what a test does ---------------------------------------------------

    def _checked_delays(self, delays_ms: Delays) -> dict[tuple[str, str], float]:
        checked = {}
        for pair, ms in delays_ms.items():
            src, dst = pair
            for name in pair:
                if name not in self._names:
                    raise ValueError(f"delays_ms[{pair!r}]: no node {name!r}")
            if src == dst:
                raise ValueError(f"delays_ms[{pair!r}]: a node reaches itself without the router")
            checked[(src, dst)] = _non_negative(ms, f"delays_ms[{pair!r}]")
        return checked

    async def set_delays(self, delays_ms: Delays, *, jitter_ms: float | None = None) -> None:
        """Replace every delay (and the jitter, if given); returns once the delay line uses them.

        Packets already waiting keep their old delay. Cancelling is not safe:
        the delay line may or may not have switched.
        """
        delays = self._checked_delays(delays_ms)
        jitter = self._jitter_ms if jitter_ms is None else _non_negative(jitter_ms, "jitter_ms")
        if self._delayline is None or self._delayline.returncode is not None:
            raise NetLabError("the delay line is not running")
        async with self._reload_lock:
            self._delays, self._jitter_ms = delays, jitter
            self._write_config()
            self._delayline.send_signal(signal.SIGHUP)
            line = await self._delayline_line()
        if line != "reloaded":
            raise NetLabError(f"the delay line did not take the new delays: {line!r}")

    async def exec_in(
        self,
        node: str,
        argv: Sequence[str],
        *,
        stdin: Stream = asyncio.subprocess.DEVNULL,
        stdout: Stream = asyncio.subprocess.PIPE,
        stderr: Stream = asyncio.subprocess.PIPE,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` inside ``node``'s namespace (``ip netns exec``).

        The process leads a new session; leaving the lab kills that session
        (SIGTERM, then SIGKILL after 2 s) and anything else left in the
        namespace. ``env`` defaults to ours; ``cwd`` to ours.
        """
        netns = self.node(node).namespace
        if not argv:
            raise ValueError("argv must not be empty")
        self._processes = [p for p in self._processes if p.returncode is None]
        proc = await asyncio.create_subprocess_exec(
            *("ip", "netns", "exec", netns, *argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=None if env is None else dict(env),
            cwd=cwd,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
        self._processes.append(proc)
        return proc

    async def ping_rtt(
        self,
        src: str,
        dst: str,
        *,
        count: int = 5,
        interval: float = 0.05,
        timeout: float = 2.0,
    ) -> float:
        """Median RTT in ms of ``count`` ICMP echoes from node ``src`` to ``dst``.

        ``dst`` is a node name or an IPv4 address (e.g. :attr:`control_address`).
        Raises NetLabError if no echo came back. Cancelling is safe.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        try:
            target = self.node(dst).address
        except ValueError:
            try:
                target = str(ipaddress.IPv4Address(dst))
            except ValueError:
                raise ValueError(
                    f"dst must be a node name or an IPv4 address, not {dst!r}"
                ) from None
        argv = [sys.executable, "-m", "tests.realnet.netlab", "ping", target]
        argv += [f"--count={count}", f"--interval={interval}", f"--timeout={timeout}"]
        proc = await self.exec_in(src, argv, env=_python_env())
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise NetLabError(f"ping from {src} to {dst} failed: {err.decode().strip()}")
        rtts: list[float] = [r for r in json.loads(out)["rtts_ms"] if r is not None]
        if not rtts:
            raise NetLabError(f"no echo reply from {dst} ({target}) to {src} in {count} tries")
        return statistics.median(rtts)


def _non_negative(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number of milliseconds, not {value!r}")
    return float(value)


async def _stop(proc: asyncio.subprocess.Process, *, grace: float = 2.0) -> None:
    """SIGTERM to the process's session, SIGKILL after ``grace`` s; reaps it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await proc.wait()


# -- the ICMP echo run inside a node namespace ------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp_echo_rtts(dst: str, *, count: int, interval: float, timeout: float) -> list[float | None]:
    """RTT in ms of each of ``count`` echo requests sent one after the other; None if lost."""
    ident = os.getpid() & 0xFFFF
    token = secrets.token_bytes(16)
    rtts: list[float | None] = []
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        for seq in range(count):
            if seq:
                time.sleep(interval)
            unsigned = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + token
            packet = struct.pack("!BBHHH", 8, 0, _checksum(unsigned), ident, seq) + token
            sent = time.perf_counter()
            s.sendto(packet, (dst, 0))
            rtt = None
            while rtt is None and (left := sent + timeout - time.perf_counter()) > 0:
                s.settimeout(left)
                try:
                    data = s.recv(65535)
                except TimeoutError:
                    break
                received = time.perf_counter()
                icmp = data[(data[0] & 0x0F) * 4 :]
                if icmp[:1] == b"\0" and icmp[4:] == packet[4:]:
                    rtt = (received - sent) * 1000
            rtts.append(rtt)
    return rtts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.realnet.netlab")
    commands = parser.add_subparsers(dest="command", required=True)
    ping = commands.add_parser("ping", help='ICMP echo; prints {"rtts_ms": [...]}, null if lost')
    ping.add_argument("address")
    ping.add_argument("--count", type=int, default=5)
    ping.add_argument("--interval", type=float, default=0.05, help="seconds between echoes")
    ping.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for a reply")
    args = parser.parse_args(argv)
    rtts = icmp_echo_rtts(
        args.address, count=args.count, interval=args.interval, timeout=args.timeout
    )
    print(json.dumps({"rtts_ms": rtts}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
