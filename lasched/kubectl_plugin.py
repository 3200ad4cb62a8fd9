"""``kubectl lasched``: ``explain``, ``latency`` and ``status`` through the apiserver.

An executable named ``kubectl-lasched`` on ``PATH`` is a kubectl plugin (krew's
convention), so ``kubectl lasched explain cache -n shop`` runs it. It reads the
kubeconfig as kubectl does (``--kubeconfig``, ``--context``, ``-n/--namespace``) and
reaches lasched through the apiserver's proxy with the kubeconfig's credentials: no
port-forward and no route to the scheduler's pods are needed.

Which replica answers:

* ``explain`` and ``latency`` ask the leader, since only the leader schedules: the
  Lease holder's pod, through ``/api/v1/namespaces/<ns>/pods/<pod>:<port>/proxy/``.
  With no valid Lease naming a pod of lasched's namespace (leader election off), the
  Service: ``/api/v1/namespaces/<ns>/services/<svc>:<port>/proxy/``.
* ``status`` asks every replica behind the Service (its EndpointSlices) for
  ``/readyz`` and ``/metrics``, and reads the Lease.

``/readyz`` and ``/metrics`` answer anyone. The ``/debug`` paths behind ``explain``
and ``latency`` want a bearer token that lasched checks with the apiserver; the
apiserver keeps the caller's own credentials to itself, so ``--token-file`` gives
one (``kubectl create token``), sent in the header lasched reads behind the proxy.

``--server-url`` skips the apiserver and asks a scheduler directly (after a
``kubectl port-forward``, say): the ``/debug`` paths then need no token from the
scheduler's own host.

Exit status: 0 with an answer, 1 when lasched or the apiserver cannot be reached or
refuses (the message says which), 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lasched import cli_explain
from lasched.debugapi import EXPLAIN_PATH, LATENCY_PATH, PROXIED_AUTHORIZATION
from lasched.kube.client import ApiError, KubeClient
from lasched.kube.kubeconfig import kubeconfig_namespace

JSON = dict[str, Any]
PROG = "kubectl lasched"
DEFAULT_LASCHED_NAMESPACE = "lasched-system"
DEFAULT_SERVICE = "lasched"
DEFAULT_PORT = "http"
TIMEOUT = 15.0

# kubectl's resource/name prefixes for a pod; any other "a/b" is namespace/name.
_POD_PREFIXES = ("pod/", "pods/", "po/")


class PluginError(RuntimeError):
    """lasched or the apiserver could not be asked, or refused; the message says which."""


# ---- arguments ---------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a flag given before or after the subcommand is kept (defaults come later).
    add = common.add_argument
    add("--kubeconfig", default=argparse.SUPPRESS, help="the kubeconfig file, as kubectl's")
    add("--context", default=argparse.SUPPRESS, help="the kubeconfig context to use")
    add(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,
        help="the pod's namespace (default: the context's, else default)",
    )
    add(
        "--lasched-namespace",
        default=argparse.SUPPRESS,
        help=f"where lasched runs (default {DEFAULT_LASCHED_NAMESPACE})",
    )
    add(
        "--service",
        default=argparse.SUPPRESS,
        help=f"lasched's Service (default {DEFAULT_SERVICE}: the chart's release name)",
    )
    add(
        "--port",
        default=argparse.SUPPRESS,
        help=f"the Service's port, by name or number (default {DEFAULT_PORT})",
    )
    add(
        "--lease",
        default=argparse.SUPPRESS,
        help="the leader-election Lease in lasched's namespace (default: the Service's name)",
    )
    add(
        "--token-file",
        default=argparse.SUPPRESS,
        help="a bearer token for the /debug paths (kubectl create token ...)",
    )
    add(
        "--server-url",
        default=argparse.SUPPRESS,
        help="ask this scheduler directly (e.g. http://127.0.0.1:10271 after a port-forward)",
    )
    add("--json", action="store_true", default=argparse.SUPPRESS, help="print lasched's JSON")

    top = argparse.ArgumentParser(
        prog=PROG,
        parents=[common],
        description="Ask the lasched scheduler, through the apiserver, why a pod is where it "
        "is, what RTTs it holds and how it is doing.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ex = sub.add_parser(
        "explain", parents=[common], help="why a pod is pending, or how its node scores now"
    )
    ex.add_argument("pod", metavar="POD", help="POD, NAMESPACE/POD or pod/POD")
    lat = sub.add_parser("latency", parents=[common], help="the RTT matrix lasched holds")
    lat.add_argument("--pairs", action="store_true", help="one row per pair instead of a matrix")
    sub.add_parser(
        "status", parents=[common], help="leader, readiness, queue, agents and stale RTT pairs"
    )
    return top


@dataclass(frozen=True, slots=True)
class Options:
    command: str
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    lasched_namespace: str = DEFAULT_LASCHED_NAMESPACE
    service: str = DEFAULT_SERVICE
    port: str = DEFAULT_PORT
    lease: str | None = None
    token_file: str | None = None
    server_url: str | None = None
    json: bool = False
    pod: str | None = None
    pairs: bool = False

    @classmethod
    def parse(cls, argv: Sequence[str] | None) -> Options:
        args = vars(parser().parse_args(argv))
        fields = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in args.items() if k in fields})

    @property
    def lease_name(self) -> str:
        return self.lease or self.service

    def token(self) -> str | None:
        if not self.token_file:
            return None
        try:
            return Path(self.token_file).read_text().strip()
        except OSError as e:
            raise PluginError(f"cannot read --token-file {self.token_file}: {e.strerror}") from e


def pod_name(arg: str, namespace: str) -> tuple[str, str]:
    """(namespace, name) from POD, pod/POD or NAMESPACE/POD; ValueError if malformed."""
    for prefix in _POD_PREFIXES:
        if arg.startswith(prefix):
            arg = arg.removeprefix(prefix)
            break
    else:
        if "/" in arg:
            namespace, _, arg = arg.partition("/")
    if not namespace or not arg or "/" in arg:
        raise ValueError(f"give the pod as POD, NAMESPACE/POD or pod/POD, not {arg!r}")
    return namespace, arg


# ---- reaching lasched --------------------------------------------------------------


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> JSON:
        try:
            decoded: JSON = orjson.loads(self.body)
        except orjson.JSONDecodeError as e:
            raise PluginError(f"lasched answered {self.status} with something not JSON") from e
        return decoded

    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass(slots=True)
class Route:
    """One way to one scheduler (or to whichever replica a Service picks)."""

    name: str
    """What a person reads: ``pod lasched-x (leader)``, ``service lasched-system/lasched``."""
    prefix: str
    """The apiserver path the scheduler's paths hang under, or a direct base URL."""
    kc: KubeClient | None = None

    async def get(self, path: str, *, token: str | None = None, **query: str) -> Reply:
        """GET ``path`` from the scheduler. lasched's own answers, errors included, come back
        as a :class:`Reply`; the apiserver's refusals and unreachable schedulers raise."""
        if self.kc is None:
            return await _direct_get(self.prefix + path, token=token, query=query)
        headers = {PROXIED_AUTHORIZATION: f"Bearer {token}"} if token else None
        try:
            if path.startswith("/debug/"):  # JSON, perhaps with a token
                answer = await self.kc.request(
                    "GET", self.prefix + path, params=query, headers=headers, timeout=TIMEOUT
                )
                return Reply(200, orjson.dumps(answer))
            return Reply(200, (await self.kc.text(self.prefix + path, timeout=TIMEOUT)).encode())
        except ApiError as e:
            if isinstance(e.body, dict) and e.body.get("kind") == "Status":
                raise PluginError(_apiserver_refusal(e, self.name)) from None
            body = orjson.dumps(e.body) if e.body is not None else e.message.encode()
            return Reply(e.status, body)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise PluginError(f"cannot reach the apiserver: {e or type(e).__name__}") from None


