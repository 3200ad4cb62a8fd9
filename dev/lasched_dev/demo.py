"""The demo: an edge cluster, live RTTs, and lasched placing a small story's workloads.

Everything is real but the network: etcd, kube-apiserver,
kube-controller-manager and kwok on 127.0.0.1, lasched talking HTTPS to them,
and one **lasched-agent process** per node streaming RTTs over the agent
protocol with a ServiceAccount token bound to a pod on its node (checked with
a TokenReview). kwok's nodes have no network between them, so each agent
answers its probes from a matrix derived from the sites' geography
(``lasched-agent --simulate-rtt-file``).

The story creates what users write: Deployments for the services, a
StatefulSet for the database and a Job for the gang; their controllers create
the pods, so pods have generated names and the story finds a role's pods by
the ``demo.lasched.io/role`` label on every pod template. In six scenes, each
narrated as it happens:

1. **Near its users**: ``lasched.io/max-rtt`` to a user endpoint, and the
   earlier edge scheduler's ``delay_<node>`` label.
2. **Near its database**: ``lasched.io/peer-selector`` + ``peer-max-rtt``;
   the service is created first and waits for its database.
3. **A gang** of four that waits while the Job runs three members, then
   binds all at once when the Job is scaled up to four.
4. **Preemption**: a high-priority pod near the users evicts a low one, whose
   ReplicaSet replaces it with a pod that has nowhere to go (the real cost).
5. **A limit no node meets**, and ``lasched explain`` saying why, per node.
6. **A route degrades** under a running service: the demo rewrites what one
   agent measures (the RTT file it answers from), and latency remediation
   evicts the pod once the limit has been broken for its grace period; the
   Deployment's replacement binds on a node within the limit.

It ends with a placement table (one row per pod, with the RTT that decided
it, from its ``Scheduled`` event), a topology picture and an RTT heatmap
(PNG), and exits non-zero if any outcome is not the story's, so CI can run it
as a check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lasched import app, cli_explain, settings
from lasched.kube.client import ApiError, KubeClient
from lasched.model.pod import parse_time
from lasched_dev.devcluster import nodes
from lasched_dev.devcluster.agents import agent_token
from lasched_dev.devcluster.cluster import DevCluster, ensure_namespace
from lasched_dev.devcluster.processes import Child, spawn
from lasched_dev.devcluster.progress import reporter

log = logging.getLogger(__name__)

NAMESPACE = "demo"
CONTROL_PLANE = "etcd, kube-apiserver, kube-controller-manager and kwok"
ZONE = nodes.ZONE_LABEL
T = TypeVar("T")


# ---- the topology -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteSpec:
    name: str
    region: str
    lat: float
    lon: float
    count: int
    cpu: str = "4"
    memory: str = "8Gi"
    cloud: bool = False
    box: tuple[float, float] = (0.0, 0.0)  # where the picture draws it

    @property
    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(self.count)]


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    name: str
    address: str
    lat: float
    lon: float
    star: tuple[float, float] = (0.0, 0.0)


SITES = (
    SiteSpec("us-chicago", "us", 41.88, -87.63, 2, box=(0.0, 6.0)),
    SiteSpec("us-nyc", "us", 40.71, -74.01, 2, box=(4.0, 6.0)),
    SiteSpec("eu-paris", "eu", 48.86, 2.35, 3, box=(10.0, 6.0)),
    SiteSpec("eu-berlin", "eu", 52.52, 13.40, 2, box=(14.0, 6.0)),
    SiteSpec("cloud-fra", "cloud", 50.11, 8.68, 2, "16", "64Gi", cloud=True, box=(7.0, 10.6)),
)
ENDPOINTS = (
    EndpointSpec("users-nyc", "192.0.2.20", 40.71, -74.01, star=(5.6, 1.4)),
    EndpointSpec("users-berlin", "192.0.2.10", 52.52, 13.40, star=(15.6, 1.4)),
)
SITE_OF = {n: s for s in SITES for n in s.node_names}


def node_specs() -> list[nodes.NodeSpec]:
    return [
        nodes.NodeSpec(
            name=name,
            cpu=s.cpu,
            memory=s.memory,
            region=s.region,
            zone=s.name,
            labels={"kubernetes.io/role": "cloud"} if s.cloud else {},
        )
        for s in SITES
        for name in s.node_names
    ]


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371 * math.asin(math.sqrt(a))


def _wobble(a: str, b: str) -> float:
    """A fixed, pseudo-random factor in [0.95, 1.05] per ordered pair: routes differ."""
    return 0.95 + (zlib.crc32(f"{a}>{b}".encode()) % 1000) / 10_000


def rtt_ms(src: str, dst: str) -> float:
    """RTT between two nodes, or a node and an endpoint, from geography.

    Light in fibre covers about 200 km per ms one way, routes run about 1.4
    times the great-circle distance, each site adds 0.5 ms of access (a user
    endpoint 2.5 ms of last mile); within a site, 0.2 to 0.5 ms.
    """
    a = SITE_OF[src]
    if SITE_OF.get(dst) is a:
        return round(0.2 + 0.3 * (_wobble(src, dst) - 0.95) * 10, 2)
    ep = next((e for e in ENDPOINTS if e.name == dst), None)
    if ep is not None:
        lat, lon, access = ep.lat, ep.lon, 0.5 + 2.5
    else:
        b = SITE_OF[dst]
        lat, lon, access = b.lat, b.lon, 1.0
    km = _km(a.lat, a.lon, lat, lon)
    return round((2 * km / 200 * 1.4 + access) * _wobble(src, dst), 2)


def rtt_matrix() -> dict[str, dict[str, float]]:
    """What every node's agent measures: node -> (other nodes and endpoints) -> ms."""
    names = list(SITE_OF)
    targets = names + [e.name for e in ENDPOINTS]
    return {src: {dst: rtt_ms(src, dst) for dst in targets if dst != src} for src in names}


