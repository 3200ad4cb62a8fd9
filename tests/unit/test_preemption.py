"""Preemption picks the node and victims by kube-scheduler's rules."""

from __future__ import annotations

import asyncio
import copy
import random
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from kubernetes_asyncio.client import Configuration
from prometheus_client import REGISTRY

from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import Code, CycleState, PostFilterResult, Status
from lasched.framework.runtime import Framework
from lasched.kube import statuswriter
from lasched.kube.client import ApiError, KubeClient
from lasched.kube.events import EventRecorder, ObjectRef
from lasched.model.pdb import PDB
from lasched.model.pod import PodInfo, pod_key
from lasched.plugins.noderesources import NodeResourcesFit
from lasched.plugins.preemption import DefaultPreemption
from lasched.scheduler import Scheduler
from lasched.settings import Settings
from tests.unit.factories import make_node, make_pod, pod_json


class World:
    def __init__(self, **nodes: str) -> None:
        self.cache = SchedulerCache()
        for name, cpu in nodes.items():
            self.cache.add_node(make_node(name, cpu=cpu))
        self.fw = Framework(pre_filters=[], filters=[NodeResourcesFit()], scores=[])
        self.pdbs: list[PDB] = []
        self.plugin = DefaultPreemption(
            node_info=self.cache.node_info,
            filter_node=self.fw.filter_node,
            pdbs=lambda: self.pdbs,
            nominated_node=self.cache.nominated_node,
        )

    def place(
        self, name: str, node: str, *, cpu: str, priority: int, labels: dict[str, str] | None = None
    ) -> PodInfo:
        p = make_pod(name, cpu=cpu, node=node, priority=priority, labels=labels)
        self.cache.add_pod(p)
        return p

    def preempt(self, pod: PodInfo) -> tuple[PostFilterResult | None, Status]:
        nodes = list(self.cache.node_infos())
        result = self.fw.schedule(CycleState(), pod, nodes)
        statuses = getattr(result, "node_statuses", {})
        return self.plugin.post_filter(CycleState(), pod, statuses)


def no_disruption(name: str, labels: dict[str, str]) -> PDB:
    """A PodDisruptionBudget of the default namespace allowing no disruption."""
    return PDB(
        {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": labels}},
            "status": {"disruptionsAllowed": 0},
        }
    )


def test_evicts_only_what_is_needed() -> None:
    """Of three low pods, only enough are evicted; the most important are reprieved."""
    w = World(n1="4")
    w.place("low-a", "n1", cpu="1", priority=1)
    w.place("low-b", "n1", cpu="1", priority=2)
    w.place("low-c", "n1", cpu="2", priority=3)
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert result.nominated_node == "n1"
    assert sorted(v.name for v in result.victims) == ["low-a", "low-b"]


