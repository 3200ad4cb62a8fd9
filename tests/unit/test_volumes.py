"""The volume plugins: VolumeBinding (PreFilter, Filter, Reserve, PreBind), VolumeZone,
VolumeRestrictions and NodeVolumeLimits, against kube-scheduler's cases
(``volumebinding/binder_test.go``, ``volume_zone_test.go``, ``csi_test.go``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.cache.volumes import VolumeCache
from lasched.framework.interface import Code, CycleState, Status
from lasched.model.pod import PodInfo
from lasched.model.volume import BIND_COMPLETED, SELECTED_NODE, Claim, CSINode, StorageClass, Volume
from lasched.plugins.nodevolumelimits import NodeVolumeLimits
from lasched.plugins.volumebinding import VolumeBinding, VolumeWriteError
from lasched.plugins.volumerestrictions import VolumeRestrictions
from lasched.plugins.volumezone import VolumeZone
from tests.unit.factories import make_node, make_pod

GI = 1024**3


def pvc(
    name: str,
    *,
    cls: str | None = "local",
    size: str = "1Gi",
    volume: str = "",
    bound: bool = False,
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    rv: str = "1",
    annotations: dict[str, str] | None = None,
) -> Claim:
    ann = dict(annotations or {})
    if bound:
        ann[BIND_COMPLETED] = "yes"
    spec: dict[str, Any] = {
        "accessModes": list(modes),
        "resources": {"requests": {"storage": size}},
    }
    if cls is not None:
        spec["storageClassName"] = cls
    if volume:
        spec["volumeName"] = volume
    return Claim(
        {
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "resourceVersion": rv, "annotations": ann},
            "spec": spec,
        }
    )  # fmt: skip


def pv(
    name: str,
    *,
    node: str | None = None,
    cls: str = "local",
    size: str = "1Gi",
    claim: str = "",
    labels: dict[str, str] | None = None,
    csi: tuple[str, str] | None = None,
    rv: str = "1",
) -> Volume:
    spec: dict[str, Any] = {
        "storageClassName": cls,
        "capacity": {"storage": size},
        "accessModes": ["ReadWriteOnce"],
    }
    if node is not None:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
        ]}]}}  # fmt: skip
    if claim:
        spec["claimRef"] = {"namespace": "default", "name": claim, "uid": f"uid-{claim}"}
    if csi is not None:
        spec["csi"] = {"driver": csi[0], "volumeHandle": csi[1]}
    return Volume(
        {
            "metadata": {"name": name, "labels": labels or {}, "resourceVersion": rv},
            "spec": spec,
            "status": {"phase": "Bound" if claim else "Available"},
        }
    )


def sc(name: str, *, provisioner: str = "kubernetes.io/no-provisioner", wffc: bool = True,
       topologies: list[dict[str, Any]] | None = None) -> StorageClass:  # fmt: skip
    return StorageClass(
        {
            "metadata": {"name": name},
            "provisioner": provisioner,
            "volumeBindingMode": "WaitForFirstConsumer" if wffc else "Immediate",
            "allowedTopologies": topologies or [],
        }
    )


class Store:
    """The four informer stores, editable as the informers would change them."""

    def __init__(self, *objs: object) -> None:
        self.claims: dict[str, Claim] = {}
        self.volumes: dict[str, Volume] = {}
        self.classes: dict[str, StorageClass] = {}
        self.csinodes: dict[str, CSINode] = {}
        self.cache = VolumeCache(
            claims=lambda: self.claims, volumes=lambda: self.volumes,
            classes=lambda: self.classes, csinodes=lambda: self.csinodes,
        )  # fmt: skip
        for o in objs:
            self.put(o)

    def put(self, obj: object) -> None:
        if isinstance(obj, Claim):
            self.claims[obj.key] = obj
        elif isinstance(obj, Volume):
            self.volumes[obj.key] = obj
        elif isinstance(obj, StorageClass):
            self.classes[obj.key] = obj
        elif isinstance(obj, CSINode):
            self.csinodes[obj.key] = obj
        self.cache.observed(obj)


def node(name: str, **labels: str) -> NodeInfo:
    return NodeInfo(make_node(name, labels={"kubernetes.io/hostname": name, **labels}))


def with_claims(name: str, *claims: str, **kw: Any) -> PodInfo:
    vols = [
        {"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)
    ]
    return make_pod(name, volumes=vols, **kw)


class FakeWrites:
    """The API writes of PreBind; each one also lands in the store, as the informer shows it."""

    def __init__(self, store: Store, *, fail: bool = False) -> None:
        self.store = store
        self.fail = fail
        self.calls: list[str] = []

    async def bind_volume(self, volume: Volume, claim: Claim) -> str:
        self.calls.append(f"bind {volume.key} {claim.key}")
        if self.fail:
            raise VolumeWriteError(f'binding pv "{volume.key}": 409 Conflict')
        return "2"

    async def select_node(self, claim: Claim, node: str) -> str:
        self.calls.append(f"select {claim.key} {node}")
        return "2"


def binding(store: Store, **kw: Any) -> tuple[VolumeBinding, FakeWrites]:
    writes = FakeWrites(store, fail=kw.pop("fail", False))
    labels = {n: {"kubernetes.io/hostname": n} for n in ("n1", "n2", "n3")}
    return VolumeBinding(store.cache, writes, node_labels=labels.get, **kw), writes


def run(
    plugin: Any, pod: PodInfo, nodes: list[NodeInfo]
) -> tuple[CycleState, Status, dict[str, Status]]:
    state = CycleState()
    pre = plugin.pre_filter(state, pod)
    if pre.code is not Code.SUCCESS:
        return state, pre, {}
    return state, pre, {n.name: plugin.filter(state, pod, n) for n in nodes}


NODES = [node("n1"), node("n2"), node("n3")]


# ---- VolumeBinding: PreFilter and Filter ------------------------------------------


def test_a_pod_without_claims_skips_every_volume_plugin() -> None:
    """No claims: PreFilter says SKIP, and batching may take the pod."""
    s = Store()
    pod = make_pod("p")
    for plugin in (binding(s)[0], VolumeZone(s.cache), NodeVolumeLimits(s.cache),
                   VolumeRestrictions(s.cache, SchedulerCache())):  # fmt: skip
        assert plugin.pre_filter(CycleState(), pod).code is Code.SKIP
        assert plugin.sign_pod(pod) == ()
        assert plugin.sign_pod(with_claims("q", "data")) is None


@pytest.mark.parametrize(
    ("objs", "message"),
    [
        ((), 'persistentvolumeclaim "data" not found'),
        (
            (pvc("data", cls="fast"), sc("fast", wffc=False)),
            'pod has unbound immediate PersistentVolumeClaims (claim "data")',
        ),
        (
            (pvc("data", cls="gone"),),
            'pod has unbound immediate PersistentVolumeClaims (claim "data")',
        ),
        (
            (pvc("data", volume="pv-x"), sc("local")),
            'pod has unbound immediate PersistentVolumeClaims (claim "data")',
        ),
    ],
    ids=["missing", "immediate", "class-missing", "prebound-not-bound"],
)
def test_claims_the_scheduler_cannot_bind_keep_the_pod_waiting(
    objs: tuple[object, ...], message: str
) -> None:
    """A missing claim, or an unbound one of an Immediate class, is unresolvable at PreFilter."""
    _, st, _ = run(binding(Store(*objs))[0], with_claims("p", "data"), NODES)
    assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert st.message == message


def test_a_bound_claim_admits_only_the_nodes_its_volume_allows() -> None:
    """checkBoundClaims: the PV's node affinity; a PV that is gone rejects every node."""
    s = Store(pvc("data", volume="pv1", bound=True), pv("pv1", node="n2", claim="data"))
    _, _, verdicts = run(binding(s)[0], with_claims("p", "data"), NODES)
    assert {n: st.ok for n, st in verdicts.items()} == {"n1": False, "n2": True, "n3": False}
    assert verdicts["n1"].message == 'node(s) had volume node affinity conflict (claim "data")'
    del s.volumes["pv1"]
    _, _, verdicts = run(binding(s)[0], with_claims("p", "data"), NODES)
    assert verdicts["n2"].message == (
        'node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s) (claim "data")'
    )


