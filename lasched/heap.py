"""Giving the C heap's free pages back to the system (glibc's ``malloc_trim``).

CPython frees large objects and C extensions free their buffers with
``free()``, but glibc keeps the pages of free chunks below the top of its
heap until asked: after the first lists are decoded, or after a burst's
connections are closed, the process would otherwise keep its high-water mark.
A C library without ``malloc_trim`` (musl) keeps them, as it would anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes

# Transports finish closing (TLS shutdown, buffers freed) over a few loop turns.
TRIM_DELAY_SECONDS = 1.0


def trim() -> None:
    """Return free heap pages now (a few ms on a heap of tens of MB)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class _Deferred:
    """One trim pending per loop; a loop closed with one pending (tests) blocks no other."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def request(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is loop:
            return
        self.loop = loop
        loop.call_later(TRIM_DELAY_SECONDS, self._run)

    def _run(self) -> None:
        self.loop = None
        trim()


_deferred = _Deferred()


def trim_soon() -> None:
    """Trim once, shortly; calls while one is pending fold into it."""
    _deferred.request()
