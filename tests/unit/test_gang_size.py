"""A group declared without a size takes it from its controller; the lull is the fallback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lasched.framework.interface import Code
from lasched.framework.waiting import WaitingRoom
from lasched.kube.client import ApiError
from lasched.kube.owners import OwnerSizes
from lasched.model.pod import PodInfo
from lasched.model.podgroup import OwnerRef, OwnerSize, owner_ref, owner_size
from lasched.plugins.coscheduling import Coscheduling
from tests.unit.factories import pod_json

JOB = OwnerRef("Job", "train", "uid-train")


def job(**spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {"metadata": {"name": "train", "uid": "uid-train"}, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("obj", "size", "source"),
    [
        (job(parallelism=3), 3, "Job default/train's parallelism"),
        (job(), 1, "Job default/train's parallelism"),
        (job(parallelism=3, completions=5), 3, "Job default/train's parallelism"),
        (
            job(parallelism=3, completions=5, status={"succeeded": 3}),
            2,
            "Job default/train's completions left (5 - 3)",
        ),
        (job(parallelism=0), None, "Job default/train's parallelism is 0"),
    ],
    ids=["parallelism", "default-1", "completions-above", "completions-left", "suspended-0"],
)
def test_job_size(obj: dict[str, Any], size: int | None, source: str) -> None:
    """A Job's size is min(parallelism, completions - succeeded), as its controller runs it."""
    assert owner_size("default", JOB, obj) == OwnerSize(size, source)


@pytest.mark.parametrize("kind", ["ReplicaSet", "StatefulSet"])
def test_replicas_size(kind: str) -> None:
    """A ReplicaSet's or StatefulSet's size is spec.replicas."""
    ref = OwnerRef(kind, "web", "u")
    got = owner_size("ns", ref, {"metadata": {}, "spec": {"replicas": 4}})
    assert got == OwnerSize(4, f"{kind} ns/web's replicas")


def test_owner_annotation_wins_for_any_kind() -> None:
    """pod-group-size on the controller sizes the group, whatever its kind."""
    ref = OwnerRef("JobSet", "js", "u")
    obj = {"metadata": {"annotations": {"pod-group-size": "8"}}, "spec": {"replicas": 2}}
    assert owner_size("ns", ref, obj) == OwnerSize(8, "JobSet ns/js's annotation pod-group-size")


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"metadata": {"annotations": {"pod-group-size": "lots"}}}, "annotation pod-group-size"),
        ({"metadata": {}, "spec": {"parallelism": "3"}}, "spec.parallelism"),
        ({"metadata": {}, "spec": {"parallelism": -1}}, "spec.parallelism"),
    ],
    ids=["annotation", "string", "negative"],
)
def test_unreadable_size_names_the_field(obj: dict[str, Any], field: str) -> None:
    """A value that is not a count gives no size and a problem naming the field."""
    got = owner_size("default", JOB, obj)
    assert got.size is None
    assert got.problem is not None and field in got.problem


def test_owner_ref_needs_a_controller_with_kind_name_and_uid() -> None:
    """Only the controlling reference counts, and only a complete one."""
    ref = {"kind": "Job", "name": "j", "uid": "u"}
    assert owner_ref({"ownerReferences": [{**ref, "controller": True}]}) == OwnerRef(
        "Job", "j", "u"
    )
    assert owner_ref({"ownerReferences": [ref]}) is None
    assert owner_ref({"ownerReferences": [{**ref, "name": "", "controller": True}]}) is None
    assert owner_ref({"ownerReferences": "junk"}) is None


def annotated(
    name: str, *, group: str = "train", size: str | None = None, owner: OwnerRef | None = JOB
) -> PodInfo:
    body = pod_json(name)
    body["metadata"]["annotations"] = {"pod-group": group}
    if size is not None:
        body["metadata"]["annotations"]["pod-group-size"] = size
    if owner is not None:
        body["metadata"]["ownerReferences"] = [
            {"kind": owner.kind, "name": owner.name, "uid": owner.uid, "controller": True}
        ]
    return PodInfo(body)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def gang(answers: dict[str, OwnerSize | None], clock: Clock) -> Coscheduling:
    def lookup(namespace: str, ref: OwnerRef) -> OwnerSize | None:
        return answers.get(ref.uid)

    return Coscheduling(clock=clock, room=WaitingRoom(), node_of=lambda k: None, owner_size=lookup)


def test_a_slow_controller_does_not_split_its_group() -> None:
    """Members created 4 s apart stay gated until the Job's parallelism (3) exist."""
    clock = Clock()
    g = gang({JOB.uid: OwnerSize(3, "Job default/train's parallelism")}, clock)
    pods = [annotated(f"train-{i}") for i in range(3)]
    for p in pods[:2]:
        g.pod_added(p)
    clock.t += 4.0  # long past the lull
    st = g.pre_enqueue(pods[0])
    assert st.code is Code.UNSCHEDULABLE
    assert "2 of 3 members exist (size 3 from Job default/train's parallelism)" in st.message
    group = g.group_of(pods[0])
    assert group is not None and g.settles_at(group) is None  # no lull timer
    g.pod_added(pods[2])
    assert g.pre_enqueue(pods[0]).ok
    assert g.required(group) == 3


