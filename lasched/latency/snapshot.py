"""Latency snapshots: what the cache measured, kept across restarts.

A restarted scheduler would otherwise start blind: every pair unknown until
the agents report again, and the network coordinates back at the origin. A
snapshot keeps the measured pairs and the coordinates in one orjson file::

    {"version": 1, "savedAt": 1767225600.0,
     "pairs": [{"src": "node-a", "dst": "edge-1", "ewmaMs": 7.8, "p90Ms": 9.1,
                "loss": 0.0, "samples": 40, "source": "agent", "updatedAt": 1767225596.0}],
     "places": [{"place": "node-a", "vec": [0.4, ...], "height": 1.2, "error": 0.08,
                 "updates": 311, "updatedAt": 1767225596.0}]}

Times are wall-clock Unix seconds, so age survives the restart: a pair saved
40 s before a restart with a 30 s TTL comes back stale, never fresh. Pinned
pairs (from the static RTT file) are left out; the static file reloads them.

The write is atomic: the bytes go to ``<path>.tmp``, are fsynced, and the
temporary file is renamed over ``path``, so ``path`` is always a whole
snapshot, the old one or the new one. Cancelling ``save`` is safe for the
same reason (the temporary file is removed).

Errors: a missing file loads nothing; every other problem with the file
raises ``SnapshotError``, naming the path, the field and the value. Every
number must be finite and in range: RTTs within 0..60000 ms, loss within
0..1, coordinates and heights within
:data:`~lasched.latency.coordinates.MAX_COORDINATE_MS`. ``save`` lets
``OSError`` through; ``run_periodic`` logs it and carries on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import orjson

from lasched.latency.cache import LatencyCache, SavedPair, SavedPlace
from lasched.latency.coordinates import MAX_COORDINATE_MS
from lasched.model.strict import MAX_RTT_MS, shown_json

log = logging.getLogger(__name__)

VERSION = 1


class SnapshotError(Exception):
    """The snapshot file cannot be used; the message names the file and why."""


def encode(cache: LatencyCache, *, now: float) -> tuple[bytes, int]:
    """The snapshot of ``cache`` as bytes, and how many pairs it holds.

    ``now`` is the wall clock (Unix s).
    """
    pairs = [
        {
            "src": p.src,
            "dst": p.dst,
            "ewmaMs": p.ewma_ms,
            "p90Ms": p.p90_ms,
            "loss": p.loss,
            "samples": p.samples,
            "source": p.source,
            "updatedAt": now - p.age_s,
        }
        for p in cache.export_pairs()
    ]
    places = [
        {
            "place": p.place,
            "vec": p.vec,
            "height": p.height,
            "error": p.error,
            "updates": p.updates,
            "updatedAt": now - p.age_s,
        }
        for p in cache.export_places()
    ]
    doc = {"version": VERSION, "savedAt": now, "pairs": pairs, "places": places}
    return orjson.dumps(doc), len(pairs)


def decode(
    data: bytes, *, now: float, dimension: int, name: str = "<snapshot>"
) -> tuple[list[SavedPair], list[SavedPlace]]:
    """Pairs and places from snapshot bytes, aged to the wall clock ``now``."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise SnapshotError(f"latency snapshot {name} is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise SnapshotError(f"latency snapshot {name} must hold a JSON object")
    if doc.get("version") != VERSION:
        raise SnapshotError(
            f"latency snapshot {name} has version {doc.get('version')!r}; "
            f"this lasched reads version {VERSION}"
        )
    pairs = [
        SavedPair(
            src=_text(raw, "src", where),
            dst=_text(raw, "dst", where),
            ewma_ms=_number(raw, "ewmaMs", where, maximum=MAX_RTT_MS),
            p90_ms=(
                None
                if raw.get("p90Ms") is None
                else _number(raw, "p90Ms", where, maximum=MAX_RTT_MS)
            ),
            loss=_number(raw, "loss", where, maximum=1.0),
            samples=_count(raw, "samples", where),
            source=_text(raw, "source", where),
            age_s=max(now - _number(raw, "updatedAt", where), 0.0),
        )
        for where, raw in _objects(doc, "pairs", name)
    ]
    places = [
        SavedPlace(
            place=_text(raw, "place", where),
            vec=_vector(raw, "vec", where, dimension),
            height=_number(raw, "height", where, maximum=MAX_COORDINATE_MS),
            error=_number(raw, "error", where),
            updates=_count(raw, "updates", where),
            age_s=max(now - _number(raw, "updatedAt", where), 0.0),
        )
        for where, raw in _objects(doc, "places", name)
    ]
    return pairs, places


