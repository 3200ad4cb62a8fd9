"""ImageLocality: kube-scheduler's scores, image names and the cache's image counts."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from lasched.cache.cache import SchedulerCache
from lasched.framework import batching
from lasched.framework.interface import Code, CycleState
from lasched.model.images import NO_IMAGES, normalized_image_name
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.plugins.imagelocality import (
    MB,
    ImageLocality,
    calculate_priority,
    scaled_image_score,
)
from lasched.queue.queue import scheduling_changed
from tests.unit.factories import make_node, make_pod, node_json, pod_json

Images = list[tuple[list[str], int]]


def image_pod(*images: str, init: tuple[str, ...] = ()) -> PodInfo:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    spec: dict[str, Any] = {"containers": containers}
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": image} for i, image in enumerate(init)]
    return make_pod("p", **spec)


def scores(pod: PodInfo, nodes: dict[str, Images]) -> dict[str, int]:
    """Each node's score, by score() and by score_all(), which must agree."""
    cache = SchedulerCache()
    for name, images in nodes.items():
        cache.add_node(make_node(name, images=images))
    plugin = ImageLocality(cache.images)
    infos = list(cache.node_infos())
    one = {ni.name: plugin.score(CycleState(), pod, ni) for ni in infos}
    assert plugin.score_all(CycleState(), pod, infos) == list(one.values())
    return one


# kube-scheduler's TestImageLocalityPriority (pkg/scheduler/framework/plugins/imagelocality/
# image_locality_test.go): its nodes and its table, with its expected scores.
NODE_40_300_2000: Images = [
    (["gcr.io/40:latest", "gcr.io/40:v1", "gcr.io/40:v1"], 40 * MB),
    (["gcr.io/300:latest", "gcr.io/300:v1"], 300 * MB),
    (["gcr.io/2000:latest"], 2000 * MB),
]
NODE_250_10: Images = [
    (["gcr.io/250:latest"], 250 * MB),
    (["gcr.io/10:latest", "gcr.io/10:v1"], 10 * MB),
]
NODE_600_40_900: Images = [
    (["gcr.io/600:latest"], 600 * MB), (["gcr.io/40:latest"], 40 * MB),
    (["gcr.io/900:latest"], 900 * MB),
]  # fmt: skip
NODE_300_600_900: Images = [
    (["gcr.io/300:latest"], 300 * MB), (["gcr.io/600:latest"], 600 * MB),
    (["gcr.io/900:latest"], 900 * MB),
]  # fmt: skip
NODE_4000_30: Images = [(["gcr.io/4000:latest"], 4000 * MB), (["gcr.io/30:latest"], 30 * MB)]
NODE_20_30_40: Images = [
    (["gcr.io/20:latest"], 20 * MB), (["gcr.io/30:latest"], 30 * MB),
    (["gcr.io/40:latest"], 40 * MB),
]  # fmt: skip


@pytest.mark.parametrize(
    ("pod", "nodes", "expected"),
    [
        (image_pod("gcr.io/40", "gcr.io/250"),
         {"node1": NODE_40_300_2000, "node2": NODE_250_10}, {"node1": 0, "node2": 5}),
        (image_pod("gcr.io/40", "gcr.io/300"),
         {"node1": NODE_40_300_2000, "node2": NODE_250_10}, {"node1": 7, "node2": 0}),
        (image_pod("gcr.io/10", "gcr.io/4000"),
         {"node1": NODE_4000_30, "node2": NODE_250_10}, {"node1": 100, "node2": 0}),
        (image_pod("gcr.io/10", "gcr.io/4000"),
         {"node1": NODE_4000_30, "node2": NODE_250_10, "node3": []},
         {"node1": 66, "node2": 0, "node3": 0}),
        (image_pod("gcr.io/300", "gcr.io/600", "gcr.io/900"),
         {"node1": NODE_600_40_900, "node2": NODE_300_600_900, "node3": []},
         {"node1": 32, "node2": 36, "node3": 0}),
        (image_pod("gcr.io/30", "gcr.io/40"),
         {"node1": NODE_20_30_40, "node2": NODE_4000_30}, {"node1": 1, "node2": 0}),
        (image_pod("gcr.io/30", init=("gcr.io/300",)),
         {"node1": NODE_40_300_2000, "node2": NODE_20_30_40}, {"node1": 6, "node2": 0}),
    ],
    ids=[
        "two images spread on two nodes, prefer the larger image one",
        "two images on one node, prefer this node",
        "if exceed limit, use limit",
        "if exceed limit, use limit (with node which has no images present)",
        "pod with multiple large images, node2 is preferred",
        "pod with multiple small images",
        "include InitContainers: two images spread on two nodes, prefer the larger image one",
    ],
)  # fmt: skip
def test_kube_schedulers_image_locality_table(
    pod: PodInfo, nodes: dict[str, Images], expected: dict[str, int]
) -> None:
    """Each node scores what kube-scheduler's TestImageLocalityPriority expects."""
    assert scores(pod, nodes) == expected