def test_never_equal_or_higher_priority() -> None:
    """Pods of equal priority are never victims."""
    w = World(n1="2")
    w.place("peer", "n1", cpu="2", priority=100)
    result, st = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is None
    assert st.message == (
        "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    )


def test_prefers_the_node_with_lower_victims() -> None:
    """The candidate whose highest victim has the lowest priority wins."""
    w = World(n1="2", n2="2")
    w.place("mid", "n1", cpu="2", priority=50)
    w.place("low", "n2", cpu="2", priority=10)
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert (result.nominated_node, [v.name for v in result.victims]) == ("n2", ["low"])


def test_prefers_fewer_victims_at_equal_priority() -> None:
    """Then the fewest victims."""
    w = World(n1="2", n2="2")
    w.place("a1", "n1", cpu="1", priority=10)
    w.place("a2", "n1", cpu="1", priority=10)
    w.place("b1", "n2", cpu="2", priority=10)
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert result.nominated_node == "n2"


def test_pdb_protected_pods_are_spared_when_possible() -> None:
    """A node whose victims violate no PodDisruptionBudget beats one whose would."""
    w = World(n1="2", n2="2")
    w.place("guarded", "n1", cpu="2", priority=5, labels={"app": "db"})
    w.place("free", "n2", cpu="2", priority=10)
    w.pdbs.append(no_disruption("db", {"app": "db"}))
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert result.nominated_node == "n2"


def test_a_gang_at_min_available_is_spared_like_a_pdb() -> None:
    """Evicting a member of a gang with no member to spare breaks the whole gang: a node
    whose victims break none wins, though its victim has the higher priority."""
    w = World(n1="2", n2="2", n3="2")
    labels = {"lasched.io/pod-group": "train", "lasched.io/min-available": "2"}
    members = [w.place(f"m{i}", f"n{i}", cpu="2", priority=5, labels=labels) for i in (1, 2)]
    w.place("free", "n3", cpu="2", priority=10)
    budgets = {m.key: ("default/train", 0) for m in members}
    w.plugin._gang_budget = lambda p: budgets.get(p.key)
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert (result.nominated_node, [v.name for v in result.victims]) == ("n3", ["free"])
    # With a member to spare, the gang's lower priority decides, as without gangs.
    budgets.update({m.key: ("default/train", 1) for m in members})
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert result.nominated_node in ("n1", "n2")


class Counting(World):
    """A World whose preemption counts the nodes its dry run simulates."""

    def __init__(self, nodes: int, **kwargs: Any) -> None:
        super().__init__(**{f"n{i:03d}": "2" for i in range(nodes)})
        self.tried: list[str] = []
        inner = self.plugin._victims_on

        def counted(state: CycleState, pod: PodInfo, ni: NodeInfo, *a: Any) -> Any:
            self.tried.append(ni.name)
            return inner(state, pod, ni, *a)

        self.plugin = DefaultPreemption(
            node_info=self.cache.node_info,
            filter_node=self.fw.filter_node,
            pdbs=lambda: self.pdbs,
            nominated_node=self.cache.nominated_node,
            rng=random.Random(7),
            **kwargs,
        )
        self.plugin._victims_on = counted  # type: ignore[method-assign,assignment]


def test_the_dry_run_shortlists_as_kube_scheduler_does() -> None:
    """max(10 % of the potential nodes, 100) candidates, from a random offset, in order."""
    w = Counting(300)
    for i in range(300):
        w.place(f"low-{i}", f"n{i:03d}", cpu="2", priority=1)
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert len(w.tried) == 100
    names = sorted(ni.name for ni in w.cache.node_infos())
    start = names.index(w.tried[0])
    assert w.tried == [names[(start + i) % 300] for i in range(100)]  # wrapping around
    assert result.nominated_node in w.tried

    w = Counting(300, min_candidate_nodes_percentage=50, min_candidate_nodes_absolute=10)
    for i in range(300):
        w.place(f"low-{i}", f"n{i:03d}", cpu="2", priority=1)
    w.preempt(make_pod("high", cpu="2", priority=100))
    assert len(w.tried) == 150


def test_the_shortlist_waits_for_a_candidate_violating_no_budget() -> None:
    """Candidates that break a PodDisruptionBudget do not end the dry run alone."""
    w = Counting(5, min_candidate_nodes_percentage=0, min_candidate_nodes_absolute=1)
    for i in range(5):
        w.place(f"low-{i}", f"n{i:03d}", cpu="2", priority=1, labels={"app": "kept"} if i else {})
    w.pdbs = [no_disruption("keep", {"app": "kept"})]
    result, _ = w.preempt(make_pod("high", cpu="2", priority=100))
    assert result is not None
    assert result.nominated_node == "n000"  # the one node whose victim no budget protects
    assert w.tried[-1] == "n000"


def test_nodes_without_victims_are_counted_when_none_is_found() -> None:
    """Every node tried, the message says why each failed."""
    w = Counting(120)
    result, st = w.preempt(make_pod("high", cpu="4", priority=100))
    assert result is None
    assert len(w.tried) == 120
    assert "120 No preemption victims found" in st.message


def test_policy_never_does_not_preempt() -> None:
    """preemptionPolicy: Never pods wait instead."""
    w = World(n1="2")
    w.place("low", "n1", cpu="2", priority=1)
    result, st = w.preempt(make_pod("polite", cpu="2", priority=100, preemptionPolicy="Never"))
    assert result is None
    assert "preemptionPolicy=Never" in st.message


def test_nominated_room_is_held_for_the_preemptor() -> None:
    """After nomination, a lower-priority newcomer cannot take the freed room."""
    w = World(n1="2")
    high = make_pod("high", cpu="2", priority=100)
    w.cache.nominate(high, "n1")
    ni = w.cache.node_info("n1")
    assert ni is not None
    fit = NodeResourcesFit()
    assert not fit.filter(CycleState(), make_pod("sneaky", cpu="1", priority=1), ni).ok
    assert fit.filter(CycleState(), high, ni).ok


def test_group_plan_evicts_for_every_member_at_once() -> None:
    """A group of three, each needing a node, takes the three cheapest nodes' pods."""
    w = World(n1="2", n2="2", n3="2", n4="2")
    for i, prio in enumerate((5, 6, 7, 90), start=1):
        w.place(f"old-{i}", f"n{i}", cpu="2", priority=prio)
    members = [make_pod(f"m-{i}", cpu="2", priority=50) for i in range(3)]
    planned = w.plugin.plan_group(CycleState(), members, list(w.cache.node_infos()), below=50)
    assert planned is not None
    plan, victims = planned
    assert sorted(v.name for v in victims) == ["old-1", "old-2", "old-3"]
    assert sorted(node for _, node in plan) == ["n1", "n2", "n3"]


def test_group_plan_preempts_nothing_if_one_member_cannot_fit() -> None:
    """If the last member finds no room even with evictions, no pod is evicted."""
    w = World(n1="2", n2="2")
    w.place("low", "n1", cpu="2", priority=1)
    w.place("high", "n2", cpu="2", priority=99)
    members = [make_pod(f"m-{i}", cpu="2", priority=50) for i in range(2)]
    assert w.plugin.plan_group(CycleState(), members, list(w.cache.node_infos()), below=50) is None


def test_group_plan_without_lower_priority_pods_filters_no_node() -> None:
    """Nothing may be evicted: the plan fails at once, without simulating a node."""
    w = World(n1="2", n2="2")
    w.place("peer-1", "n1", cpu="2", priority=50)
    w.place("peer-2", "n2", cpu="1", priority=70)
    filtered: list[str] = []

    def counting(state: CycleState, pod: PodInfo, ni: NodeInfo) -> Status:
        filtered.append(ni.name)
        return Status()

    w.plugin._filter_node = counting
    members = [make_pod(f"m-{i}", cpu="1", priority=50) for i in range(2)]
    assert w.plugin.plan_group(CycleState(), members, list(w.cache.node_infos()), below=50) is None
    assert filtered == []


def test_group_plan_asks_the_cache_for_the_lowest_priority_when_it_keeps_it() -> None:
    """With the cache's count of priorities, no pod is looked at to learn that none
    may be evicted; with a lower-priority pod there, the plan is made as before."""
    w = World(n1="2", n2="2")
    w.place("peer", "n1", cpu="2", priority=50)
    plugin = DefaultPreemption(
        node_info=w.cache.node_info, filter_node=w.fw.filter_node, pdbs=lambda: [],
        lowest_priority=w.cache.lowest_priority,
    )  # fmt: skip
    members = [make_pod(f"m-{i}", cpu="2", priority=50) for i in range(2)]
    assert plugin.plan_group(CycleState(), members, list(w.cache.node_infos()), below=50) is None
    w.place("low", "n2", cpu="2", priority=1)
    w.cache.remove_pod(pod_key("default", "peer"))
    planned = plugin.plan_group(CycleState(), members, list(w.cache.node_infos()), below=50)
    assert planned is not None and [v.name for v in planned[1]] == ["low"]


def test_group_plan_leaves_the_cache_s_nodes_as_they_were() -> None:
    """The plan works on copies of the nodes it changes, never on the cache's own."""
    w = World(n1="2", n2="2", n3="2")
    w.place("old-1", "n1", cpu="2", priority=5)
    w.place("old-2", "n2", cpu="1", priority=6)
    before = {ni.name: sorted(ni.pods) for ni in w.cache.node_infos()}
    members = [make_pod(f"m-{i}", cpu="2", priority=50) for i in range(3)]
    planned = w.plugin.plan_group(CycleState(), members, list(w.cache.node_infos()), below=50)
    assert planned is not None
    assert sorted(node for _, node in planned[0]) == ["n1", "n2", "n3"]
    assert {ni.name: sorted(ni.pods) for ni in w.cache.node_infos()} == before


def test_a_victim_being_evicted_is_never_chosen_again() -> None:
    """Until the informer shows it gone, a victim is terminating: others preempt elsewhere."""
    w = World(n1="2", n2="2")
    w.place("low", "n1", cpu="2", priority=1)
    w.place("mid", "n2", cpu="2", priority=5)
    first = make_pod("first", cpu="2", priority=100)
    result, _ = w.preempt(first)
    assert result is not None
    assert w.plugin.evictions.begin(result.victims) == list(result.victims)
    w.cache.nominate(first, result.nominated_node)
    result, _ = w.preempt(make_pod("second", cpu="2", priority=100))
    assert result is not None
    assert (result.nominated_node, [v.name for v in result.victims]) == ("n2", ["mid"])


def test_a_preemptor_waits_while_its_victims_are_being_evicted() -> None:
    """PodEligibleToPreemptOthers: a victim on the nominated node is terminating, so it waits."""
    w = World(n1="2", n2="2")
    w.place("low", "n1", cpu="2", priority=1)
    w.place("mid", "n2", cpu="2", priority=5)
    vip = make_pod("vip", cpu="2", priority=100)
    result, _ = w.preempt(vip)
    assert result is not None
    w.plugin.evictions.begin(result.victims)
    w.cache.nominate(vip, result.nominated_node)
    again, st = w.preempt(vip)
    assert again is None
    assert st.message == "preemption: not eligible due to a terminating pod on the nominated node."


def test_an_unresolvable_nominated_node_lets_the_preemptor_choose_again() -> None:
    """A nominated node that Filter now rejects for good no longer makes the preemptor wait."""
    w = World(n1="2", n2="2")
    w.place("low", "n1", cpu="2", priority=1)
    w.place("mid", "n2", cpu="2", priority=5)
    vip = make_pod("vip", cpu="2", priority=100)
    result, _ = w.preempt(vip)
    assert result is not None
    w.plugin.evictions.begin(result.victims)
    w.cache.nominate(vip, "n1")
    statuses = {
        "n1": Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, ("node(s) were unschedulable",)),
        "n2": Status(Code.UNSCHEDULABLE, ("Insufficient cpu",)),
    }
    again, _ = w.plugin.post_filter(CycleState(), vip, statuses)
    assert again is not None
    assert (again.nominated_node, [v.name for v in again.victims]) == ("n2", ["mid"])


