"""Reserve/Unreserve pair up and Permit waits, allows, rejects and times out (its deadlines
are timers on the heap, fired in virtual time)."""

from __future__ import annotations

import asyncio

from lasched.framework.interface import SUCCESS, Code, CycleState, Status, unschedulable, wait
from lasched.framework.runtime import Framework
from lasched.framework.waiting import WaitingRoom
from lasched.model.pod import PodInfo
from lasched.timers import TimerHeap, VirtualClock
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
    assert room.timers.fire_due() == 0
    clock.t = 5.0
    assert room.timers.fire_due() == 1
    verdict = await asyncio.wait_for(wp.result(), 1)
    assert verdict.code is Code.UNSCHEDULABLE
    assert verdict.message == "rejected due to timeout after waiting at permit Gang"
    assert verdict.plugin == "Gang"


async def test_the_runner_rejects_at_the_deadline_itself() -> None:
    """The timer task wakes at the deadline, not at the next poll: no later, no sooner."""
    clock = VirtualClock(100.0)
    timers = TimerHeap(clock, alarm=clock.alarm)
    room = WaitingRoom(timers=timers)
    runner = asyncio.create_task(timers.run())
    try:
        wp = room.add(make_pod("p"), "n", {"Gang": 5})
        await asyncio.sleep(0)
        clock.advance(4.999)
        await asyncio.sleep(0)
        assert not wp.resolved
        clock.advance(0.001)
        verdict = await asyncio.wait_for(wp.result(), 1)
        assert verdict.plugin == "Gang"
        assert clock.t == 105.0
    finally:
        runner.cancel()


async def test_a_deadline_goes_with_its_pod() -> None:
    """Allowed, rejected or removed, a pod leaves no timer behind."""
    room = WaitingRoom(Clock())
    allowed = room.add(make_pod("a"), "n", {"A": 10, "B": 20})
    rejected = room.add(make_pod("r"), "n", {"A": 10})
    room.add(make_pod("x"), "n", {"A": 10})
    allowed.allow("A")
    assert len(room.timers) == 3  # B's for "a", and the other two pods''
    allowed.allow("B")
    rejected.reject("A", "no")
    room.remove(make_pod("x").key)
    assert len(room.timers) == 0


async def test_reject_wins_over_later_allow() -> None:
    """A pod is resolved once: a rejection is not undone by a later allow."""
    room = WaitingRoom(Clock())
    wp = room.add(make_pod("p"), "n", {"A": 10})
    wp.reject("A", "group timed out")
    wp.allow("A")
    assert (await wp.result()).message == "group timed out"