async def save(cache: LatencyCache, path: str | Path, *, now: float | None = None) -> int:
    """Write the snapshot atomically; returns how many pairs it holds.

    ``now`` is the wall clock (Unix s), ``time.time()`` by default. Raises
    ``OSError`` when the file cannot be written; ``path`` then still holds
    the previous snapshot, if there was one. Safe to cancel, for the same
    reason.
    """
    import aiofiles.os  # only with a snapshot file: not on every scheduler's start path

    target = Path(path)
    data, n = encode(cache, now=time.time() if now is None else now)
    tmp = target.with_name(target.name + ".tmp")
    try:
        async with aiofiles.open(tmp, "wb") as f:
            await f.write(data)
            await f.flush()
            await asyncio.to_thread(_fsync, f.fileno())
        await aiofiles.os.replace(tmp, target)
    except BaseException:
        # Synchronous on purpose: this also runs while being cancelled.
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    await asyncio.to_thread(_fsync_dir, target.parent)
    return n


async def load(cache: LatencyCache, path: str | Path, *, now: float) -> int:
    """Restore a snapshot into ``cache``; returns how many pairs were restored.

    ``now`` is the wall clock (Unix s). A missing file restores nothing. Call
    it at start-up, before agents report: the saved coordinates replace the
    cache's (see ``LatencyCache.import_places``), and a pair already in the
    cache (from the static file) is kept rather than overwritten. Safe to
    cancel: the cache is only changed after the whole file has been read and
    checked.
    """
    import aiofiles  # only with a snapshot file: not on every scheduler's start path

    p = Path(path)
    try:
        async with aiofiles.open(p, "rb") as f:
            data = await f.read()
    except FileNotFoundError:
        return 0
    except OSError as e:
        raise SnapshotError(f"cannot read latency snapshot {p}: {e.strerror}") from e
    pairs, places = decode(data, now=now, dimension=cache.coordinates.dimension, name=str(p))
    cache.import_places(places)
    return cache.import_pairs(pairs)


async def run_periodic(
    cache: LatencyCache,
    path: str | Path,
    interval_seconds: float,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Save every ``interval_seconds``, and once more when cancelled.

    Runs until cancelled (the way to stop it), then re-raises
    ``CancelledError`` after the last save. A failed write (``OSError``) is
    logged and retried next interval.
    """
    if not interval_seconds > 0:
        raise ValueError(f"interval_seconds must be positive, not {interval_seconds}")
    try:
        while True:
            await sleep(interval_seconds)
            await _save_logged(cache, path)
    except asyncio.CancelledError:
        await _save_logged(cache, path)
        raise


async def _save_logged(cache: LatencyCache, path: str | Path) -> None:
    try:
        n = await save(cache, path)
    except OSError as e:
        log.warning("cannot save latency snapshot %s: %s", path, e)
    else:
        log.debug("saved %d RTTs to latency snapshot %s", n, path)


def _fsync(fd: int) -> None:
    os.fsync(fd)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _objects(doc: dict[str, Any], key: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    items = doc.get(key, [])
    if not isinstance(items, list):
        raise SnapshotError(f"latency snapshot {name}: {key} must be a list")
    out = []
    for i, raw in enumerate(items):
        where = f"latency snapshot {name}: {key}[{i}]"
        if not isinstance(raw, dict):
            raise SnapshotError(f"{where} must be an object, not {shown_json(raw)}")
        out.append((where, raw))
    return out


def _text(raw: dict[str, Any], key: str, where: str) -> str:
    v = raw.get(key)
    if not isinstance(v, str) or not v:
        raise SnapshotError(f"{where}.{key} must be a non-empty string, not {shown_json(v)}")
    return v


def _number(raw: dict[str, Any], key: str, where: str, *, maximum: float = math.inf) -> float:
    v = raw.get(key)
    if isinstance(v, float) and not math.isfinite(v):
        raise SnapshotError(f"{where}.{key} must be finite, not {shown_json(v)}")
    # An integer beyond the largest float would overflow float().
    if (
        isinstance(v, bool)
        or not isinstance(v, int | float)
        or not 0 <= v <= min(maximum, sys.float_info.max)
    ):
        what = "a non-negative number" if maximum == math.inf else f"a number within 0..{maximum:g}"
        raise SnapshotError(f"{where}.{key} must be {what}, not {shown_json(v)}")
    return float(v)


def _count(raw: dict[str, Any], key: str, where: str) -> int:
    v = raw.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise SnapshotError(f"{where}.{key} must be a non-negative integer, not {shown_json(v)}")
    return v


def _vector(raw: dict[str, Any], key: str, where: str, dimension: int) -> tuple[float, ...]:
    v = raw.get(key)
    if (
        not isinstance(v, list)
        or len(v) != dimension
        or not all(
            # abs(x) <= bound also refuses inf and nan.
            isinstance(x, int | float) and not isinstance(x, bool) and abs(x) <= MAX_COORDINATE_MS
            for x in v
        )
    ):
        raise SnapshotError(
            f"{where}.{key} must be a list of {dimension} numbers within"
            f" ±{MAX_COORDINATE_MS:g}, not {shown_json(v)}"
        )
    return tuple(float(x) for x in v)