def test_tracking_ends_when_the_victim_is_gone_or_its_eviction_failed() -> None:
    """A victim the cache no longer holds, or whose eviction failed, is not terminating."""
    w = World(n1="4")
    gone = w.place("gone", "n1", cpu="1", priority=1)
    refused = w.place("refused", "n1", cpu="1", priority=1)
    assert w.plugin.evictions.begin([gone, refused]) == [gone, refused]
    assert w.plugin.evictions.begin([gone]) == []  # already being evicted: not twice
    w.plugin.evictions.failed(refused)
    assert not w.plugin.evictions.terminating(refused)
    w.cache.remove_pod(gone.key)  # the informer's deletion
    assert w.plugin.evictions.begin([]) == []
    assert len(w.plugin.evictions) == 0
    recreated = make_pod("gone", cpu="1", node="n1", priority=1, uid="uid-new")
    w.cache.add_pod(recreated)
    assert not w.plugin.evictions.terminating(recreated)


# ---- the scheduler's preempt path, with fake API writes ------------------------


class FakeEvents:
    """The profile's event recorder: keeps what would be written."""

    def __init__(self) -> None:
        self.recorded: list[tuple[str, str, str]] = []  # (object, reason, note)

    def record(
        self, regarding: ObjectRef, *, type: str, reason: str, action: str, note: str
    ) -> None:
        self.recorded.append((regarding.name, reason, note))

    def preempted(self) -> list[tuple[str, str]]:
        return sorted((name, note) for name, reason, note in self.recorded if reason == "Preempted")

    def failures(self, name: str) -> list[str]:
        return [n for o, r, n in self.recorded if o == name and r == "FailedScheduling"]


