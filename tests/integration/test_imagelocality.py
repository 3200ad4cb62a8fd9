"""ImageLocality on a real control plane: a pod goes where its big image already is."""

from __future__ import annotations

from functools import partial

from lasched.kube.client import KubeClient
from lasched_dev.devcluster import nodes
from tests.integration.conftest import SchedulerFactory
from tests.integration.helpers import eventually, node_of, pod

IMAGE = "registry.example/big-model:v1"
# Large enough that, spread over every node the session's tests have made, it still
# outweighs kube-scheduler's 23 MiB lower bound on the one node that holds it.
IMAGE_BYTES = 500 * 1024**3


async def test_a_pod_lands_on_the_node_that_holds_its_image(
    kc: KubeClient, namespace: str, run_scheduler: SchedulerFactory
) -> None:
    """Two alike nodes; the one whose status lists the pod's image gets the pod."""
    where = {"imageloc-test": "big"}
    await nodes.create_nodes(
        kc,
        [
            nodes.NodeSpec(name="img-without", labels=where),
            nodes.NodeSpec(name="img-with", labels=where, images=[([IMAGE], IMAGE_BYTES)]),
        ],
    )
    await nodes.wait_ready(kc, ["img-without", "img-with"])
    # kwok patches the status it manages and leaves the images the node registered with.
    stored = await kc.get("/api/v1/nodes/img-with")
    assert [i["names"] for i in stored["status"]["images"]] == [[IMAGE]]
    await run_scheduler()

    for i in range(3):
        body = pod(f"model-{i}", nodeSelector=where)
        body["spec"]["containers"][0]["image"] = IMAGE
        await kc.post(f"/api/v1/namespaces/{namespace}/pods", body)
        assert await eventually(partial(node_of, kc, namespace, f"model-{i}")) == "img-with"
