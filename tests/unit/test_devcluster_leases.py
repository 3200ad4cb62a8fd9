"""The dev cluster's node Leases: a kubelet's rhythm while the control plane can
keep it, longer where kwok would otherwise fall behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from lasched_dev.devcluster.cluster import (
    KUBELET_NODE_LEASE_SECONDS,
    NODE_LEASE_RENEWALS_PER_SECOND,
    DevCluster,
    node_lease_seconds_for,
)


@pytest.mark.parametrize("nodes", [0, 1, 100, 1000])
def test_up_to_a_thousand_nodes_keep_a_kubelets_lease(nodes: int) -> None:
    assert node_lease_seconds_for(nodes) == KUBELET_NODE_LEASE_SECONDS == 40


@pytest.mark.parametrize("nodes", [1001, 1500, 5000, 30000])
def test_larger_clusters_renew_at_most_the_budgeted_rate(nodes: int) -> None:
    """A Lease is renewed every quarter of its duration, as a kubelet's is."""
    lease = node_lease_seconds_for(nodes)
    assert lease > KUBELET_NODE_LEASE_SECONDS
    assert nodes / (lease / 4) <= NODE_LEASE_RENEWALS_PER_SECOND
    # and no longer than that needs: one second less would exceed it
    assert nodes / ((lease - 1) / 4) > NODE_LEASE_RENEWALS_PER_SECOND


@pytest.mark.parametrize(("nodes", "grace"), [(1000, 50), (5000, 250)])
def test_the_node_monitor_grace_period_follows_the_lease(
    nodes: int, grace: int, tmp_path: Path
) -> None:
    """kube-controller-manager's default 50 s is 5/4 of a kubelet's 40 s Lease."""
    assert DevCluster(workdir=tmp_path, nodes=nodes).node_monitor_grace_seconds == grace