class Cluster:
    """A Scheduler whose API writes are fakes; pods arrive through its informer handler."""

    def __init__(self, client: KubeClient, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sched = Scheduler(client, Settings())
        self.events = FakeEvents()
        self.sched.profiles["lasched"].events = cast(EventRecorder, self.events)
        self.informer = self.sched.pod_events
        self.evicted: list[str] = []
        self.refuse: set[str] = set()  # names whose next eviction the apiserver refuses

        async def evict(kc: KubeClient, *, namespace: str, name: str, uid: str) -> None:
            self.evicted.append(name)
            if name in self.refuse:
                self.refuse.discard(name)
                raise ApiError(status=500, reason="InternalError", message="etcd", body=None)

        async def written(kc: KubeClient, **fields: object) -> None:
            return None

        monkeypatch.setattr(statuswriter, "evict", evict)
        monkeypatch.setattr(statuswriter, "set_unschedulable", written)
        monkeypatch.setattr(statuswriter, "set_nominated", written)

    def add(
        self, name: str, *, node: str = "", labels: dict[str, str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        body = pod_json(name, node=node, **kwargs)
        body["metadata"]["labels"] = labels or {}
        if node:
            body["status"]["phase"] = "Running"
        self.informer.on_add(PodInfo(body))
        return body

    async def attempt(self, name: str) -> None:
        """Pop ``name`` from activeQ and run its scheduling cycle; wait for its API writes."""
        qp = await asyncio.wait_for(self.sched.queue.pop(), 1)
        assert qp.pod.name == name
        self.sched.cycle.schedule_one(qp)
        assert await self.sched.status_writer.drain(1)

    def retry_now(self, body: dict[str, Any]) -> None:
        """The preemptor's own status update (its nominated node) arrives and it is retried
        at once, as an idle scheduler does with a nominated pod in backoff."""
        body = copy.deepcopy(body)
        node = self.sched.cache.nominated_node(pod_key("default", body["metadata"]["name"]))
        assert node is not None
        body["status"]["nominatedNodeName"] = node
        self.sched.queue.delete(PodInfo(body).key)
        self.informer.on_add(PodInfo(body))


def preemptions() -> float:
    return REGISTRY.get_sample_value("lasched_preemption_attempts_total") or 0.0


@pytest.fixture
async def cluster(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cluster]:
    client = KubeClient(Configuration(host="http://127.0.0.1:9"))
    try:
        yield Cluster(client, monkeypatch)
    finally:
        await client.close()


async def test_a_preemptor_retried_before_its_victims_go_preempts_nothing_more(
    cluster: Cluster,
) -> None:
    """One decision: each victim evicted and told once, the metric counts one preemption."""
    cluster.sched.cache.add_node(make_node("n1", cpu="2"))
    cluster.add("low-0", node="n1", cpu="1", priority=10)
    cluster.add("low-1", node="n1", cpu="1", priority=10)
    before = preemptions()
    vip = cluster.add("vip", cpu="2", priority=1000)
    await cluster.attempt("vip")
    # The evictions are sent; the informer has not shown the victims terminating yet.
    cluster.retry_now(vip)
    await cluster.attempt("vip")

    assert sorted(cluster.evicted) == ["low-0", "low-1"]
    assert cluster.events.preempted() == [
        ("low-0", "Preempted by pod default/vip on node n1"),
        ("low-1", "Preempted by pod default/vip on node n1"),
    ]
    assert preemptions() - before == 1
    assert cluster.events.failures("vip")[-1].endswith(
        "preemption: not eligible due to a terminating pod on the nominated node."
    )


async def test_gang_preemption_tells_each_victim_once_naming_its_own_node(
    cluster: Cluster,
) -> None:
    """Two members free two nodes: one Preempted event per victim, with the victim's node."""
    for i in range(2):
        cluster.sched.cache.add_node(make_node(f"n{i}", cpu="2"))
        cluster.add(f"filler-{i}", node=f"n{i}", cpu="2", priority=1)
    before = preemptions()
    gang = {"lasched.io/pod-group": "g", "lasched.io/min-available": "2"}
    for i in range(2):
        cluster.add(f"m-{i}", cpu="2", priority=100, labels=gang)
    await cluster.attempt("m-0")
    await cluster.attempt("m-1")  # nominated by m-0's preemption, before the victims go

    assert sorted(cluster.evicted) == ["filler-0", "filler-1"]
    assert cluster.events.preempted() == [
        ("filler-0", "Preempted by pod default/m-0 on node n0"),
        ("filler-1", "Preempted by pod default/m-0 on node n1"),
    ]
    assert preemptions() - before == 1


async def test_a_refused_eviction_lets_the_preemptor_choose_that_victim_again(
    cluster: Cluster,
) -> None:
    """A victim whose eviction failed runs on: no Preempted event, and it may be chosen again."""
    cluster.sched.cache.add_node(make_node("n1", cpu="2"))
    cluster.add("low-0", node="n1", cpu="1", priority=10)
    cluster.add("low-1", node="n1", cpu="1", priority=10)
    cluster.refuse.add("low-0")
    vip = cluster.add("vip", cpu="2", priority=1000)
    await cluster.attempt("vip")
    assert cluster.events.preempted() == [("low-1", "Preempted by pod default/vip on node n1")]
    qp = cluster.sched.queue.get(pod_key("default", "vip"))
    assert qp is not None and qp.where in ("active", "backoff")  # tried again, not parked
    # low-1 is gone; low-0 still runs and is no longer being evicted.
    cluster.informer.on_delete(make_pod("low-1", cpu="1", node="n1", priority=10))
    cluster.retry_now(vip)
    await cluster.attempt("vip")
    assert cluster.evicted == ["low-0", "low-1", "low-0"]
    assert cluster.events.preempted() == [
        ("low-0", "Preempted by pod default/vip on node n1"),
        ("low-1", "Preempted by pod default/vip on node n1"),
    ]


@settings(max_examples=60, deadline=None)
@given(
    cpus=st.lists(
        st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4),
        min_size=1,
        max_size=12,
    ),
    priorities=st.lists(st.integers(min_value=0, max_value=120), min_size=48, max_size=48),
    want=st.integers(min_value=1, max_value=4),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_a_shortlist_of_every_node_picks_as_the_full_comparison(
    cpus: list[list[int]], priorities: list[int], want: int, seed: int
) -> None:
    """Generated clusters under 100 nodes: the dry run's shortlist holds every node, so
    whatever the offset, the chosen candidate ranks as the best of a comparison over all."""
    w = World(**{f"n{i}": "4" for i in range(len(cpus))})
    w.plugin.rng = random.Random(seed)
    free = {}
    k = 0
    for i, pods in enumerate(cpus):
        free[i] = 4
        for c in pods:
            if c <= free[i]:
                w.place(f"p{k}", f"n{i}", cpu=str(c), priority=priorities[k % 48])
                free[i] -= c
                k += 1
    assume(all(room < want for room in free.values()))  # else it fits: no preemption
    pod = make_pod("high", cpu=str(want), priority=100)
    result, _ = w.preempt(pod)
    every = [
        cand
        for ni in w.cache.node_infos()
        if (cand := w.plugin._victims_on(CycleState(), pod, ni, [])) is not None
    ]
    if not every:
        assert result is None
        return
    assert result is not None
    chosen = next(c for c in every if c.node == result.nominated_node)
    assert chosen.sort_key() == min(c.sort_key() for c in every)
