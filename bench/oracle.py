"""A differential oracle: lasched's Filter verdicts held to kube-scheduler's, on a real cluster.

kube-scheduler runs its own filters, then asks each extender about the nodes
that are left: an extender sees kube-scheduler's feasible set for the pod.
:class:`Recorder` is such an extender. It keeps, per pod, the node names
kube-scheduler sent, and fails every one of them, so nothing is ever bound
and the cluster stays as generated. lasched runs beside it as a follower (the
reference holds lasched's Lease, :func:`hold_lease`), so it binds nothing
either, and its ``/debug/explain`` runs every PreFilter and every Filter on
every node for the same pod: lasched's feasible set.

A *scene* (:func:`generate`, from a seed and an index) is four to eight kwok
nodes in two to four zones, with racks, disks, generations, taints
(NoSchedule, NoExecute, PreferNoSchedule), cordons, small capacities, a pod
limit of 3 on some, on a few a hostname label another node shares; pods
bound to them already (``spec.nodeName``: no scheduler places them;
tolerating NoExecute, so nothing evicts them) with labels, resources, host
ports and required (anti-)affinity, some left terminating by a finalizer,
some finished (phase Succeeded); and pending pods with node selectors,
required node affinity (In, NotIn, Exists, DoesNotExist, Gt, Lt,
matchFields), tolerations, resources, init and sidecar containers, host
ports, required and preferred pod (anti-)affinity over hostname, zone and
rack with namespace lists and selectors and matchLabelKeys /
mismatchLabelKeys, and topology spread constraints (DoNotSchedule and
ScheduleAnyway, maxSkew, minDomains, nodeAffinityPolicy, nodeTaintsPolicy,
matchLabelKeys, empty and missing selectors), in two namespaces with labels.
Each scene has storage too (bench/oraclestorage.py): StorageClasses, local and
CSI PersistentVolumes, bound and unbound claims (``ReadWriteOnce``,
``ReadWriteOncePod``), CSINodes with attach limits, and pods using the
claims, for VolumeBinding, VolumeZone, VolumeRestrictions and
NodeVolumeLimits.

kube-scheduler's set is the nodes it sent to the extender; empty when it
never called (a PreFilter rejected the pod, or no node passed its filters:
the pod's PodScheduled condition turns False without a call). lasched's set
is the nodes explain finds feasible; empty when a PreFilter rejected the pod.
They must be equal. Filter verdicts only: kube-scheduler's set leaves out a
node where the pod would fit after preemption, and so does explain's.

Both must judge the same cluster, and it must hold still. Nodes are created
first; the scene waits until they are Ready, carry no not-ready taint, and
the cordoned ones carry the unschedulable taint. The storage comes next, and
the scene waits until the PV controller has bound the pre-bound claims (no
scheduler binds anything, so no other claim ever changes). Then a *probe*
pod (no requests, tolerating the scene's taints but not the not-ready ones) is
judged until both schedulers find exactly the scene's nodes: both caches
then hold those nodes, settled, and no others. The bound pods come next,
and the scene waits until kwok has them Running before it finishes or
deletes some; the pending pods last. One watch delivers pods in order, so a
scheduler that has seen a pending pod has seen every bound one before it
(explain answers 404 until lasched has seen the pod).

Nothing generated needs kube-scheduler's plugins that lasched does not have
(DRA), nor what lasched's volume plugins leave out (CSIStorageCapacity, the
VolumeAttachments kube-scheduler counts toward CSI limits, in-tree volumes
migrated to CSI: there is no CSIDriver object, no attachment, no in-tree
volume), and lasched's one documented departure in these plugins, default
spreading by controller instead of by Service, only scores (the system
defaults are ScheduleAnyway): no case is excluded.

Scale: ``python -m bench run oracle --cases 5000 --seed 7`` runs scenes of
:data:`PODS_PER_SCENE` pending pods until that many pods were judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
from aiohttp import web

from bench import oraclestorage
from lasched.kube.client import ApiError, KubeClient
from lasched.kube.election import micro_time
from lasched_dev.devcluster import binaries, nodes
from lasched_dev.devcluster.cluster import workload_api_flags
from lasched_dev.devcluster.processes import Child, spawn, stop_children

JSON = dict[str, Any]
T = TypeVar("T")

SCHEDULER = "oracle"
"""The scheduler name of every generated pod: kube-scheduler's profile and lasched's."""
LEASE = "lasched-oracle"
LEASE_NAMESPACE = "kube-system"
HOLDER = "kube-scheduler-reference"
"""Who holds lasched's Lease, so that lasched follows: it explains, and binds nothing."""
RECORDED = "recorded by the oracle's extender"

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
RACK = "example.com/rack"
DISK = "example.com/disk"
GENERATION = "example.com/generation"
WIDGET = "example.com/widget"
ROLE = "oracle.lasched.io/role"
"""Every generated pod's role: ``bound``, ``pending`` or ``probe``."""
NODE_LABEL = "oracle.lasched.io/node"
FINALIZER = "oracle.lasched.io/hold"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
PODS_PER_SCENE = 40

APPS = ("web", "db", "cache")
TIERS = ("front", "back")
TAINTS = (
    nodes.Taint("dedicated", "ml", "NoSchedule"),
    nodes.Taint("gpu", "", "NoExecute"),
    nodes.Taint("spot", "true", "PreferNoSchedule"),
)


# ---- the reference: kube-scheduler with a recording extender ----------------------------


