"""heap.trim_soon: one trim per burst of requests, on the loop that asked."""

from __future__ import annotations

import asyncio

import pytest

from lasched import heap


async def test_requests_while_a_trim_is_pending_fold_into_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(heap, "TRIM_DELAY_SECONDS", 0.02)
    monkeypatch.setattr(heap, "trim", lambda: calls.append(1))
    for _ in range(5):
        heap.trim_soon()
    await asyncio.sleep(0.1)
    assert calls == [1]
    heap.trim_soon()  # after it ran, a new request trims again
    await asyncio.sleep(0.1)
    assert calls == [1, 1]


def test_a_loop_closed_with_a_trim_pending_does_not_block_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(heap, "TRIM_DELAY_SECONDS", 0.02)
    monkeypatch.setattr(heap, "trim", lambda: calls.append(1))

    async def ask() -> None:
        heap.trim_soon()

    async def ask_and_wait() -> None:
        heap.trim_soon()
        await asyncio.sleep(0.1)

    asyncio.run(ask())  # closed before its trim ran
    asyncio.run(ask_and_wait())
    assert calls == [1]
