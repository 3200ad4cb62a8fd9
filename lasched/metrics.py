"""Prometheus metrics, named after kube-scheduler's with a ``lasched_`` prefix.

Where a metric means what kube-scheduler's ``scheduler_*`` metric of the same
suffix means, dashboards written for kube-scheduler work with the prefix
changed. Durations are in seconds.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2,
                    0.5, 1.0, 2.0, 5.0, 10.0)  # fmt: skip

schedule_attempts = Counter(
    "lasched_schedule_attempts_total",
    "Scheduling attempts by result (scheduled, unschedulable, error).",
    ["result", "profile"],
)
scheduling_attempt_duration = Histogram(
    "lasched_scheduling_attempt_duration_seconds",
    "Scheduling cycle latency: filter, score and assume, by result.",
    ["result", "profile"],
    buckets=_LATENCY_BUCKETS,
)
pod_scheduling_sli_duration = Histogram(
    "lasched_pod_scheduling_sli_duration_seconds",
    "From a pod's first entry into the queue to its successful binding, by number of attempts.",
    ["attempts"],
    buckets=(*_LATENCY_BUCKETS, 30.0, 60.0, 120.0, 300.0),
)
framework_extension_point_duration = Histogram(
    "lasched_framework_extension_point_duration_seconds",
    "Time spent in each extension point over all its plugins.",
    ["extension_point", "status", "profile"],
    buckets=_LATENCY_BUCKETS,
)
binding_duration = Histogram(
    "lasched_binding_duration_seconds",
    "Time to write one binding to the apiserver.",
    buckets=_LATENCY_BUCKETS,
)
pending_pods = Gauge(
    "lasched_pending_pods",
    "Pods in the scheduling queue, by part (active, backoff, unschedulable).",
    ["queue"],
)
cache_size = Gauge(
    "lasched_cache_size",
    "Objects in the scheduler cache, by type (nodes, pods, assumed_pods).",
    ["type"],
)
batch_attempts = Counter(
    "lasched_batch_attempts_total",
    "Pods that could reuse the previous pod's scored nodes (opportunistic batching), "
    "by result: hint (placed without a full cycle) or no_hint.",
    ["result", "profile"],
)
preemption_attempts = Counter(
    "lasched_preemption_attempts_total", "Preemptions that chose victims and nominated a node."
)
preemption_victims = Histogram(
    "lasched_preemption_victims",
    "Pods evicted per preemption.",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
informer_relists = Counter(
    "lasched_informer_relists_total",
    "Relists after the watched resourceVersion expired (410 Gone).",
    ["resource"],
)
informer_restarts = Counter(
    "lasched_informer_watch_restarts_total",
    "Watches given up, by reason: expired (410 Gone: relisted) or silent (nothing, not even "
    "a bookmark, within the idle timeout: watched again from the last resourceVersion).",
    ["resource", "reason"],
)
plugin_errors = Counter(
    "lasched_plugin_errors_total",
    "Exceptions raised by plugins, by plugin and extension point; each is logged with its "
    "traceback and the pod's attempt ends as an error (it is retried with backoff).",
    ["plugin", "extension_point"],
)
task_restarts = Counter(
    "lasched_task_restarts_total",
    "Long-lived tasks restarted after an unexpected error (logged with its traceback).",
    ["task"],
)
event_loop_lag = Gauge(
    "lasched_event_loop_lag_seconds",
    "How late the event loop last ran a timer: a measure of how long it was blocked.",
)
events_dropped = Counter(
    "lasched_events_dropped_total",
    "Events not written because the recorder's queue was full (an overloaded apiserver).",
)
events_failed = Counter(
    "lasched_events_failed_total",
    "Events not written because the apiserver failed or could not be reached (logged).",
)
informer_errors = Counter(
    "lasched_informer_errors_total",
    "Objects an informer could not decode (stage=decode) or whose handler failed "
    "(stage=handler); each is logged with its traceback and the stream goes on.",
    ["resource", "stage"],
)


def track_queue(counts: Callable[[], dict[str, int]]) -> None:
    """Report the queue's sizes on every scrape."""

    def reader(part: str) -> Callable[[], float]:
        return lambda: counts().get(part, 0)

    for part in ("active", "backoff", "unschedulable"):
        pending_pods.labels(part).set_function(reader(part))


