"""Could a replacement be placed now? The check remediation makes before it evicts.

A replacement is judged as the pod itself, unbound: a copy with no
``nodeName`` goes through its profile's PreFilter and every Filter (and the
filters that judge the feasible nodes together) on every node but the one it
runs on, as :mod:`lasched.explain` evaluates a pod without scheduling it.
Nothing is assumed, reserved or nominated.

Invariant: within one pass, the replacements already approved are *held* on
the first node found for each (a copy of that node with the replacement on
it), so two pods never count on the same free room. Holds end with the pass
(:meth:`Placer.begin`): by the next pass the informer shows what really
happened.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import Code, CycleState, Status
from lasched.framework.runtime import PluginError
from lasched.model.pod import PodInfo
from lasched.profiles import Profile


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a replacement could go now: the feasible nodes (empty: nowhere) and, when
    there is none, kube-scheduler's sentence saying why."""

    nodes: tuple[str, ...]
    reason: str = ""

    def shown(self) -> str:
        """``2 node(s): edge-2, edge-3`` (at most three named)."""
        named = ", ".join(self.nodes[:3]) + (", ..." if len(self.nodes) > 3 else "")
        return f"{len(self.nodes)} node(s): {named}"


class Placer:
    """Runs a profile's filters for an unbound copy of a pod over the cache's nodes."""

    def __init__(self, *, profiles: Mapping[str, Profile], cache: SchedulerCache) -> None:
        self._profiles = profiles
        self._cache = cache
        self._held: dict[str, NodeInfo] = {}

    def begin(self) -> None:
        """A new pass: earlier holds are dropped."""
        self._held.clear()

    def place(self, pod: PodInfo) -> Placement:
        """The nodes a replacement of ``pod`` would pass every filter on, its own excluded."""
        profile = self._profiles.get(pod.scheduler_name)
        if profile is None:
            return Placement((), f"no profile serves scheduler {pod.scheduler_name!r}")
        fw = profile.framework
        replacement = unbound(pod)
        state = CycleState()
        nodes = [
            self._held.get(ni.name, ni)
            for ni in self._cache.node_infos()
            if ni.node is not None and ni.name != pod.node_name
        ]
        try:
            pre, skip = fw.run_pre_filters(state, replacement)
            if not pre.ok:
                return Placement((), pre.message or pre.code.value)
            filters = [p for p in fw.filters if p.name not in skip]
            feasible: list[NodeInfo] = []
            failed: dict[str, Status] = {}
            for ni in nodes:
                for p in filters:
                    st = p.filter(state, replacement, ni)
                    if st.code is not Code.SUCCESS:
                        failed[ni.name] = st
                        break
                else:
                    feasible.append(ni)
            kept = fw.narrow(state, replacement, feasible, failed, skip=skip)
        except PluginError as e:
            return Placement((), str(e))
        except Exception as e:  # a plugin's bug: never a reason to evict
            return Placement((), f"a filter failed: {type(e).__name__}: {e}")
        if kept is not None:
            feasible = [feasible[i] for i in kept]
        if not feasible:
            return Placement((), _summary(len(nodes), failed))
        return Placement(tuple(ni.name for ni in feasible))

    def hold(self, pod: PodInfo, node: str) -> None:
        """Count a replacement of ``pod`` on ``node`` for the rest of this pass."""
        ni = self._held.get(node) or self._cache.node_info(node)
        if ni is None:
            return
        held = NodeInfo(ni.node)
        for p in ni.pods.values():
            held.add_pod(p)
        held.nominated = dict(ni.nominated)
        placed = unbound(pod)
        placed.node_name = node
        held.add_pod(placed)
        self._held[node] = held


def unbound(pod: PodInfo) -> PodInfo:
    """A copy of ``pod`` with no node: what its controller's replacement asks for."""
    out = copy.copy(pod)
    out.node_name = ""
    out.nominated_node_name = ""
    return out


def _summary(total: int, failed: Mapping[str, Status]) -> str:
    """``0/3 nodes are available: 2 node(s) were more than 10 ms from edge-0 (...)``."""
    if total == 0:
        return "0/0 nodes are available: no other node"
    counts = Counter(st.message or st.code.value for st in failed.values())
    parts = ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))
    return f"0/{total} nodes are available: {parts}"
