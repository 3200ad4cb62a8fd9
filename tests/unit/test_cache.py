"""The cache keeps assume/forget/confirm symmetric and never loses accounting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lasched.cache.cache import CacheError, SchedulerCache
from lasched.model.pod import PodInfo, pod_key
from tests.unit.factories import make_node, make_pod


@pytest.fixture
def cache() -> SchedulerCache:
    c = SchedulerCache()
    c.add_node(make_node("n1", cpu="4"))
    c.add_node(make_node("n2", cpu="4"))
    return c


def test_assume_counts_immediately(cache: SchedulerCache) -> None:
    """An assumed pod's request is taken before its bind is written."""
    cache.assume(make_pod("p", cpu="3"), "n1")
    ni = cache.node_info("n1")
    assert ni is not None
    assert ni.requested.milli_cpu == 3000
    assert cache.is_assumed(make_pod("p").key)


def test_forget_releases(cache: SchedulerCache) -> None:
    """A failed bind forgets the pod and frees its request."""
    assumed = cache.assume(make_pod("p", cpu="3"), "n1")
    cache.forget(assumed)
    ni = cache.node_info("n1")
    assert ni is not None
    assert ni.requested.milli_cpu == 0
    assert cache.node_of(assumed.key) is None


def test_confirm_replaces_assumption(cache: SchedulerCache) -> None:
    """When the informer sees the bound pod, it replaces the assumed one (counted once)."""
    cache.assume(make_pod("p", cpu="3"), "n1")
    cache.add_pod(make_pod("p", cpu="3", node="n1"))
    ni = cache.node_info("n1")
    assert ni is not None
    assert ni.requested.milli_cpu == 3000
    assert not cache.is_assumed(make_pod("p").key)
    # A forget after confirmation changes nothing.
    cache.forget(make_pod("p", node="n1"))
    assert ni.requested.milli_cpu == 3000


def test_confirm_on_another_node_follows_the_apiserver(cache: SchedulerCache) -> None:
    """If the pod turns out bound elsewhere, it moves there."""
    cache.assume(make_pod("p", cpu="1"), "n1")
    cache.add_pod(make_pod("p", cpu="1", node="n2"))
    n1, n2 = cache.node_info("n1"), cache.node_info("n2")
    assert n1 is not None and n2 is not None
    assert (n1.requested.milli_cpu, n2.requested.milli_cpu) == (0, 1000)


def test_assume_twice_is_an_error(cache: SchedulerCache) -> None:
    """Assuming a pod already in the cache breaks an invariant and says so."""
    cache.assume(make_pod("p"), "n1")
    with pytest.raises(CacheError, match="already in the cache"):
        cache.assume(make_pod("p"), "n2")


def test_deleted_node_keeps_pods_until_they_go(cache: SchedulerCache) -> None:
    """A node deleted under its pods keeps their accounting until their deletes arrive."""
    cache.add_pod(make_pod("p", cpu="1", node="n1"))
    cache.remove_node("n1")
    assert cache.node_info("n1") is None  # no longer offered
    assert cache.node_of(make_pod("p").key) == "n1"
    cache.add_node(make_node("n1", cpu="4"))  # re-created before the pod's delete
    ni = cache.node_info("n1")
    assert ni is not None
    assert ni.requested.milli_cpu == 1000
    cache.remove_pod(make_pod("p").key)
    assert ni.requested.milli_cpu == 0


def test_pod_before_its_node(cache: SchedulerCache) -> None:
    """A bound pod may arrive before its node; it is counted once the node shows up."""
    cache.add_pod(make_pod("early", cpu="2", node="n3"))
    assert cache.node_info("n3") is None
    cache.add_node(make_node("n3", cpu="4"))
    ni = cache.node_info("n3")
    assert ni is not None
    assert ni.requested.milli_cpu == 2000


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["bind", "assume", "forget", "delete"]),
            st.integers(0, 7),  # which pod
            st.sampled_from([-5, 0, 10, 1000]),  # its priority
        ),
        max_size=40,
    )
)
def test_lowest_priority_is_that_of_the_pods_counted(ops: list[tuple[str, int, int]]) -> None:
    """Whatever binds, assumptions, forgets and deletions came, the lowest priority the
    cache reports is the lowest of the pods on its nodes (None with no pod)."""
    cache = SchedulerCache()
    for n in ("n1", "n2"):
        cache.add_node(make_node(n))
    assumed: dict[str, PodInfo] = {}
    for op, i, priority in ops:
        name, node = f"p{i}", f"n{1 + i % 2}"
        key = pod_key("default", name)
        if op == "bind":
            assumed.pop(name, None)
            cache.add_pod(make_pod(name, node=node, priority=priority))
        elif op == "assume" and cache.node_of(key) is None:
            assumed[name] = cache.assume(make_pod(name, priority=priority), node)
        elif op == "forget" and name in assumed:
            cache.forget(assumed.pop(name))
        elif op == "delete":
            assumed.pop(name, None)
            cache.remove_pod(key)
    counted = [p.priority for ni in cache.node_infos() for p in ni.pods.values()]
    assert cache.lowest_priority() == (min(counted) if counted else None)