def track_cache(
    nodes: Callable[[], int], pods: Callable[[], int], assumed: Callable[[], int]
) -> None:
    cache_size.labels("nodes").set_function(nodes)
    cache_size.labels("pods").set_function(pods)
    cache_size.labels("assumed_pods").set_function(assumed)


agent_connections = Gauge(
    "lasched_agent_connections", "Node agents currently streaming RTTs to this scheduler."
)
agent_samples = Counter(
    "lasched_agent_samples_total",
    "RTT samples received from node agents, by outcome (stored, lost, unknown_target).",
    ["outcome"],
)
agent_refusals = Counter(
    "lasched_agent_refusals_total",
    "Agent connections refused or closed by the scheduler, by reason.",
    ["reason"],
)
latency_requeues = Counter(
    "lasched_latency_requeues_total",
    "Times a significant RTT change moved unschedulable pods back to the queue.",
)
latency_plans = Histogram(
    "lasched_latency_plan_duration_seconds",
    "Time to make one plan of the latency pods still to place, by outcome (made, none).",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
leader_election_master_status = Gauge(
    "lasched_leader_election_master_status",
    "1 while this replica holds the leader Lease and schedules, else 0.",
    ["name"],
)
extender_requests = Counter(
    "lasched_extender_requests_total",
    "kube-scheduler extender requests answered, by verb (filter, prioritize) and outcome "
    "(success, bad_request, not_ready, error).",
    ["verb", "outcome"],
)
agent_token_reviews = Counter(
    "lasched_agent_token_reviews_total",
    "Agent tokens checked, by result: cached_hit and cached_negative (answered from the "
    "cache), reviewed (a TokenReview sent to the apiserver), shared (waited for an identical "
    "review in flight), rate_limited (answered 429 without a review).",
    ["result"],
)
http_connections = Gauge(
    "lasched_http_connections", "Connections open on the scheduler's HTTP port."
)
http_connections_refused = Counter(
    "lasched_http_connections_refused_total",
    "Connections on the HTTP port refused or closed early, by reason: total_cap or "
    "per_source_cap (refused at once), header_timeout (no complete request head in time), "
    "idle_timeout (idle between requests).",
    ["reason"],
)
topology_recompute_seconds = Histogram(
    "lasched_topology_recompute_duration_seconds",
    "How long one recompute of the inferred topology took (reading the fresh RTTs, "
    "clustering, hysteresis), label writes excluded.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5),
)
topology_moves = Counter(
    "lasched_topology_moves_total",
    "Nodes that took a new inferred place (site, coarser groups, tier), first places included.",
)
topology_sites = Gauge(
    "lasched_topology_sites", "Sites in the inferred topology the leader holds now."
)
topology_label_writes = Counter(
    "lasched_topology_label_writes_total",
    "Patches of nodes' topology.lasched.io labels, by result (ok, failed).",
    ["result"],
)
remediation_evictions = Counter(
    "lasched_remediation_evictions_total",
    "Pods latency remediation evicted, by trigger: latency (a hard limit broken by fresh RTTs "
    "past the grace period) or node_not_ready (the node NotReady or unreachable past its "
    "timeout).",
    ["trigger"],
)
remediation_skipped = Counter(
    "lasched_remediation_skipped_total",
    "Decisions of latency remediation not to evict a pod whose trigger held, by reason "
    "(no_controller, daemonset, mirror, excluded_namespace, critical, local_storage, "
    "pod_group, cool_down, rate_limited, no_placement, pdb_refused, failed, dry_run).",
    ["reason"],
)