def test_a_delayed_claim_takes_the_smallest_free_volume_on_the_node() -> None:
    """findMatchingVolumes: class, capacity and node affinity; the smallest that fits wins."""
    s = Store(
        sc("local"), pvc("data", size="5Gi"),
        pv("small", node="n1", size="1Gi"), pv("big", node="n1", size="100Gi"),
        pv("mid", node="n1", size="10Gi"), pv("other-class", node="n2", cls="ssd", size="10Gi"),
        pv("taken", node="n3", size="10Gi", claim="someone"),
    )  # fmt: skip
    plugin, _ = binding(s)
    state, _, verdicts = run(plugin, with_claims("p", "data"), NODES)
    assert [n for n, st in verdicts.items() if st.ok] == ["n1"]
    assert verdicts["n2"].message == (
        'node(s) didn\'t find available persistent volumes to bind (claim "data")'
    )
    assert verdicts["n2"].code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    assert [v.key for v, _ in state.data["VolumeBinding"].by_node["n1"].static] == ["mid"]


def test_two_claims_of_one_pod_never_share_a_volume() -> None:
    """A volume chosen for one claim is excluded for the next (the smaller claim first)."""
    s = Store(sc("local"), pvc("a", size="2Gi"), pvc("b", size="1Gi"),
              pv("v2", node="n1", size="2Gi"), pv("v1", node="n1", size="1Gi"))  # fmt: skip
    state, _, verdicts = run(binding(s)[0], with_claims("p", "a", "b"), NODES[:1])
    assert verdicts["n1"].ok
    chosen = state.data["VolumeBinding"].by_node["n1"].static
    assert sorted((v.key, c.name) for v, c in chosen) == [("v1", "b"), ("v2", "a")]
    s2 = Store(sc("local"), pvc("a"), pvc("b"), pv("only", node="n1"))
    _, _, verdicts = run(binding(s2)[0], with_claims("p", "a", "b"), NODES[:1])
    assert not verdicts["n1"].ok