def _apiserver_refusal(e: ApiError, route: str) -> str:
    message = e.message or e.reason
    if e.status == 403:
        return f"the apiserver refused to proxy to {route}: {message}"
    if e.status in (502, 503):
        return f"the apiserver could not reach {route}: {message}"
    return f"the apiserver answered {e.status} for {route}: {message}"


async def _direct_get(url: str, *, token: str | None, query: dict[str, str]) -> Reply:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
            session.get(url, params=query or None, headers=headers) as resp,
        ):
            return Reply(resp.status, await resp.read())
    except (aiohttp.ClientError, OSError, TimeoutError) as e:
        raise PluginError(f"cannot reach lasched at {url}: {e or type(e).__name__}") from None


def _lasched_error(reply: Reply, route: Route, path: str) -> PluginError:
    try:
        message = str(orjson.loads(reply.body).get("error") or "")
    except (orjson.JSONDecodeError, AttributeError):
        message = reply.text().strip()
    hint = ""
    if reply.status == 401:
        hint = (
            "; the apiserver does not pass your credentials on: give --token-file with a "
            "token allowed to get /debug/* (docs/operations.md)"
        )
    return PluginError(
        f"lasched ({route.name}) answered {reply.status} for {path}: {message}{hint}"
    )


@dataclass(slots=True)
class Lease:
    holder: str | None
    renewed: dt.datetime | None
    duration: float
    transitions: int

    @property
    def holder_pod(self) -> str | None:
        """The holder's pod name: a replica's identity is its hostname (the pod name), ``_``,
        a random suffix."""
        return self.holder.partition("_")[0] if self.holder else None

    def age(self, now: dt.datetime) -> float | None:
        return (now - self.renewed).total_seconds() if self.renewed else None

    def valid(self, now: dt.datetime) -> bool:
        age = self.age(now)
        return bool(self.holder) and age is not None and age <= self.duration


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(slots=True)
class Replica:
    pod: str
    route: Route