def fake_digest(content: str) -> str:
    return "sha256:" + hashlib.sha256(content.encode()).hexdigest()


# kube-scheduler's TestNormalizedImageName.
@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("root", "root:latest"),
        ("gcr.io:5000/root", "gcr.io:5000/root:latest"),
        ("root:tag", "root:tag"),
        ("root@" + fake_digest("root"), "root@" + fake_digest("root")),
    ],
    ids=["add :latest postfix 1", "add :latest postfix 2", "keep it as is 1", "keep it as is 2"],
)
def test_image_names_are_normalized_as_kube_scheduler_does(name: str, normalized: str) -> None:
    """A reference without a tag gets :latest; a tag or a digest is kept."""
    assert normalized_image_name(name) == normalized


def test_no_registry_prefix_is_added() -> None:
    """``nginx`` does not match a node's ``docker.io/library/nginx:latest``, as upstream."""
    got = scores(image_pod("nginx"), {"n1": [(["docker.io/library/nginx:latest"], 900 * MB)]})
    assert got == {"n1": 0}
    got = scores(image_pod("nginx"), {"n1": [(["nginx:latest"], 900 * MB)]})
    assert got == {"n1": 89}  # 100 * (900 - 23) // (1000 - 23)


def test_the_formulas_are_kube_schedulers() -> None:
    """Spread scales the size in float64, truncated; the sum is clamped per container count."""
    assert scaled_image_score(1000 * MB, 1, 3) == int(1000 * MB * (1 / 3))
    assert calculate_priority(0, 1) == 0
    assert calculate_priority(23 * MB, 1) == 0
    assert calculate_priority(1000 * MB, 1) == 100
    assert calculate_priority(5000 * MB, 2) == 100
    assert calculate_priority(1000 * MB, 2) == 100 * (977 * MB) // (1977 * MB)
    assert calculate_priority(0, 0) == 0  # a pod without containers


def test_a_repeated_image_counts_for_each_container() -> None:
    """Two containers with one image add its scaled size twice, as upstream sums per container."""
    node = [(["gcr.io/big:latest"], 600 * MB)]
    assert scores(image_pod("gcr.io/big", "gcr.io/big"), {"n": node}) == {
        "n": 100 * (1200 * MB - 23 * MB) // (2000 * MB - 23 * MB)
    }


def test_prescore_skips_when_no_node_can_score() -> None:
    """No node holds the image, or too little of it: PreScore skips; every node would score 0."""
    cache = SchedulerCache()
    cache.add_node(make_node("a", images=NODE_250_10))
    cache.add_node(make_node("b"))
    plugin = ImageLocality(cache.images)
    nodes = list(cache.node_infos())
    for pod, code in (
        (image_pod("gcr.io/absent"), Code.SKIP),
        (image_pod("gcr.io/10"), Code.SKIP),  # 10 MiB: below the 23 MiB bound
        (image_pod("gcr.io/250"), Code.SUCCESS),
    ):
        state = CycleState()
        assert plugin.pre_score(state, pod, nodes).code is code
        if code is Code.SKIP:
            assert plugin.score_all(state, pod, nodes) == [0, 0]
    assert scores(image_pod("gcr.io/absent"), {"a": NODE_250_10, "b": []}) == {"a": 0, "b": 0}