def test_a_provisioner_class_provisions_where_its_topology_allows() -> None:
    """checkVolumeProvisions: no free volume, but the class provisions on allowed nodes."""
    topo = [{"matchLabelExpressions": [{"key": "zone", "values": ["a"]}]}]
    s = Store(sc("csi", provisioner="csi.example.com", topologies=topo), pvc("data", cls="csi"))
    nodes = [node("n1", zone="a"), node("n2", zone="b")]
    state, _, verdicts = run(binding(s)[0], with_claims("p", "data"), nodes)
    assert {n: st.ok for n, st in verdicts.items()} == {"n1": True, "n2": False}
    assert [c.name for c in state.data["VolumeBinding"].by_node["n1"].provisions] == ["data"]


def test_a_claim_being_provisioned_for_a_node_admits_only_that_node() -> None:
    """A claim annotated with a selected node already is that node's."""
    s = Store(sc("csi", provisioner="csi.example.com"),
              pvc("data", cls="csi", annotations={SELECTED_NODE: "n3"}))  # fmt: skip
    _, _, verdicts = run(binding(s)[0], with_claims("p", "data"), NODES)
    assert [n for n, st in verdicts.items() if st.ok] == ["n3"]


# ---- VolumeBinding: Reserve, Unreserve, PreBind -------------------------------------


def test_reserve_assumes_the_volume_so_the_next_pod_cannot_take_it() -> None:
    """The assume cache: a reserved volume is bound for readers until Unreserve restores it."""
    s = Store(sc("local"), pvc("a"), pvc("b"), pv("v", node="n1"))
    plugin, _ = binding(s)
    state, _, _ = run(plugin, with_claims("p", "a"), NODES[:1])
    assert plugin.reserve(state, with_claims("p", "a"), "n1").ok
    assert s.cache.assumed == 1
    _, _, verdicts = run(plugin, with_claims("q", "b"), NODES[:1])
    assert not verdicts["n1"].ok
    plugin.unreserve(state, with_claims("p", "a"), "n1")
    assert s.cache.assumed == 0
    _, _, verdicts = run(plugin, with_claims("q", "b"), NODES[:1])
    assert verdicts["n1"].ok


