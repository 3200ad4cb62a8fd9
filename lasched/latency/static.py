"""Static RTT files, for air-gapped or pre-measured clusters.

JSON: ``{"edge-1": {"edge-2": 12.5, "cloud-1": 40}, ...}`` (source -> target -> ms).
CSV: one ``source,target,rtt_ms`` per line; a header line is allowed.
Every problem is reported with the file, the line or key, and the value.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson

from lasched.latency.cache import LatencyCache


class StaticFileError(ValueError):
    """The file cannot be used; the message says where and why."""


def _ms(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise StaticFileError(f"{where}: RTT must be a number of milliseconds, not {value!r}")
    try:
        ms = float(value)
    except ValueError:
        raise StaticFileError(f"{where}: RTT {value!r} is not a number") from None
    if not ms >= 0:
        raise StaticFileError(f"{where}: RTT {value!r} must not be negative")
    return ms


def parse(text: str, *, name: str = "<rtt file>") -> list[tuple[str, str, float]]:
    """(source, target, ms) triples from JSON or CSV text."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise StaticFileError(f"{name} is not valid JSON: {e}") from None
        out = []
        for src, targets in data.items():
            if not isinstance(targets, dict):
                raise StaticFileError(f"{name}: {src!r} must map targets to RTTs")
            for dst, value in targets.items():
                out.append((src, dst, _ms(value, f"{name}: {src} -> {dst}")))
        return out
    out = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or row[0].startswith("#"):
            continue
        if lineno == 1 and row[-1].strip().lower().startswith("rtt"):
            continue  # header
        if len(row) != 3:
            raise StaticFileError(f"{name}:{lineno}: want source,target,rtt_ms, got {row!r}")
        src, dst, value = (c.strip() for c in row)
        out.append((src, dst, _ms(value, f"{name}:{lineno}")))
    return out


def load(path: str | Path, cache: LatencyCache) -> int:
    """Pin every pair of the file into ``cache``; returns how many."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise StaticFileError(f"cannot read RTT file {p}: {e.strerror}") from e
    triples = parse(text, name=str(p))
    for src, dst, ms in triples:
        cache.observe(src, dst, median_ms=ms, source="static", pinned=True)
    return len(triples)
