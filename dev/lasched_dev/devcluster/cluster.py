"""A real local control plane: etcd, kube-apiserver, kube-controller-manager and kwok.

Everything listens on 127.0.0.1 on free ports, keeps its data in one work
directory, and is authenticated and authorised as a real cluster is: client
certificates, RBAC, API Priority and Fairness, service-account tokens.

kube-controller-manager runs the controllers a real cluster has (its
defaults: deployment, replicaset, job, statefulset, daemonset, garbage
collector, namespace, serviceaccount and token, node lifecycle, disruption,
endpoints and endpointslices, ...), as ``system:kube-controller-manager``
with one ServiceAccount per controller and leader election on, so
workloads create, own and recreate their pods, namespaces are finalised, and
new nodes carry ``node.kubernetes.io/not-ready`` until the node lifecycle
controller sees kwok report them Ready. What is still not real is kwok's
part: no kubelet, no container runtime, no network (docs/devcluster.md).

``controller_manager=False`` leaves it out (a benchmark that wants its CPU);
then ``TaintNodesByCondition`` is switched off, since nothing would remove
the taint, and :func:`ensure_namespace` creates the ``default``
ServiceAccount itself.

Kubernetes' own Workload and PodGroup API (``scheduling.k8s.io``, gang
scheduling) is served and its feature gates are on, in whichever version the
release has it (:func:`workload_api`); lasched's PodGroup CRD
(``scheduling.x-k8s.io/v1alpha1``) is installed beside it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
import os
import shutil
import signal
import ssl
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp
import orjson
import yaml

from lasched.kube.client import ApiError, KubeClient
from lasched_dev.devcluster import binaries, pki
from lasched_dev.devcluster.processes import (
    Child,
    free_port,
    pid_alive,
    spawn,
    stop_children,
    terminate,
)

log = logging.getLogger(__name__)

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# A node (or pod) carrying kwok.x-k8s.io/status=custom keeps whatever status is written to
# it: kwok's stages leave it alone (kwokctl passes the same selector). How a test fails a
# node: it says NotReady as a kubelet would, and kwok does not make it Ready again.
KWOK_STATUS_ANNOTATION = "kwok.x-k8s.io/status"
# kwok runs only the stages it is given. Node stages with a kubelet's
# status-report rhythm, and kwok's usual pod stages (the files say more).
KWOK_NODE_STAGES = Path(__file__).with_name("kwok") / "node-stages.yaml"
KWOK_POD_STAGES = Path(__file__).with_name("kwok") / "pod-stages.yaml"
# kwok's own defaults for the options that have them: kwok v0.8.0 applies them
# only when it reads no configuration file, and a parallelism of 0 is refused.
KWOK_CONFIGURATION: dict[str, Any] = {
    "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
    "kind": "KwokConfiguration",
    "options": {
        "enableDebuggingHandlers": True,
        "enableContentionProfiling": False,
        "enableProfilingHandler": True,
        "podPlayStageParallelism": 4,
        "nodePlayStageParallelism": 4,
        "nodeLeaseParallelism": 4,
        "podsOnNodeSyncParallelism": 1,
        "enablePodsOnNodeSyncListPager": True,
        "enablePodsOnNodeSyncStreamWatch": False,
    },
}
# kube-controller-manager's client budget, which each controller has to itself
# (--use-service-account-credentials gives each its own client): by default 20
# requests a second, burst 30. The node lifecycle controller spends about 2.5 of
# them on each new node (it reads the node, patches the not-ready taint off and
# records a RegisteredNode event; two more to add the beta os and arch labels
# the fake nodes once lacked), so at the default the last of 1,000 nodes created
# at once lost its taint after 231 s, the controller sending exactly 20 a second
# all along (docs/devcluster.md, "Many nodes at once"); with these, 27 s.
# Kubernetes' own 5,000-node scalability tests run it with 100 and 100, and so
# does this cluster whatever its size: a small one never reaches the limit.
CONTROLLER_MANAGER_CLIENT_FLAGS = ("--kube-api-qps=100", "--kube-api-burst=100")
# A kubelet's node Lease: 40 s, renewed every quarter of it (10 s), and
# kube-controller-manager's --node-monitor-grace-period (50 s) is 5/4 of it.
KUBELET_NODE_LEASE_SECONDS = 40
# The Lease renewals a second this cluster's 2-core control plane is sized for:
# a kubelet's rhythm at 1,000 nodes (docs/devcluster.md, "Many nodes at once").
NODE_LEASE_RENEWALS_PER_SECOND = 100


def node_lease_seconds_for(nodes: int) -> int:
    """The node Lease duration for a cluster of ``nodes``: a kubelet's 40 s up to
    1,000 nodes, longer beyond, so kwok renews at most about 100 Leases a second.

    At 5,000 nodes a kubelet's rhythm is 500 Lease writes a second, which a
    real 5,000-node control plane has the cores for; on two shared cores,
    under a scheduling burst, kwok fell a minute behind and the node lifecycle
    controller tainted nodes unreachable mid-run. The monitor grace period
    follows the duration (:meth:`DevCluster.node_monitor_grace_seconds`).
    """
    # A Lease is renewed every quarter of its duration, as a kubelet renews its own.
    return max(KUBELET_NODE_LEASE_SECONDS, math.ceil(4 * nodes / NODE_LEASE_RENEWALS_PER_SECOND))


CRDS_DIR = Path(__file__).parent / "crds"
# scheduler-plugins' PodGroup, and the NodeResourceTopology of NFD's topology-updater.
CRDS = ("podgroups.yaml", "noderesourcetopologies.yaml")
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
POD_CIDR = "10.64.0.0/10"


class ClusterError(RuntimeError):
    """The control plane did not start; the message quotes the failing log."""


@dataclass(frozen=True, slots=True)
class WorkloadApi:
    """Where a Kubernetes release serves its Workload and PodGroup kinds, and the
    feature gates (on in every component) that turn them and gang scheduling on."""

    group_version: str
    feature_gates: tuple[str, ...]
    podgroups: bool  # a PodGroup kind of its own (v1.36 on); v1.35 has Workload only

    def feature_gates_flag(self) -> str:
        return "--feature-gates=" + ",".join(f"{g}=true" for g in self.feature_gates)

    def runtime_config_flag(self) -> str:
        return f"--runtime-config={self.group_version}=true"


def workload_api(minor: int) -> WorkloadApi | None:
    """The Workload API of Kubernetes 1.<minor>, or None before v1.35.

    v1.35: ``scheduling.k8s.io/v1alpha1`` Workload, gates GenericWorkload and
    GangScheduling; v1.36: ``v1alpha2`` with PodGroup, the same gates; v1.37:
    ``v1beta1`` (disabled by default, as beta APIs are), one gate, GenericWorkload,
    which also enables kube-scheduler's GangScheduling plugin.
    """
    if minor >= 37:
        return WorkloadApi("scheduling.k8s.io/v1beta1", ("GenericWorkload",), podgroups=True)
    if minor == 36:
        return WorkloadApi(
            "scheduling.k8s.io/v1alpha2", ("GenericWorkload", "GangScheduling"), podgroups=True
        )
    if minor == 35:
        return WorkloadApi(
            "scheduling.k8s.io/v1alpha1", ("GenericWorkload", "GangScheduling"), podgroups=False
        )
    return None


def workload_api_flags(binary: Path, *, runtime_config: bool = False) -> list[str]:
    """The flags that turn the Workload API on for this Kubernetes binary's release."""
    api = workload_api(binaries.kubernetes_minor(binaries.binary_version(binary)))
    if api is None:
        return []
    return [api.feature_gates_flag(), *([api.runtime_config_flag()] if runtime_config else [])]


