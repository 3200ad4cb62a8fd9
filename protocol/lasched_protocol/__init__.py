"""The wire format between lasched and its node agents, version 1.

Sans-I/O: this module only turns messages into bytes and bytes into
messages; it never touches a socket, so both ends (and the tests) share one
definition of the format. It lives in its own tiny distribution because the
scheduler must not depend on the agent (whose ICMP library is GPL-2) and the
agent must not depend on the scheduler (kubernetes_asyncio and more).

Every frame is one binary WebSocket message holding an orjson-encoded object
``{"v": 1, "type": ..., "seq": n, ...}``. ``seq`` increases by one per message
and per sender, so a receiver can count what it missed. A frame that is too
large, not JSON, of an unknown version or type, or missing a field raises
:class:`ProtocolError`, whose message says which.

Every number is checked, so a decoded message holds only finite values in
range: RTT statistics within 0..:data:`MAX_RTT_MS` (or null), loss within
0..1, times within 0..:data:`MAX_TIME`, intervals within
0.001..:data:`MAX_INTERVAL_SECONDS`, counts and sequence numbers below their
maxima. A value outside raises :class:`ProtocolError` naming the field and
the value. ``decode`` never raises anything else, whatever the bytes.

**Growing within version 1.** ``v`` changes only for a change old peers
cannot survive. A new optional field is ignored by a decoder that does not
know it, so both ends add fields freely. A new message type is different: a
scheduler that does not know it closes the connection (1007). So an agent
sends an optional message only to a scheduler that asked for it, by naming
it in ``Targets.accepts``; an older scheduler sends no ``accepts`` and gets
none, and a newer scheduler serves older agents, which never send one.
:class:`Topology` (``accepts: ["topology"]``) is the first such message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

VERSION = 1
MAX_FRAME_BYTES = 1 << 20
"""A receiver closes a connection that sends a larger frame."""

MAX_RTT_MS = 60_000.0
"""RTT statistics (min, median, p90, jitter) are within 0..60 s."""
MAX_TIME = 1e11
"""Unix seconds (the year 5138): a time beyond is not a clock reading."""
MAX_INTERVAL_SECONDS = 86_400.0
MAX_COUNT = 1_000_000
"""Probes per target per interval, and targets per round."""
MAX_SEQ = 2**63 - 1
MAX_TEXT_CHARS = 1024
_SHOWN_CHARS = 64
MAX_ACCEPTS = 16
"""Names in ``Targets.accepts``."""
MAX_ZONES = 64
"""NUMA zones in one :class:`Topology` (the kubelet's NUMA bitmask holds 64)."""
MAX_NUMA_ID = 1023
MAX_ZONE_RESOURCES = 64
MAX_RESOURCE_NAME_CHARS = 253
"""A Kubernetes resource name's longest (a qualified name with its prefix)."""
MAX_AMOUNT = 2**53
"""Amounts in a :class:`Topology` are integers JSON carries exactly (8 PiB of memory)."""

ACCEPTS_TOPOLOGY = "topology"
"""In ``Targets.accepts``: the scheduler takes :class:`Topology` messages."""

Method = Literal["icmp", "tcp"]
TargetKind = Literal["node", "endpoint"]
TopologyPolicy = Literal["none", "best-effort", "restricted", "single-numa-node"]
TopologyScope = Literal["container", "pod"]
_POLICIES: tuple[TopologyPolicy, ...] = ("none", "best-effort", "restricted", "single-numa-node")
_SCOPES: tuple[TopologyScope, ...] = ("container", "pod")


class ProtocolError(ValueError):
    """A frame that does not follow this protocol; the message says why."""


@dataclass(frozen=True, slots=True)
class Hello:
    """Agent -> scheduler, first message: who the agent says it is."""

    seq: int
    node: str
    agent_version: str
    methods: tuple[Method, ...]
    targets_per_round: int | None = None
    """At most this many targets probed per interval, in rotation (None: all of them).

    Tells the scheduler how often each pair is refreshed, so a pair that is
    measured every ``ceil(n / targets_per_round)`` intervals is not judged
    stale in between.
    """


@dataclass(frozen=True, slots=True)
class Target:
    id: str  # a node name or an endpoint name
    address: str
    kind: TargetKind
    port: int | None = None  # for TCP-connect probing


@dataclass(frozen=True, slots=True)
class Targets:
    """Scheduler -> agent: whom to probe, and how often."""

    seq: int
    targets: tuple[Target, ...]
    interval_seconds: float
    accepts: tuple[str, ...] = ()
    """Optional agent messages this scheduler takes (:data:`ACCEPTS_TOPOLOGY`). An agent
    ignores names it does not know; an older scheduler sends none."""


@dataclass(frozen=True, slots=True)
class Sample:
    """RTT statistics to one target over one interval, in milliseconds."""

    target: str
    method: Method
    count: int
    loss: float  # 0..1
    min_ms: float | None
    median_ms: float | None
    p90_ms: float | None
    jitter_ms: float | None


@dataclass(frozen=True, slots=True)
class Samples:
    """Agent -> scheduler: one batch of samples, measured at ``time`` (Unix s)."""

    seq: int
    time: float
    samples: tuple[Sample, ...]


@dataclass(frozen=True, slots=True)
class Heartbeat:
    seq: int
    time: float


@dataclass(frozen=True, slots=True)
class NumaZone:
    """One NUMA node of the agent's machine and what it holds."""

    id: int
    resources: tuple[tuple[str, int], ...]
    """(resource, amount) sorted by name: ``cpu`` in CPUs, ``memory`` in bytes, devices
    (``nvidia.com/gpu``) in units."""


@dataclass(frozen=True, slots=True)
class Topology:
    """Agent -> scheduler, only to one whose ``Targets.accepts`` names ``topology``: the
    node's NUMA zones as the machine has them, and the kubelet's Topology Manager
    policy and scope as the agent was told them. Sent again whenever it changes."""

    seq: int
    time: float
    zones: tuple[NumaZone, ...]
    policy: TopologyPolicy = "none"
    scope: TopologyScope = "container"


Message = Hello | Targets | Samples | Heartbeat | Topology

_TYPES: dict[type[Any], str] = {
    Hello: "hello",
    Targets: "targets",
    Samples: "samples",
    Heartbeat: "heartbeat",
    Topology: "topology",
}


def encode(msg: Message) -> bytes:
    """One frame's bytes."""
    body: dict[str, Any] = {"v": VERSION, "type": _TYPES[type(msg)]}
    if isinstance(msg, Hello):
        body |= {
            "seq": msg.seq,
            "node": msg.node,
            "agentVersion": msg.agent_version,
            "methods": list(msg.methods),
        }
        if msg.targets_per_round is not None:
            body["targetsPerRound"] = msg.targets_per_round
    elif isinstance(msg, Targets):
        body |= {
            "seq": msg.seq,
            "intervalSeconds": msg.interval_seconds,
            "targets": [
                {"id": t.id, "address": t.address, "kind": t.kind, "port": t.port}
                for t in msg.targets
            ],
        }
        if msg.accepts:
            body["accepts"] = list(msg.accepts)
    elif isinstance(msg, Samples):
        body |= {
            "seq": msg.seq,
            "time": msg.time,
            "samples": [
                {
                    "target": s.target,
                    "method": s.method,
                    "count": s.count,
                    "loss": s.loss,
                    "min": s.min_ms,
                    "median": s.median_ms,
                    "p90": s.p90_ms,
                    "jitter": s.jitter_ms,
                }
                for s in msg.samples
            ],
        }
    elif isinstance(msg, Topology):
        body |= {
            "seq": msg.seq,
            "time": msg.time,
            "policy": msg.policy,
            "scope": msg.scope,
            "zones": [{"id": z.id, "resources": dict(z.resources)} for z in msg.zones],
        }
    else:
        body |= {"seq": msg.seq, "time": msg.time}
    return orjson.dumps(body)


def decode(frame: bytes | str) -> Message:
    """Parse and validate one frame."""
    size = len(frame)
    if isinstance(frame, str) and size <= MAX_FRAME_BYTES:
        size = len(frame.encode("utf-8", "surrogatepass"))  # the bytes it takes on the wire
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        body = orjson.loads(frame)
    except orjson.JSONDecodeError as e:
        raise ProtocolError(f"frame is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise ProtocolError("frame is not a JSON object")
    if body.get("v") != VERSION:
        raise ProtocolError(
            f"unsupported protocol version {_shown(body.get('v'))} (want {VERSION})"
        )
    kind = body.get("type")
    seq = _int(body, "seq", minimum=0, maximum=MAX_SEQ)
    if kind == "hello":
        methods = _list(body, "methods")
        for m in methods:
            if m not in ("icmp", "tcp"):
                raise ProtocolError(f"hello.methods has unknown method {_shown(m)}")
        per_round = None
        if body.get("targetsPerRound") is not None:
            per_round = _int(body, "targetsPerRound", minimum=1, maximum=MAX_COUNT)
        return Hello(
            seq=seq,
            node=_str(body, "node"),
            agent_version=_str(body, "agentVersion"),
            methods=tuple(methods),
            targets_per_round=per_round,
        )
    if kind == "targets":
        return Targets(
            seq=seq,
            interval_seconds=_num(
                body, "intervalSeconds", minimum=0.001, maximum=MAX_INTERVAL_SECONDS
            ),
            targets=tuple(_target(t) for t in _list(body, "targets")),
            accepts=_accepts(body),
        )
    if kind == "samples":
        return Samples(
            seq=seq,
            time=_num(body, "time", minimum=0, maximum=MAX_TIME),
            samples=tuple(_sample(s) for s in _list(body, "samples")),
        )
    if kind == "heartbeat":
        return Heartbeat(seq=seq, time=_num(body, "time", minimum=0, maximum=MAX_TIME))
    if kind == "topology":
        return _topology(body, seq)
    raise ProtocolError(f"unknown message type {_shown(kind)}")


def _target(raw: Any) -> Target:
    if not isinstance(raw, dict):
        raise ProtocolError("targets[] entries must be objects")
    kind = raw.get("kind")
    if kind not in ("node", "endpoint"):
        raise ProtocolError(f"target.kind must be 'node' or 'endpoint', not {_shown(kind)}")
    port = raw.get("port")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536
    ):
        raise ProtocolError(f"target.port must be 1..65535, not {_shown(port)}")
    return Target(id=_str(raw, "id"), address=_str(raw, "address"), kind=kind, port=port)


def _accepts(body: dict[str, Any]) -> tuple[str, ...]:
    if body.get("accepts") is None:
        return ()
    names = _list(body, "accepts")
    if len(names) > MAX_ACCEPTS:
        raise ProtocolError(f"targets.accepts has {len(names)} names; at most {MAX_ACCEPTS}")
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= _SHOWN_CHARS:
            raise ProtocolError(f"targets.accepts has a name that is none: {_shown(name)}")
    return tuple(names)


def _topology(body: dict[str, Any], seq: int) -> Topology:
    policy = body.get("policy", "none")
    if policy not in _POLICIES:
        raise ProtocolError(
            f"topology.policy must be one of {', '.join(_POLICIES)}, not {_shown(policy)}"
        )
    scope = body.get("scope", "container")
    if scope not in _SCOPES:
        raise ProtocolError(f"topology.scope must be container or pod, not {_shown(scope)}")
    raw_zones = _list(body, "zones")
    if len(raw_zones) > MAX_ZONES:
        raise ProtocolError(f"topology.zones has {len(raw_zones)} zones; at most {MAX_ZONES}")
    zones = tuple(_zone(z) for z in raw_zones)
    if len({z.id for z in zones}) != len(zones):
        raise ProtocolError("topology.zones names a NUMA node twice")
    return Topology(
        seq=seq,
        time=_num(body, "time", minimum=0, maximum=MAX_TIME),
        zones=tuple(sorted(zones, key=lambda z: z.id)),
        policy=policy,
        scope=scope,
    )


def _zone(raw: Any) -> NumaZone:
    if not isinstance(raw, dict):
        raise ProtocolError("topology.zones[] entries must be objects")
    zone_id = _int(raw, "id", minimum=0, maximum=MAX_NUMA_ID)
    resources = raw.get("resources")
    if not isinstance(resources, dict):
        raise ProtocolError(f"zone {zone_id}: field 'resources' must be an object")
    if len(resources) > MAX_ZONE_RESOURCES:
        raise ProtocolError(
            f"zone {zone_id} has {len(resources)} resources; at most {MAX_ZONE_RESOURCES}"
        )
    for name in resources:
        if not name or len(name) > MAX_RESOURCE_NAME_CHARS:
            raise ProtocolError(f"zone {zone_id} has a resource name that is none: {_shown(name)}")
        _int(resources, name, minimum=0, maximum=MAX_AMOUNT)
    return NumaZone(id=zone_id, resources=tuple(sorted(resources.items())))


def _sample(raw: Any) -> Sample:
    if not isinstance(raw, dict):
        raise ProtocolError("samples[] entries must be objects")
    method = raw.get("method")
    if method not in ("icmp", "tcp"):
        raise ProtocolError(f"sample.method must be 'icmp' or 'tcp', not {_shown(method)}")
    return Sample(
        target=_str(raw, "target"),
        method=method,
        count=_int(raw, "count", minimum=0, maximum=MAX_COUNT),
        loss=_num(raw, "loss", minimum=0, maximum=1),
        min_ms=_opt_ms(raw, "min"),
        median_ms=_opt_ms(raw, "median"),
        p90_ms=_opt_ms(raw, "p90"),
        jitter_ms=_opt_ms(raw, "jitter"),
    )


def _shown(v: object) -> str:
    """A decoded value for a message, cut so that a huge one never makes a huge message.

    Strings and numbers as ``repr`` writes them, lists and objects as compact
    JSON: ``repr`` of a list nested a thousand deep raises RecursionError.
    """
    if isinstance(v, str):
        if len(v) <= _SHOWN_CHARS:
            return repr(v)
        return f"{v[:_SHOWN_CHARS]!r}… ({len(v)} characters)"
    if isinstance(v, list | dict):
        try:
            text = orjson.dumps(v).decode()
        except orjson.JSONEncodeError:
            return f"a {type(v).__name__} nested too deeply to show"
    else:
        text = repr(v)
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}… ({len(text)} characters)"


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v:
        raise ProtocolError(f"field {key!r} must be a non-empty string, not {_shown(v)}")
    if len(v) > MAX_TEXT_CHARS:
        raise ProtocolError(
            f"field {key!r} is too long ({len(v)} characters; at most {MAX_TEXT_CHARS})"
        )
    return v


def _int(d: dict[str, Any], key: str, *, minimum: int, maximum: int) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
        raise ProtocolError(
            f"field {key!r} must be an integer within {minimum}..{maximum}, not {_shown(v)}"
        )
    return v


def _num(d: dict[str, Any], key: str, *, minimum: float, maximum: float) -> float:
    v = d.get(key)
    # The range check also refuses nan and infinities (every comparison with nan is false).
    if isinstance(v, bool) or not isinstance(v, int | float) or not minimum <= v <= maximum:
        raise ProtocolError(
            f"field {key!r} must be a number within {minimum:g}..{maximum:g}, not {_shown(v)}"
        )
    return float(v)


def _opt_ms(d: dict[str, Any], key: str) -> float | None:
    if d.get(key) is None:
        return None
    return _num(d, key, minimum=0, maximum=MAX_RTT_MS)


def _list(d: dict[str, Any], key: str) -> list[Any]:
    v = d.get(key)
    if not isinstance(v, list):
        raise ProtocolError(f"field {key!r} must be a list, not {type(v).__name__}")
    return v
