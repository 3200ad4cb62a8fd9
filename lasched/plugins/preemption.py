"""DefaultPreemption: when a pod fits nowhere, evict lower-priority pods for it.

kube-scheduler's rules, in order:

* Only pods with ``preemptionPolicy: PreemptLowerPriority`` (the default)
  preempt, and only pods of **strictly lower** priority are victims.
* ``PodEligibleToPreemptOthers``: a pod whose nominated node still has a
  lower-priority pod terminating waits for it rather than preempting again,
  unless Filter now finds that node unresolvable. A victim counts as
  terminating from the moment its eviction is decided (:class:`Evictions`),
  not only once the informer shows its deletionTimestamp, and a terminating
  pod is never chosen as a victim again.
* Potential nodes are those that failed Filter with a resolvable reason. On
  each, every lower-priority pod is removed; if the pod then fits, victims are
  *reprieved* one by one, most important first (PDB-protected ones before the
  others), and re-added if the pod still fits without them.
* As kube-scheduler's dry run does, the potential nodes are tried from a
  random offset, in order, wrapping around, until a shortlist is found:
  ``max(minCandidateNodesPercentage % of them, minCandidateNodesAbsolute)``
  candidates (10 % and 100 by default), at least one of them violating no
  PodDisruptionBudget. On a large cluster this is a few hundred nodes tried
  per preemptor rather than every node (at 5,000 nodes full of victims,
  trying every node was nine tenths of the scheduler's time).
* The node is chosen by: fewest PodDisruptionBudget violations, then the
  lowest highest-victim priority, then the smallest sum of victim
  priorities, then the fewest victims, then the latest start among the
  highest-priority victims.

The plugin decides and returns the victims; the scheduler records them in
:class:`Evictions`, deletes them (with their grace period and one
``Preempted`` event each, naming the preemptor and the victim's node) and
nominates the node, whose freed room is then held for the preemptor.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lasched.cache.cache import NodeInfo
from lasched.framework.interface import (
    Code,
    CycleState,
    PostFilterResult,
    Status,
    unschedulable,
)
from lasched.model.pdb import PDB
from lasched.model.pod import UID, PodInfo, PodKey
from lasched.plugins.coscheduling import Coscheduling

FilterNode = Callable[[CycleState, PodInfo, NodeInfo], Status]

# kube-scheduler's wording, so FailedScheduling events read the same.
_NO_VICTIMS = "No preemption victims found for incoming pod"
_NOT_HELPFUL = "Preemption is not helpful for scheduling"

# DefaultPreemptionArgs' defaults (kube-scheduler's).
MIN_CANDIDATE_NODES_PERCENTAGE = 10
MIN_CANDIDATE_NODES_ABSOLUTE = 100


def num_candidates(potential: int, percentage: int, absolute: int) -> int:
    """kube-scheduler's calculateNumCandidates: how many candidates the dry run shortlists."""
    return min(potential, max(potential * percentage // 100, absolute))


class Evictions:
    """Preemption victims from the decision to evict them until the informer shows them gone.

    The eviction is sent beside the scheduling loop, and the victim's
    deletionTimestamp reaches the cache only later, through the informer. A
    preemptor tried again in between (an idle scheduler retries a nominated
    pod at once), or another member of its pod group, would otherwise see its
    victims running, find itself eligible and evict them a second time. Here
    a victim is terminating from the decision on, so kube-scheduler's
    PodEligibleToPreemptOthers makes those attempts wait, and no victim is
    chosen twice.

    An entry ends when the cache no longer holds that pod (same UID) on its
    node, or when its eviction failed (the pod runs on and may be chosen
    again). One instance serves every profile: victims are cluster-wide.
    """

    def __init__(self, node_info: Callable[[str], NodeInfo | None]) -> None:
        self._node_info = node_info
        self._victims: dict[PodKey, tuple[UID, str]] = {}  # key -> (uid, node)

    def __len__(self) -> int:
        return len(self._victims)

    def begin(self, victims: Iterable[PodInfo]) -> list[PodInfo]:
        """Track ``victims``; returns those not already terminating, each to evict once."""
        self._forget_gone()
        fresh = []
        for v in victims:
            if not self.terminating(v):
                self._victims[v.key] = (v.uid, v.node_name)
                fresh.append(v)
        return fresh

    def failed(self, victim: PodInfo) -> None:
        """The eviction was refused or lost: the victim runs on."""
        if self._tracked(victim):
            del self._victims[victim.key]

    def terminating(self, pod: PodInfo) -> bool:
        """Deleted (deletionTimestamp set) or being evicted by a preemption."""
        return pod.deleting or self._tracked(pod)

    def _tracked(self, pod: PodInfo) -> bool:
        entry = self._victims.get(pod.key)
        return entry is not None and entry[0] == pod.uid

    def _forget_gone(self) -> None:
        for key, (uid, node) in list(self._victims.items()):
            ni = self._node_info(node)
            held = ni.pods.get(key) if ni is not None else None
            if held is None or held.uid != uid:
                del self._victims[key]


@dataclass(frozen=True, slots=True)
class Candidate:
    node: str
    victims: tuple[PodInfo, ...]
    pdb_violations: int

    def sort_key(self) -> tuple[int, int, int, int, float]:
        top = max(v.priority for v in self.victims)
        latest_start = max((v.created for v in self.victims if v.priority == top), default=0.0)
        return (
            self.pdb_violations,
            top,
            sum(v.priority for v in self.victims),
            len(self.victims),
            -latest_start,
        )


GangBudget = Callable[[PodInfo], "tuple[str, int] | None"]
"""A pod -> its gang's key and the members that may go before it falls below
min-available; None for a pod outside a gang."""

# Keys of gangs' budgets beside PodDisruptionBudgets' (namespace/name) keys.
_GANG_BUDGET = "pod-group:"


def _more_important_first(p: PodInfo) -> tuple[int, float]:
    return (-p.priority, p.created)


class DefaultPreemption:
    name = "DefaultPreemption"

    def __init__(
        self,
        *,
        node_info: Callable[[str], NodeInfo | None],
        filter_node: FilterNode,
        pdbs: Callable[[], Iterable[PDB]],
        nominated_node: Callable[[PodKey], str | None] = lambda key: None,
        evictions: Evictions | None = None,
        gang_budget: GangBudget = lambda pod: None,
        lowest_priority: Callable[[], int | None] | None = None,
        min_candidate_nodes_percentage: int = MIN_CANDIDATE_NODES_PERCENTAGE,
        min_candidate_nodes_absolute: int = MIN_CANDIDATE_NODES_ABSOLUTE,
        rng: random.Random | None = None,
    ) -> None:
        """``gang_budget``: for a member of a gang, its group's key and how many of its
        members may go before it falls below min-available (None: no gang).
        ``lowest_priority``: the lowest priority of a pod on any node (None: no pod), if
        the caller keeps it; else plans find out by looking at every pod.
        ``min_candidate_nodes_*``: DefaultPreemptionArgs; ``rng`` draws the dry run's
        offset."""
        self.min_candidate_nodes_percentage = min_candidate_nodes_percentage
        self.min_candidate_nodes_absolute = min_candidate_nodes_absolute
        self.rng = rng if rng is not None else random.Random()
        self._node_info = node_info
        self._lowest_priority = lowest_priority
        self._gang_budget = gang_budget
        self.evictions = evictions if evictions is not None else Evictions(node_info)
        self._nominated_node = nominated_node
        self._filter_node = filter_node
        self._pdbs = pdbs

    def post_filter(
        self, state: CycleState, pod: PodInfo, statuses: dict[str, Status]
    ) -> tuple[PostFilterResult | None, Status]:
        if pod.preemption_policy == "Never":
            return None, unschedulable("preemption: not eligible due to preemptionPolicy=Never.")
        if pod.group is not None:
            return None, unschedulable(
                "preemption: members of a pod group preempt only as a whole group."
            )
        if not self._eligible(pod, statuses):
            return None, unschedulable(
                "preemption: not eligible due to a terminating pod on the nominated node."
            )
        if not statuses:
            # PreFilter rejected the pod before any node was tried: nothing to evict for.
            return None, unschedulable(
                "preemption: not helpful, the pod was rejected before filtering."
            )
        pdbs = list(self._pdbs())
        why: Counter[str] = Counter()
        potential = []
        for name, st in statuses.items():
            if st.code is Code.UNSCHEDULABLE:
                potential.append(name)
            else:
                why[_NOT_HELPFUL] += 1  # unresolvable: evicting pods would not help
        candidates = self._dry_run(state, pod, potential, pdbs, why)
        if not candidates:
            parts = ", ".join(f"{n} {r}" for r, n in sorted(why.items()))
            return None, unschedulable(
                f"preemption: 0/{len(statuses)} nodes are available: {parts}."
            )
        best = min(candidates, key=Candidate.sort_key)
        return PostFilterResult(best.node, best.victims), Status()

    def _dry_run(
        self,
        state: CycleState,
        pod: PodInfo,
        potential: list[str],
        pdbs: list[PDB],
        why: Counter[str],
    ) -> list[Candidate]:
        """kube-scheduler's DryRunPreemption: the potential nodes from a random offset,
        wrapping around, until the shortlist is long enough and holds a candidate that
        violates no PodDisruptionBudget (or every node was tried). ``why`` counts the
        nodes tried that had no victims to offer."""
        if not potential:
            return []
        wanted = num_candidates(
            len(potential), self.min_candidate_nodes_percentage, self.min_candidate_nodes_absolute
        )
        offset = self.rng.randrange(len(potential))
        candidates: list[Candidate] = []
        clean = 0  # candidates violating no budget
        for i in range(len(potential)):
            ni = self._node_info(potential[(offset + i) % len(potential)])
            cand = self._victims_on(state, pod, ni, pdbs) if ni is not None else None
            if cand is None:
                why[_NO_VICTIMS] += 1
                continue
            candidates.append(cand)
            clean += cand.pdb_violations == 0
            if clean and len(candidates) >= wanted:
                break
        return candidates

    def _eligible(self, pod: PodInfo, statuses: dict[str, Status]) -> bool:
        """kube-scheduler's PodEligibleToPreemptOthers (preemptionPolicy aside)."""
        node = self._nominated_node(pod.key) or pod.nominated_node_name
        st = statuses.get(node) if node else None
        if st is not None and st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
            return True  # its victims' room can no longer help: preempt elsewhere
        return not self.victims_terminating(pod, pod.priority)

    def victims_terminating(self, pod: PodInfo, below: int) -> bool:
        """Is a pod of priority < ``below`` still terminating on the pod's nominated node?"""
        node = self._nominated_node(pod.key) or pod.nominated_node_name
        if not node:
            return False
        ni = self._node_info(node)
        return ni is not None and any(
            p.priority < below and self.evictions.terminating(p) for p in ni.pods.values()
        )

    def _victims_on(
        self,
        state: CycleState,
        pod: PodInfo,
        ni: NodeInfo,
        pdbs: list[PDB],
        below: int | None = None,
    ) -> Candidate | None:
        """The fewest victims (priority < ``below``, default the pod's) that let ``pod`` fit."""
        below = pod.priority if below is None else below
        lower = [
            p for p in ni.pods.values() if p.priority < below and not self.evictions.terminating(p)
        ]
        if not lower:
            return None
        sim = NodeInfo(ni.node)
        sim.nominated = ni.nominated
        lower_keys = {v.key for v in lower}
        for p in ni.pods.values():
            if p.key not in lower_keys:
                sim.add_pod(p)
        if self._filter_node(state, pod, sim).code is not Code.SUCCESS:
            return None
        budget = {pdb.key: pdb.disruptions_allowed for pdb in pdbs}
        # A gang is its own disruption budget: its members beyond min-available may go.
        gangs = {p.key: g for p in lower if (g := self._gang_budget(p)) is not None}
        for key, allowed in gangs.values():
            budget[_GANG_BUDGET + key] = allowed

        def budgets_of(p: PodInfo) -> list[str]:
            keys = [pdb.key for pdb in pdbs if pdb.covers(p.namespace, p.labels)]
            if p.key in gangs:
                keys.append(_GANG_BUDGET + gangs[p.key][0])
            return keys

        def violates(p: PodInfo) -> bool:
            return any(budget[k] <= 0 for k in budgets_of(p))

        protected = sorted((p for p in lower if violates(p)), key=_more_important_first)
        free = sorted((p for p in lower if not violates(p)), key=_more_important_first)
        victims: list[PodInfo] = []
        violations = 0
        for group, counts in ((protected, True), (free, False)):
            for p in group:
                sim.add_pod(p)
                if self._filter_node(state, pod, sim).code is Code.SUCCESS:
                    continue  # reprieved
                sim.remove_pod(p.key)
                victims.append(p)
                if counts:
                    violations += 1
                for k in budgets_of(p):
                    budget[k] -= 1
        if not victims:
            return None
        return Candidate(ni.name, tuple(victims), violations)

    def plan_group(
        self, state: CycleState, members: list[PodInfo], nodes: list[NodeInfo], below: int
    ) -> tuple[list[tuple[PodInfo, str]], tuple[PodInfo, ...]] | None:
        """Places for every member at once, evicting only pods of priority < ``below``.

        Members are placed largest first on a simulated copy of the cluster
        that accumulates earlier members and evictions; a member that fits
        without evictions takes no victims. None if any member finds no place:
        then nothing is preempted at all.
        """
        # Only a pod of lower priority may be evicted: with none, no plan evicts anything,
        # and a plan that evicts nothing is no preemption (the member that failed its
        # cycle fits nowhere as things are). A cluster where every group has one priority
        # is the common case; the simulation below would cost a filter of every node per
        # member to learn it.
        if self._lowest_priority is not None:
            lowest = self._lowest_priority()
        else:
            lowest = min((p.priority for n in nodes for p in n.pods.values()), default=None)
        if lowest is None or lowest >= below:
            return None
        pdbs = list(self._pdbs())
        sim: dict[str, NodeInfo] = {}

        def current(ni: NodeInfo) -> NodeInfo:
            """The node as the plan has it so far: its copy once the plan changed it."""
            return sim.get(ni.name, ni)

        def view(ni: NodeInfo) -> NodeInfo:
            """The node's copy, made when the plan first changes it."""
            if ni.name not in sim:
                copy = NodeInfo(ni.node)
                copy.nominated = ni.nominated
                for p in ni.pods.values():
                    copy.add_pod(p)
                sim[ni.name] = copy
            return sim[ni.name]

        by_name = {n.name: n for n in nodes}
        plan: list[tuple[PodInfo, str]] = []
        victims: dict[str, PodInfo] = {}
        order = sorted(members, key=lambda m: (-m.requests.milli_cpu, -m.requests.memory))
        for member in order:
            free = next(
                (
                    n
                    for n in nodes
                    if self._filter_node(state, member, current(n)).code is Code.SUCCESS
                ),
                None,
            )
            if free is not None:
                view(free).add_pod(member)
                plan.append((member, free.name))
                continue
            candidates = [
                c
                for n in nodes
                if (c := self._victims_on(state, member, current(n), pdbs, below)) is not None
            ]
            if not candidates:
                return None
            best = min(candidates, key=Candidate.sort_key)
            target = view(by_name[best.node])
            for v in best.victims:
                target.remove_pod(v.key)
                victims[v.key] = v
            target.add_pod(member)
            plan.append((member, best.node))
        return plan, tuple(victims.values())


class GangPreemption:
    """PostFilter for pod-group members: preempt for the whole group or not at all.

    Victims must have a lower priority than every member of the group, and
    the eviction must make room for every member not yet placed, at once;
    otherwise nothing is evicted and the group's reservations are released
    as usual. The members are nominated to their planned nodes, so the room
    is held for them while the victims terminate.
    """

    name = "GangPreemption"

    def __init__(
        self,
        *,
        gang: Coscheduling,
        preemption: DefaultPreemption,
        nodes: Callable[[], list[NodeInfo]],
    ) -> None:
        self._gang = gang
        self._preemption = preemption
        self._nodes = nodes

    def post_filter(
        self, state: CycleState, pod: PodInfo, statuses: dict[str, Status]
    ) -> tuple[PostFilterResult | None, Status]:
        g = self._gang.gang_of(pod)
        if g is None or g.permitted or pod.preemption_policy == "Never":
            return None, Status(Code.UNSCHEDULABLE)
        unplaced = [
            m for m in g.members.values() if not m.deleting and self._gang.placed_on(m) is None
        ]
        below = min(m.priority for m in g.members.values())
        if any(self._preemption.victims_terminating(m, below) for m in unplaced):
            return None, unschedulable(
                f"preemption: pod group {g.key} waits for the pods it preempted to terminate."
            )
        planned = self._preemption.plan_group(state, unplaced, self._nodes(), below)
        if planned is None or not planned[1]:
            return None, unschedulable(
                f"preemption: evicting pods below priority {below} would not make room "
                f"for all {len(unplaced)} unplaced members of pod group {g.key}."
            )
        plan, victims = planned
        mine = next(node for member, node in plan if member.key == pod.key)
        others = tuple((m, n) for m, n in plan if m.key != pod.key)
        return PostFilterResult(mine, victims, others), Status()