# ---- the story's workloads ----------------------------------------------------------------


SCENE_COLORS = {
    "near its users": "tab:blue",
    "near its database": "tab:purple",
    "gang": "tab:orange",
    "preemption": "tab:red",
    "a route degrades": "tab:green",
}

# On every pod template: pods have generated names, so the story finds a role's
# pods by this label, as a user finds a workload's pods by its selector.
ROLE_LABEL = "demo.lasched.io/role"
PART_OF = {"app.kubernetes.io/part-of": "lasched-demo"}
API_GROUPS = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1"}
GANG_SIZE = 4
# Remediation's grace period: short, so the scene is short; the cool-down is as
# long, so a pod is never too young to move once its grace period is over.
GRACE_SECONDS = 3.0
DEGRADED_MS = 40.0  # the route to the users, once it degrades


@dataclass(frozen=True, slots=True)
class Role:
    """One workload of the story, as a user would write it.

    Everything lasched reads (annotations, labels, ``schedulerName``) is on the
    pod template, since the pods, not the workload, are what it schedules.
    """

    name: str  # the workload's name and its pods' ROLE_LABEL
    kind: str  # Deployment, StatefulSet or Job
    scene: str
    wants: str  # what its pods ask for, in a few words
    replicas: int = 1  # a Job's parallelism
    completions: int | None = None  # Jobs only
    cpu: str = "250m"
    memory: str = "256Mi"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    expect_site: str | None = None

    @property
    def collection(self) -> str:
        return f"/apis/{API_GROUPS[self.kind]}/namespaces/{NAMESPACE}/{self.kind.lower()}s"

    def template(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "schedulerName": "lasched",
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": self.node_selector,
            "containers": [
                {
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": self.cpu, "memory": self.memory}},
                }
            ],
        }
        if self.kind == "Job":
            spec["restartPolicy"] = "Never"
        labels = PART_OF | {ROLE_LABEL: self.name}
        return {
            "metadata": {"labels": labels | self.labels, "annotations": self.annotations},
            "spec": spec,
        }

    def manifest(self) -> dict[str, Any]:
        spec: dict[str, Any]
        if self.kind == "Job":  # the job controller writes its own selector
            spec = {"parallelism": self.replicas, "completions": self.completions}
        else:
            spec = {"replicas": self.replicas, "selector": {"matchLabels": {ROLE_LABEL: self.name}}}
        if self.kind == "StatefulSet":
            spec["serviceName"] = self.name
        return {
            "apiVersion": API_GROUPS[self.kind],
            "kind": self.kind,
            "metadata": {"name": self.name, "labels": dict(PART_OF)},
            "spec": spec | {"template": self.template()},
        }