def test_image_counts_follow_node_events() -> None:
    """Adding, updating and deleting nodes keeps each image's node count and the node total."""
    cache = SchedulerCache()
    big = (["gcr.io/big:latest", "gcr.io/big:v1"], 800 * MB)
    cache.add_node(make_node("a", images=[big]))
    cache.add_node(make_node("b", images=[big]))
    cache.add_node(make_node("c"))
    images = cache.images
    assert images.node_count == 3
    assert images.get("gcr.io/big:latest") == (800 * MB, 2)
    assert images.get("gcr.io/big:v1") == (800 * MB, 2)

    cache.update_node(make_node("b", rv="2"))  # b dropped the image
    assert images.get("gcr.io/big:latest") == (800 * MB, 1)
    assert images.node_count == 3

    cache.add_pod(make_pod("resident", node="a"))
    cache.remove_node("a")  # a's pods keep its accounting, but the node is gone
    cache.remove_node("a")
    assert images.get("gcr.io/big:latest") is None
    assert images.node_count == 2
    assert len(images) == 0

    cache.add_node(make_node("a", images=[big], rv="3"))
    assert images.get("gcr.io/big:latest") == (800 * MB, 1)
    assert images.node_count == 3


def test_a_name_keeps_the_size_its_first_node_reported() -> None:
    """kube-scheduler's image state keeps the first size until no node lists the name."""
    cache = SchedulerCache()
    cache.add_node(make_node("a", images=[(["x:latest"], 100 * MB)]))
    cache.add_node(make_node("b", images=[(["x:latest"], 900 * MB)]))
    assert cache.images.get("x:latest") == (100 * MB, 2)
    cache.remove_node("a")
    cache.remove_node("b")
    cache.add_node(make_node("b", images=[(["x:latest"], 900 * MB)], rv="2"))
    assert cache.images.get("x:latest") == (900 * MB, 1)


def test_a_rebuild_counts_afresh() -> None:
    """After a rebuild the counts are those of the nodes given."""
    cache = SchedulerCache()
    cache.add_node(make_node("a", images=[(["x:latest"], MB)]))
    cache.rebuild([make_node("b", images=[(["y:latest"], MB)])], [])
    assert cache.images.get("x:latest") is None
    assert cache.images.get("y:latest") == (MB, 1)
    assert cache.images.node_count == 1


def test_images_are_decoded_once_and_shared() -> None:
    """Init containers come first; alike pods share one tuple; a node without images shares one
    empty mapping; malformed entries are skipped."""
    a, b = image_pod("web", init=("setup:1",)), image_pod("web", init=("setup:1",))
    assert a.images == ("setup:1", "web:latest")
    assert a.images is b.images
    assert make_node("n").images is NO_IMAGES
    body = node_json("m")
    body["status"]["images"] = [{"names": ["ok:1", 7], "sizeBytes": "big"}, "junk",
                                {"names": ["ok:1"], "sizeBytes": 5}]  # fmt: skip
    assert dict(Node(body).images) == {"ok:1": 0}


def test_an_image_change_is_a_scheduling_change() -> None:
    """A pod updated to another image may score differently: the queue treats it as changed."""
    old = PodInfo(pod_json("p", containers=[{"name": "c", "image": "a:1"}]))
    new = PodInfo(pod_json("p", containers=[{"name": "c", "image": "a:2"}], rv="2"))
    assert scheduling_changed(old, new)


def test_the_pods_images_are_part_of_its_batch_signature() -> None:
    """Pods alike but for their images never share a batch."""
    plugin = ImageLocality(SchedulerCache().images)
    a, b = image_pod("a:1"), image_pod("b:1")
    assert batching.signature(a) == batching.signature(b)
    assert plugin.sign_pod(a) != plugin.sign_pod(b)
