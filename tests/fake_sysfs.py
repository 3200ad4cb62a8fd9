"""A fake sysfs tree of NUMA nodes and PCI devices, for the agent's topology discovery."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

NVIDIA, AMD, INTEL = "0x10de", "0x1002", "0x8086"
VGA, DISPLAY_3D, ETHERNET = "0x030000", "0x030200", "0x020000"


def build(
    root: Path,
    nodes: Mapping[int, tuple[str, int]],
    devices: Sequence[tuple[str, str, int]] = (),
) -> Path:
    """``nodes``: NUMA id -> (cpulist, MemTotal in kB); ``devices``: (vendor, class,
    numa_node) each, added to those already there. Returns ``root``."""
    for numa_id, (cpulist, kb) in nodes.items():
        d = root / "devices" / "system" / "node" / f"node{numa_id}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "cpulist").write_text(cpulist + "\n")
        (d / "meminfo").write_text(
            f"Node {numa_id} MemTotal:       {kb} kB\nNode {numa_id} MemFree:        1024 kB\n"
        )
    pci = root / "bus" / "pci" / "devices"
    pci.mkdir(parents=True, exist_ok=True)
    present = len(list(pci.iterdir()))  # a second call adds devices
    for i, (vendor, klass, numa) in enumerate(devices, start=present):
        d = pci / f"0000:{i + 1:02x}:00.0"
        d.mkdir()
        (d / "vendor").write_text(vendor + "\n")
        (d / "class").write_text(klass + "\n")
        (d / "numa_node").write_text(f"{numa}\n")
    return root