class Recorder:
    """kube-scheduler's extender: records the nodes sent per pod uid, fails them all.

    Failing them as unresolvable keeps kube-scheduler from trying preemption.
    """

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, ...]] = {}
        self.calls = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Listen on a free loopback port; returns the extender's URL prefix."""
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/filter", self._filter)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        for addr in self._runner.addresses:
            if isinstance(addr, tuple):
                return f"http://127.0.0.1:{addr[1]}"
        raise RuntimeError("the recording extender is not listening")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _filter(self, request: web.Request) -> web.Response:
        args = orjson.loads(await request.read())
        uid = str(args["Pod"]["metadata"]["uid"])
        names = [str(n) for n in args.get("NodeNames") or ()]
        self.calls += 1
        self.seen.setdefault(uid, tuple(names))  # a later retry sees the same cluster
        answer = {
            "NodeNames": [],
            "FailedNodes": {},
            "FailedAndUnresolvableNodes": dict.fromkeys(names, RECORDED),
            "Error": "",
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")


def kube_scheduler_config(*, kubeconfig: Path, extender_url: str) -> str:
    """One profile for the generated pods, every node evaluated, the recorder as extender."""
    return f"""\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
  qps: 5000
  burst: 10000
leaderElection:
  leaderElect: false
percentageOfNodesToScore: 100
profiles:
  - schedulerName: {SCHEDULER}
extenders:
  - urlPrefix: {extender_url}
    filterVerb: filter
    nodeCacheCapable: true
    ignorable: false
    httpTimeout: 10s
"""


@contextlib.asynccontextmanager
async def kube_scheduler(
    *, kubeconfig: Path, extender_url: str, workdir: Path
) -> AsyncIterator[Child]:
    """The dev cluster's release of kube-scheduler, with the cluster's feature gates."""
    exe = (await binaries.ensure(["kube-scheduler"]))["kube-scheduler"]
    config = workdir / "kube-scheduler-oracle.yaml"
    config.write_text(kube_scheduler_config(kubeconfig=kubeconfig, extender_url=extender_url))
    argv = [str(exe), f"--config={config}", "--secure-port=0", *workload_api_flags(exe), "--v=1"]
    child = spawn("kube-scheduler-oracle", argv, log_dir=workdir, detached=False)
    try:
        yield child
    finally:
        await stop_children([child], grace=10)


def lasched_settings() -> JSON:
    """lasched's settings for the oracle: the generated pods' profile, following the Lease."""
    return {
        "profiles": [{"schedulerName": SCHEDULER}],
        "leaderElection": {
            "leaderElect": True,
            "resourceName": LEASE,
            "resourceNamespace": LEASE_NAMESPACE,
        },
    }


async def hold_lease(kc: KubeClient, *, seconds: int = 86_400) -> None:
    """Give lasched's Lease to :data:`HOLDER` for ``seconds``: lasched then only follows."""
    now = micro_time(time.time())
    path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
    body: JSON = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": LEASE_NAMESPACE},
        "spec": {
            "holderIdentity": HOLDER,
            "leaseDurationSeconds": seconds,
            "acquireTime": now,
            "renewTime": now,
        },
    }
    try:
        await kc.post(path, body)
    except ApiError as e:
        if not e.conflict:
            raise
        await kc.patch(f"{path}/{LEASE}", {"spec": body["spec"]})


async def ensure_namespaces(kc: KubeClient, names: Sequence[str]) -> None:
    """The scene's namespaces, labelled ``team=<a, b, ...>`` for namespace selectors."""
    for i, name in enumerate(names):
        body = {"metadata": {"name": name, "labels": {"team": chr(ord("a") + i)}}}
        try:
            await kc.post("/api/v1/namespaces", body)
        except ApiError as e:
            if not e.conflict:
                raise