@dataclass(slots=True)
class Lasched:
    """Where lasched is, as the apiserver sees it."""

    opts: Options
    kc: KubeClient | None
    lease: Lease | None = None
    service: JSON | None = None
    replicas: list[Replica] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return self.opts.lasched_namespace

    def service_route(self) -> Route:
        if self.opts.server_url:
            return Route(self.opts.server_url, self.opts.server_url.rstrip("/"))
        svc = f"{self.opts.service}:{self.opts.port}"
        return Route(
            f"service {self.ns}/{self.opts.service}",
            f"/api/v1/namespaces/{self.ns}/services/{svc}/proxy",
            self.kc,
        )

    def pod_route(self, pod: JSON, name: str) -> Route | None:
        port = self._pod_port(pod)
        if port is None:
            return None
        pod_path = f"/api/v1/namespaces/{self.ns}/pods/{pod['metadata']['name']}:{port}"
        return Route(name, f"{pod_path}/proxy", self.kc)

    def _pod_port(self, pod: JSON) -> int | None:
        """The scheduler's port number on ``pod``: the Service port's target."""
        target: Any = self.opts.port
        for p in (self.service or {}).get("spec", {}).get("ports") or []:
            if self.opts.port in (p.get("name"), str(p.get("port"))):
                target = p.get("targetPort", p.get("port"))
                break
        if isinstance(target, int) or str(target).isdigit():
            return int(target)
        for c in pod.get("spec", {}).get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("name") == target:
                    return int(p["containerPort"])
        return None

    async def _get(self, path: str) -> JSON | None:
        assert self.kc is not None
        try:
            return await self.kc.get(path)
        except ApiError as e:
            if e.not_found:
                return None
            raise PluginError(
                f"the apiserver answered {e.status} for {path}: {e.message}"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise PluginError(f"cannot reach the apiserver: {e or type(e).__name__}") from None

    async def read_lease(self) -> None:
        if self.kc is None:
            return
        path = f"/apis/coordination.k8s.io/v1/namespaces/{self.ns}/leases/{self.opts.lease_name}"
        found = await self._get(path)
        if found is None:
            return
        spec = found.get("spec") or {}
        self.lease = Lease(
            holder=spec.get("holderIdentity") or None,
            renewed=_time(spec.get("renewTime")),
            duration=float(spec.get("leaseDurationSeconds") or 15),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    async def read_service(self) -> None:
        if self.kc is None:
            return
        self.service = await self._get(f"/api/v1/namespaces/{self.ns}/services/{self.opts.service}")
        if self.service is None:
            raise PluginError(
                f"no Service {self.ns}/{self.opts.service}: is lasched installed there? "
                "(--lasched-namespace, --service)"
            )

    async def leader_route(self) -> Route:
        """The leader's pod when a valid Lease names one, else the Service."""
        if self.service is None:
            await self.read_service()
            await self.read_lease()
        now = dt.datetime.now(dt.UTC)
        if self.kc is not None and self.lease and self.lease.valid(now) and self.lease.holder_pod:
            try:
                pod = await self._get(f"/api/v1/namespaces/{self.ns}/pods/{self.lease.holder_pod}")
            except PluginError:  # no right to read pods: the Service picks a replica
                pod = None
            name = f"pod {self.lease.holder_pod} (leader)"
            if pod is not None and (route := self.pod_route(pod, name)):
                return route
        return self.service_route()

    async def read_replicas(self) -> None:
        """Every pod behind the Service, from its EndpointSlices (ready or not: /readyz says
        why a replica is not)."""
        if self.kc is None:
            return
        path = f"/apis/discovery.k8s.io/v1/namespaces/{self.ns}/endpointslices"
        try:
            slices = await self.kc.get(
                path, labelSelector=f"kubernetes.io/service-name={self.opts.service}"
            )
        except ApiError as e:
            raise PluginError(
                f"the apiserver answered {e.status} for {path}: {e.message}"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise PluginError(f"cannot reach the apiserver: {e or type(e).__name__}") from None
        seen: set[str] = set()
        for s in slices.get("items") or []:
            for ep in s.get("endpoints") or []:
                ref = ep.get("targetRef") or {}
                if ref.get("kind") != "Pod" or ref.get("name") in seen:
                    continue
                seen.add(ref["name"])
                pod = await self._get(f"/api/v1/namespaces/{self.ns}/pods/{ref['name']}")
                route = self.pod_route(pod, f"pod {ref['name']}") if pod else None
                if route is not None:
                    self.replicas.append(Replica(ref["name"], route))
        self.replicas.sort(key=lambda r: r.pod)


# ---- the commands ------------------------------------------------------------------


async def explain(place: Lasched, console: Console) -> None:
    opts = place.opts
    assert opts.pod is not None
    default_ns = opts.namespace or kubeconfig_namespace(opts.kubeconfig, context=opts.context)
    namespace, name = pod_name(opts.pod, default_ns or "default")
    route = await place.leader_route()
    reply = await route.get(EXPLAIN_PATH, token=opts.token(), pod=f"{namespace}/{name}")
    if reply.status != 200:
        raise _lasched_error(reply, route, EXPLAIN_PATH)
    data = reply.json()
    if opts.json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        cli_explain.render_explain(console, data)


async def latency(place: Lasched, console: Console) -> None:
    opts = place.opts
    route = await place.leader_route()
    reply = await route.get(LATENCY_PATH, token=opts.token())
    if reply.status != 200:
        raise _lasched_error(reply, route, LATENCY_PATH)
    data = reply.json()
    if opts.json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif opts.pairs:
        cli_explain.render_pairs(console, data)
    else:
        cli_explain.render_matrix(console, data)


@dataclass(slots=True)
class ReplicaState:
    pod: str
    ready: bool | None = None
    not_ready: list[str] = field(default_factory=list)
    leads: bool | None = None
    pending: dict[str, float] = field(default_factory=dict)
    agents: float | None = None
    nodes: float | None = None
    error: str | None = None


def read_metrics(exposition: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> (labels, value) of a Prometheus text exposition."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return found


async def replica_state(pod: str, route: Route) -> ReplicaState:
    state = ReplicaState(pod)
    try:
        ready = await route.get("/readyz")
        state.ready = ready.status == 200
        if not state.ready:
            state.not_ready = [line for line in ready.text().splitlines() if line.strip()]
        scraped = await route.get("/metrics")
    except PluginError as e:
        state.error = str(e)
        return state
    if scraped.status != 200:
        state.error = f"/metrics answered {scraped.status}"
        return state
    metrics = read_metrics(scraped.text())
    state.leads = any(v == 1 for _, v in metrics.get("lasched_leader_election_master_status", []))
    for labels, value in metrics.get("lasched_pending_pods", []):
        state.pending[labels.get("queue", "")] = value
    agents = metrics.get("lasched_agent_connections")
    state.agents = agents[0][1] if agents else None
    for labels, value in metrics.get("lasched_cache_size", []):
        if labels.get("type") == "nodes":
            state.nodes = value
    return state


async def status(place: Lasched, console: Console) -> None:
    opts = place.opts
    await place.read_service()
    await place.read_lease()
    await place.read_replicas()
    now = dt.datetime.now(dt.UTC)
    routes = [(r.pod, r.route) for r in place.replicas] or [("-", place.service_route())]
    states = list(await asyncio.gather(*(replica_state(pod, route) for pod, route in routes)))
    leader = await place.leader_route()
    stale: JSON | str
    reply = await leader.get(LATENCY_PATH, token=opts.token())
    if reply.status == 200:
        pairs = reply.json().get("pairs") or []
        stale = {
            "from": leader.name,
            "pairs": len(pairs),
            "stale": sum(1 for p in pairs if p.get("stale")),
            "agents": len(reply.json().get("agents") or []),
        }
    else:
        stale = str(_lasched_error(reply, leader, LATENCY_PATH))
    if opts.json:
        out = {
            "namespace": place.ns,
            "service": opts.service,
            "lease": _lease_json(place.lease, now),
            "replicas": [
                {
                    "pod": s.pod,
                    "ready": s.ready,
                    "notReady": s.not_ready,
                    "leads": s.leads,
                    "pending": s.pending,
                    "agents": s.agents,
                    "nodes": s.nodes,
                    "error": s.error,
                }
                for s in states
            ],
            "latency": stale if isinstance(stale, dict) else {"error": stale},
        }
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    _render_status(console, place, states, stale, now)


def _lease_json(lease: Lease | None, now: dt.datetime) -> JSON | None:
    if lease is None:
        return None
    return {
        "holder": lease.holder,
        "pod": lease.holder_pod,
        "renewedSecondsAgo": lease.age(now),
        "valid": lease.valid(now),
        "transitions": lease.transitions,
    }


def _render_status(
    console: Console,
    place: Lasched,
    states: list[ReplicaState],
    stale: JSON | str,
    now: dt.datetime,
) -> None:
    opts = place.opts
    where = opts.server_url or f"Service {place.ns}/{opts.service}, port {opts.port}"
    console.print(f"[bold]lasched[/] ({escape(where)})")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    lease_name = f"{place.ns}/{opts.lease_name}"
    if place.kc is None:
        facts.add_row("leader", "not read (--server-url asks one scheduler, not the apiserver)")
    elif place.lease is None:
        facts.add_row("leader", f"no Lease {escape(lease_name)} (leader election off?)")
    else:
        lease = place.lease
        age = lease.age(now)
        ago = "never renewed" if age is None else f"renewed {age:.1f} s ago"
        if lease.valid(now):
            line = f"[bold]{escape(lease.holder_pod or '')}[/] (Lease {escape(lease_name)}, {ago}"
        else:
            line = f"[red]none[/]: Lease {escape(lease_name)} expired ({ago}"
        facts.add_row("leader", f"{line}, {lease.transitions} transition(s))")
    if isinstance(stale, dict):
        pairs = f"{stale['pairs']} RTT pair{'' if stale['pairs'] == 1 else 's'}"
        line = f"{pairs} on {escape(stale['from'])}, {stale['stale']} stale"
        line += f"; {stale['agents']} agent(s) connected to it"
        facts.add_row("latency", line if not stale["stale"] else f"[yellow]{line}")
    else:
        facts.add_row("latency", f"[yellow]{escape(stale)}")
    console.print(facts)
    table = Table()
    for col in ("replica", "ready", "leads", "active", "backoff", "unschedulable", "agents",
                "nodes"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("replica", "ready", "leads") else "right")

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:g}"

    for s in states:
        if s.error:
            table.add_row(s.pod, f"[red]{escape(s.error)}", "", "", "", "", "", "")
            continue
        ready = "[green]yes" if s.ready else "[red]no: " + escape("; ".join(s.not_ready))
        leads = "-" if place.lease is None else "yes" if s.leads else "no"
        table.add_row(
            s.pod, ready, leads,
            num(s.pending.get("active")), num(s.pending.get("backoff")),
            num(s.pending.get("unschedulable")), num(s.agents), num(s.nodes),
        )  # fmt: skip
    console.print(table)


async def run(opts: Options) -> int:
    console = Console()
    kc: KubeClient | None = None
    try:
        if not opts.server_url:
            try:
                kc = await KubeClient.from_kubeconfig(opts.kubeconfig, context=opts.context)
            except Exception as e:  # the kubeconfig loader raises many kinds
                raise PluginError(f"cannot load the kubeconfig: {e}") from None
        place = Lasched(opts, kc)
        if opts.command == "explain":
            await explain(place, console)
        elif opts.command == "latency":
            await latency(place, console)
        else:
            await status(place, console)
        return 0
    finally:
        if kc is not None:
            await kc.close()


def main(argv: Sequence[str] | None = None) -> int:
    opts = Options.parse(argv)
    if opts.server_url and not opts.server_url.startswith(("http://", "https://")):
        print(f"{PROG}: --server-url must be an http:// or https:// address", file=sys.stderr)
        return 2
    try:
        return asyncio.run(run(opts))
    except ValueError as e:
        print(f"{PROG} {opts.command}: {e}", file=sys.stderr)
        return 2
    except PluginError as e:
        print(f"{PROG} {opts.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
