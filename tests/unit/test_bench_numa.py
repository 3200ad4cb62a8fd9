"""The numa scenario's zone check and workload: pure parts, no cluster."""

from __future__ import annotations

from bench import numa, numazones
from bench.numazones import Need


def test_pods_that_each_fit_a_zone_are_all_placed() -> None:
    """Two zones of 2 GPUs hold two 2-GPU pods, one each."""
    zones = [Need(8000, 32, 2)] * 2
    assert numazones.most_in_zones(zones, [Need(4000, 16, 2)] * 2) == 2


def test_a_pod_fragmented_across_zones_is_left_without_one() -> None:
    """Three 1-GPU pods and a 2-GPU pod on two 2-GPU zones: the node's 4 GPUs hold them all,
    no zone assignment does."""
    zones = [Need(8000, 32, 2)] * 2
    pods = [Need(2000, 8, 1)] * 3 + [Need(2000, 8, 2)]
    assert numazones.most_in_zones(zones, pods) == 3


def test_cpu_counts_as_well_as_gpus() -> None:
    """Two 6-CPU pods cannot share an 8-CPU zone even with GPUs to spare."""
    zones = [Need(8000, 32, 4)]
    assert numazones.most_in_zones(zones, [Need(6000, 8, 1)] * 2) == 1


def test_the_check_reads_zones_and_needs_as_the_api_gives_them() -> None:
    """An NRT built for the run and a training pod's body read back as their amounts."""
    assert numazones.zones_from_nrt(numazones.topology("n", 3)) == [Need(8000, 32, 2)] * 3
    plan = numazones.PodPlan("p", Need(3000, 12, 1), "g", 2)
    assert numazones.need_of(numazones.body(plan, "lasched", numa=True)) == Need(3000, 12, 1)
    ordinary = numazones.body(numazones.PodPlan("w", None), "lasched", numa=True)
    assert numazones.need_of(ordinary) is None


def test_the_workload_fills_gpus_to_the_fill_and_keeps_ordinary_pods() -> None:
    """Training pods' GPUs reach the fill; gangs are whole; two ordinary pods per zone."""
    plans = numazones.workload(zones_total=40, seed=3, gpu_fill=0.9)
    gpus = sum(p.need.gpus for p in plans if p.need is not None)
    assert gpus >= 0.9 * 40 * numazones.ZONE_GPUS
    assert sum(1 for p in plans if p.need is None) == 80
    groups: dict[str, int] = {}
    for p in plans:
        if p.group is not None:
            groups[p.group] = groups.get(p.group, 0) + 1
    assert all(n == next(p.group_size for p in plans if p.group == g) for g, n in groups.items())


def test_annotations_only_when_numa_is_asked() -> None:
    """The run without NUMA sends the same pods without KubeNexus's annotations."""
    plan = numazones.PodPlan("p", Need(2000, 8, 1), "g", 2)
    assert numazones.POLICY in numazones.body(plan, "x", numa=True)["metadata"]["annotations"]
    assert not numazones.body(plan, "x", numa=False)["metadata"]["annotations"]


def test_a_lasched_run_with_a_pod_outside_any_zone_fails_the_check() -> None:
    """Only lasched with NUMA must reach 100%; the other peers are reported, not failed."""

    def sample(peer: str, in_zone: int) -> numa.Sample:
        return numa.Sample(peer, 0, 10, 10, in_zone, 5, 5, 90.0, 50.0, 1.0, 10.0)

    assert numa.failures([sample("kube-scheduler-tuned", 7), sample("lasched", 10)]) == []
    assert numa.failures([sample("lasched", 9)]) == [
        "lasched, repetition 1: 1 of 10 NUMA pods bound where no zone fits"
    ]
