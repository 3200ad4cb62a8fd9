"""Reserve/Unreserve pair up and Permit waits, allows, rejects and times out."""

from __future__ import annotations

import asyncio

from lasched.framework.interface import SUCCESS, Code, CycleState, Status, unschedulable, wait
from lasched.framework.runtime import Framework
from lasched.framework.waiting import WaitingRoom
from lasched.model.pod import PodInfo
from tests.unit.factories import make_pod


class Recorder:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail = fail

    def reserve(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        self.log.append(f"reserve {self.name}")
        return unschedulable("no room") if self.fail else SUCCESS

    def unreserve(self, state: CycleState, pod: PodInfo, node: str) -> None:
        self.log.append(f"unreserve {self.name}")


def test_failed_reserve_unreserves_only_those_before_it_in_reverse() -> None:
    """Reserve stops at the first failure; the plugins that reserved are undone, last first."""
    log: list[str] = []
    fw = Framework(
        pre_filters=[],
        filters=[],
        scores=[],
        reserves=[Recorder("a", log), Recorder("b", log), Recorder("c", log, fail=True)],
    )
    st = fw.run_reserve(CycleState(), make_pod("p"), "n")
    assert st.code is Code.UNSCHEDULABLE
    assert st.plugin == "c"
    assert log == ["reserve a", "reserve b", "reserve c", "unreserve b", "unreserve a"]


class Gate:
    name = "Gate"

    def permit(self, state: CycleState, pod: PodInfo, node: str) -> Status:
        return wait(30.0, "waiting for the group")


def test_permit_wait_reports_each_plugins_timeout() -> None:
    """A WAIT verdict carries every waiting plugin's timeout."""
    fw = Framework(pre_filters=[], filters=[], scores=[], permits=[Gate()])
    st, waits = fw.run_permit(CycleState(), make_pod("p"), "n")
    assert st.code is Code.WAIT
    assert waits == {"Gate": 30.0}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_allowed_pod_resolves_success() -> None:
    """Once every waiting plugin allows, the pod may bind."""
    room = WaitingRoom(Clock())
    wp = room.add(make_pod("p"), "n", {"A": 10, "B": 10})
    wp.allow("A")
    assert not wp.resolved
    wp.allow("B")
    assert (await wp.result()).ok


async def test_timeout_rejects_in_virtual_time() -> None:
    """A deadline passes on the injected clock, not on the wall."""
    clock = Clock()
    room = WaitingRoom(clock)
    wp = room.add(make_pod("p"), "n", {"Gang": 5})
    clock.t = 4.9
    assert room.expire() == 0
    clock.t = 5.0
    assert room.expire() == 1
    verdict = await asyncio.wait_for(wp.result(), 1)
    assert verdict.code is Code.UNSCHEDULABLE
    assert "timeout" in verdict.message
    assert verdict.plugin == "Gang"


async def test_reject_wins_over_later_allow() -> None:
    """A pod is resolved once: a rejection is not undone by a later allow."""
    room = WaitingRoom(Clock())
    wp = room.add(make_pod("p"), "n", {"A": 10})
    wp.reject("A", "group timed out")
    wp.allow("A")
    assert (await wp.result()).message == "group timed out"
