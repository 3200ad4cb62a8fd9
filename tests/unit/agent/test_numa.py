"""The agent's NUMA discovery from a fake sysfs tree, and the watch that reports changes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lasched_agent.numa import (
    SysfsError,
    TopologyWatch,
    count_cpulist,
    discover,
    memtotal_bytes,
)
from lasched_protocol import NumaZone
from tests import fake_sysfs
from tests.fake_sysfs import AMD, DISPLAY_3D, ETHERNET, INTEL, NVIDIA, VGA

GIB_KB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "count"),
    [("0-3,8-11", 8), ("0", 1), ("", 0), ("\n", 0), ("0-0,2,4-5\n", 4), ("0-1023", 1024)],
    ids=["ranges", "one", "empty", "newline", "mixed", "wide"],
)
def test_cpulist_counts_cpus(text: str, count: int) -> None:
    """A kernel cpulist counts every CPU of its ranges and singles."""
    assert count_cpulist(text) == count


@pytest.mark.parametrize("text", ["3-1", "a-b", "1,,2", "-3", "0-", "0-99999999999"], ids=str)
def test_cpulist_refuses_what_is_no_range(text: str) -> None:
    """A reversed, empty, non-numeric or absurd range is an error naming the cpulist."""
    with pytest.raises(SysfsError, match="cpulist"):
        count_cpulist(text)


def test_meminfo_gives_the_nodes_memtotal_in_bytes() -> None:
    """``Node N MemTotal: n kB`` of the right node, in bytes; another node's line is no answer."""
    text = "Node 1 MemFree: 5 kB\nNode 1 MemTotal:   65536 kB\n"
    assert memtotal_bytes(text, 1) == 65536 * 1024
    with pytest.raises(SysfsError, match="Node 0 MemTotal"):
        memtotal_bytes(text, 0)


def test_discover_reads_cpus_memory_and_gpus_per_numa_node(tmp_path: Path) -> None:
    """Two NUMA nodes: CPUs from cpulist, memory from meminfo, NVIDIA and AMD display
    controllers counted where numa_node says; a NIC and a GPU without affinity are not."""
    root = fake_sysfs.build(
        tmp_path,
        {0: ("0-3,8-11", 64 * GIB_KB), 1: ("4-7,12-15", 32 * GIB_KB)},
        [
            (NVIDIA, DISPLAY_3D, 1),
            (NVIDIA, VGA, 1),
            (NVIDIA, DISPLAY_3D, -1),
            (AMD, "0x038000", 0),
            (INTEL, ETHERNET, 0),
        ],
    )
    assert discover(root) == (
        NumaZone(0, (("amd.com/gpu", 1), ("cpu", 8), ("memory", 64 << 30))),
        NumaZone(1, (("cpu", 8), ("memory", 32 << 30), ("nvidia.com/gpu", 2))),
    )


def test_discover_leaves_out_an_unreadable_node_and_reports_nothing_without_numa(
    tmp_path: Path,
) -> None:
    """A node whose meminfo lacks its line is left out; no node directory at all is None."""
    root = fake_sysfs.build(tmp_path / "a", {0: ("0-1", 1024), 1: ("2-3", 1024)})
    (root / "devices/system/node/node1/meminfo").write_text("garbage\n")
    zones = discover(root)
    assert zones is not None and [z.id for z in zones] == [0]
    assert discover(tmp_path / "nothing-here") is None


async def test_watch_reports_a_change_once_and_waits_for_the_next(tmp_path: Path) -> None:
    """next() gives the first report, then waits until a scan finds something different."""
    root = fake_sysfs.build(tmp_path, {0: ("0-3", GIB_KB)})
    watch = TopologyWatch(root, policy="single-numa-node", scope="pod", interval=60)
    assert await watch.scan()
    version, report = await asyncio.wait_for(watch.next(0), 1)
    assert (report.policy, report.scope, [z.id for z in report.zones]) == (
        "single-numa-node", "pod", [0],
    )  # fmt: skip
    assert not await watch.scan()  # nothing changed
    waiting = asyncio.create_task(watch.next(version))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    fake_sysfs.build(tmp_path, {1: ("4-7", GIB_KB)})
    assert await watch.scan()
    _, newer = await asyncio.wait_for(waiting, 1)
    assert [z.id for z in newer.zones] == [0, 1]
