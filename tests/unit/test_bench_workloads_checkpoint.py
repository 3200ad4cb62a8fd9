"""A workloads run writes its finished test cases as it goes: cut short, it keeps them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import __main__ as bench_main
from bench import workloads


def sample(name: str, peer: str, rep: int) -> workloads.Sample:
    return workloads.Sample(
        workload=name, peer=peer, repeat=rep, position=0, measured_pods=100,
        pods_per_s=200.0 if peer == "lasched" else 100.0, pods_per_s_binds=200.0,
        makespan_s=0.5, makespan_binds_s=0.5, p50_ms=10.0, p99_ms=20.0,
        events_missing=0, unbound=0, setup_s=1.0, cpu_seconds=1.0, peak_rss_mb=50.0,
        verify={"ok": True, "violations": 0},
    )  # fmt: skip


def test_a_run_cut_short_after_its_first_case_leaves_that_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    async def cut_short(cfg: workloads.Config, progress: Any, checkpoint: Any) -> Any:
        first = workloads.build(cfg.workloads[0], cfg.nodes, seed=cfg.seed, node_prefix="w0")
        done = [sample(first.name, peer, 0) for peer in cfg.peers]
        checkpoint([first], done)
        seen.append(orjson.loads((tmp_path / "workloads.json").read_bytes()))
        raise KeyboardInterrupt  # the run is stopped during the second test case

    monkeypatch.setattr(workloads, "run", cut_short)
    argv = ["run", "workloads", "--nodes", "100", "--repeat", "1", "--out", str(tmp_path)]
    argv += ["--workloads", "SchedulingBasic,TopologySpreading"]
    with pytest.raises(KeyboardInterrupt):
        bench_main.main(argv)
    [partial] = seen
    assert list(partial["workloads"]) == ["SchedulingBasic"]
    assert set(partial["summary"]["SchedulingBasic"]) == {"lasched", "kube-scheduler-tuned"}
    table = (tmp_path / "workloads.md").read_text()
    assert "SchedulingBasic" in table
    assert "Partial: 1 of 2 test cases done" in table
