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
* *Affinity index.* Each NodeInfo keeps its pods that have inter-pod
  affinity terms (and, among them, those with required anti-affinity), as
  kube-scheduler's NodeInfo does; the cache keeps the nodes where either is
  non-empty, so InterPodAffinity's symmetric check reads those pods alone
  instead of every pod of every cycle.
* *Columns.* Every NodeInfo the cache holds owns a row of :attr:`columns`
  (lasched/cache/columns.py) and writes its changes there as they happen;
  the cache writes nominations. The cycle's common filters and scores read
  the columns for every node at once.
* *Images.* :attr:`SchedulerCache.images` counts the nodes that exist and,
  per image name, those that list it (lasched/cache/images.py), updated on
  every node add, update and delete, so ImageLocality reads an image's spread
  without a pass over the nodes.
* *Change journal.* Every change to a node or its pods bumps ``version`` and
  records the node's name; :meth:`changed_since` lists the nodes changed
  after a version, so plugins that sum over every node (topology spreading,
  pod affinity) update their sums for those nodes alone.

The scheduling cycle runs synchronously on the event loop, so no informer
event can interleave with it: the cycle reads this cache directly and it is a
consistent snapshot for the cycle's whole duration.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

from lasched.cache.columns import NodeColumns
from lasched.cache.images import ImageStates
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
    ``pods_with_affinity`` holds the pods that have any inter-pod affinity
    term, ``pods_with_required_anti_affinity`` those with a required
    anti-affinity term (both kept by :meth:`add_pod` / :meth:`remove_pod`).
    A NodeInfo the cache holds has ``columns`` and its ``row`` there, and
    writes every change of its node or pods through; any other (a
    simulation's copy) has none (``row`` -1).
    """

    __slots__ = (
        "columns",
        "generation",
        "memo",
        "name",
        "node",
        "nominated",
        "non_zero_cpu",
        "non_zero_mem",
        "pods",
        "pods_with_affinity",
        "pods_with_required_anti_affinity",
        "requested",
        "row",
        "used_ports",
    )

    def __init__(self, node: Node | None) -> None:
        self.node = node
        # A plain attribute, read for every node of every cycle: set_node() keeps it in step.
        self.name = node.name if node else ""
        self.pods: dict[PodKey, PodInfo] = {}
        self.pods_with_affinity: dict[PodKey, PodInfo] = {}
        self.pods_with_required_anti_affinity: dict[PodKey, PodInfo] = {}
        self.requested = Resources()
        self.non_zero_cpu = 0
        self.non_zero_mem = 0
        self.used_ports: dict[tuple[str, str, int], int] = {}
        # Pods that preempted others here and wait for the room (nominatedNodeName).
        self.nominated: dict[PodKey, PodInfo] = {}
        self.generation = 0
        self.memo: dict[object, tuple[Any, ...]] = {}
        self.columns: NodeColumns | None = None
        self.row = -1

    def attach(self, columns: NodeColumns) -> None:
        """Take a row of ``columns`` and keep it in step from now on (the cache's nodes)."""
        self.columns = columns
        self.row = columns.take_row()
        columns.write_node(self.row, self.node)
        columns.write_usage(self.row, self.requested, self.non_zero_cpu, self.non_zero_mem)
        columns.write_nominated(self.row, len(self.nominated))

    def detach(self) -> None:
        """Give the row back (the cache no longer holds this NodeInfo)."""
        if self.columns is not None:
            self.columns.free_row(self.row)
        self.columns, self.row = None, -1

    def set_node(self, node: Node | None) -> None:
        """Replace the Node object (None: the node was deleted, its pods not yet)."""
        self.node = node
        self.name = node.name if node else ""
        self.generation += 1
        if self.columns is not None:
            self.columns.write_node(self.row, node)

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
        if pod.pod_affinity is not None:
            self.pods_with_affinity[pod.key] = pod
            if pod.pod_affinity.required_anti_affinity:
                self.pods_with_required_anti_affinity[pod.key] = pod
        self.generation += 1
        if self.columns is not None:
            self.columns.write_usage(self.row, used, self.non_zero_cpu, self.non_zero_mem)

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
        if pod.pod_affinity is not None:
            self.pods_with_affinity.pop(key, None)
            self.pods_with_required_anti_affinity.pop(key, None)
        self.generation += 1
        if self.columns is not None:
            self.columns.write_usage(self.row, used, self.non_zero_cpu, self.non_zero_mem)
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

    def __init__(self, *, journal_length: int = 4096) -> None:
        if journal_length < 1:
            raise ValueError(f"journal_length must be at least 1, not {journal_length}")
        self._nodes: dict[str, NodeInfo] = {}
        self.columns = NodeColumns()  # every NodeInfo in _nodes has a row here
        self.images = ImageStates()  # every Node object of _nodes counted once
        self._pod_node: dict[PodKey, str] = {}  # every counted pod -> its node
        self._assumed: dict[PodKey, PodInfo] = {}
        # How many counted pods have each priority: the lowest says at once whether
        # preemption has anything it may evict.
        self._priorities: Counter[int] = Counter()
        self._nominations: dict[PodKey, str] = {}
        # Nodes holding pods with inter-pod affinity terms / required anti-affinity.
        self._affinity_nodes: dict[str, NodeInfo] = {}
        self._anti_affinity_nodes: dict[str, NodeInfo] = {}
        # (version, node) of recent changes; versions up to _floor are not in it.
        self.version = 0
        self._journal: deque[tuple[int, str]] = deque(maxlen=journal_length)
        self._floor = 0

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

    def nodes_with_pod_affinity(self) -> list[NodeInfo]:
        """Nodes (that exist) with a pod that has any inter-pod affinity term."""
        return [ni for ni in self._affinity_nodes.values() if ni.node is not None]

    def nodes_with_required_anti_affinity(self) -> list[NodeInfo]:
        """Nodes (that exist) with a pod that has a required anti-affinity term."""
        return [ni for ni in self._anti_affinity_nodes.values() if ni.node is not None]

    def has_pod_affinity(self) -> bool:
        """Might any counted pod have an inter-pod affinity term? (O(1), may say yes
        for pods on deleted nodes)."""
        return bool(self._affinity_nodes)

    def changed_since(self, version: int) -> set[str] | None:
        """Names of the nodes changed (node or pods) after ``version``; None when the
        journal (the last ``journal_length`` changes) no longer reaches back that far:
        then every node may have changed."""
        if version < self._floor:  # the journal holds the changes (_floor, version]
            return None
        names: set[str] = set()
        for v, name in reversed(self._journal):
            if v <= version:
                break
            names.add(name)
        return names

    def _touch(self, name: str) -> None:
        self.version += 1
        if len(self._journal) == self._journal.maxlen:
            self._floor = self._journal[0][0]
        self._journal.append((self.version, name))

    def has_required_anti_affinity(self) -> bool:
        """Might any counted pod have a required anti-affinity term? (as above)"""
        return bool(self._anti_affinity_nodes)

    # ---- nodes -------------------------------------------------------------

    def add_node(self, node: Node) -> None:
        ni = self._nodes.get(node.name)
        if ni is None:
            self._nodes[node.name] = self._new_info(node)
        else:
            if ni.node is not None:
                self.images.remove(ni.node)
            ni.set_node(node)
        self.images.add(node)
        self._touch(node.name)

    update_node = add_node

    def remove_node(self, name: str) -> None:
        ni = self._nodes.get(name)
        if ni is None:
            return
        if ni.node is not None:
            self.images.remove(ni.node)
        if ni.pods:
            ni.set_node(None)  # keep the accounting until the pods' deletions arrive
        else:
            del self._nodes[name]
            ni.detach()
        self._touch(name)

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
        ni = self._node_for(pod.node_name)
        ni.add_pod(pod)
        self._pod_node[pod.key] = pod.node_name
        self._priorities[pod.priority] += 1
        if pod.pod_affinity is not None:
            self._index_affinity(pod.node_name, ni)
        self._touch(pod.node_name)

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
        ni = self._node_for(node_name)
        ni.nominated[pod.key] = pod
        self.columns.write_nominated(ni.row, len(ni.nominated))
        self._nominations[pod.key] = node_name

    def clear_nomination(self, key: PodKey) -> None:
        node = self._nominations.pop(key, None)
        if node is not None and (ni := self._nodes.get(node)) is not None:
            ni.nominated.pop(key, None)
            self.columns.write_nominated(ni.row, len(ni.nominated))

    def nominated_node(self, key: PodKey) -> str | None:
        return self._nominations.get(key)

    def lowest_priority(self) -> int | None:
        """The lowest priority of a counted pod (bound or assumed); None: no pod."""
        return min(self._priorities) if self._priorities else None

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
        self._priorities[pod.priority] += 1
        if pod.pod_affinity is not None:
            self._index_affinity(node_name, ni)
        self._touch(node_name)
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
        for ni in self._nodes.values():
            ni.columns, ni.row = None, -1  # the columns start afresh just below
        self.columns.clear()
        self.images.clear()
        self._nodes.clear()
        self._pod_node.clear()
        self._assumed.clear()
        self._priorities.clear()
        self._affinity_nodes.clear()
        self._anti_affinity_nodes.clear()
        self._journal.clear()
        self._floor = self.version = self.version + 1
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
            ni = self._nodes[name] = self._new_info(None)
        return ni

    def _new_info(self, node: Node | None) -> NodeInfo:
        ni = NodeInfo(node)
        ni.attach(self.columns)
        return ni

    def _remove(self, key: PodKey) -> None:
        name = self._pod_node.pop(key, None)
        if name is None:
            return
        ni = self._nodes.get(name)
        if ni is None:
            return
        pod = ni.remove_pod(key)
        if pod is not None:
            self._priorities[pod.priority] -= 1
            if not self._priorities[pod.priority]:
                del self._priorities[pod.priority]
            if pod.pod_affinity is not None:
                self._index_affinity(name, ni)
        self._touch(name)
        if ni.node is None and not ni.pods and not ni.nominated:
            del self._nodes[name]
            ni.detach()

    def _index_affinity(self, name: str, ni: NodeInfo) -> None:
        """Keep the affinity index of node ``name`` in step with its pods."""
        if ni.pods_with_affinity:
            self._affinity_nodes[name] = ni
        else:
            self._affinity_nodes.pop(name, None)
        if ni.pods_with_required_anti_affinity:
            self._anti_affinity_nodes[name] = ni
        else:
            self._anti_affinity_nodes.pop(name, None)


def _with_node(pod: PodInfo, node_name: str) -> PodInfo:
    clone = object.__new__(PodInfo)
    for slot in PodInfo.__slots__:
        object.__setattr__(clone, slot, getattr(pod, slot))
    clone.node_name = node_name
    return clone
