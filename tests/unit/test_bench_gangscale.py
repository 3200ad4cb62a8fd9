"""The gangs-contended scenario's workload and partial-gang counts: pure parts, no cluster."""

from __future__ import annotations

import pytest

from bench import gangscale
from bench.gangscale import Gang


def test_the_gang_mix_is_seeded_and_within_its_sizes() -> None:
    """The same seed gives the same gangs; another seed other sizes; every size in range."""
    a = gangscale.gang_mix(gangs=120, min_size=2, max_size=16, seed=1)
    assert a == gangscale.gang_mix(gangs=120, min_size=2, max_size=16, seed=1)
    assert a != gangscale.gang_mix(gangs=120, min_size=2, max_size=16, seed=2)
    assert len(a) == 120 and len({g.name for g in a}) == 120
    assert all(2 <= g.size <= 16 for g in a)
    assert {g.size for g in a} >= {2, 16}  # 120 draws from 15 sizes reach both ends


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"gangs": 0, "min_size": 2, "max_size": 4}, "gangs", id="no-gangs"),
        pytest.param({"gangs": 3, "min_size": 5, "max_size": 4}, "min_size", id="sizes-inverted"),
    ],
)
def test_a_bad_mix_names_its_argument(kwargs: dict[str, int], field: str) -> None:
    """Errors name the argument that was wrong."""
    with pytest.raises(ValueError, match=field):
        gangscale.gang_mix(seed=1, **kwargs)


def test_members_ask_at_least_the_demand() -> None:
    """113 members on 10 nodes at 1.5x: 7 a node, so 113 ask 1.61 nodes' worth per node."""
    slots = gangscale.member_share(members=113, nodes=10, demand=1.5)
    assert slots == 7
    assert 113 / (slots * 10) >= 1.5
    assert gangscale.member_cpu_milli(slots) == 8000 // 7


def test_a_demand_below_one_member_a_node_still_gives_one_slot() -> None:
    """Fewer members than nodes: each member a whole node."""
    assert gangscale.member_share(members=3, nodes=10, demand=1.5) == 1


def test_a_bad_demand_is_refused() -> None:
    """A demand that is not a positive number is named in the error."""
    with pytest.raises(ValueError, match="demand"):
        gangscale.member_share(members=10, nodes=2, demand=float("nan"))


GANGS = [Gang("a", 2), Gang("b", 3)]


def test_a_gang_is_partial_only_between_its_first_and_last_binding() -> None:
    """Gang a binds at 1.0 and 1.2: partial at 1.1, whole at 1.2; gang b never binds."""
    bound = {"a-m0": 1.0, "a-m1": 1.2}
    assert gangscale.partial_at(GANGS, bound, 0.5) == 0
    assert gangscale.partial_at(GANGS, bound, 1.1) == 1
    assert gangscale.partial_at(GANGS, bound, 1.2) == 0


def test_a_gang_left_partial_counts_at_the_end() -> None:
    """Two of gang b's three members bound and the third never: partial at the end."""
    bound = {"a-m0": 1.0, "a-m1": 1.0, "b-m0": 2.0, "b-m1": 2.5}
    assert gangscale.partial_at(GANGS, bound, 10.0) == 1
    assert gangscale.partial_windows(GANGS, bound, 10.0) == {"a": (1.0, 1.0), "b": (2.0, 10.0)}


def test_the_grace_leaves_out_a_gangs_own_bind_spread() -> None:
    """A gang bound over 0.2 s is caught by a sample, but not as lasting past a 1 s grace;
    a gang stuck partial is caught both ways."""
    spread = {"a-m0": 1.0, "a-m1": 1.2}
    assert gangscale.peak_partial(GANGS, spread, start=0.0, end=5.0, step=0.1) == 1
    assert gangscale.peak_partial(GANGS, spread, start=0.0, end=5.0, step=0.1, grace=1.0) == 0
    stuck = {"b-m0": 1.0}
    assert gangscale.peak_partial(GANGS, stuck, start=0.0, end=5.0, step=0.5, grace=1.0) == 1


def test_a_step_must_be_positive() -> None:
    """A zero sampling step is refused by name rather than looping forever."""
    with pytest.raises(ValueError, match="step"):
        gangscale.peak_partial(GANGS, {}, start=0.0, end=1.0, step=0.0)


def test_the_manifests_use_kubernetes_own_podgroup_api() -> None:
    """One PodGroup with gang minCount = size; members name it in spec.schedulingGroup."""
    gang = Gang("g007", 4)
    group = gangscale._podgroup("scheduling.k8s.io/v1beta1", gang)
    assert group["kind"] == "PodGroup"
    assert group["spec"] == {"schedulingPolicy": {"gang": {"minCount": 4}}}
    pod = gangscale._member("g007-m0", gang, scheduler="lasched", cpu_milli=1142)
    assert pod["spec"]["schedulingGroup"] == {"podGroupName": "g007"}
    assert pod["spec"]["schedulerName"] == "lasched"
    assert pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "1142m"