ROLES = {
    r.name: r
    for r in (
        Role("frontend", "Deployment", "near its users", "max-rtt users-berlin=8ms, priority 100",
             annotations={"lasched.io/max-rtt": "users-berlin=8ms", "priority": "100"},
             expect_site="eu-berlin"),
        Role("edge-cache", "Deployment", "near its users", 'label delay_eu-paris-0: "3"',
             labels={"delay_eu-paris-0": "3"}, expect_site="eu-paris"),
        Role("api", "Deployment", "near its database", "within 5 ms of app=db",
             annotations={"lasched.io/peer-selector": "app=db", "lasched.io/peer-max-rtt": "5ms"},
             expect_site="us-nyc"),
        Role("db", "StatefulSet", "near its database", "nodeSelector zone=us-nyc",
             labels={"app": "db"}, node_selector={ZONE: "us-nyc"}, expect_site="us-nyc"),
        # Parallelism 3 first: the gang of 4 waits until the job is scaled up.
        Role("train", "Job", "gang", f"gang train, min-available {GANG_SIZE}, 6 cpu",
             replicas=3, completions=GANG_SIZE, cpu="6", memory="8Gi",
             labels={"lasched.io/pod-group": "train",
                     "lasched.io/min-available": str(GANG_SIZE)},
             expect_site="cloud-fra"),
        # Priority 10 is the lowest of any pod that can run in eu-berlin, so the
        # replacement of a preempted replica has no one to preempt in turn.
        Role("batch-low", "Deployment", "preemption", "priority 10, 3 cpu in eu-berlin",
             replicas=2, cpu="3", annotations={"priority": "10"},
             node_selector={ZONE: "eu-berlin"}, expect_site="eu-berlin"),
        Role("checkout", "Deployment", "preemption",
             "max-rtt users-berlin=8ms, priority 1000, 2 cpu", cpu="2",
             annotations={"lasched.io/max-rtt": "users-berlin=8ms", "priority": "1000"},
             expect_site="eu-berlin"),
        Role("too-far", "Deployment", "a limit no node meets", "max-rtt users-berlin=2ms",
             annotations={"lasched.io/max-rtt": "users-berlin=2ms"}),
        Role("orders", "Deployment", "a route degrades", "max-rtt users-nyc=8ms",
             annotations={"lasched.io/max-rtt": "users-nyc=8ms"}, expect_site="us-nyc"),
    )
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class LivePod:
    """A pod of the story as the apiserver lists it."""

    name: str
    role: str
    node: str  # "" while pending
    created: str  # creationTimestamp (RFC 3339, so it sorts as text)
    deleting: bool
    phase: str

    @classmethod
    def of(cls, pod: dict[str, Any]) -> LivePod:
        meta = pod["metadata"]
        return cls(
            name=meta["name"],
            role=meta.get("labels", {}).get(ROLE_LABEL, ""),
            node=pod["spec"].get("nodeName", ""),
            created=meta.get("creationTimestamp", ""),
            deleting=bool(meta.get("deletionTimestamp")),
            phase=(pod.get("status") or {}).get("phase", ""),
        )


@dataclass(frozen=True, slots=True)
class Victim:
    """A pod deleted by the story's scheduler: preempted, or moved by remediation."""

    pod: LivePod  # as it was before it was deleted
    note: str  # the note of its Preempted or LatencyRemediated event


# ---- running it -----------------------------------------------------------------


class StoryError(Exception):
    """A scene did not go as the story says; the message says what happened instead."""


class Interrupted(Exception):
    """lasched stopped before the story ended (Ctrl-C)."""


@dataclass(slots=True)
class Outcome:
    check: str
    ok: bool
    detail: str = ""


class Demo:
    """One run: the cluster's client, the scheduler's URL, and what was seen."""

    def __init__(
        self,
        console: Console,
        kc: KubeClient,
        *,
        base: str,
        sched: asyncio.Task[None],
        started: float,
        matrix_file: Path,
    ) -> None:
        self.console = console
        self.kc = kc
        self.base = base
        self.sched = sched
        self.started = started  # the demo's start: times are printed from there
        self.matrix_file = matrix_file  # what the agents answer their probes from
        self.outcomes: list[Outcome] = []
        self.preempted: dict[str, Victim] = {}  # by the deleted pod's name
        self.remediated: dict[str, Victim] = {}  # by the evicted pod's name
        self.replacement = ""  # the pod that took a victim's place
        self.too_far = ""  # the pod of scene 5, for `lasched explain`
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Demo:
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    # ---- reading the cluster and the scheduler ----------------------------------------

    async def debug(self, path: str, **query: str) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(self.base + path, params=query) as resp:
            body: dict[str, Any] = orjson.loads(await resp.read())
            if resp.status != 200:
                raise StoryError(f"{path}: {resp.status} {body.get('error')}")
            return body

    async def explain(self, pod: str) -> dict[str, Any]:
        return await self.debug("/debug/explain", pod=f"{NAMESPACE}/{pod}")

    async def pods(self, role: str | None = None) -> list[LivePod]:
        """The story's pods (of one role), oldest first."""
        selector = f"{ROLE_LABEL}={role}" if role else ROLE_LABEL
        listing = await self.kc.get(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=selector)
        return sorted((LivePod.of(p) for p in listing["items"]), key=lambda p: (p.created, p.name))

    async def live(self, role: str) -> list[LivePod]:
        """A role's pods that are not being deleted."""
        return [p for p in await self.pods(role) if not p.deleting]

    async def events(self, pod: str | None, reason: str) -> list[dict[str, Any]]:
        selector = f"reason={reason}" + (f",regarding.name={pod}" if pod else "")
        listing = await self.kc.get(
            f"/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events", fieldSelector=selector
        )
        return sorted(listing["items"], key=lambda e: e.get("eventTime") or "")

    async def note(self, pod: str, reason: str) -> str:
        items = await self.events(pod, reason)
        return str(items[-1].get("note", "")) if items else ""

    def degrade(self, src: str, dst: str, ms: float) -> None:
        """From now on the agent on ``src`` measures ``ms`` to ``dst`` (it rereads the file
        when it changes; the rename makes sure it never reads half of it)."""
        matrix = rtt_matrix()
        matrix[src][dst] = ms
        tmp = self.matrix_file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(matrix))
        tmp.replace(self.matrix_file)

    async def create(self, *roles: str) -> None:
        for name in roles:
            role = ROLES[name]
            await self.kc.post(role.collection, role.manifest())

    async def until(
        self, what: str, check: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0
    ) -> T:
        """Poll ``check`` under a spinner until it returns a value; StoryError on timeout."""
        deadline = time.monotonic() + timeout
        with self.console.status(f"[dim]{what}"):
            while time.monotonic() < deadline:
                if self.sched.done():
                    self.sched.result()  # an error: raise it
                    raise Interrupted()
                value = await check()
                if value is not None and value is not False:
                    return value
                await asyncio.sleep(0.15)
        raise StoryError(f"{what}: not within {timeout:.0f} s")

    async def created(self, role: str, *, count: int = 1) -> list[LivePod]:
        """Wait for the role's controller to create ``count`` pods."""

        async def check() -> list[LivePod] | None:
            live = await self.live(role)
            return live if len(live) == count else None

        return await self.until(f"waiting for {role}'s {_pods(count)}", check)

    async def bound(self, role: str, *, count: int = 1, timeout: float = 20.0) -> list[LivePod]:
        """Wait for the role's ``count`` pods to exist and be bound."""

        async def check() -> list[LivePod] | None:
            live = await self.live(role)
            return live if len(live) == count and all(p.node for p in live) else None

        what = f"waiting for {role}'s {_pods(count)} to bind"
        return await self.until(what, check, timeout=timeout)

    # ---- telling it -------------------------------------------------------------------

    def elapsed(self) -> str:
        return f"[dim]{time.monotonic() - self.started:5.1f}s[/]"

    def say(self, text: str) -> None:
        self.console.print(f"{self.elapsed()}  {text}")

    def check(self, check: str, ok: bool, detail: str = "") -> None:
        self.outcomes.append(Outcome(check, ok, detail))
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        self.console.print(f"{self.elapsed()}  {mark} {check}" + (f": {detail}" if detail else ""))

    async def placed_line(self, pod: LivePod) -> str:
        why = await self.decided_by(pod.name)
        where = f"{pod.node} ({SITE_OF[pod.node].name})"
        return f"[bold]{pod.name}[/] → {where}" + (f": {why}" if why else "")

    async def decided_by(self, pod: str) -> str:
        """The RTTs in the pod's Scheduled event (what follows 'to <node>: ')."""
        note = await self.note(pod, "Scheduled")
        _, sep, why = note.partition(": ")
        return why if sep else ""