def test_a_group_waits_while_its_controller_is_read() -> None:
    """Until the controller's answer arrives the group is not counted, even after the lull."""
    clock = Clock()
    g = gang({}, clock)
    p = annotated("train-0")
    g.pod_added(p)
    clock.t += 10.0
    st = g.pre_enqueue(p)
    assert st.code is Code.UNSCHEDULABLE
    assert "reading Job default/train" in st.message


def test_a_controller_without_a_size_falls_back_to_the_lull() -> None:
    """A controller that says nothing leaves the group to the members seen after the lull."""
    clock = Clock()
    g = gang({JOB.uid: OwnerSize(None, "Job default/train was not found")}, clock)
    p = annotated("train-0")
    g.pod_added(p)
    assert g.pre_enqueue(p).code is Code.UNSCHEDULABLE
    clock.t += 2.5
    assert g.pre_enqueue(p).ok
    group = g.group_of(p)
    assert group is not None
    assert g.size_source(group).startswith("size 1: the members that exist after 2 s")
    assert "Job default/train was not found" in g.size_source(group)


def test_a_declared_size_is_not_asked_of_the_controller() -> None:
    """pod-group-size on the pod wins; the controller is never read for it."""
    asked: list[OwnerRef] = []

    def lookup(namespace: str, ref: OwnerRef) -> OwnerSize | None:
        asked.append(ref)
        return None

    g = Coscheduling(clock=Clock(), room=WaitingRoom(), node_of=lambda k: None, owner_size=lookup)
    p = annotated("train-0", size="1")
    g.pod_added(p)
    assert g.pre_enqueue(p).ok
    group = g.group_of(p)
    assert group is not None
    assert g.size_source(group) == "min-available 1 from annotation pod-group-size"
    assert asked == [] and p.owner is None


def test_members_owned_by_selects_the_controllers_groups() -> None:
    """A controller read again rechecks the members of the groups it sizes, only those."""
    g = gang({}, Clock())
    mine = annotated("a")
    other = annotated("b", group="other", owner=OwnerRef("Job", "x", "uid-x"))
    g.pod_added(mine)
    g.pod_added(other)
    assert g.members_owned_by("default", JOB.uid) == [mine.key]


class FakeClient:
    """Answers GETs from a dict of path -> object or ApiError."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.gets: list[str] = []

    async def get(self, path: str) -> Any:
        self.gets.append(path)
        await asyncio.sleep(0)
        answer = self.answers[path]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_owner_sizes_reads_once_then_answers_from_memory() -> None:
    """The first ask starts one GET and answers None; its result is told and then kept."""
    path = "/apis/batch/v1/namespaces/default/jobs/train"
    client = FakeClient({path: job(parallelism=3)})
    told: list[OwnerRef] = []
    clock = Clock()
    sizes = OwnerSizes(client, on_read=lambda ns, ref: told.append(ref), clock=clock)  # type: ignore[arg-type]
    assert sizes.lookup("default", JOB) is None
    assert sizes.lookup("default", JOB) is None  # one read in flight, not two
    assert await sizes.reads.drain(1.0)
    assert told == [JOB]
    assert sizes.lookup("default", JOB) == OwnerSize(3, "Job default/train's parallelism")
    assert client.gets == [path]
    clock.t += 31.0  # re-read after REREAD_SECONDS, answering the old size meanwhile
    assert sizes.lookup("default", JOB) == OwnerSize(3, "Job default/train's parallelism")
    assert await sizes.reads.drain(1.0)
    assert client.gets == [path, path]
    assert told == [JOB]  # unchanged: nobody is told


async def test_owner_sizes_failed_read_answers_no_size() -> None:
    """A missing or unreadable controller answers 'no size', so the group is not held."""
    client = FakeClient(
        {
            "/apis/apps/v1/namespaces/default/replicasets/web": ApiError(
                status=404, reason="NotFound", message="gone", body=None
            ),
            "/apis/apps/v1/namespaces/default/statefulsets/db": ApiError(
                status=403, reason="Forbidden", message="no", body=None
            ),
        }
    )
    sizes = OwnerSizes(client, on_read=lambda ns, ref: None)  # type: ignore[arg-type]
    rs, sts = OwnerRef("ReplicaSet", "web", "u1"), OwnerRef("StatefulSet", "db", "u2")
    sizes.lookup("default", rs)
    sizes.lookup("default", sts)
    assert await sizes.reads.drain(1.0)
    assert sizes.lookup("default", rs) == OwnerSize(None, "ReplicaSet default/web was not found")
    got = sizes.lookup("default", sts)
    assert got is not None and got.size is None and "403" in got.source
    other = sizes.lookup("default", OwnerRef("JobSet", "js", "u3"))
    assert other is not None and other.size is None and "pod-group-size" in other.source