# ---- scenes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scene:
    """One generated cluster: nodes, the pods bound to them, the pending pods to judge."""

    seed: int
    index: int
    nodes: tuple[JSON, ...]
    bound: tuple[JSON, ...]
    terminating: frozenset[str]  # bound pods left terminating, ``namespace/name``
    finished: frozenset[str]  # bound pods whose phase is then set to Succeeded
    pending: tuple[JSON, ...]
    storage: oraclestorage.Storage

    @property
    def node_names(self) -> frozenset[str]:
        return frozenset(n["metadata"]["name"] for n in self.nodes)

    def describe(self) -> str:
        """The nodes and the bound pods, one line each, for a mismatch report."""
        lines = []
        for n in self.nodes:
            meta, spec = n["metadata"], n["spec"]
            shown = (ZONE, RACK, DISK, GENERATION)
            labels = {k: v for k, v in meta["labels"].items() if k in shown}
            if meta["labels"][HOST] != meta["name"]:
                labels[HOST] = meta["labels"][HOST]
            cap = n["status"]["capacity"]
            taints = [f"{t['key']}={t['value']}:{t['effect']}" for t in spec.get("taints", ())]
            cordon = " cordoned" if spec.get("unschedulable") else ""
            lines.append(
                f"node {meta['name']} {labels} cpu={cap['cpu']} memory={cap['memory']} "
                f"pods={cap['pods']} widget={cap.get(WIDGET, '0')} taints={taints}{cordon}"
            )
        for p in self.bound:
            meta, spec = p["metadata"], p["spec"]
            key = f"{meta['namespace']}/{meta['name']}"
            labels = {k: v for k, v in meta["labels"].items() if k != ROLE}
            affinity = spec.get("affinity")
            gone = " terminating" if key in self.terminating else ""
            gone += " succeeded" if key in self.finished else ""
            ports = " hostPort" if spec["containers"][0].get("ports") else ""
            claims = [v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes", ())]
            lines.append(
                f"pod {key} on {spec['nodeName']} {labels} "
                f"requests={spec['containers'][0]['resources'].get('requests', {})}"
                f"{ports}{gone}"
                + (f" claims={claims}" if claims else "")
                + (f" affinity={orjson.dumps(affinity).decode()}" if affinity else "")
            )
        lines += self.storage.describe()
        return "\n".join(lines)


class _Room:
    """What is left on a node while bound pods are placed on it."""

    def __init__(self, cpu: int, memory: int, widget: int) -> None:
        self.cpu, self.memory, self.widget = cpu, memory, widget

    def take(self, cpu: int, memory: int, widget: int) -> tuple[int, int, int]:
        """What of the request fits (the rest is not asked for)."""
        cpu = cpu if cpu <= self.cpu else 0
        memory = memory if memory <= self.memory else 0
        widget = widget if widget <= self.widget else 0
        self.cpu, self.memory, self.widget = (
            self.cpu - cpu,
            self.memory - memory,
            self.widget - widget,
        )
        return cpu, memory, widget


def generate(
    seed: int,
    index: int,
    *,
    prefix: str,
    namespaces: Sequence[str],
    pods: int = PODS_PER_SCENE,
    reference_minor: int = 37,
) -> Scene:
    """Scene ``index`` of ``seed``: the same scene for the same arguments, on any machine.

    ``prefix`` names its nodes and pods (``<prefix>-n0``); ``namespaces``: two or more;
    ``reference_minor``: the Kubernetes minor release of the kube-scheduler judged against.
    """
    r = random.Random(f"lasched-oracle/{seed}/{index}")
    zones = [f"zone-{c}" for c in "abcd"[: r.randint(2, 4)]]
    node_list: list[JSON] = []
    rooms: dict[str, _Room] = {}
    for i in range(r.randint(4, 8)):
        spec, room = _node(r, f"{prefix}-n{i}", zones)
        node_list.append(spec)
        rooms[spec["metadata"]["name"]] = room
    bound: list[JSON] = []
    terminating: set[str] = set()
    finished: set[str] = set()
    for name, room in rooms.items():
        for _ in range(r.randint(0, 3)):
            ns = _namespace(r, namespaces)
            p = _bound_pod(
                r, f"{prefix}-b{len(bound)}", ns=ns, node=name, room=room, namespaces=namespaces
            )
            bound.append(p)
            x = r.random()
            if x < 0.1:
                p["metadata"]["finalizers"] = [FINALIZER]
                terminating.add(f"{ns}/{p['metadata']['name']}")
            elif x < 0.15:
                finished.add(f"{ns}/{p['metadata']['name']}")
    pending = [
        _pending_pod(
            r,
            f"{prefix}-p{j}",
            ns=_namespace(r, namespaces),
            zones=zones,
            node_list=node_list,
            namespaces=namespaces,
        )
        for j in range(pods)
    ]
    if reference_minor < 37:
        for p in (*bound, *pending):
            _no_namespace_not_in(p)
    # A stream of its own, so that the scene without storage stays what it was for a seed.
    s = random.Random(f"lasched-oracle-storage/{seed}/{index}")
    storage = oraclestorage.generate(
        s, prefix=prefix, namespaces=namespaces, node_list=node_list, zones=zones
    )
    oraclestorage.mount(s, storage, bound=bound, pending=pending)
    return Scene(
        seed=seed,
        index=index,
        nodes=tuple(node_list),
        bound=tuple(bound),
        terminating=frozenset(terminating),
        finished=frozenset(finished),
        pending=tuple(pending),
        storage=storage,
    )


def _no_namespace_not_in(pod: JSON) -> None:
    """Make a term's ``namespaceSelector: team NotIn (a)`` select ``team=b`` instead.

    kube-scheduler before v1.37 merges the namespaces that a pod's own term
    selects into the term, but keeps the selector too
    (``mergeAffinityTermNamespacesIfNotEmpty`` takes the term by value), and
    then matches the selector against no labels: ``team NotIn (a)`` selects
    every namespace there. lasched selects by the namespaces' labels, as the
    API says and v1.37 does. Against an older reference the generator keeps
    to selectors that both read alike (verified with v1.35.4 and v1.37.2).
    """
    affinity = pod["spec"].get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        block = affinity.get(kind) or {}
        terms = [
            *block.get("requiredDuringSchedulingIgnoredDuringExecution", ()),
            *(
                w["podAffinityTerm"]
                for w in block.get("preferredDuringSchedulingIgnoredDuringExecution", ())
            ),
        ]
        for term in terms:
            selector = term.get("namespaceSelector") or {}
            if any(e["operator"] == "NotIn" for e in selector.get("matchExpressions", ())):
                term["namespaceSelector"] = {"matchLabels": {"team": "b"}}


def _namespace(r: random.Random, namespaces: Sequence[str]) -> str:
    return namespaces[0] if r.random() < 0.7 else r.choice(namespaces[1:])


def _node(r: random.Random, name: str, zones: Sequence[str]) -> tuple[JSON, _Room]:
    labels = {NODE_LABEL: "true"}
    if r.random() < 0.08:
        labels[HOST] = "shared-host"  # a hostname label two nodes may carry
    if r.random() < 0.5:
        labels[GENERATION] = str(r.randint(1, 4))
    if r.random() < 0.6:
        labels[RACK] = f"rack-{r.randrange(3)}"
    if r.random() < 0.5:
        labels[DISK] = r.choice(("ssd", "hdd"))
    cpu, memory = r.choice((1, 2, 4)), r.choice((2, 4, 8))
    pods = r.choice((3, 110, 110))
    widget = r.choice((0, 0, 1, 2))
    spec = nodes.NodeSpec(
        name=name,
        cpu=str(cpu),
        memory=f"{memory}Gi",
        pods=str(pods),
        extended={WIDGET: str(widget)} if widget else {},
        labels=labels,
        taints=[r.choice(TAINTS)] if r.random() < 0.3 else (),
        zone=r.choice(zones) if r.random() < 0.85 else None,
        unschedulable=r.random() < 0.1,
    )
    return spec.manifest(), _Room(cpu * 1000, memory * 1024, widget)


def _labels(r: random.Random) -> dict[str, str]:
    out = {}
    if r.random() < 0.85:
        out["app"] = r.choice(APPS)
    if r.random() < 0.6:
        out["tier"] = r.choice(TIERS)
    return out


def _pod(
    name: str,
    namespace: str,
    labels: dict[str, str],
    *,
    role: str,
    cpu: int = 0,
    memory: int = 0,
    widget: int = 0,
    host_port: bool = False,
    **spec: Any,
) -> JSON:
    requests: dict[str, str] = {}
    if cpu:
        requests["cpu"] = f"{cpu}m"
    if memory:
        requests["memory"] = f"{memory}Mi"
    container: JSON = {"name": "main", "image": "registry.k8s.io/pause:3.10"}
    if widget:
        requests[WIDGET] = str(widget)
        container["resources"] = {"requests": requests, "limits": {WIDGET: str(widget)}}
    else:
        container["resources"] = {"requests": requests}
    if host_port:
        container["ports"] = [{"containerPort": 8080, "hostPort": 8080, "protocol": "TCP"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {ROLE: role, **labels}},
        "spec": {
            "schedulerName": SCHEDULER,
            "terminationGracePeriodSeconds": 0,
            "containers": [container],
            **spec,
        },
    }


def _bound_pod(
    r: random.Random, name: str, *, ns: str, node: str, room: _Room, namespaces: Sequence[str]
) -> JSON:
    labels = _labels(r)
    cpu, memory, widget = room.take(
        r.choice((0, 100, 250, 500, 1000)), r.choice((0, 128, 512, 1024)), r.choice((0, 0, 1))
    )
    # Tolerating NoExecute keeps the controller-manager from evicting it: the scene holds still.
    spec: JSON = {"nodeName": node, "tolerations": [{"operator": "Exists", "effect": "NoExecute"}]}
    if r.random() < 0.3:
        terms = [_term(r, labels, namespaces) for _ in range(r.randint(1, 2))]
        spec["affinity"] = {
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": terms}
        }
    elif r.random() < 0.1:
        spec["affinity"] = {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [_term(r, labels, namespaces)]
            }
        }
    return _pod(
        name,
        ns,
        labels,
        role="bound",
        cpu=cpu,
        memory=memory,
        widget=widget,
        host_port=r.random() < 0.1,
        **spec,
    )