def _pods(count: int) -> str:
    return "pod" if count == 1 else f"{count} pods"


async def _scene_users(d: Demo) -> None:
    d.console.rule("[bold]1. Near its users", align="left")
    d.say('Deployments frontend (max-rtt users-berlin=8ms) and edge-cache (delay_eu-paris-0: "3")')
    await d.create("frontend", "edge-cache")
    for role in ("frontend", "edge-cache"):
        (pod,) = await d.bound(role)
        d.say(await d.placed_line(pod))
        want = ROLES[role].expect_site
        d.check(f"{role} in {want}", SITE_OF[pod.node].name == want)


async def _scene_database(d: Demo) -> None:
    d.console.rule("[bold]2. Near its database", align="left")
    d.say("Deployment api (within 5 ms of pods labelled app=db) is created before its database")
    await d.create("api")
    (api,) = await d.created("api")

    async def waiting() -> str | None:
        note = await d.note(api.name, "FailedScheduling")
        return note if "no pod matching app=db is placed yet" in note else None

    note = await d.until("api waits for its database", waiting)
    d.say(f"{api.name} waits: [yellow]{escape(note)}")
    d.check("api waited for db", True)
    d.say("StatefulSet db is created, pinned to us-nyc (nodeSelector)")
    await d.create("db")
    (db,) = await d.bound("db")
    (api,) = await d.bound("api")
    d.say(await d.placed_line(db))
    d.say(await d.placed_line(api))
    d.check("api in the database's site", SITE_OF[api.node] == SITE_OF[db.node])


async def _scene_gang(d: Demo) -> None:
    d.console.rule("[bold]3. A gang that waits, then binds all at once", align="left")
    train = ROLES["train"]
    d.say(f"Job train, parallelism {train.replicas} of {train.completions} completions: "
          f"pods of a gang with min-available {GANG_SIZE} (6 cpu each)")  # fmt: skip
    await d.create("train")
    first = await d.created("train", count=train.replicas)

    async def gated() -> dict[str, Any] | None:
        try:
            answer = await d.explain(first[0].name)
        except StoryError:
            return None  # not seen by the scheduler yet
        gang = answer.get("gang")
        return answer if gang and len(gang["members"]) == train.replicas else None

    answer = await d.until("the scheduler sees the three members", gated)
    await asyncio.sleep(1.5)
    early = [p.name for p in await d.live("train") if p.node]
    pe = answer["preEnqueue"]
    d.say(f"lasched explain {NAMESPACE}/{first[0].name}: [yellow]{escape(pe['plugin'] or '')}: "
          f"{escape(pe['reason'] or '')}")  # fmt: skip
    waiting = f"no member bound while {train.replicas} of {GANG_SIZE} exist"
    d.check(waiting, not early, ", ".join(early))
    scale_up = {"spec": {"parallelism": GANG_SIZE}}
    d.say("the user scales the job up: kubectl patch job train -p "
          f"'{orjson.dumps(scale_up).decode()}'")  # fmt: skip
    raised = time.monotonic()
    await d.kc.patch(f"{train.collection}/{train.name}", scale_up)
    members = await d.bound("train", count=GANG_SIZE)
    took = time.monotonic() - raised

    async def bind_times() -> list[float] | None:
        found = [await d.events(m.name, "Scheduled") for m in members]
        return [parse_time(e[-1].get("eventTime")) for e in found] if all(found) else None

    times = await d.until("the members' Scheduled events", bind_times)
    spread = max(times) - min(times)
    where = ", ".join(sorted({m.node for m in members}))
    d.say(f"all {GANG_SIZE} bound {took:.1f} s after the scale-up, within {spread:.2f} s, "
          f"on {where}")  # fmt: skip
    in_cloud = all(SITE_OF[m.node].name == "cloud-fra" for m in members)
    d.check("gang bound all at once in cloud-fra", in_cloud and spread < 2.0)


