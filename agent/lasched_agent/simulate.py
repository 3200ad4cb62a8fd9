"""``--simulate-rtt-file``: answer probes from a file of RTTs instead of the network.

For demos and tests whose nodes have no network between them (kwok's fake
nodes): everything else is the real agent, its rounds and statistics, its
token, the WebSocket and reconnecting. The file has the format of lasched's
``latency.staticFile`` in JSON, source -> target -> ms::

    {"edge-1": {"edge-2": 12.5, "users-eu": 30.0}, "edge-2": {"edge-1": 12.9}}

The agent answers from its own node's row, by target id. A target missing
from the row, or mapped to ``null``, loses every probe. The file is read
again when its modification time changes (checked at most twice a second),
so a route can be changed while agents run; a file that cannot be read then
keeps the previous table, with a warning.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import orjson

from lasched_agent.config import ConfigError
from lasched_agent.prober import ProbeMethod
from lasched_protocol import Method, Target

log = logging.getLogger(__name__)

FLAG = "--simulate-rtt-file"
RECHECK_SECONDS = 0.5


def load_row(path: Path, node: str) -> dict[str, float | None]:
    """``node``'s row of the file; :class:`ConfigError` names the flag and what is wrong."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as e:
        raise ConfigError(f"{FLAG} {path}: cannot read it ({e.strerror})") from None
    except orjson.JSONDecodeError as e:
        raise ConfigError(f"{FLAG} {path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{FLAG} {path}: must map each source node to its targets' RTTs")
    row = data.get(node, {})
    if not isinstance(row, dict):
        raise ConfigError(f"{FLAG} {path}: {node!r} must map targets to RTTs in ms")
    out: dict[str, float | None] = {}
    for target, ms in row.items():
        if ms is None:
            out[target] = None
            continue
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
            raise ConfigError(f"{FLAG} {path}: {node} -> {target} must be ms or null, not {ms!r}")
        if ms < 0:
            raise ConfigError(f"{FLAG} {path}: {node} -> {target} must not be negative ({ms})")
        out[target] = float(ms)
    return out


def method(path: Path, node: str, *, name: Method = "icmp") -> ProbeMethod:
    """A probe that answers from ``path`` (see the module docstring); reads it once now."""
    table = load_row(path, node)
    if not table:
        log.warning("%s %s has no RTTs from node %s: every probe will be lost", FLAG, path, node)
    state = {"mtime": path.stat().st_mtime_ns, "checked": time.monotonic()}

    def refresh() -> None:
        now = time.monotonic()
        if now - state["checked"] < RECHECK_SECONDS:
            return
        state["checked"] = now
        try:
            mtime = path.stat().st_mtime_ns
            if mtime == state["mtime"]:
                return
            fresh = load_row(path, node)
        except (OSError, ConfigError) as e:
            log.warning("keeping the previous RTT table: %s", e)
            return
        state["mtime"] = mtime
        table.clear()
        table.update(fresh)
        log.info("RTT table reloaded from %s targets=%d", path, len(table))

    fixed = ProbeMethod.fixed(table, name=name)

    async def probe(target: Target) -> float:
        refresh()
        return await fixed.probe(target)

    log.info("probing simulated from %s targets=%d", path, len(table))
    return ProbeMethod(name=name, probe=probe, timeout=fixed.timeout)
