"""Static RTT files, for air-gapped or pre-measured clusters.

JSON: ``{"edge-1": {"edge-2": 12.5, "cloud-1": 40}, ...}`` (source -> target -> ms).
CSV: one ``source,target,rtt_ms`` per line; a header line is allowed.
Every RTT is a finite number of milliseconds within 0..60000 (an ASCII
decimal when written as text), and every name is non-empty. Every problem is
reported as :class:`StaticFileError` with the file, the line or key, and the
value.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import orjson

from lasched.latency.cache import LatencyCache
from lasched.model.strict import MAX_RTT_MS, decimal, shown, shown_json


class StaticFileError(ValueError):
    """The file cannot be used; the message says where and why."""


def _ms(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise StaticFileError(
            f"{where}: RTT must be a number of milliseconds, not {shown_json(value)}"
        )
    if isinstance(value, str):
        ms = decimal(value, signed=True, exponent=True)
        if ms is None:
            raise StaticFileError(f"{where}: RTT {shown_json(value)} is not a number")
    elif isinstance(value, int):
        # Compared as an integer first: float() of a huge one would overflow.
        ms = float(min(max(value, -1), int(MAX_RTT_MS) + 1))
    else:
        ms = float(value)
    if not math.isfinite(ms):
        raise StaticFileError(f"{where}: RTT {shown_json(value)} is not a finite number")
    if not ms >= 0:
        raise StaticFileError(f"{where}: RTT {shown_json(value)} must not be negative")
    if ms > MAX_RTT_MS:
        raise StaticFileError(f"{where}: RTT {shown_json(value)} must be at most {MAX_RTT_MS:g} ms")
    return ms


def _shown(text: str) -> str:
    return shown(text, quote="")


def _name(value: str, where: str) -> str:
    if not value:
        raise StaticFileError(f"{where}: source and target must be non-empty names")
    return value


def parse(text: str, *, name: str = "<rtt file>") -> list[tuple[str, str, float]]:
    """(source, target, ms) triples from JSON or CSV text."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise StaticFileError(f"{name} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise StaticFileError(f"{name} must hold a JSON object")
        out = []
        for src, targets in data.items():
            if not isinstance(targets, dict):
                raise StaticFileError(f"{name}: {shown_json(src)} must map targets to RTTs")
            for dst, value in targets.items():
                where = f"{name}: {_shown(src)} -> {_shown(dst)}"
                out.append((_name(src, where), _name(dst, where), _ms(value, where)))
        return out
    out = []
    reader = csv.reader(io.StringIO(text))
    try:
        for row in reader:
            lineno = reader.line_num
            if not row or row[0].startswith("#"):
                continue
            if lineno == 1 and row[-1].strip().lower().startswith("rtt"):
                continue  # header
            if len(row) != 3:
                raise StaticFileError(
                    f"{name}:{lineno}: want source,target,rtt_ms, got {shown_json(row)}"
                )
            src, dst, value = (c.strip() for c in row)
            where = f"{name}:{lineno}"
            out.append((_name(src, where), _name(dst, where), _ms(value, where)))
    except csv.Error as e:
        # A NUL byte, or a field longer than csv.field_size_limit().
        raise StaticFileError(f"{name}:{reader.line_num}: {e}") from None
    return out


def load(path: str | Path, cache: LatencyCache) -> int:
    """Pin every pair of the file into ``cache``; returns how many."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise StaticFileError(f"cannot read RTT file {p}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise StaticFileError(f"RTT file {p} is not UTF-8 text: {e.reason}") from None
    triples = parse(text, name=str(p))
    for src, dst, ms in triples:
        cache.observe(src, dst, median_ms=ms, source="static", pinned=True)
    return len(triples)