async def test_pre_bind_writes_the_claim_ref_and_waits_for_the_pv_controller() -> None:
    """bindAPIUpdate then checkBindings: done when the informer shows the claim bound."""
    s = Store(sc("local"), pvc("a"), pv("v", node="n1"))
    plugin, writes = binding(s, bind_timeout=5)
    pod = with_claims("p", "a")
    state, _, _ = run(plugin, pod, NODES[:1])
    plugin.reserve(state, pod, "n1")
    task = asyncio.create_task(plugin.pre_bind(state, pod, "n1"))
    await asyncio.sleep(0)
    assert writes.calls == ["bind v default/a"]
    assert not task.done()
    s.put(pv("v", node="n1", claim="a", rv="2"))  # our write, seen by the informer
    await asyncio.sleep(0)
    assert not task.done()  # the claim is not bound yet
    s.put(pvc("a", volume="v", bound=True, rv="3"))  # the PV controller's bind
    assert (await asyncio.wait_for(task, 1)).ok
    assert s.cache.assumed == 0  # the informer's versions replaced the assumed one


@pytest.mark.parametrize(
    ("after", "message"),
    [
        (lambda s: s.put(pv("v", node="n1", rv="2")), 'ClaimRef got reset for pv "v"'),
        (None, "timed out waiting for the condition"),
    ],
    ids=["claim-ref-reset", "timeout"],
)
async def test_pre_bind_fails_when_the_bind_cannot_complete(after: Any, message: str) -> None:
    """A volume unbound again, or no bind within bindTimeoutSeconds, is an error naming why."""
    s = Store(sc("local"), pvc("a"), pv("v", node="n1"))
    plugin, _ = binding(s, bind_timeout=0.05)
    pod = with_claims("p", "a")
    state, _, _ = run(plugin, pod, NODES[:1])
    plugin.reserve(state, pod, "n1")
    task = asyncio.create_task(plugin.pre_bind(state, pod, "n1"))
    await asyncio.sleep(0)
    if after is not None:
        after(s)
    st = await asyncio.wait_for(task, 1)
    assert st.code is Code.ERROR
    assert message in st.message


async def test_pre_bind_reports_a_refused_write() -> None:
    """A 409 on the PV is the binding's error, naming the volume."""
    s = Store(sc("local"), pvc("a"), pv("v", node="n1"))
    plugin, _ = binding(s, fail=True)
    pod = with_claims("p", "a")
    state, _, _ = run(plugin, pod, NODES[:1])
    plugin.reserve(state, pod, "n1")
    st = await plugin.pre_bind(state, pod, "n1")
    assert st.code is Code.ERROR
    assert st.message == 'binding volumes: binding pv "v": 409 Conflict'


async def test_pre_bind_annotates_a_claim_to_provision() -> None:
    """Dynamic provisioning: the selected-node annotation, then the provisioned PV's bind."""
    s = Store(sc("csi", provisioner="csi.example.com"), pvc("a", cls="csi"))
    plugin, writes = binding(s, bind_timeout=5)
    pod = with_claims("p", "a")
    state, _, _ = run(plugin, pod, NODES[:1])
    plugin.reserve(state, pod, "n1")
    assert s.cache.claim("default", "a").annotations[SELECTED_NODE] == "n1"  # type: ignore[union-attr]
    task = asyncio.create_task(plugin.pre_bind(state, pod, "n1"))
    await asyncio.sleep(0)
    assert writes.calls == ["select default/a n1"]
    s.put(pv("pvc-1", node="n1", cls="csi", claim="a", rv="3"))
    s.put(pvc("a", cls="csi", volume="pvc-1", bound=True, rv="4",
              annotations={SELECTED_NODE: "n1"}))  # fmt: skip
    assert (await asyncio.wait_for(task, 1)).ok


def no_labels(node: str) -> dict[str, str] | None:
    return None


def test_bind_timeout_is_checked() -> None:
    """``bindTimeoutSeconds`` must be a non-negative number."""
    s = Store()
    with pytest.raises(ValueError, match="bindTimeoutSeconds"):
        VolumeBinding.from_args(
            {"bindTimeoutSeconds": -1}, s.cache, FakeWrites(s), node_labels=no_labels
        )
    assert (
        VolumeBinding.from_args({}, s.cache, FakeWrites(s), node_labels=no_labels).bind_timeout
        == 600
    )


# ---- VolumeZone ---------------------------------------------------------------------

ZONE = "topology.kubernetes.io/zone"
BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"


