"""This node's NUMA zones, read from sysfs, for the scheduler where no one publishes them.

Opt-in (``--report-topology``): where neither Node Feature Discovery nor the
resource-topology-exporter publishes a NodeResourceTopology, the agent tells
lasched what the machine has in each NUMA node, in a
:class:`~lasched_protocol.Topology` message:

* ``cpu``: the CPUs in ``<sysfs>/devices/system/node/node<N>/cpulist``
  (``0-3,8-11`` is 8);
* ``memory``: ``Node <N> MemTotal: <n> kB`` in that directory's ``meminfo``;
* accelerators: every ``<sysfs>/bus/pci/devices/*`` whose ``vendor`` and
  ``class`` are in :data:`DEVICE_RESOURCES` (NVIDIA's display controllers
  are ``nvidia.com/gpu``), counted in the zone its ``numa_node`` names. A
  device with ``numa_node`` -1 has no NUMA affinity and is not reported.

Invariant: a report holds only what could be read whole. A NUMA node whose
files cannot be read or parsed is left out and logged; a machine with no
NUMA node directory gives no report at all (None), so the scheduler keeps
treating the node as publishing nothing rather than as one empty zone.

The sysfs root is an argument, so tests build a fake tree. Parsers run in
time linear in their input and refuse what is out of range.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lasched_agent.clock import Clock, SystemClock
from lasched_protocol import (
    MAX_AMOUNT,
    MAX_NUMA_ID,
    MAX_ZONES,
    NumaZone,
    TopologyPolicy,
    TopologyScope,
)

log = logging.getLogger(__name__)

DEFAULT_SYSFS = Path("/sys")

MAX_CPU_ID = 1 << 20
"""A CPU number beyond this in a cpulist is not one."""

DEVICE_RESOURCES: Mapping[tuple[int, int], str] = {
    (0x10DE, 0x03): "nvidia.com/gpu",  # NVIDIA, display controllers (VGA 0x0300, 3D 0x0302)
    (0x1002, 0x03): "amd.com/gpu",  # AMD, display controllers (Instinct is 0x0380)
}
"""(PCI vendor, PCI base class) -> the extended resource its device plugin advertises."""

_NODE_DIR = re.compile(r"node(\d{1,4})")
_MEMTOTAL = re.compile(r"Node\s+(\d+)\s+MemTotal:\s+(\d{1,16})\s+kB")


class SysfsError(ValueError):
    """A sysfs file that does not hold what the kernel writes there; the message names it."""


def count_cpulist(text: str) -> int:
    """How many CPUs a kernel cpulist names (``0-3,8-11`` is 8; empty is 0)."""
    text = text.strip()
    if not text:
        return 0
    total = 0
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise SysfsError(f"cpulist {text[:64]!r} has {part[:32]!r}, which is no CPU range")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first or last > MAX_CPU_ID:
            raise SysfsError(f"cpulist {text[:64]!r} has the range {part[:32]!r}")
        total += last - first + 1
    return total


def memtotal_bytes(text: str, numa_id: int) -> int:
    """``Node <id> MemTotal: <n> kB`` of a NUMA node's meminfo, in bytes."""
    for line in text.splitlines():
        m = _MEMTOTAL.match(line.strip())
        if m and int(m.group(1)) == numa_id:
            return min(int(m.group(2)) * 1024, MAX_AMOUNT)
    raise SysfsError(f"meminfo of node{numa_id} has no 'Node {numa_id} MemTotal: <n> kB' line")


def _hex(path: Path) -> int:
    text = path.read_text().strip()
    try:
        return int(text, 16)
    except ValueError:
        raise SysfsError(f"{path} holds {text[:32]!r}, not a hexadecimal number") from None


