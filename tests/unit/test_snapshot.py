"""Latency snapshots: atomic saves, restores that keep age, clear errors, the periodic saver."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import orjson
import pytest

from lasched.latency import snapshot
from lasched.latency.cache import LatencyCache
from lasched.latency.coordinates import Coordinates


class Clock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def new_cache(clock: Clock) -> LatencyCache:
    return LatencyCache(ttl_seconds=30, clock=clock, coordinates=Coordinates(min_updates=1))


def measured_cache() -> LatencyCache:
    """a -> b measured at t=0, a -> c at t=15, a pinned static a -> s; now t=20."""
    clock = Clock()
    cache = new_cache(clock)
    cache.observe("a", "b", median_ms=10, p90_ms=12, loss=0.1, samples=5)
    cache.observe("a", "b", median_ms=20, p90_ms=25, loss=0.0, samples=5)
    cache.observe("a", "s", median_ms=3, source="static", pinned=True)
    clock.t = 15
    cache.observe("a", "c", median_ms=7)
    clock.t = 20
    return cache


def positions(cache: LatencyCache) -> list[tuple[str, tuple[float, ...], float, float, int]]:
    return [(p, c.vec, c.height, c.error, c.updates) for p, c in cache.coordinates.items()]


async def test_round_trip_keeps_values_and_age(tmp_path: Path) -> None:
    """Loaded 10 s after saving, a 20 s old pair is 30 s old and a 5 s old one 15 s."""
    path = tmp_path / "latency.json"
    cache = measured_cache()
    assert await snapshot.save(cache, path, now=1_000.0) == 2

    restored = new_cache(Clock(t=7_777.0))  # another process: another monotonic origin
    assert await snapshot.load(restored, path, now=1_010.0) == 2

    ab = restored.get("a", "b")
    assert ab is not None
    assert (ab.ms, ab.p90_ms, ab.loss, ab.source) == (13.0, 25.0, 0.0, "agent")
    assert ab.age_s == pytest.approx(30.0)
    assert not ab.stale
    ac = restored.get("a", "c")
    assert ac is not None
    assert ac.age_s == pytest.approx(15.0)
    assert [p.samples for p in restored.export_pairs()] == [10, 1]
    assert restored.get("a", "s") is None  # pinned: the static file reloads it
    assert positions(restored) == positions(cache)
    before, after = cache.lookup("b", "c"), restored.lookup("b", "c")
    assert before is not None and after is not None
    assert after.source == "estimate"
    assert (after.ms, after.error_ms) == (before.ms, before.error_ms)
    assert after.age_s == pytest.approx(before.age_s + 10)


async def test_a_pair_older_than_the_ttl_loads_stale(tmp_path: Path) -> None:
    """Saved 20 s old, loaded 20 s later with a 30 s TTL: stale, not fresh."""
    path = tmp_path / "latency.json"
    await snapshot.save(measured_cache(), path, now=1_000.0)
    restored = new_cache(Clock())
    await snapshot.load(restored, path, now=1_020.0)
    ab = restored.get("a", "b")
    assert ab is not None
    assert ab.age_s == pytest.approx(40.0)
    assert ab.stale


async def test_load_keeps_pairs_already_in_the_cache(tmp_path: Path) -> None:
    """A pair present before loading (the static file's) wins over the snapshot's."""
    path = tmp_path / "latency.json"
    await snapshot.save(measured_cache(), path, now=1_000.0)
    restored = new_cache(Clock())
    restored.observe("a", "b", median_ms=99, source="static", pinned=True)
    assert await snapshot.load(restored, path, now=1_000.0) == 1
    ab = restored.get("a", "b")
    assert ab is not None
    assert (ab.ms, ab.source) == (99.0, "static")
    # The pinned pair was folded into the restored coordinates once more.
    restored_a = restored.coordinates.get("a")
    saved_a = measured_cache().coordinates.get("a")
    assert restored_a is not None and saved_a is not None
    assert restored_a.updates == saved_a.updates + 1


async def test_missing_file_loads_nothing(tmp_path: Path) -> None:
    """No snapshot yet is not an error."""
    assert await snapshot.load(new_cache(Clock()), tmp_path / "none.json", now=0.0) == 0


def valid_doc() -> dict[str, object]:
    return orjson.loads(snapshot.encode(measured_cache(), now=1_000.0)[0])  # type: ignore[no-any-return]


def corrupt(key: str, value: object) -> bytes:
    doc = valid_doc()
    section, _, field = key.partition(".")
    if field:
        doc[section][0][field] = value  # type: ignore[index]
    else:
        doc[section] = value
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[]", "must hold a JSON object"),
        (corrupt("version", 2), "has version 2; this lasched reads version 1"),
        (corrupt("pairs", {}), "pairs must be a list"),
        (corrupt("pairs.ewmaMs", "fast"), "pairs[0].ewmaMs must be a number within 0..60000"),
        (corrupt("pairs.loss", 2), "pairs[0].loss must be a number within 0..1"),
        (corrupt("pairs.src", ""), "pairs[0].src must be a non-empty string"),
        (corrupt("pairs.samples", 1.5), "pairs[0].samples must be a non-negative integer"),
        (corrupt("places.vec", [1, 2]), "places[0].vec must be a list of 8 numbers"),
        (corrupt("pairs.ewmaMs", 1e308), "pairs[0].ewmaMs must be a number within 0..60000"),
        (corrupt("pairs.p90Ms", 60_001), "pairs[0].p90Ms must be a number within 0..60000"),
        (corrupt("pairs.updatedAt", 2**64 - 1), None),
        (corrupt("places.vec", [1e300] * 8), "places[0].vec must be a list of 8 numbers within"),
        (corrupt("places.height", 1e300), "places[0].height must be a number within 0..600000"),
        (corrupt("places.vec", [[[]]] * 8), "not [[[]],[[]],[[]],"),
        (
            b'{"version": 1, "pairs": [' + b"[" * 1000 + b"]" * 1000 + b"]}",
            "pairs[0] must be an object, not a list nested too deeply to show",
        ),
    ],
    ids=["json", "not-object", "version", "pairs", "ewma", "loss", "src", "samples", "vec",
         "ewma-huge", "p90-over-a-minute", "updated-huge-int", "vec-huge", "height-huge",
         "vec-nested", "nested-too-deep"],
)  # fmt: skip
async def test_corrupt_file_names_the_path_and_the_problem(
    tmp_path: Path, data: bytes, message: str | None
) -> None:
    """Every problem raises SnapshotError with the file and what was wrong; nothing is loaded.

    A time far in the future is no problem: the pair is simply 0 s old.
    """
    path = tmp_path / "latency.json"
    path.write_bytes(data)
    cache = new_cache(Clock())
    if message is None:
        assert await snapshot.load(cache, path, now=1_000.0) == 2
        return
    with pytest.raises(snapshot.SnapshotError) as err:
        await snapshot.load(cache, path, now=1_000.0)
    assert str(path) in str(err.value)
    assert message in str(err.value)
    assert len(str(err.value)) < len(str(path)) + 250
    assert len(cache) == 0


async def test_unreadable_file_is_a_snapshot_error(tmp_path: Path) -> None:
    """A path that cannot be read (here a directory) names itself."""
    with pytest.raises(snapshot.SnapshotError, match=f"cannot read latency snapshot {tmp_path}"):
        await snapshot.load(new_cache(Clock()), tmp_path, now=0.0)


async def test_failed_write_leaves_the_old_snapshot_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the bytes are written but before the rename keeps the old file."""
    path = tmp_path / "latency.json"
    await snapshot.save(measured_cache(), path, now=1_000.0)
    old = path.read_bytes()

    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshot, "_fsync", fail)
    bigger = measured_cache()
    bigger.observe("x", "y", median_ms=1)
    with pytest.raises(OSError, match="No space left"):
        await snapshot.save(bigger, path, now=2_000.0)
    assert path.read_bytes() == old
    assert files_in(tmp_path) == [path.name]  # the temporary file is gone


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_periodic_saver_saves_each_interval_and_once_more_on_cancel(
    tmp_path: Path,
) -> None:
    """Saves after every interval; cancelled, it saves a last time and re-raises."""
    path = tmp_path / "latency.json"
    cache = new_cache(Clock())
    cache.observe("a", "b", median_ms=5)
    slept: list[float] = []
    parked = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            parked.set()
            await asyncio.Event().wait()  # the third interval never ends

    task = asyncio.create_task(snapshot.run_periodic(cache, path, 60, sleep=sleep))
    await parked.wait()
    assert await snapshot.load(new_cache(Clock()), path, now=0.0) == 1
    cache.observe("a", "c", median_ms=6)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slept == [60, 60, 60]
    assert await snapshot.load(new_cache(Clock()), path, now=0.0) == 2


async def test_periodic_saver_logs_write_failures_and_keeps_going(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An OSError is logged, not fatal: the next interval tries again."""
    path = tmp_path / "missing-dir" / "latency.json"
    slept: list[float] = []
    parked = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            parked.set()
            await asyncio.Event().wait()

    with caplog.at_level(logging.WARNING, logger="lasched.latency.snapshot"):
        task = asyncio.create_task(snapshot.run_periodic(new_cache(Clock()), path, 5, sleep=sleep))
        await parked.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    failures = [r for r in caplog.records if "cannot save latency snapshot" in r.getMessage()]
    assert len(failures) == 3  # two intervals and the final save
    assert str(path) in failures[0].getMessage()


async def test_periodic_saver_refuses_a_non_positive_interval(tmp_path: Path) -> None:
    """interval_seconds is named when it is wrong."""
    with pytest.raises(ValueError, match="interval_seconds must be positive"):
        await snapshot.run_periodic(new_cache(Clock()), tmp_path / "x.json", 0)