@pytest.mark.parametrize(
    ("pv_labels", "node_labels", "ok"),
    [
        ({ZONE: "a"}, {ZONE: "a"}, True),
        ({ZONE: "a"}, {ZONE: "b"}, False),
        ({ZONE: "a__b"}, {ZONE: "b"}, True),
        ({ZONE: "a"}, {}, True),
        ({BETA_ZONE: "a"}, {ZONE: "a"}, True),
        ({ZONE: "a"}, {BETA_ZONE: "a"}, False),
        ({}, {ZONE: "b"}, True),
    ],
    ids=["same", "other", "multi-zone", "node-without-zone", "beta-pv-ga-node",
         "ga-pv-beta-node", "pv-without-zone"],
)  # fmt: skip
def test_volume_zone(pv_labels: dict[str, str], node_labels: dict[str, str], ok: bool) -> None:
    """A bound volume's zone labels against the node's, as upstream's table."""
    s = Store(pvc("data", volume="v", bound=True), pv("v", labels=pv_labels))
    n = NodeInfo(make_node("n", labels=node_labels))
    _, _, verdicts = run(VolumeZone(s.cache), with_claims("p", "data"), [n])
    got = verdicts.get("n")
    assert (got is None or got.ok) is ok
    if not ok:
        assert got is not None
        assert got.message == 'node(s) had no available volume zone (claim "data")'


def test_volume_zone_skips_claims_waiting_for_their_consumer() -> None:
    """An unbound WaitForFirstConsumer claim has no zone yet; an Immediate one keeps the pod
    waiting."""
    s = Store(sc("local"), pvc("data"))
    assert VolumeZone(s.cache).pre_filter(CycleState(), with_claims("p", "data")).code is Code.SKIP
    s.put(sc("local", wffc=False))
    st = VolumeZone(s.cache).pre_filter(CycleState(), with_claims("p", "data"))
    assert st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE


# ---- VolumeRestrictions and NodeVolumeLimits -------------------------------------------


def test_a_read_write_once_pod_claim_in_use_rejects_every_node() -> None:
    """ReadWriteOncePod: one pod at a time, whichever node the other runs on."""
    s = Store(pvc("data", modes=("ReadWriteOncePod",), volume="v", bound=True))
    cache = SchedulerCache()
    cache.add_node(make_node("n1"))
    plugin = VolumeRestrictions(s.cache, cache)
    assert plugin.pre_filter(CycleState(), with_claims("p", "data")).code is Code.SKIP
    cache.add_pod(with_claims("holder", "data", node="n1"))
    _, _, verdicts = run(plugin, with_claims("p", "data"), NODES)
    assert all(st.code is Code.UNSCHEDULABLE for st in verdicts.values())
    assert verdicts["n2"].message == (
        "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod "
        'access mode (claim "data")'
    )


def test_node_volume_limits_counts_csi_volumes_per_driver() -> None:
    """CSINode allocatable.count: attached volumes (each once) plus the new pod's."""
    csinode = CSINode({"metadata": {"name": "n1"}, "spec": {"drivers": [
        {"name": "ebs.csi", "allocatable": {"count": 2}}]}})  # fmt: skip
    s = Store(
        csinode,
        sc("ebs", provisioner="ebs.csi"),
        pvc("a", cls="ebs", volume="va", bound=True), pv("va", cls="ebs", csi=("ebs.csi", "h-a")),
        pvc("b", cls="ebs", volume="vb", bound=True), pv("vb", cls="ebs", csi=("ebs.csi", "h-b")),
        pvc("new", cls="ebs"),
    )  # fmt: skip
    plugin = NodeVolumeLimits(s.cache)
    ni = NodeInfo(make_node("n1"))
    ni.add_pod(with_claims("one", "a", node="n1"))
    ni.add_pod(with_claims("two", "a", node="n1"))  # the same volume counts once
    assert plugin.filter(CycleState(), with_claims("p", "new"), ni).ok
    assert plugin.filter(CycleState(), with_claims("p", "a"), ni).ok  # attached already
    ni.add_pod(with_claims("three", "b", node="n1"))
    st = plugin.filter(CycleState(), with_claims("p", "new"), ni)
    assert (st.code, st.message) == (Code.UNSCHEDULABLE, "node(s) exceed max volume count")
    assert plugin.filter(CycleState(), with_claims("p", "new"), NodeInfo(make_node("n2"))).ok