async def _scene_preemption(d: Demo) -> None:
    d.console.rule("[bold]4. Priority preemption", align="left")
    d.say("Deployment batch-low, 2 replicas (priority 10, 3 cpu each), fills eu-berlin's "
          "4-cpu nodes")  # fmt: skip
    await d.create("batch-low")
    before = {p.name: p for p in await d.bound("batch-low", count=2)}
    d.say("Deployment checkout (priority 1000, 2 cpu, max-rtt users-berlin=8ms) fits nowhere "
          "near Berlin")  # fmt: skip
    await d.create("checkout")
    (checkout,) = await d.bound("checkout", timeout=30)

    async def preempted() -> dict[str, str] | None:
        seen = {e["regarding"]["name"]: str(e.get("note", "")) for e in
                await d.events(None, "Preempted")}  # fmt: skip
        return seen or None

    notes = await d.until("the Preempted event", preempted)
    live = {p.name for p in await d.live("batch-low")}
    gone = sorted(n for n in before if n not in live)
    for name in sorted(notes.keys() | gone):
        note = notes.get(name, "")
        if name in before:
            d.preempted[name] = Victim(before[name], note)
        d.say(f"[red]{name}[/] deleted: {escape(note or 'no Preempted event')}")
    d.say(await d.placed_line(checkout))
    d.check("checkout in eu-berlin", SITE_OF[checkout.node].name == "eu-berlin")
    one = len(gone) == 1 and set(notes) == set(gone)
    d.check("exactly one low-priority pod preempted", one, ", ".join(sorted(notes.keys() | gone)))
    d.say("its ReplicaSet replaces it; the replacement finds no 3 cpu near Berlin and outranks "
          "no pod there:")  # fmt: skip

    async def replaced() -> tuple[LivePod, str] | None:
        for p in await d.live("batch-low"):
            if p.name not in before:
                note = await d.note(p.name, "FailedScheduling")
                return (p, note) if note else None
        return None

    pod, note = await d.until("batch-low's replacement is tried", replaced)
    d.replacement = pod.name
    d.say(f"[yellow]{pod.name}[/] waits: [yellow]{escape(note)}")
    d.check("batch-low's replacement pending: the cost of preemption", not pod.node)


async def _scene_too_far(d: Demo) -> None:
    d.console.rule("[bold]5. A limit no node meets", align="left")
    d.say(
        "Deployment too-far asks for max-rtt users-berlin=2ms; lasched explain says why it waits:"
    )
    await d.create("too-far")
    (pod,) = await d.created("too-far")
    d.too_far = pod.name

    async def tried() -> dict[str, Any] | None:
        try:
            answer = await d.explain(pod.name)
        except StoryError:
            return None
        q = answer.get("queue")
        return answer if q and q["attempts"] >= 1 and q["where"] != "active" else None

    answer = await d.until("too-far is tried", tried)
    cli_explain.render_explain(d.console, answer)
    rejected = [v for v in answer["filter"]["nodes"] if v["rejections"]]
    by_latency = all(v["rejections"][0]["plugin"] == "LatencyFilter" for v in rejected)
    pending = answer["state"] == "pending" and answer["filter"]["feasible"] == 0
    d.check("too-far pending, every node rejected by LatencyFilter", by_latency and pending)
    await _nothing_else_preempted(d)


async def _nothing_else_preempted(d: Demo) -> None:
    """The replacement waited all along: it took no room and preempted no one."""
    if not d.replacement:
        return
    waiting = any(p.name == d.replacement and not p.node for p in await d.live("batch-low"))
    victims = {e["regarding"]["name"] for e in await d.events(None, "Preempted")}
    others = sorted(victims - set(d.preempted))
    detail = ("" if waiting else f"{d.replacement} is bound or gone; ") + ", ".join(others)
    d.check(
        "the replacement still pending, no other pod preempted",
        waiting and not others,
        detail.removesuffix("; "),
    )


