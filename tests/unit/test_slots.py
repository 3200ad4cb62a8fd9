"""tasks.Slots: a semaphore that stays first come first served and O(1) with many waiting."""

from __future__ import annotations

import asyncio

from lasched.tasks import Slots


async def test_waiters_get_slots_in_the_order_they_asked() -> None:
    slots, order = Slots(1), []
    await slots.acquire()

    async def take(i: int) -> None:
        await slots.acquire()
        order.append(i)
        slots.release()

    tasks = [asyncio.create_task(take(i)) for i in range(5)]
    await asyncio.sleep(0)
    slots.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_a_waiter_cancelled_while_waiting_is_skipped() -> None:
    slots, got = Slots(1), []
    await slots.acquire()

    async def take(name: str) -> None:
        await slots.acquire()
        got.append(name)

    gone = asyncio.create_task(take("gone"))
    kept = asyncio.create_task(take("kept"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    slots.release()
    await asyncio.wait_for(kept, 1)
    assert got == ["kept"]


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_passes_it_on() -> None:
    slots, got = Slots(1), []
    await slots.acquire()

    async def take(name: str) -> None:
        await slots.acquire()
        got.append(name)

    first = asyncio.create_task(take("first"))
    second = asyncio.create_task(take("second"))
    await asyncio.sleep(0)
    slots.release()  # hands the slot to first, which has not run yet
    first.cancel()
    await asyncio.wait_for(second, 1)
    assert got == ["second"]


async def test_no_slot_is_lost_or_made_under_churn() -> None:
    """However waiters come, go and are cancelled, at most ``n`` hold a slot at once,
    and every slot is free again at the end."""
    slots, holding, peak = Slots(3), [0], [0]

    async def work(i: int) -> None:
        await slots.acquire()
        try:
            holding[0] += 1
            peak[0] = max(peak[0], holding[0])
            await asyncio.sleep(0.001 * (i % 3))
        finally:
            holding[0] -= 1
            slots.release()

    tasks = [asyncio.create_task(work(i)) for i in range(200)]
    await asyncio.sleep(0)
    for t in tasks[::7]:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert peak[0] == 3 and holding[0] == 0
    for _ in range(3):
        await asyncio.wait_for(slots.acquire(), 1)  # all three are back
