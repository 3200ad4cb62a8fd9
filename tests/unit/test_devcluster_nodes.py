"""The dev cluster's fake nodes are registered as a kubelet registers its Node."""

from __future__ import annotations

from lasched_dev.devcluster import nodes


def test_a_node_carries_the_beta_os_and_arch_labels_a_kubelet_sets() -> None:
    """kubelet v1.37 still registers with beta.kubernetes.io/os and /arch beside the
    stable labels; a node without them would get them from the node lifecycle
    controller, two requests per node out of the budget it takes the not-ready
    taint off with."""
    labels = nodes.NodeSpec(name="n").manifest()["metadata"]["labels"]
    assert labels[nodes.OS_LABEL] == labels[nodes.BETA_OS_LABEL] == "linux"
    assert labels[nodes.ARCH_LABEL] == labels[nodes.BETA_ARCH_LABEL] == "amd64"


def test_the_beta_labels_follow_the_stable_ones_a_spec_sets() -> None:
    """The controller makes each beta label equal its stable one: a spec that sets the
    stable label gets the same beta value, and one that sets a beta label keeps it."""
    arm = nodes.NodeSpec(name="n", labels={nodes.ARCH_LABEL: "arm64"}).manifest()
    assert arm["metadata"]["labels"][nodes.BETA_ARCH_LABEL] == "arm64"
    beta = nodes.NodeSpec(name="n", labels={nodes.BETA_OS_LABEL: "windows"}).manifest()
    assert beta["metadata"]["labels"][nodes.BETA_OS_LABEL] == "windows"