@dataclass(slots=True)
class ClusterState:
    """What ``lasched dev down`` needs to find a detached cluster again."""

    workdir: str
    kubeconfig: str
    api_url: str
    etcd_url: str
    pids: dict[str, int] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_bytes(orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2))

    @classmethod
    def load(cls, path: Path) -> ClusterState:
        data = orjson.loads(path.read_bytes())
        return cls(**data)


def default_workdir(name: str = "default") -> Path:
    return binaries.cache_dir() / "dev" / name


def _kubeconfig(*, server: str, p: pki.Pki) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "lasched-dev",
                "cluster": {"server": server, "certificate-authority": str(p.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "lasched-admin",
                "user": {
                    "client-certificate": str(p.admin_cert),
                    "client-key": str(p.admin_key),
                },
            }
        ],
        "contexts": [
            {"name": "lasched-dev", "context": {"cluster": "lasched-dev", "user": "lasched-admin"}}
        ],
        "current-context": "lasched-dev",
    }


class DevCluster:
    """Start with ``async with DevCluster() as c:``, or ``start()`` / ``stop()``.

    ``nodes``: the most nodes the cluster will hold at once, which sizes its
    node Leases (:func:`node_lease_seconds_for`).

    ``detached=True`` lets the processes outlive this Python process (the CLI's
    ``dev up``); otherwise they die with it, whatever the way it ends.
    """

    def __init__(
        self,
        *,
        workdir: Path | None = None,
        detached: bool = False,
        nodes: int = 0,
        controller_manager: bool = True,
        progress: binaries.ProgressFn | None = None,
    ) -> None:
        self._owns_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="lasched-dev-"))
        self.detached = detached
        self.node_lease_seconds = node_lease_seconds_for(nodes)
        self.controller_manager = controller_manager
        self._kcm_argv: list[str] = []
        self._watchdog: asyncio.Task[None] | None = None
        self.controller_manager_restarts = 0
        self._progress = progress
        self.children: list[Child] = []
        self.kubeconfig = self.workdir / "kubeconfig"
        self.api_url = ""
        self.etcd_url = ""
        self._pki: pki.Pki | None = None
        self._state_path = self.workdir / "state.json"
        self._apiserver_port = 0

    @property
    def node_monitor_grace_seconds(self) -> int:
        """kube-controller-manager's ``--node-monitor-grace-period``: 5/4 of the
        node Lease, as its 50 s default is of a kubelet's 40 s Lease."""
        return self.node_lease_seconds * 5 // 4

    @property
    def pki(self) -> pki.Pki:
        if self._pki is None:
            raise ClusterError("the cluster has not been started")
        return self._pki

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, *, timeout: float = 120.0) -> None:
        """Build binaries if needed, then start etcd, kube-apiserver,
        kube-controller-manager (unless left out) and kwok."""
        names = ["etcd", "kube-apiserver", "kwok"]
        if self.controller_manager:
            names.insert(2, "kube-controller-manager")
        bins = await binaries.ensure(names, progress=self._progress)
        self.workdir.mkdir(parents=True, exist_ok=True)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        self._pki = await asyncio.to_thread(pki.create, self.workdir / "pki")
        started = time.monotonic()
        try:
            await self._start_etcd(bins["etcd"], logs, timeout)
            await self._start_apiserver(bins["kube-apiserver"], logs, timeout)
            await self._bootstrap()
            # Both take a moment to come up and need nothing of each other.
            starting = [self._start_kwok(bins["kwok"], logs, timeout)]
            if self.controller_manager:
                kcm = bins["kube-controller-manager"]
                starting.insert(0, self._start_controller_manager(kcm, logs, timeout))
            await asyncio.gather(*starting)
        except BaseException:
            await self.stop()
            raise
        self._save_state()
        log.info("control plane ready in %.1f s at %s", time.monotonic() - started, self.api_url)

    def _save_state(self) -> None:
        ClusterState(
            workdir=str(self.workdir),
            kubeconfig=str(self.kubeconfig),
            api_url=self.api_url,
            etcd_url=self.etcd_url,
            pids={c.name: c.pid for c in self.children},
        ).save(self._state_path)

    def _spawn(self, name: str, argv: list[str], logs: Path) -> Child:
        child = spawn(name, argv, log_dir=logs, detached=self.detached)
        self.children.append(child)
        return child

    async def _start_etcd(self, etcd: Path, logs: Path, timeout: float) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        child = self._spawn(
            "etcd",
            [
                str(etcd),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                # A throwaway lab store: losing it on power loss costs nothing.
                "--unsafe-no-fsync",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
            logs,
        )
        await _wait_http(f"{self.etcd_url}/health", child, timeout=timeout, ssl_ctx=None)

    async def _start_apiserver(self, apiserver: Path, logs: Path, timeout: float) -> None:
        p = self.pki
        port = self._apiserver_port = self._apiserver_port or free_port()
        self.api_url = f"https://127.0.0.1:{port}"
        child = self._spawn(
            "kube-apiserver",
            [
                str(apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # The endpoint reconciler would publish the advertised address in the
                # `kubernetes` Service's endpoints, which may not be a loopback address
                # (v1.37 refuses to start with one). Nothing here reaches the apiserver
                # through that Service.
                "--endpoint-reconciler-type=none",
                f"--secure-port={port}",
                f"--tls-cert-file={p.serving_cert}",
                f"--tls-private-key-file={p.serving_key}",
                f"--client-ca-file={p.ca_cert}",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=Node,RBAC",
                "--enable-priority-and-fairness=true",
                "--enable-admission-plugins=NodeRestriction",
                *(
                    ()
                    if self.controller_manager
                    else ("--disable-admission-plugins=TaintNodesByCondition",)
                ),
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--allow-privileged=true",
                "--profiling=false",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                *workload_api_flags(apiserver, runtime_config=True),
                "--v=1",
            ],
            logs,
        )
        ctx = ssl.create_default_context(cafile=str(p.ca_cert))
        ctx.load_cert_chain(str(p.admin_cert), str(p.admin_key))
        await _wait_http(f"{self.api_url}/readyz", child, timeout=timeout, ssl_ctx=ctx)
        self.kubeconfig.write_text(yaml.safe_dump(_kubeconfig(server=self.api_url, p=p)))

    async def _start_controller_manager(self, kcm: Path, logs: Path, timeout: float) -> None:
        p = self.pki
        port = free_port()
        kubeconfig = self.workdir / "controller-manager.kubeconfig"
        config = _kubeconfig(server=self.api_url, p=p)
        config["users"][0]["user"] = {
            "client-certificate": str(p.controller_manager_cert),
            "client-key": str(p.controller_manager_key),
        }
        kubeconfig.write_text(yaml.safe_dump(config))
        self._kcm_argv = [
                str(kcm),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                # Every controller a cluster runs by default, each with its own
                # ServiceAccount and RBAC, as kubeadm configures it.
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={p.sa_key}",
                f"--root-ca-file={p.ca_cert}",
                f"--cluster-signing-cert-file={p.ca_cert}",
                f"--cluster-signing-key-file={p.ca_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--leader-elect=true",
                *CONTROLLER_MANAGER_CLIENT_FLAGS,
                f"--node-monitor-grace-period={self.node_monitor_grace_seconds}s",
                "--profiling=false",
                *workload_api_flags(kcm),
                "--v=1",
        ]  # fmt: skip
        child = self._spawn("kube-controller-manager", self._kcm_argv, logs)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # its serving certificate is self-signed
        await _wait_http(f"https://127.0.0.1:{port}/healthz", child, timeout=timeout, ssl_ctx=ctx)
        if not self.detached:
            self._watchdog = asyncio.create_task(
                self._keep_controller_manager(logs), name="kube-controller-manager-watchdog"
            )

    async def _keep_controller_manager(self, logs: Path) -> None:
        """Start kube-controller-manager again when it exits, as kubelet restarts its pod.

        It exits by design when it cannot renew its Lease (an apiserver away for
        longer than its renew deadline, 10 s).
        """
        delay = 1.0
        started = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            child = next((c for c in self.children if c.name == "kube-controller-manager"), None)
            if child is None or child.alive():
                continue
            self.children.remove(child)
            code = await asyncio.to_thread(child.popen.wait) if child.popen else None
            # Just after an apiserver restart it is refused until RBAC has loaded: back off
            # as kubelet does (CrashLoopBackOff), from scratch after a long run.
            if time.monotonic() - started > 60:
                delay = 1.0
            log.warning(
                "kube-controller-manager exited (code %s); starting it again in %.0f s (log: %s)",
                code, delay, child.log_path,
            )  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, 8.0)
            self._spawn("kube-controller-manager", self._kcm_argv, logs)
            started = time.monotonic()
            self.controller_manager_restarts += 1

    async def _bootstrap(self) -> None:
        from lasched_dev.devcluster.apply import apply, load_manifests

        async with await self.client() as kc:
            await ensure_namespace(kc, "default")
            crds = [m for f in CRDS for m in load_manifests(CRDS_DIR / f)]
            await apply(kc, crds)
            await _wait_established(kc, [c["metadata"]["name"] for c in crds])

    async def _start_kwok(self, kwok: Path, logs: Path, timeout: float) -> None:
        p = self.pki
        port = free_port()
        # An explicit config keeps a user's ~/.kwok/kwok.yaml out of the lab. It
        # holds the node and pod stages, which kwok needs to do anything.
        config = self.workdir / "kwok.yaml"
        config.write_text(
            yaml.safe_dump(KWOK_CONFIGURATION, sort_keys=False)
            + "---\n"
            + KWOK_NODE_STAGES.read_text()
            + "---\n"
            + KWOK_POD_STAGES.read_text()
        )
        child = self._spawn(
            "kwok",
            [
                str(kwok),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={config}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                f"--disregard-status-with-annotation-selector={KWOK_STATUS_ANNOTATION}=custom",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                f"--node-port={port}",
                f"--server-address=127.0.0.1:{port}",
                f"--tls-cert-file={p.serving_cert}",
                f"--tls-private-key-file={p.serving_key}",
                f"--node-lease-duration-seconds={self.node_lease_seconds}",
            ],
            logs,
        )
        ctx = ssl.create_default_context(cafile=str(p.ca_cert))
        await _wait_http(f"https://127.0.0.1:{port}/healthz", child, timeout=timeout, ssl_ctx=ctx)

    # ---- faults, for chaos tests and soaks ---------------------------------------

    def _child(self, name: str) -> Child:
        for child in self.children:
            if child.name == name:
                return child
        raise ClusterError(f"no {name} process in this cluster")

    async def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop kube-apiserver (SIGTERM, or SIGKILL with ``kill``); etcd and kwok stay."""
        child = self._child("kube-apiserver")
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        await stop_children([child])
        self.children.remove(child)

    async def start_apiserver(self, *, timeout: float = 120.0) -> None:
        """Start kube-apiserver again on the same port, with the same PKI and etcd."""
        bins = await binaries.ensure(["kube-apiserver"], progress=self._progress)
        await self._start_apiserver(bins["kube-apiserver"], self.workdir / "logs", timeout)
        self._save_state()

    async def restart_apiserver(self, *, down_seconds: float = 0.0, kill: bool = False) -> None:
        """Stop kube-apiserver, keep it down ``down_seconds``, start it again."""
        await self.stop_apiserver(kill=kill)
        await asyncio.sleep(down_seconds)
        await self.start_apiserver()

    async def compact_etcd(self) -> int:
        """Compact etcd's history up to now (as the apiserver does every 5 minutes).

        Two writes to a key outside ``/registry`` go first, so the compacted
        revision is strictly newer than any resourceVersion a client has seen
        (a watch resumed from a client's last revision, even one taken from a
        bookmark at the head, then gets 410 Gone). Returns the revision
        compacted to.
        """
        marker = base64.b64encode(b"/lasched-dev/compaction-marker").decode()
        async with aiohttp.ClientSession() as http:
            revision = 0
            for value in (b"1", b"2"):
                async with http.post(
                    f"{self.etcd_url}/v3/kv/put",
                    json={"key": marker, "value": base64.b64encode(value).decode()},
                ) as resp:
                    resp.raise_for_status()
                    revision = int((await resp.json())["header"]["revision"])
            async with http.post(
                f"{self.etcd_url}/v3/kv/compaction", json={"revision": revision, "physical": True}
            ) as resp:
                resp.raise_for_status()
        return revision

    async def client(self) -> KubeClient:
        """An admin client for this cluster; close it (or use ``async with``)."""
        return await KubeClient.from_kubeconfig(str(self.kubeconfig))

    async def stop(self) -> None:
        """Stop every process; remove the work directory if this object made it."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        await stop_children(self.children)
        self.children.clear()
        self._state_path.unlink(missing_ok=True)
        if self._owns_workdir:
            await asyncio.to_thread(shutil.rmtree, self.workdir, ignore_errors=True)


def stop_detached(workdir: Path) -> bool:
    """Stop a cluster that ``dev up`` left running; False if none was there."""
    state_path = workdir / "state.json"
    if not state_path.exists():
        return False
    state = ClusterState.load(state_path)
    for pid in reversed(list(state.pids.values())):
        if pid_alive(pid):
            terminate(pid)
    state_path.unlink(missing_ok=True)
    shutil.rmtree(workdir / "etcd", ignore_errors=True)
    return True


CONTROLLER_MANAGER_LEASE = (
    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"
)


async def ensure_namespace(kc: KubeClient, name: str, *, timeout: float = 60.0) -> None:
    """Create ``name`` if missing, and return once pods can be created in it.

    The ServiceAccount admission plugin refuses pods until the namespace's
    ``default`` ServiceAccount exists. In a real cluster, and here, the
    serviceaccount controller creates it within moments: this waits for it,
    as a script applying a namespace and then its pods must. Where no
    kube-controller-manager leads (a cluster started without it), nothing
    would, so it is created here.
    """
    try:
        await kc.post("/api/v1/namespaces", {"metadata": {"name": name}})
    except ApiError as e:
        if not e.conflict:
            raise
    sa = f"/api/v1/namespaces/{name}/serviceaccounts/default"
    try:
        await kc.get(CONTROLLER_MANAGER_LEASE)
    except ApiError as e:
        if not e.not_found:
            raise
        try:
            await kc.post(sa.rsplit("/", 1)[0], {"metadata": {"name": "default"}})
        except ApiError as e2:
            if not e2.conflict:
                raise
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            await kc.get(sa)
            return
        except ApiError as e:
            if not e.not_found:
                raise
        if time.monotonic() > deadline:
            raise ClusterError(
                f"no ServiceAccount {name}/default after {timeout:.0f} s: "
                "is kube-controller-manager's serviceaccount controller running?"
            )
        await asyncio.sleep(0.05)


async def _wait_established(kc: KubeClient, names: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = await kc.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            conds = (crd.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                break
            if time.monotonic() > deadline:
                raise ClusterError(f"CRD {name} not established within {timeout:.0f} s")
            await asyncio.sleep(0.1)


async def _wait_http(
    url: str, child: Child, *, timeout: float, ssl_ctx: ssl.SSLContext | None
) -> None:
    """Poll ``url`` until it answers 200; fail early, with the log, if ``child`` dies."""
    deadline = time.monotonic() + timeout
    last = ""
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not child.alive():
                raise ClusterError(
                    f"{child.name} exited during start-up; last lines of {child.log_path}:\n"
                    + child.log_tail()
                )
            try:
                async with session.get(
                    url, ssl=ssl_ctx if ssl_ctx is not None else False,
                    timeout=aiohttp.ClientTimeout(total=2),
                ) as resp:  # fmt: skip
                    if resp.status == 200:
                        return
                    last = f"{resp.status} {(await resp.text())[:300]}"
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                last = repr(e)
            await asyncio.sleep(0.1)
    raise ClusterError(
        f"{child.name} was not ready at {url} within {timeout:.0f} s (last answer: {last}); "
        f"last lines of {child.log_path}:\n{child.log_tail()}"
    )


async def service_account_kubeconfig(
    cluster: DevCluster, kc: KubeClient, *, namespace: str, name: str, hours: int = 2
) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (via TokenRequest).

    Lets lasched run against the local cluster with exactly the RBAC a
    manifest grants, instead of as admin.
    """
    token = await kc.post(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": hours * 3600},
        },
    )
    path = cluster.workdir / f"kubeconfig-{namespace}-{name}"
    config = _kubeconfig(server=cluster.api_url, p=cluster.pki)
    config["users"] = [{"name": "lasched-admin", "user": {"token": token["status"]["token"]}}]
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
