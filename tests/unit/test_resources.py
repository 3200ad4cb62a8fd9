"""A pod's request is computed as kube-scheduler computes it."""

from __future__ import annotations

from typing import Any

from lasched.model.resources import (
    DEFAULT_MEMORY_REQUEST,
    DEFAULT_MILLI_CPU_REQUEST,
    Resources,
    non_zero_requests,
    pod_requests,
)


def c(cpu: str | None = None, memory: str | None = None, **extra: Any) -> dict[str, Any]:
    req = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    out: dict[str, Any] = {"name": "c", "resources": {"requests": req}}
    out.update(extra)
    return out


def test_containers_are_summed() -> None:
    """Regular containers run together: their requests add up."""
    r = pod_requests({"containers": [c("100m", "1Gi"), c("200m", "1Gi")]})
    assert (r.milli_cpu, r.memory) == (300, 2 * 2**30)


def test_init_container_peak_wins_when_larger() -> None:
    """An init container runs alone; if it needs more than the app, the pod needs that."""
    r = pod_requests({"containers": [c("100m")], "initContainers": [c("2")]})
    assert r.milli_cpu == 2000


def test_sidecars_add_to_containers_and_later_init_containers() -> None:
    """Restartable init containers (sidecars) run beside everything after them."""
    spec = {
        "initContainers": [c("500m", restartPolicy="Always"), c("1")],
        "containers": [c("200m")],
    }
    # Phase 1: sidecar 500m + init 1000m = 1500m; phase 2: sidecar + app = 700m.
    assert pod_requests(spec).milli_cpu == 1500


def test_overhead_is_added() -> None:
    """RuntimeClass overhead counts on top of the containers."""
    r = pod_requests({"containers": [c("100m")], "overhead": {"cpu": "250m"}})
    assert r.milli_cpu == 350


def test_extended_resources_are_kept_by_name() -> None:
    """Extended resources such as GPUs are tracked as scalars."""
    r = pod_requests(
        {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "2"}}}]}
    )
    assert r.scalar == {"nvidia.com/gpu": 2}


def test_pod_level_requests_replace_the_container_sum() -> None:
    """PodLevelResources: spec.resources.requests sets the pod's CPU and memory."""
    spec = {"resources": {"requests": {"cpu": "3"}}, "containers": [c("100m", "1Gi")]}
    r = pod_requests(spec)
    assert (r.milli_cpu, r.memory) == (3000, 2**30)


def test_non_zero_defaults_for_request_less_containers() -> None:
    """Scoring counts a container without requests as 100m and 200Mi."""
    assert non_zero_requests({"containers": [{"name": "c"}]}) == (
        DEFAULT_MILLI_CPU_REQUEST,
        DEFAULT_MEMORY_REQUEST,
    )


def test_resources_arithmetic_roundtrip() -> None:
    """add then sub restores the original, scalars included."""
    a = Resources.from_list({"cpu": "1", "memory": "1Gi", "example.com/x": "3"})
    b = Resources.from_list({"cpu": "500m", "example.com/x": "1"})
    before = a.copy()
    a.add(b)
    a.sub(b)
    assert a == before