def _devices(root: Path) -> dict[int, dict[str, int]]:
    """Accelerators by NUMA node: {numa id: {resource: count}}."""
    out: dict[int, dict[str, int]] = {}
    pci = root / "bus" / "pci" / "devices"
    if not pci.is_dir():
        return out
    for dev in sorted(pci.iterdir()):
        try:
            vendor, klass = _hex(dev / "vendor"), _hex(dev / "class")
            resource = DEVICE_RESOURCES.get((vendor, klass >> 16))
            if resource is None:
                continue
            numa = int((dev / "numa_node").read_text().strip())
        except (OSError, ValueError) as e:
            log.debug("PCI device %s skipped: %s", dev.name, e)
            continue
        if 0 <= numa <= MAX_NUMA_ID:
            zone = out.setdefault(numa, {})
            zone[resource] = zone.get(resource, 0) + 1
    return out


def discover(root: Path = DEFAULT_SYSFS) -> tuple[NumaZone, ...] | None:
    """The machine's NUMA zones under sysfs ``root``; None when it shows no NUMA node."""
    nodes = root / "devices" / "system" / "node"
    try:
        entries = sorted(nodes.iterdir()) if nodes.is_dir() else []
    except OSError as e:
        log.warning("cannot list %s: %s", nodes, e)
        return None
    ids = [int(m.group(1)) for e in entries if (m := _NODE_DIR.fullmatch(e.name))]
    ids = sorted(i for i in ids if i <= MAX_NUMA_ID)[:MAX_ZONES]
    if not ids:
        return None
    devices = _devices(root)
    zones = []
    for numa_id in ids:
        d = nodes / f"node{numa_id}"
        try:
            cpus = count_cpulist((d / "cpulist").read_text())
            memory = memtotal_bytes((d / "meminfo").read_text(), numa_id)
        except (OSError, SysfsError) as e:
            log.warning("NUMA node %d left out of the topology report: %s", numa_id, e)
            continue
        resources = {"cpu": cpus, "memory": memory, **devices.get(numa_id, {})}
        zones.append(NumaZone(id=numa_id, resources=tuple(sorted(resources.items()))))
    return tuple(zones) if zones else None


@dataclass(frozen=True, slots=True)
class Report:
    """What the agent reports: the zones, and the kubelet's policy and scope as configured."""

    zones: tuple[NumaZone, ...]
    policy: TopologyPolicy
    scope: TopologyScope


class TopologyWatch:
    """Reads the zones at start and every ``interval`` seconds; :meth:`next` waits for a change.

    Connections (one, or one per replica with fan-out) each keep the
    :attr:`version` they sent last and await :meth:`next` for a newer one.
    """

    def __init__(
        self,
        root: Path = DEFAULT_SYSFS,
        *,
        policy: TopologyPolicy = "none",
        scope: TopologyScope = "container",
        interval: float = 60.0,
        clock: Clock | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self.root = root
        self.policy: TopologyPolicy = policy
        self.scope: TopologyScope = scope
        self.interval = interval
        self.report: Report | None = None
        self.version = 0
        """Bumped on every change of :attr:`report` (0: nothing read yet)."""
        self._clock: Clock = clock or SystemClock()
        self._changed = asyncio.Condition()

    async def scan(self) -> bool:
        """Read sysfs once (in a thread: it is file I/O); True if the report changed."""
        zones = await asyncio.to_thread(discover, self.root)
        report = None if zones is None else Report(zones, self.policy, self.scope)
        if report == self.report:
            return False
        if report is None:
            log.warning("no NUMA node under %s: reporting no topology", self.root)
        else:
            log.info("NUMA topology read zones=%d root=%s", len(report.zones), self.root)
        async with self._changed:
            self.report = report
            self.version += 1
            self._changed.notify_all()
        return True

    async def run(self) -> None:
        """Scan every ``interval`` until cancelled; cancelling is safe."""
        while True:
            await self.scan()
            await self._clock.sleep(self.interval)

    async def next(self, seen: int) -> tuple[int, Report]:
        """The first report newer than version ``seen``; cancelling is safe."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > seen and self.report is not None)
            assert self.report is not None
            return self.version, self.report
