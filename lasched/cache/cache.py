"""The scheduler cache: every node and every pod that holds node resources.

Invariants (kube-scheduler's, enforced here):

* *assume / forget / confirm.* A pod is **assumed** on a node when the
  scheduling cycle picks it, before the bind is written, so the next cycle
  already sees the capacity taken. The informer later **confirms** it (the
  bound pod arrives) or the binder **forgets** it (the bind failed). Assumed
  pods never expire on a timer: only one of those two events ends them.
* A pod bound by anyone (any scheduler, or ``spec.nodeName`` set by hand)
  counts against its node until the pod is deleted or terminal.
* A node deleted while pods still point at it keeps their accounting (as an
  entry without a Node object) until their deletions arrive.

The scheduling cycle runs synchronously on the event loop, so no informer
event can interleave with it: the cycle reads this cache directly and it is a
consistent snapshot for the cycle's whole duration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from lasched.model.node import Node
from lasched.model.pod import PodInfo, PodKey
from lasched.model.resources import Resources

log = logging.getLogger(__name__)


class CacheError(RuntimeError):
    """A broken cache invariant; the caller resyncs rather than schedule wrong."""


class NodeInfo:
    """A node with the pods on it and what they request.

    ``generation`` grows on every change to the node object or its pods.
    ``memo`` is scratch space for plugins: a value derived from this node
    (a score for one pod shape, say) stored with the generation it was
    computed at stays valid while the generation is unchanged.
    """

    __slots__ = (
        "generation",
        "memo",
        "name",
        "node",
        "nominated",
        "non_zero_cpu",
        "non_zero_mem",
        "pods",
        "requested",
        "used_ports",
    )

    def __init__(self, node: Node | None) -> None:
        self.node = node
        # A plain attribute, read for every node of every cycle: set_node() keeps it in step.
        self.name = node.name if node else ""
        self.pods: dict[PodKey, PodInfo] = {}
        self.requested = Resources()
        self.non_zero_cpu = 0
        self.non_zero_mem = 0
        self.used_ports: dict[tuple[str, str, int], int] = {}
        # Pods that preempted others here and wait for the room (nominatedNodeName).
        self.nominated: dict[PodKey, PodInfo] = {}
        self.generation = 0
        self.memo: dict[object, tuple[Any, ...]] = {}

    def set_node(self, node: Node | None) -> None:
        """Replace the Node object (None: the node was deleted, its pods not yet)."""
        self.node = node
        self.name = node.name if node else ""
        self.generation += 1

    def add_pod(self, pod: PodInfo) -> None:
        self.pods[pod.key] = pod
        # Resources.add() inlined: informers and preemption's simulations call this a lot.
        used, req = self.requested, pod.requests
        used.milli_cpu += req.milli_cpu
        used.memory += req.memory
        used.ephemeral_storage += req.ephemeral_storage
        used.pods += req.pods + 1
        for name, amount in req.scalar.items():
            used.scalar[name] = used.scalar.get(name, 0) + amount
        cpu, mem = pod.non_zero
        self.non_zero_cpu += cpu
        self.non_zero_mem += mem
        if pod.host_ports:
            for port in pod.host_ports:
                self.used_ports[port] = self.used_ports.get(port, 0) + 1
        self.generation += 1

    def remove_pod(self, key: PodKey) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        used, req = self.requested, pod.requests
        used.milli_cpu -= req.milli_cpu
        used.memory -= req.memory
        used.ephemeral_storage -= req.ephemeral_storage
        used.pods -= req.pods + 1
        for name, amount in req.scalar.items():
            used.scalar[name] = used.scalar.get(name, 0) - amount
        cpu, mem = pod.non_zero
        self.non_zero_cpu -= cpu
        self.non_zero_mem -= mem
        if pod.host_ports:
            for port in pod.host_ports:
                left = self.used_ports.get(port, 0) - 1
                if left > 0:
                    self.used_ports[port] = left
                else:
                    self.used_ports.pop(port, None)
        self.generation += 1
        return pod

    def nominated_requests(self, priority: int, exclude: PodKey) -> Resources | None:
        """What pods nominated here at ``priority`` or above claim (None: nothing).

        kube-scheduler's filters assume such pods are already running, so the
        room a preemption freed is held for its preemptor.
        """
        total: Resources | None = None
        for key, p in self.nominated.items():
            if key != exclude and p.priority >= priority:
                if total is None:
                    total = Resources()
                total.add(p.requests)
                total.pods += 1
        return total


class SchedulerCache:
    """Nodes and the pods bound or assumed on them."""

    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self._pod_node: dict[PodKey, str] = {}  # every counted pod -> its node
        self._assumed: dict[PodKey, PodInfo] = {}
        self._nominations: dict[PodKey, str] = {}

    # ---- reads -------------------------------------------------------------

    def node_infos(self) -> Iterator[NodeInfo]:
        """Nodes that exist (have a Node object), in a stable order."""
        return (ni for ni in self._nodes.values() if ni.node is not None)

    def node_info(self, name: str) -> NodeInfo | None:
        ni = self._nodes.get(name)
        return ni if ni is not None and ni.node is not None else None

    def node_count(self) -> int:
        return sum(1 for ni in self._nodes.values() if ni.node is not None)

    def pod_count(self) -> int:
        return len(self._pod_node)

    def is_assumed(self, key: PodKey) -> bool:
        return key in self._assumed

    def assumed_count(self) -> int:
        return len(self._assumed)

    def node_of(self, key: PodKey) -> str | None:
        return self._pod_node.get(key)

    # ---- nodes -------------------------------------------------------------

    def add_node(self, node: Node) -> None:
        ni = self._nodes.get(node.name)
        if ni is None:
            self._nodes[node.name] = NodeInfo(node)
        else:
            ni.set_node(node)

    update_node = add_node

    def remove_node(self, name: str) -> None:
        ni = self._nodes.get(name)
        if ni is None:
            return
        if ni.pods:
            ni.set_node(None)  # keep the accounting until the pods' deletions arrive
        else:
            del self._nodes[name]

    # ---- pods from the informer -------------------------------------------

    def add_pod(self, pod: PodInfo) -> None:
        """A bound, non-terminal pod as the apiserver reports it."""
        self.clear_nomination(pod.key)
        assumed = self._assumed.pop(pod.key, None)
        if assumed is not None and assumed.node_name != pod.node_name:
            log.warning(
                "pod=%s assumed on node=%s but bound to node=%s; following the apiserver",
                pod.key, assumed.node_name, pod.node_name,
            )  # fmt: skip
        self._remove(pod.key)
        self._node_for(pod.node_name).add_pod(pod)
        self._pod_node[pod.key] = pod.node_name

    update_pod = add_pod

    def remove_pod(self, key: PodKey) -> None:
        """The pod was deleted, became terminal, or lost its binding."""
        self._assumed.pop(key, None)
        self.clear_nomination(key)
        self._remove(key)

    # ---- nominations (preemption) ----------------------------------------------

    def nominate(self, pod: PodInfo, node_name: str) -> None:
        """Hold room on ``node_name`` for ``pod`` until it is bound or deleted."""
        self.clear_nomination(pod.key)
        self._node_for(node_name).nominated[pod.key] = pod
        self._nominations[pod.key] = node_name

    def clear_nomination(self, key: PodKey) -> None:
        node = self._nominations.pop(key, None)
        if node is not None and (ni := self._nodes.get(node)) is not None:
            ni.nominated.pop(key, None)

    def nominated_node(self, key: PodKey) -> str | None:
        return self._nominations.get(key)

    # ---- assume / forget ---------------------------------------------------

    def assume(self, pod: PodInfo, node_name: str) -> PodInfo:
        """Count ``pod`` on ``node_name`` before its bind is written.

        Returns the assumed copy (with ``node_name`` set), which is what
        :meth:`forget` takes back.
        """
        if pod.key in self._pod_node:
            raise CacheError(f"pod {pod.key} is already in the cache; cannot assume it")
        ni = self._nodes.get(node_name)
        if ni is None or ni.node is None:
            raise CacheError(f"cannot assume pod {pod.key} on unknown node {node_name}")
        assumed = _with_node(pod, node_name)
        ni.add_pod(assumed)
        self._pod_node[pod.key] = node_name
        self._assumed[pod.key] = assumed
        return assumed

    def forget(self, pod: PodInfo) -> None:
        """Undo :meth:`assume` after a failed bind (no-op if already confirmed)."""
        if self._assumed.pop(pod.key, None) is not None:
            self._remove(pod.key)

    def rebuild(self, nodes: list[Node], bound_pods: list[PodInfo]) -> None:
        """Replace everything with the informers' view, keeping assumed pods.

        The answer to a broken invariant: start again from what the apiserver
        said rather than keep scheduling on a cache known to be wrong.
        """
        assumed = dict(self._assumed)
        nominated = {
            key: (ni.nominated[key], target)
            for key, target in self._nominations.items()
            if (ni := self._nodes.get(target)) is not None and key in ni.nominated
        }
        self._nominations.clear()
        self._nodes.clear()
        self._pod_node.clear()
        self._assumed.clear()
        for node in nodes:
            self.add_node(node)
        for pod in bound_pods:
            if pod.bound and not pod.terminal:
                self.add_pod(pod)
        for key, pod in assumed.items():
            if key not in self._pod_node and self.node_info(pod.node_name) is not None:
                self.assume(pod, pod.node_name)
        for key, (pod, target) in nominated.items():
            if key not in self._pod_node:
                self.nominate(pod, target)

    # ---- internals -----------------------------------------------------------

    def _node_for(self, name: str) -> NodeInfo:
        ni = self._nodes.get(name)
        if ni is None:
            # A pod can arrive before its node (informers are independent).
            ni = self._nodes[name] = NodeInfo(None)
        return ni

    def _remove(self, key: PodKey) -> None:
        name = self._pod_node.pop(key, None)
        if name is None:
            return
        ni = self._nodes.get(name)
        if ni is None:
            return
        ni.remove_pod(key)
        if ni.node is None and not ni.pods and not ni.nominated:
            del self._nodes[name]


def _with_node(pod: PodInfo, node_name: str) -> PodInfo:
    clone = object.__new__(PodInfo)
    for slot in PodInfo.__slots__:
        object.__setattr__(clone, slot, getattr(pod, slot))
    clone.node_name = node_name
    return clone