async def _scene_drift(d: Demo) -> None:
    d.console.rule("[bold]6. A route degrades under a running service", align="left")
    users = "users-nyc"
    d.say(f"Deployment orders (max-rtt {users}=8ms) runs near its users; remediation is on, "
          f"grace period {GRACE_SECONDS:g} s")  # fmt: skip
    await d.create("orders")
    (old,) = await d.bound("orders")
    d.say(await d.placed_line(old))
    before = rtt_ms(old.node, users)
    d.say(f"the route from {old.node} to {users} degrades: {before:.1f} → {DEGRADED_MS:g} ms "
          f"(the agent on {old.node} measures it from now on)")  # fmt: skip
    changed = time.monotonic()
    d.degrade(old.node, users, DEGRADED_MS)

    async def replaced() -> LivePod | None:
        return next((p for p in await d.live("orders") if p.name != old.name and p.node), None)

    new = await d.until("orders is moved", replaced, timeout=GRACE_SECONDS + 20)
    took = time.monotonic() - changed

    async def remediated() -> str | None:
        return await d.note(old.name, "LatencyRemediated") or None

    note = await d.until("the LatencyRemediated event", remediated)
    d.remediated[old.name] = Victim(old, note)
    d.say(f"[red]{old.name}[/] LatencyRemediated: {escape(note)}")
    d.say(await d.placed_line(new))
    d.say(f"replacement bound {took:.1f} s after the change (grace period {GRACE_SECONDS:g} s)")
    ok = new.node != old.node and rtt_ms(new.node, users) <= 8
    d.check(f"orders moved within its limit, within grace + 5 s ({GRACE_SECONDS + 5:g} s)",
            ok and took <= GRACE_SECONDS + 5, f"{took:.1f} s, to {new.node}")  # fmt: skip
    moved = {e["regarding"]["name"] for e in await d.events(None, "LatencyRemediated")}
    skipped = {e["regarding"]["name"] for e in await d.events(None, "LatencyRemediationSkipped")}
    others = sorted((moved - {old.name}) | skipped)
    d.check("no other pod evicted or judged", not others, ", ".join(others))


# ---- report ------------------------------------------------------------------------


async def _report(d: Demo, out: Path) -> None:
    gone = d.preempted | d.remediated
    pods = [p for p in await d.pods() if p.name not in gone and not p.deleting]
    rows = pods + [v.pod for v in gone.values()]
    order = {name: i for i, name in enumerate(ROLES)}

    def row_order(p: LivePod) -> tuple[int, int, str, str]:
        # Within a role: bound, then preempted, then pending (batch-low's story
        # in order); creationTimestamp has whole seconds, so state comes first.
        state = 1 if p.name in gone else 0 if p.node else 2
        return (order.get(p.role, len(order)), state, p.created, p.name)

    rows.sort(key=row_order)
    table = Table(title="Where each pod landed, and the RTT that decided it", title_justify="left")
    table.add_column("role / pod", overflow="fold")
    # Narrow enough that the last column holds a generated pod name (a Preempted note's).
    table.add_column("asks for", overflow="fold", max_width=26)
    for col in ("node", "site", "decided by (Scheduled event)"):
        table.add_column(col, overflow="fold")
    for p in rows:
        if p.name in d.preempted:
            where, site, why = "[red]preempted", "", d.preempted[p.name].note
        elif p.name in d.remediated:
            where, site, why = "[red]moved", "", d.remediated[p.name].note
        elif p.node:
            where, site, why = p.node, SITE_OF[p.node].name, await d.decided_by(p.name)
            if p.phase == "Succeeded":  # kwok completes a Job's pods once they run
                where += "\n[dim]completed"
        else:
            where, site, why = "[yellow]pending", "", await d.note(p.name, "FailedScheduling")
        wants = ROLES[p.role].wants if p.role in ROLES else ""
        table.add_row(f"{p.role}\n[dim]{p.name}", wants, where, site, escape(why) or "[dim]-")
    d.console.print(table)
    latency = await d.debug("/debug/latency")
    inferred = _check_inferred_sites(d, latency)
    await _pictures(d, out, pods, latency, inferred)


def _check_inferred_sites(d: Demo, latency: Any) -> dict[str, str]:
    """Do the sites lasched inferred from the RTTs group the nodes as the demo built them?
    Returns each node's inferred site and tier, for the picture."""
    topo = latency.get("topology") if isinstance(latency, dict) else None
    what = "sites inferred from the RTTs are the sites built"
    if not topo:
        d.check(what, False, "lasched reports no inferred topology")
        return {}
    layer = topo["layers"][0]["name"]
    places = {n: p for n, p in topo["nodes"].items() if n in SITE_OF}
    groups: dict[str, set[str]] = {}
    for node, place in places.items():
        groups.setdefault(place[layer], set()).add(node)
    found = {frozenset(g) for g in groups.values()}
    built = {frozenset(s.node_names) for s in SITES}
    wrong = sorted(",".join(sorted(g)) for g in found - built)
    missing = sorted(set(SITE_OF) - set(places))
    detail = "; ".join(
        [f"grouped otherwise: {' | '.join(wrong)}"] * bool(wrong)
        + [f"not placed: {', '.join(missing)}"] * bool(missing)
    )
    d.check(what, not wrong and not missing, detail)
    return {n: f"{layer} {p[layer]} · {p['tier']}" for n, p in places.items()}