def _selector(r: random.Random, own: dict[str, str]) -> JSON | None:
    """A label selector over app and tier; often the pod's own app."""
    app = own.get("app") if own.get("app") and r.random() < 0.5 else r.choice(APPS)
    x = r.random()
    if x < 0.4:
        return {"matchLabels": {"app": app}}
    if x < 0.52:
        return {
            "matchExpressions": [
                {"key": "app", "operator": "In", "values": sorted({app, r.choice(APPS)})}
            ]
        }
    if x < 0.62:
        return {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": [app]}]}
    if x < 0.72:
        return {
            "matchExpressions": [{"key": "tier", "operator": r.choice(("Exists", "DoesNotExist"))}]
        }
    if x < 0.8:
        return {"matchLabels": {"app": app, "tier": r.choice(TIERS)}}
    if x < 0.93:
        return {}
    return None


def _selector_keys(selector: JSON | None) -> set[str]:
    if selector is None:
        return set()
    keys = set(selector.get("matchLabels", {}))
    keys.update(e["key"] for e in selector.get("matchExpressions", ()))
    return keys


def _term(r: random.Random, own: dict[str, str], namespaces: Sequence[str]) -> JSON:
    """A PodAffinityTerm over hostname, zone or rack, with namespace variants."""
    selector = _selector(r, own)
    term: JSON = {"topologyKey": r.choice((HOST, HOST, ZONE, ZONE, RACK))}
    if selector is not None:
        term["labelSelector"] = selector
        free = [k for k in ("app", "tier") if k not in _selector_keys(selector)]
        if free and r.random() < 0.15:
            key = r.choice(free)
            term["matchLabelKeys" if r.random() < 0.6 else "mismatchLabelKeys"] = [key]
    x = r.random()
    if x < 0.15:
        term["namespaces"] = sorted(set(r.sample(list(namespaces), r.randint(1, len(namespaces)))))
    elif x < 0.25:
        term["namespaceSelector"] = {}
    elif x < 0.3:
        term["namespaceSelector"] = {
            "matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]
        }
    elif x < 0.38:
        term["namespaceSelector"] = {"matchLabels": {"team": r.choice(("a", "b"))}}
        if r.random() < 0.3:
            term["namespaces"] = [namespaces[0]]
    return term


def _pending_pod(
    r: random.Random,
    name: str,
    *,
    ns: str,
    zones: Sequence[str],
    node_list: Sequence[JSON],
    namespaces: Sequence[str],
) -> JSON:
    labels = _labels(r)
    spec: JSON = {}
    if r.random() < 0.15:
        spec["nodeSelector"] = r.choice(({DISK: "ssd"}, {ZONE: r.choice(zones)}))
    affinity: JSON = {}
    if r.random() < 0.2:
        affinity["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    _node_term(r, zones, node_list) for _ in range(r.randint(1, 2))
                ]
            }
        }
    for kind, p in (("podAffinity", 0.3), ("podAntiAffinity", 0.3)):
        if r.random() < p:
            block: JSON = {}
            if r.random() < 0.85:
                block["requiredDuringSchedulingIgnoredDuringExecution"] = [
                    _term(r, labels, namespaces) for _ in range(r.randint(1, 2))
                ]
            if r.random() < 0.3:
                block["preferredDuringSchedulingIgnoredDuringExecution"] = [
                    {"weight": r.randint(1, 100), "podAffinityTerm": _term(r, labels, namespaces)}
                ]
            if block:
                affinity[kind] = block
    if affinity:
        spec["affinity"] = affinity
    if r.random() < 0.45:
        spec["topologySpreadConstraints"] = _constraints(r, labels)
    tolerations = [
        {"key": t.key, "operator": "Exists", **({"effect": t.effect} if r.random() < 0.5 else {})}
        for t in TAINTS
        if r.random() < 0.25
    ]
    if r.random() < 0.1:
        value = r.choice(("ml", "other"))
        tolerations.append({"key": "dedicated", "operator": "Equal", "value": value})
    if r.random() < 0.05:
        tolerations.append({"key": UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"})
    if r.random() < 0.03:
        tolerations = [{"operator": "Exists"}]
    if tolerations:
        spec["tolerations"] = tolerations
    if r.random() < 0.08:
        init: JSON = {
            "name": "init",
            "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": {"cpu": f"{r.choice((500, 1500, 3000))}m"}},
        }
        if r.random() < 0.5:
            init["restartPolicy"] = "Always"  # a sidecar: its requests add to the containers'
        spec["initContainers"] = [init]
    return _pod(
        name,
        ns,
        labels,
        role="pending",
        cpu=r.choice((0, 100, 100, 500, 1000, 1500)),
        memory=r.choice((0, 256, 256, 1024, 3072)),
        widget=1 if r.random() < 0.1 else 0,
        host_port=r.random() < 0.05,
        **spec,
    )


def _node_term(r: random.Random, zones: Sequence[str], node_list: Sequence[JSON]) -> JSON:
    x = r.random()
    if x < 0.35:
        return {
            "matchExpressions": [
                {
                    "key": ZONE,
                    "operator": "In",
                    "values": r.sample(list(zones), r.randint(1, len(zones))),
                }
            ]
        }
    if x < 0.5:
        return {
            "matchExpressions": [{"key": ZONE, "operator": "NotIn", "values": [r.choice(zones)]}]
        }
    if x < 0.65:
        return {"matchExpressions": [{"key": RACK, "operator": "Exists"}]}
    if x < 0.75:
        return {"matchExpressions": [{"key": DISK, "operator": "DoesNotExist"}]}
    if x < 0.85:
        op = r.choice(("Gt", "Lt"))
        return {
            "matchExpressions": [
                {"key": GENERATION, "operator": op, "values": [str(r.randint(1, 4))]}
            ]
        }
    name = r.choice(node_list)["metadata"]["name"]
    return {
        "matchFields": [
            {"key": "metadata.name", "operator": r.choice(("In", "NotIn")), "values": [name]}
        ]
    }


def _constraints(r: random.Random, own: dict[str, str]) -> list[JSON]:
    """One or two TopologySpreadConstraints with distinct (topologyKey, whenUnsatisfiable)."""
    out: list[JSON] = []
    used: set[tuple[str, str]] = set()
    for _ in range(r.randint(1, 2)):
        key = r.choice((ZONE, ZONE, HOST, RACK))
        when = "DoNotSchedule" if r.random() < 0.8 else "ScheduleAnyway"
        if (key, when) in used:
            continue
        used.add((key, when))
        c: JSON = {
            "maxSkew": r.choice((1, 1, 1, 2, 3)),
            "topologyKey": key,
            "whenUnsatisfiable": when,
        }
        selector = _selector(r, own)
        if selector is not None:
            c["labelSelector"] = selector
            free = [k for k in ("app", "tier") if k not in _selector_keys(selector)]
            if free and r.random() < 0.15:
                c["matchLabelKeys"] = [r.choice(free)]
        if when == "DoNotSchedule" and r.random() < 0.25:
            c["minDomains"] = r.randint(1, 5)
        if r.random() < 0.3:
            c["nodeAffinityPolicy"] = r.choice(("Honor", "Ignore"))
        if r.random() < 0.3:
            c["nodeTaintsPolicy"] = r.choice(("Honor", "Ignore"))
        out.append(c)
    return out


# ---- judging -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A pod whose feasible nodes differ; everything needed to reproduce and read it."""

    seed: int
    scene: int
    pod: JSON
    kube: frozenset[str]
    lasched: frozenset[str]
    kube_message: str
    lasched_verdicts: dict[str, list[JSON]]
    cluster: str

    def __str__(self) -> str:
        meta = self.pod["metadata"]
        only_kube = sorted(self.kube - self.lasched)
        only_lasched = sorted(self.lasched - self.kube)
        why = {n: self.lasched_verdicts.get(n, []) for n in only_kube}
        return (
            f"seed {self.seed} scene {self.scene}: pod {meta['namespace']}/{meta['name']}\n"
            f"  kube-scheduler feasible: {sorted(self.kube)}\n"
            f"  lasched feasible:        {sorted(self.lasched)}\n"
            f"  only kube-scheduler: {only_kube} (lasched's rejections: {why})\n"
            f"  only lasched: {only_lasched}\n"
            f"  kube-scheduler said: {self.kube_message}\n"
            f"  pod: {orjson.dumps(self.pod['spec'] | {'labels': meta['labels']}).decode()}\n"
            f"  cluster:\n    " + self.cluster.replace("\n", "\n    ")
        )


@dataclass(slots=True)
class Tally:
    """What a run judged: cases, scenes, mismatches, and what the cases covered."""

    cases: int = 0
    scenes: int = 0
    probes: int = 0
    seconds: float = 0.0
    mismatches: list[Mismatch] = field(default_factory=list)
    none_feasible: int = 0
    all_feasible: int = 0
    some_feasible: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    """Node verdicts by the lasched plugin that rejected them first (across all cases)."""

    def to_json(self) -> JSON:
        return {
            "cases": self.cases,
            "scenes": self.scenes,
            "probes": self.probes,
            "seconds": round(self.seconds, 1),
            "mismatches": [str(m) for m in self.mismatches],
            "feasible": {
                "none": self.none_feasible,
                "all": self.all_feasible,
                "some": self.some_feasible,
            },
            "rejections": dict(self.rejections.most_common()),
        }


class OracleError(RuntimeError):
    """The oracle could not judge (a scheduler never answered, the cluster never settled)."""


async def _each(limit: int, items: Iterable[T], job: Callable[[T], Awaitable[object]]) -> None:
    """``job(item)`` for every item, at most ``limit`` at a time."""
    sem = asyncio.Semaphore(limit)

    async def one(item: T) -> None:
        async with sem:
            await job(item)

    async with asyncio.TaskGroup() as tg:
        for item in items:
            tg.create_task(one(item))


class Oracle:
    """Judges scenes: the recorder's sets against lasched's explain, pod by pod.

    ``lasched_url``: the base URL of a lasched following :data:`LEASE` with a
    :data:`SCHEDULER` profile; ``recorder``: the extender kube-scheduler calls.
    ``cordon_taints``: whether a controller-manager taints cordoned nodes (the
    scene waits for the taint before judging). ``reference_minor``: the minor
    release of the kube-scheduler that records (the dev cluster's by default).
    """

    def __init__(
        self,
        kc: KubeClient,
        *,
        lasched_url: str,
        recorder: Recorder,
        namespaces: Sequence[str],
        cordon_taints: bool = True,
        reference_minor: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.kc = kc
        self.lasched_url = lasched_url.rstrip("/")
        self.recorder = recorder
        self.namespaces = tuple(namespaces)
        self.cordon_taints = cordon_taints
        self.reference_minor = (
            binaries.kubernetes_minor() if reference_minor is None else reference_minor
        )
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None
        self._probes = 0

    async def __aenter__(self) -> Oracle:
        await ensure_namespaces(self.kc, self.namespaces)
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def run(
        self,
        seed: int,
        *,
        cases: int,
        pods_per_scene: int = PODS_PER_SCENE,
        first_scene: int = 0,
        progress: Callable[[Tally], None] | None = None,
    ) -> Tally:
        """Scenes of ``seed`` from ``first_scene`` on until ``cases`` pending pods were judged."""
        tally = Tally()
        started = time.monotonic()
        index = first_scene
        while tally.cases < cases:
            pods = min(pods_per_scene, cases - tally.cases)
            scene = generate(
                seed,
                index,
                prefix=f"o{seed}s{index}",
                namespaces=self.namespaces,
                pods=pods,
                reference_minor=self.reference_minor,
            )
            await self.judge(scene, tally)
            index += 1
            tally.seconds = time.monotonic() - started
            if progress is not None:
                progress(tally)
        return tally

    async def judge(self, scene: Scene, tally: Tally) -> None:
        """Create the scene, judge its pending pods into ``tally``, delete the scene."""
        try:
            await self._create_nodes(scene)
            await self._create_storage(scene)
            await self._settle(scene, tally)
            await self._create_bound(scene)
            await _each(16, scene.pending, lambda p: self.kc.post(_pods_path(p), p))
            decided = await self._decided(scene)
            for p in scene.pending:
                await self._compare(scene, p, decided[_key(p)], tally)
            tally.scenes += 1
        finally:
            await self._delete(scene)

    async def _create_nodes(self, scene: Scene) -> None:
        await _each(16, scene.nodes, lambda n: self.kc.post("/api/v1/nodes", n))
        names = sorted(scene.node_names)
        await nodes.wait_ready(self.kc, names, timeout=self.timeout)
        cordoned = {n["metadata"]["name"] for n in scene.nodes if n["spec"].get("unschedulable")}
        if self.cordon_taints and cordoned:
            deadline = time.monotonic() + self.timeout
            while True:
                listing = await self.kc.get("/api/v1/nodes", labelSelector=f"{NODE_LABEL}=true")
                tainted = {
                    n["metadata"]["name"]
                    for n in listing["items"]
                    if any(t["key"] == UNSCHEDULABLE for t in n["spec"].get("taints") or ())
                }
                if cordoned <= tainted:
                    break
                if time.monotonic() > deadline:
                    raise OracleError(f"cordoned nodes never tainted: {sorted(cordoned - tainted)}")
                await asyncio.sleep(0.1)

    async def _create_storage(self, scene: Scene) -> None:
        """Classes, volumes, claims and CSINodes; then the PV controller's binds of the
        pre-bound pairs, the only storage writes the scene will see."""
        st = scene.storage
        for group in (st.classes, st.volumes, st.claims, st.csinodes):
            await _each(16, group, lambda o: self.kc.post(oraclestorage.path_of(o), o))
        deadline = time.monotonic() + self.timeout
        while not st.bound <= (done := await oraclestorage.bound_claims(self.kc, self.namespaces)):
            if time.monotonic() > deadline:
                raise OracleError(f"claims never bound: {sorted(st.bound - done)[:5]}")
            await asyncio.sleep(0.1)

    async def _create_bound(self, scene: Scene) -> None:
        """The bound pods, Running (kwok is done with them), then some finished or leaving."""
        await _each(16, scene.bound, lambda p: self.kc.post(_pods_path(p), p))
        want = {_key(p) for p in scene.bound}
        deadline = time.monotonic() + self.timeout
        while True:
            running = set()
            for ns in {p["metadata"]["namespace"] for p in scene.bound}:
                listing = await self.kc.get(
                    f"/api/v1/namespaces/{ns}/pods", labelSelector=f"{ROLE}=bound"
                )
                running |= {
                    _key(p)
                    for p in listing["items"]
                    if p.get("status", {}).get("phase") == "Running"
                }
            if want <= running:
                break
            if time.monotonic() > deadline:
                raise OracleError(f"bound pods never ran: {sorted(want - running)[:5]}")
            await asyncio.sleep(0.1)
        for key in scene.finished:
            ns, name = key.split("/")
            await self.kc.patch(
                f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": {"phase": "Succeeded"}}
            )
        for key in scene.terminating:
            ns, name = key.split("/")
            await self.kc.request(
                "DELETE",
                f"/api/v1/namespaces/{ns}/pods/{name}",
                body={"gracePeriodSeconds": 0},
            )

    async def _settle(self, scene: Scene, tally: Tally) -> None:
        """Probe until both schedulers find every node of the scene, and only those.

        Before any pod is bound: the probe fits every settled node then.
        """
        want = scene.node_names
        tolerations = [{"key": t.key, "operator": "Exists"} for t in TAINTS]
        tolerations.append({"key": UNSCHEDULABLE, "operator": "Exists"})
        deadline = time.monotonic() + self.timeout
        last = ""
        while time.monotonic() < deadline:
            self._probes += 1
            tally.probes += 1
            probe = _pod(
                f"probe-{self._probes}",
                self.namespaces[0],
                {},
                role="probe",
                tolerations=tolerations,
            )
            created = await self.kc.post(_pods_path(probe), probe)
            try:
                kube, message = await self._kube_verdict(created)
                answer = await self._explain(_key(probe))
            finally:
                await self.kc.request(
                    "DELETE", _pods_path(probe) + f"/{probe['metadata']['name']}",
                    body={"gracePeriodSeconds": 0},
                )  # fmt: skip
            evaluated = {v["node"] for v in answer["filter"]["nodes"]}
            mine = feasible_nodes(answer)
            if kube == want and mine == want and evaluated == scene.node_names:
                return
            last = (
                f"kube-scheduler found {sorted(kube)} ({message}); lasched evaluated "
                f"{sorted(evaluated)} and found {sorted(mine)}; want {sorted(want)}"
            )
            await asyncio.sleep(0.2)
        raise OracleError(f"scene {scene.index} of seed {scene.seed} never settled: {last}")

    async def _kube_verdict(self, pod: JSON) -> tuple[frozenset[str], str]:
        """kube-scheduler's feasible nodes for ``pod`` (as created), once it has decided."""
        uid = pod["metadata"]["uid"]
        path = _pods_path(pod) + f"/{pod['metadata']['name']}"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            current = await self.kc.get(path)
            cond = scheduled_condition(current)
            if cond is not None:
                return self._verdict_of(uid, cond)
            await asyncio.sleep(0.05)
        raise OracleError(f"kube-scheduler never decided on {_key(pod)}")

    def _verdict_of(self, uid: str, cond: JSON) -> tuple[frozenset[str], str]:
        if cond.get("reason") != "Unschedulable":
            raise OracleError(f"kube-scheduler failed on pod {uid}: {cond}")
        return frozenset(self.recorder.seen.get(uid, ())), str(cond.get("message", ""))

    async def _decided(self, scene: Scene) -> dict[str, tuple[frozenset[str], str]]:
        """kube-scheduler's verdict on every pending pod of the scene, once all are in."""
        want = {_key(p) for p in scene.pending}
        out: dict[str, tuple[frozenset[str], str]] = {}
        deadline = time.monotonic() + self.timeout
        while True:
            for ns in {p["metadata"]["namespace"] for p in scene.pending}:
                listing = await self.kc.get(
                    f"/api/v1/namespaces/{ns}/pods", labelSelector=f"{ROLE}=pending"
                )
                for item in listing["items"]:
                    key = _key(item)
                    cond = scheduled_condition(item)
                    if key in want and key not in out and cond is not None:
                        out[key] = self._verdict_of(item["metadata"]["uid"], cond)
            if len(out) == len(want):
                return out
            if time.monotonic() > deadline:
                missing = sorted(want - out.keys())
                raise OracleError(f"kube-scheduler never decided on {len(missing)}: {missing[:5]}")
            await asyncio.sleep(0.2)

    async def _explain(self, key: str) -> JSON:
        """lasched's explain answer, once lasched has seen the pod."""
        assert self._http is not None, "use the Oracle with async with"
        deadline = time.monotonic() + self.timeout
        while True:
            async with self._http.get(
                f"{self.lasched_url}/debug/explain", params={"pod": key}
            ) as resp:
                body = await resp.read()
                if resp.status == 200:
                    answer: JSON = orjson.loads(body)
                    return answer
                if resp.status not in (404, 503) or time.monotonic() > deadline:
                    raise OracleError(f"explain {key}: {resp.status} {body[:300]!r}")
            await asyncio.sleep(0.05)

    async def _compare(
        self, scene: Scene, pod: JSON, decided: tuple[frozenset[str], str], tally: Tally
    ) -> None:
        kube, message = decided
        answer = await self._explain(_key(pod))
        mine = feasible_nodes(answer)
        verdicts = {v["node"]: v["rejections"] for v in answer["filter"]["nodes"]}
        for rejections in verdicts.values():
            if rejections:
                tally.rejections[rejections[0]["plugin"]] += 1
        if answer["filter"]["stoppedAtPreFilter"]:
            for st in answer["preFilter"]:
                if st["code"] not in ("Success", "Skip"):
                    tally.rejections[f"{st['plugin']} (PreFilter)"] += 1
        tally.cases += 1
        if not kube:
            tally.none_feasible += 1
        elif kube == scene.node_names:
            tally.all_feasible += 1
        else:
            tally.some_feasible += 1
        if kube != mine:
            tally.mismatches.append(
                Mismatch(
                    seed=scene.seed,
                    scene=scene.index,
                    pod=pod,
                    kube=kube,
                    lasched=mine,
                    kube_message=message,
                    lasched_verdicts=verdicts,
                    cluster=scene.describe(),
                )
            )

    async def _delete(self, scene: Scene) -> None:
        """Pods first (the pending ones before the bound ones), then the nodes."""
        grace = {"gracePeriodSeconds": 0}
        for ns in self.namespaces:
            await self.kc.request(
                "DELETE", f"/api/v1/namespaces/{ns}/pods",
                params={"labelSelector": f"{ROLE} in (pending,probe)"}, body=grace,
            )  # fmt: skip
        for key in scene.terminating:
            ns, name = key.split("/")
            with contextlib.suppress(ApiError):
                await self.kc.patch(
                    f"/api/v1/namespaces/{ns}/pods/{name}", {"metadata": {"finalizers": None}}
                )
        for ns in self.namespaces:
            await self.kc.request(
                "DELETE", f"/api/v1/namespaces/{ns}/pods",
                params={"labelSelector": f"{ROLE}=bound"}, body=grace,
            )  # fmt: skip
        await oraclestorage.delete(self.kc, self.namespaces)
        await self.kc.request(
            "DELETE", "/api/v1/nodes", params={"labelSelector": f"{NODE_LABEL}=true"}
        )


def _key(pod: JSON) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _pods_path(pod: JSON) -> str:
    return f"/api/v1/namespaces/{pod['metadata']['namespace']}/pods"


def scheduled_condition(pod: JSON) -> JSON | None:
    """The PodScheduled=False condition kube-scheduler writes when it gives up, if any."""
    for cond in (pod.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return dict(cond)
    return None


def feasible_nodes(answer: JSON) -> frozenset[str]:
    """The nodes lasched's explain finds feasible; none when a PreFilter rejected the pod."""
    f = answer["filter"]
    if f is None or f["stoppedAtPreFilter"]:
        return frozenset()
    return frozenset(v["node"] for v in f["nodes"] if v["feasible"])


# ---- the bench scenario: ``python -m bench run oracle`` ---------------------------------

SCENARIO = "oracle"
VERSION = 1


@dataclass(frozen=True, slots=True)
class Config:
    cases: int = 5000
    seed: int = 1
    pods_per_scene: int = PODS_PER_SCENE
    controller_manager: bool = True  # run kube-controller-manager in the dev cluster


async def _ready(url: str, child: Child, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if not child.alive():
                raise OracleError(f"lasched exited:\n{child.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise OracleError(f"lasched not ready within {timeout:g} s:\n{child.log_tail()}")


async def run(cfg: Config, progress: Callable[[str, int, int], None]) -> Tally:
    """A dev cluster, lasched following in its own process, kube-scheduler recording: judge."""
    from bench import peers  # the peers' process handling, shared with the other scenarios
    from lasched_dev.devcluster.cluster import DevCluster
    from lasched_dev.devcluster.processes import free_port

    async with (
        DevCluster(controller_manager=cfg.controller_manager) as cluster,
        await cluster.client() as kc,
    ):
        await hold_lease(kc)
        port = free_port()
        lasched = await peers.start(
            peers.LASCHED,
            kubeconfig=cluster.kubeconfig,
            workdir=cluster.workdir / "lasched",
            lasched_settings=lasched_settings(),
            http_port=port,
        )
        recorder = Recorder()
        try:
            url = f"http://127.0.0.1:{port}"
            await _ready(url, lasched.child)
            extender_url = await recorder.start()
            async with (
                kube_scheduler(
                    kubeconfig=cluster.kubeconfig,
                    extender_url=extender_url,
                    workdir=cluster.workdir,
                ),
                Oracle(
                    kc,
                    lasched_url=url,
                    recorder=recorder,
                    namespaces=("oracle-a", "oracle-b"),
                    cordon_taints=cfg.controller_manager,
                ) as judge,
            ):
                return await judge.run(
                    cfg.seed,
                    cases=cfg.cases,
                    pods_per_scene=cfg.pods_per_scene,
                    progress=lambda t: progress("pods judged", t.cases, cfg.cases),
                )
        finally:
            await recorder.stop()
            await lasched.stop()


def to_json(cfg: Config, tally: Tally, env: dict[str, str]) -> JSON:
    result: JSON = {
        "scenario": SCENARIO,
        "version": VERSION,
        "config": {
            "cases": cfg.cases,
            "seed": cfg.seed,
            "pods_per_scene": cfg.pods_per_scene,
            "controller_manager": cfg.controller_manager,
        },
        "environment": env,
        **tally.to_json(),
    }
    if tally.mismatches:
        result["failed"] = [
            f"oracle: {len(tally.mismatches)} of {tally.cases} pods judged differently "
            f"(first: seed {m.seed} scene {m.scene} pod {m.pod['metadata']['name']})"
            for m in tally.mismatches[:1]
        ]
    return result


def markdown(result: JSON) -> str:
    cfg, env, feasible = result["config"], result["environment"], result["feasible"]
    mismatches = result["mismatches"]
    lines = [
        "### oracle: lasched's Filter verdicts against kube-scheduler "
        f"{env.get('kubernetes', '?')}",
        "",
        "| pods judged | scenes | mismatches | none feasible | some | all | seconds |",
        "|---|---|---|---|---|---|---|",
        f"| {result['cases']} | {result['scenes']} | {len(mismatches)} | {feasible['none']} "
        f"| {feasible['some']} | {feasible['all']} | {result['seconds']:.0f} |",
        "",
        "Nodes rejected, by the first lasched plugin that rejected them: "
        + ", ".join(f"{k} {v}" for k, v in result["rejections"].items())
        + ".",
        "",
        f"Seed {cfg['seed']}, {cfg['pods_per_scene']} pending pods per scene. "
        f"Machine: {env.get('machine', '?')}. Python {env.get('python', '?')}.",
        f"Command: `{env.get('command', '?')}`",
    ]
    if env.get("load"):
        lines.append(f"Load: {env['load']}")
    for m in mismatches[:3]:
        lines += ["", "```", m, "```"]
    return "\n".join(lines) + "\n"
