"""What the control plane did during a measured window: its CPU and its own request latencies.

On a small machine the control plane (etcd, kube-apiserver, kube-controller-manager,
kwok) shares the
cores with the scheduler under test, so a scheduler's creation-to-bound
latency is partly the apiserver's queueing. A :class:`Meter` reads, at the
start and the end of a window:

- each control-plane process's CPU seconds (``/proc``), as a share of one core;
- the apiserver's ``apiserver_request_duration_seconds`` sums and counts, so
  the mean time the apiserver itself took per request kind in the window
  (a binding, a pod create, an Event) is known without any client's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from bench.peers import proc_stats
from lasched.kube.client import KubeClient
from lasched_dev.devcluster.cluster import DevCluster

_DURATION = "apiserver_request_duration_seconds"

# (verb, resource, subresource) -> the words a reader knows.
REQUESTS = {
    ("POST", "pods", ""): "pod create",
    ("POST", "pods", "binding"): "binding",
    ("PATCH", "pods", "status"): "pod status",
    ("POST", "events", ""): "Event create",
    ("PUT", "leases", ""): "Lease renew",
    ("PATCH", "nodes", "status"): "node status",
}


@dataclass(frozen=True, slots=True)
class Window:
    seconds: float
    cpu_percent: dict[str, float]  # process -> share of one core, in %
    # request kind -> (requests in the window, mean apiserver time in ms)
    requests: dict[str, tuple[int, float]] = field(default_factory=dict)


def _durations(text: str) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(verb, resource, subresource) -> (sum of seconds, count), over all other labels."""
    wanted = "\n".join(
        line
        for line in text.splitlines()
        if line.startswith((f"{_DURATION}_sum", f"{_DURATION}_count", f"# TYPE {_DURATION} "))
    )
    out: dict[tuple[str, str, str], tuple[float, float]] = {}
    for family in text_string_to_metric_families(wanted):
        for s in family.samples:
            key = (s.labels.get("verb", ""), s.labels.get("resource", ""),
                   s.labels.get("subresource", ""))  # fmt: skip
            total, count = out.get(key, (0.0, 0.0))
            if s.name.endswith("_sum"):
                total += s.value
            elif s.name.endswith("_count"):
                count += s.value
            out[key] = (total, count)
    return out


class Meter:
    """Start, let the window run, stop: the control plane's share of it."""

    def __init__(self, cluster: DevCluster, kc: KubeClient) -> None:
        self._pids = {c.name: c.pid for c in cluster.children}
        self._kc = kc
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}
        self._req0: dict[tuple[str, str, str], tuple[float, float]] = {}

    async def _read(
        self,
    ) -> tuple[dict[str, float], dict[tuple[str, str, str], tuple[float, float]]]:
        cpu = {name: proc_stats(pid).cpu_seconds for name, pid in self._pids.items()}
        return cpu, _durations(await self._kc.text("/metrics"))

    async def start(self) -> None:
        self._cpu0, self._req0 = await self._read()
        self._t0 = time.monotonic()

    async def stop(self) -> Window:
        seconds = time.monotonic() - self._t0
        cpu, req = await self._read()
        requests: dict[str, tuple[int, float]] = {}
        for key, label in REQUESTS.items():
            total, count = req.get(key, (0.0, 0.0))
            total0, count0 = self._req0.get(key, (0.0, 0.0))
            n = round(count - count0)
            if n > 0:
                requests[label] = (n, (total - total0) / n * 1000)
        return Window(
            seconds=seconds,
            cpu_percent={
                name: 100 * (cpu[name] - self._cpu0[name]) / max(seconds, 1e-9) for name in cpu
            },
            requests=requests,
        )