async def _pictures(
    d: Demo, out: Path, pods: list[LivePod], latency: Any, inferred: dict[str, str]
) -> None:
    try:
        from lasched_dev import plots

        sites = [
            plots.Site(s.name, s.box[0], s.box[1], tuple(s.node_names),
                       "role=cloud" if s.cloud else s.region)
            for s in SITES
        ]  # fmt: skip
        marks = [
            plots.PodMark(p.name, p.node, SCENE_COLORS.get(ROLES[p.role].scene, "0.4"))
            for p in pods
            if p.node and p.role in ROLES
        ]
        site0 = {s.name: s.node_names[0] for s in SITES}

        def link(a: str, b: str) -> plots.Link:
            src = site0[a]
            return plots.Link(a, b, f"{rtt_ms(src, site0.get(b, b)):.0f} ms")

        links = [link("us-chicago", "us-nyc"), link("us-nyc", "eu-paris"),
                 link("eu-paris", "eu-berlin"), link("us-nyc", "cloud-fra"),
                 link("eu-paris", "cloud-fra"), link("eu-berlin", "cloud-fra"),
                 link("us-nyc", "users-nyc"), link("eu-berlin", "users-berlin")]  # fmt: skip
        topo = out / "topology.png"
        legend = dict(SCENE_COLORS)
        await asyncio.to_thread(
            plots.topology_png, topo, sites=sites,
            places=[plots.Place(e.name, *e.star) for e in ENDPOINTS],
            pods=marks, links=links, legend=legend, node_notes=inferred,
            title="lasched demo: pods by site (lines: RTT between sites)"
            + (f"; preempted: {', '.join(d.preempted)}" if d.preempted else "")
            + (", its replacement pending" if d.replacement else ""),
        )  # fmt: skip
        heat = out / "rtt.png"
        await asyncio.to_thread(
            plots.heatmap_png, heat, places=cli_explain.places(latency), pairs=latency["pairs"],
            title="RTTs lasched holds (ms), row measures column",
        )  # fmt: skip
        d.console.print(
            f"topology with pods: [bold]{_shown(topo)}[/]    RTT heatmap: [bold]{_shown(heat)}"
        )
    except ImportError as e:
        d.console.print(f"[yellow]pictures skipped: {e}")


# ---- processes ----------------------------------------------------------------------


async def _start_agents(
    kc: KubeClient, *, port: int, workdir: Path, matrix_file: Path, logs: Path
) -> list[Child]:
    """One lasched-agent process per node, each with a token bound to a pod on its node."""
    tokens = await asyncio.gather(*(agent_token(kc, node=name) for name in SITE_OF))
    children = []
    for name, secret in zip(SITE_OF, tokens, strict=True):
        token = workdir / f"token-{name}"
        token.write_text(secret)
        argv = [
            sys.executable, "-m", "lasched_agent",
            "--scheduler", f"ws://127.0.0.1:{port}/agents/v1", "--node", name,
            "--token-file", str(token), "--simulate-rtt-file", str(matrix_file),
            "--probes-per-target", "3", "--heartbeat-seconds", "5",
        ]  # fmt: skip
        children.append(spawn(f"agent-{name}", argv, log_dir=logs, detached=False))
    return children


async def _stop_agents(children: list[Child]) -> None:
    for c in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.pid, signal.SIGTERM)
    for c in children:
        if c.popen is None:
            continue
        try:
            await asyncio.to_thread(c.popen.wait, 5)
        except Exception:  # a stuck agent: it was told to stop, make sure it does
            c.popen.kill()
            await asyncio.to_thread(c.popen.wait, 5)


async def _wait_for_rtts(d: Demo, children: list[Child]) -> None:
    expected = {(s, t) for s, row in rtt_matrix().items() for t in row}

    async def complete() -> int | None:
        for c in children:
            if not c.alive():
                raise StoryError(f"{c.name} exited; its log:\n{c.log_tail(15)}")
        data = await d.debug("/debug/latency")
        fresh = {
            (p["src"], p["dst"]) for p in data["pairs"] if p["source"] == "agent" and not p["stale"]
        }
        return len(fresh & expected) if expected <= fresh else None

    n = await d.until("agents measure every pair", complete, timeout=45)
    d.say(f"{n} RTT pairs measured by {len(children)} agents")


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it is below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _port() -> int:
    """lasched's usual port when it is free (so `lasched explain` needs no --url), else any."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 10271))
        except OSError:
            return 0
    return 10271


async def run_demo(*, output: Path | None = None, keep: bool = False) -> int:
    """The whole story; 0 when every outcome is the story's, else 1 (130 if interrupted)."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=120)  # CI logs and pipes: wide enough for the tables
    out = (output or Path("lasched-demo")).resolve()
    _prepare(out)
    with _logging_to(out / "lasched.log"):
        return await _run(console, out, keep=keep)


