"""The workloads table says where the cores went during each measured op."""

from __future__ import annotations

import dataclasses

from bench import controlplane, workloads


def sample(peer: str, rep: int, scheduler_cpu: float) -> workloads.Sample:
    window = controlplane.Window(
        seconds=2.0,
        cpu_percent={"kube-apiserver": 110.0, "etcd": 15.0, "kwok": 30.0},
        requests={"binding": (400, 9.5), "Event create": (400, 11.0)},
    )
    return workloads.Sample(
        workload="SchedulingBasic", peer=peer, repeat=rep, position=0, measured_pods=400,
        pods_per_s=200.0, pods_per_s_binds=200.0, makespan_s=2.0, makespan_binds_s=2.0,
        p50_ms=10.0, p99_ms=20.0, events_missing=0, unbound=0, setup_s=1.0,
        cpu_seconds=1.0, peak_rss_mb=50.0, verify={"ok": True, "violations": 0},
        **workloads._shares(window, scheduler=scheduler_cpu, harness=0.2),
    )  # fmt: skip


def test_shares_are_per_core_over_the_window() -> None:
    s = sample("lasched", 0, scheduler_cpu=0.3)
    assert s.cpu_percent["scheduler"] == 15.0  # 0.3 s of CPU over 2 s
    assert s.cpu_percent["harness"] == 10.0
    assert s.cpu_percent["kube-apiserver"] == 110.0
    assert s.apiserver_ms == {"binding": 9.5, "Event create": 11.0}
    assert workloads._shares(None, scheduler=1.0, harness=1.0) == {}


def test_the_table_has_a_row_per_peer_with_medians_and_their_sum() -> None:
    samples = [sample("lasched", r, cpu) for r, cpu in enumerate((0.2, 0.3, 0.4))]
    samples += [sample("kube-scheduler-tuned", r, 1.0) for r in range(3)]
    cfg = workloads.Config(workloads=("SchedulingBasic",), repeat=3)
    result = workloads.to_json(cfg, [], samples, {})
    figs = result["summary"]["SchedulingBasic"]["lasched"]
    st = figs["cpu_percent:scheduler"]
    assert (round(st["median"], 6), round(st["min"], 6), round(st["max"], 6), st["n"]) == (
        15.0, 10.0, 20.0, 3,
    )  # fmt: skip
    rows = [line for line in workloads._cpu_lines(result["summary"]) if "SchedulingBasic" in line]
    assert len(rows) == 2
    # apiserver 110 + etcd 15 + kwok 30 + scheduler 15 + harness 10 (no controller manager)
    assert rows[0].split(" | ")[2:10] == ["110", "15", "30", "-", "15", "10", "180", "-"]
    assert "9.5" in rows[0] and "11.0" in rows[0]
    assert rows[1].split(" | ")[6] == "50"  # kube-scheduler: 1 s over 2 s


def test_no_table_without_the_figures() -> None:
    s = dataclasses.replace(sample("lasched", 0, 0.3), cpu_percent={}, apiserver_ms={})
    result = workloads.to_json(workloads.Config(), [], [s], {})
    assert workloads._cpu_lines(result["summary"]) == []


def test_the_floor_runs_only_where_round_robin_placement_is_valid() -> None:
    cfg = workloads.Config(peers=("lasched", "floor", "kube-scheduler-tuned"))
    assert workloads.peers_for(cfg, "SchedulingBasic") == list(cfg.peers)
    assert workloads.peers_for(cfg, "SchedulingPodAntiAffinity") == [
        "lasched",
        "kube-scheduler-tuned",
    ]
    result = workloads.to_json(cfg, [], [sample("lasched", 0, 0.3)], {})
    assert result["floor_workloads"] == ["SchedulingBasic"]
    assert "runs on SchedulingBasic only" in workloads.markdown(result)