async def _run(console: Console, out: Path, *, keep: bool) -> int:
    console.rule("[bold]lasched demo: latency-aware placement at the edge")
    started = time.monotonic()
    with reporter() as progress:
        cluster = DevCluster(progress=progress)
        with console.status(f"[dim]starting {CONTROL_PLANE} on 127.0.0.1"):
            await cluster.start()
    console.print(f"cluster   {CONTROL_PLANE} on 127.0.0.1 "
                  f"({time.monotonic() - started:.1f} s)")  # fmt: skip
    children: list[Child] = []
    try:
        async with await cluster.client() as kc:
            await _create_topology(console, kc)
            matrix_file = cluster.workdir / "rtt-matrix.json"
            matrix_file.write_bytes(orjson.dumps(rtt_matrix()))
            stop = asyncio.Event()
            serving: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            cfg = _settings(str(cluster.kubeconfig))
            sched = asyncio.create_task(app.run(cfg, stop=stop, serving=serving), name="lasched")
            try:
                port = await asyncio.wait_for(serving, 30)
                base = f"http://127.0.0.1:{port}"
                console.print(f"lasched   {base} (cloud fallback on; endpoints "
                              f"{', '.join(e.name for e in ENDPOINTS)})")  # fmt: skip
                children = await _start_agents(
                    kc, port=port, workdir=cluster.workdir, matrix_file=matrix_file,
                    logs=out / "agent-logs",
                )  # fmt: skip
                console.print(f"agents    {len(children)} lasched-agent processes: RTTs from "
                              "the sites' geography, TokenReview-authenticated")  # fmt: skip
                async with Demo(
                    console, kc, base=base, sched=sched, started=started, matrix_file=matrix_file
                ) as d:
                    ok = await _story(d, out, children)
                    if keep:
                        _keep_hint(console, base, too_far=d.too_far)
                        await stop.wait()
            except Interrupted:
                console.print("[yellow]interrupted")
                return 130
            finally:
                await _stop_agents(children)
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await sched
    finally:
        await cluster.stop()
    console.print(f"[dim]logs: {_shown(out / 'lasched.log')} and {_shown(out / 'agent-logs')}/")
    verdict = "[green]all as the story says" if ok else "[red]not as the story says"
    console.print(f"{verdict} ({time.monotonic() - started:.1f} s)")
    return 0 if ok else 1


def _prepare(out: Path) -> None:
    """The output directory, without the previous run's agent logs."""
    (out / "agent-logs").mkdir(parents=True, exist_ok=True)
    for old in (out / "agent-logs").glob("agent-*.log"):
        old.unlink()


async def _create_topology(console: Console, kc: KubeClient) -> None:
    await nodes.create_nodes(kc, node_specs())
    await nodes.wait_ready(kc, list(SITE_OF))
    await ensure_namespace(kc, NAMESPACE)
    sites = ", ".join(f"{s.name} ({s.count}{', role=cloud' if s.cloud else ''})" for s in SITES)
    console.print(f"topology  {len(SITE_OF)} nodes: {sites}")


def _settings(kubeconfig: str) -> settings.Settings:
    return settings.parse({
        "kubeconfig": kubeconfig,
        "server": {"bindAddress": "127.0.0.1", "port": _port()},
        "leaderElection": {"leaderElect": False},
        "latency": {
            "reportIntervalSeconds": 1, "cloudFallback": True,
            # Every agent here connects from 127.0.0.1: let all of them in at once.
            "tokenReview": {"missBurstPerSource": len(SITE_OF)},
            "endpoints": [{"name": e.name, "address": e.address} for e in ENDPOINTS],
            # Sites learned from the RTTs, drawn in the picture and checked against SITES.
            "topology": {"enabled": True, "intervalSeconds": 1, "holdSeconds": 5},
        },
        "remediation": {
            "enabled": True, "intervalSeconds": 0.5, "gracePeriodSeconds": GRACE_SECONDS,
            "cooldownSeconds": GRACE_SECONDS,
        },
    })  # fmt: skip


async def _story(d: Demo, out: Path, agents: list[Child]) -> bool:
    try:
        await _wait_for_rtts(d, agents)
    except StoryError as e:
        d.check("agents measured every pair", False, str(e))
        return False
    scenes = (_scene_users, _scene_database, _scene_gang, _scene_preemption, _scene_too_far,
              _scene_drift)  # fmt: skip
    for scene in scenes:
        try:
            await scene(d)
        except (StoryError, ApiError) as e:
            d.check(scene.__name__.removeprefix("_scene_"), False, str(e))
    d.console.rule()
    await _report(d, out)
    failed = [o for o in d.outcomes if not o.ok]
    for o in failed:
        d.console.print(f"[red]✗ {o.check}[/] {o.detail}")
    return not failed


def _keep_hint(console: Console, base: str, *, too_far: str) -> None:
    flag = "" if base.endswith(":10271") else f" --url {base}"
    console.print("\nlasched keeps running (Ctrl-C stops everything); in another terminal:")
    console.print(f"  lasched explain {NAMESPACE}/{too_far or '<pod>'}{flag}")
    console.print(f"  lasched latency{flag} --png rtt.png")


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """lasched's own log goes to a file; the terminal keeps the story (and warnings)."""
    root = logging.getLogger()
    levels = [(h, h.level) for h in root.handlers]
    for h, level in levels:
        h.setLevel(max(level, logging.WARNING))
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(
        logging.Formatter("%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    )
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for h, level in levels:
            h.setLevel(level)
