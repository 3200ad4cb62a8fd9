"""kube-scheduler's extender API: latency decisions for a stock kube-scheduler.

A cluster that keeps its kube-scheduler lists lasched under ``extenders`` in
its KubeSchedulerConfiguration (docs/extender.md). After its own filters,
kube-scheduler POSTs ``ExtenderArgs`` to ``{urlPrefix}/filter`` and, for the
nodes left, to ``{urlPrefix}/prioritize``. The JSON carries Go's field names,
because k8s.io/kube-scheduler/extender/v1 declares no JSON tags:

- request ``ExtenderArgs``: ``Pod`` (a v1.Pod), and either ``NodeNames`` (a
  list of names, when the extender is ``nodeCacheCapable``) or ``Nodes`` (a
  v1.NodeList);
- filter answer ``ExtenderFilterResult``: the nodes that pass, in the same
  form as asked (``NodeNames`` or ``Nodes``), ``FailedNodes`` and
  ``FailedAndUnresolvableNodes`` (node -> reason) and ``Error``;
- prioritize answer ``HostPriorityList``: ``[{"Host": name, "Score": 0..10}]``
  (``MaxExtenderPriority`` is 10; kube-scheduler multiplies by the extender's
  weight and by 10).

Filter runs :class:`~lasched.plugins.latency.LatencyFilter` (PreFilter, then
Filter per node); prioritize runs :class:`~lasched.plugins.latency.LatencyScore`
(PreScore, Score, NormalizeScore) and scales 0..100 to 0..10. The reasons are
the plugins' own, so kube-scheduler's FailedScheduling event reads like
lasched's ("4 node(s) had no measured RTT from edge-9").

Invariants: answering never changes lasched's state (the handlers read the
latency cache and the scheduler cache between two awaits, like a scheduling
cycle), and no input raises out of a handler. A body that cannot be read is
a 400 with the reason in ``Error``; what kube-scheduler does then depends on
the extender's ``ignorable`` (false: the pod waits; true: it is placed
without lasched). A pod whose latency annotation cannot be read is a valid
request: every node fails with the parse error as its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from lasched import metrics
from lasched.cache.cache import NodeInfo, SchedulerCache
from lasched.framework.interface import MAX_NODE_SCORE, Code, CycleState
from lasched.model.node import Node
from lasched.model.pod import PodInfo
from lasched.plugins.latency import LatencyFilter, LatencyScore

log = logging.getLogger(__name__)

FILTER_VERB = "filter"
PRIORITIZE_VERB = "prioritize"
MAX_EXTENDER_PRIORITY = 10
MAX_BODY_BYTES = 64 << 20
"""A v1.NodeList of a few thousand nodes fits; ``nodeCacheCapable`` sends names only."""

NodeLookup = Callable[[str], NodeInfo | None]
"""A node name -> what lasched knows of it (None if it has not seen the node yet)."""


class BadRequest(ValueError):
    """The request body is not an ExtenderArgs lasched can read; the message says why."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ExtenderArgs:
    """A decoded request: the pod and its candidate nodes, in the form they came."""

    pod: PodInfo
    names: tuple[str, ...]
    items: tuple[Mapping[str, Any], ...] | None  # Nodes.items as sent; None for NodeNames
    nodes: tuple[Node, ...] | None = None  # the items decoded

    @property
    def node_cache_capable(self) -> bool:
        return self.items is None


def decode_args(body: bytes) -> ExtenderArgs:
    """ExtenderArgs from a request body; :class:`BadRequest` names what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(
            f"the body must be a JSON object (ExtenderArgs), not {type(data).__name__}"
        )
    raw_pod = data.get("Pod")
    if not isinstance(raw_pod, dict):
        raise BadRequest("ExtenderArgs.Pod must be a Pod object")
    try:
        pod = PodInfo(raw_pod)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadRequest(f"ExtenderArgs.Pod cannot be read: {_why(e)}") from None
    names = data.get("NodeNames")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise BadRequest("ExtenderArgs.NodeNames must be a list of node names")
        return ExtenderArgs(pod, tuple(names), None)
    node_list = data.get("Nodes")
    if node_list is None:
        raise BadRequest("ExtenderArgs needs NodeNames or Nodes")
    items = node_list.get("items") if isinstance(node_list, dict) else None
    if items is None and isinstance(node_list, dict):
        items = []  # an empty NodeList omits its items
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise BadRequest("ExtenderArgs.Nodes must be a NodeList with a list of items")
    try:
        nodes = tuple(Node(i) for i in items)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise BadRequest(f"ExtenderArgs.Nodes.items cannot be read: {_why(e)}") from None
    return ExtenderArgs(pod, tuple(n.name for n in nodes), tuple(items), nodes)


def _why(e: Exception) -> str:
    return f"missing field {e}" if isinstance(e, KeyError) else str(e) or type(e).__name__


def to_extender_priority(score: int) -> int:
    """A node score (0..100) as an extender priority (0..10), rounded half up."""
    scaled = (score * MAX_EXTENDER_PRIORITY + MAX_NODE_SCORE // 2) // MAX_NODE_SCORE
    return min(MAX_EXTENDER_PRIORITY, max(0, scaled))


class Extender:
    """Answers kube-scheduler's filter and prioritize verbs with the latency plugins."""

    def __init__(
        self,
        *,
        latency_filter: LatencyFilter,
        latency_score: LatencyScore,
        node_info: NodeLookup = lambda name: None,
        ready: Callable[[], bool] = lambda: True,
        prefix: str = "/extender",
    ) -> None:
        self._filter = latency_filter
        self._score = latency_score
        self._node_info = node_info
        self._ready = ready
        self.prefix = prefix.rstrip("/")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(f"{self.prefix}/{FILTER_VERB}", self._handle_filter)
        app.router.add_post(f"{self.prefix}/{PRIORITIZE_VERB}", self._handle_prioritize)

    # ---- the verbs, without HTTP ------------------------------------------------

    def filter(self, args: ExtenderArgs) -> dict[str, Any]:
        """An ExtenderFilterResult: passing nodes in the form asked, failures with reasons."""
        pod, state = args.pod, CycleState()
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = {}
        passed: list[int] = []
        st = self._filter.pre_filter(state, pod)
        if st.code is Code.SKIP:
            passed = list(range(len(args.names)))
        elif st.code is Code.ERROR:
            return _filter_result(args, [], {}, {}, error=st.message)
        elif not st.ok:
            into = unresolvable if st.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE else failed
            into.update(dict.fromkeys(args.names, st.message))
        else:
            for i, ni in enumerate(self._node_infos(args)):
                verdict = self._filter.filter(state, pod, ni)
                if verdict.ok:
                    passed.append(i)
                elif verdict.code is Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                    unresolvable[args.names[i]] = verdict.message
                elif verdict.code is Code.UNSCHEDULABLE:
                    failed[args.names[i]] = verdict.message
                else:
                    return _filter_result(args, [], {}, {}, error=verdict.message)
        return _filter_result(args, passed, failed, unresolvable)

    def prioritize(self, args: ExtenderArgs) -> list[dict[str, Any]]:
        """A HostPriorityList: the latency score per node, 0..10; all 0 when it does not apply."""
        infos = self._node_infos(args)
        state = CycleState()
        scores = [0] * len(infos)
        if self._score.pre_score(state, args.pod, infos).ok:
            scores = [self._score.score(state, args.pod, ni) for ni in infos]
            self._score.normalize(state, args.pod, scores)
        return [
            {"Host": name, "Score": to_extender_priority(s)}
            for name, s in zip(args.names, scores, strict=True)
        ]

    def _node_infos(self, args: ExtenderArgs) -> list[NodeInfo]:
        """What lasched knows of each node, else a node built from what was sent."""
        out = []
        for i, name in enumerate(args.names):
            ni = self._node_info(name)
            if ni is None:
                sent = args.nodes[i] if args.nodes is not None else None
                ni = NodeInfo(sent or Node({"metadata": {"name": name}}))
            out.append(ni)
        return out

    # ---- HTTP ---------------------------------------------------------------------

    async def _handle_filter(self, request: web.Request) -> web.Response:
        return await self._serve(request, FILTER_VERB, self.filter)

    async def _handle_prioritize(self, request: web.Request) -> web.Response:
        return await self._serve(request, PRIORITIZE_VERB, self.prioritize)

    async def _serve(
        self, request: web.Request, verb: str, answer: Callable[[ExtenderArgs], object]
    ) -> web.Response:
        """Decode, answer, count. Cancelling is safe: nothing is changed before the answer."""
        if not self._ready():
            metrics.extender_requests.labels(verb, "not_ready").inc()
            return _json({"Error": "lasched is starting: informers not synced"}, status=503)
        try:
            args = decode_args(await _read_body(request))
        except BadRequest as e:
            metrics.extender_requests.labels(verb, "bad_request").inc()
            log.warning("extender %s: bad request from %s: %s", verb, request.remote, e)
            return _json({"Error": f"lasched extender {verb}: {e}"}, status=e.status)
        try:
            result = answer(args)
        except Exception as e:
            metrics.extender_requests.labels(verb, "error").inc()
            log.exception("extender %s pod=%s failed", verb, args.pod.key)
            return _json({"Error": f"lasched extender {verb}: {type(e).__name__}: {e}"}, status=500)
        metrics.extender_requests.labels(verb, "success").inc()
        log.debug("extender %s pod=%s nodes=%d", verb, args.pod.key, len(args.names))
        return _json(result)


def _filter_result(
    args: ExtenderArgs,
    passed: Sequence[int],
    failed: dict[str, str],
    unresolvable: dict[str, str],
    *,
    error: str = "",
) -> dict[str, Any]:
    names = [args.names[i] for i in passed]
    nodes = None
    if args.items is not None:
        nodes = {"metadata": {}, "items": [args.items[i] for i in passed]}
    return {
        "Nodes": nodes,
        "NodeNames": names if args.node_cache_capable else None,
        "FailedNodes": failed,
        "FailedAndUnresolvableNodes": unresolvable,
        "Error": error,
    }


async def _read_body(request: web.Request) -> bytes:
    """The body, up to MAX_BODY_BYTES (aiohttp's own 1 MiB default is too small for a NodeList)."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _json(obj: object, *, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def known_nodes(cache: SchedulerCache, seen: Callable[[str], Node | None]) -> NodeLookup:
    """A node as the scheduler's cache holds it, else as the node informer last saw it.

    ``seen`` reads the informer's store at call time (a relist replaces it).
    """

    def node_info(name: str) -> NodeInfo | None:
        ni = cache.node_info(name)
        if ni is not None:
            return ni
        node = seen(name)
        return NodeInfo(node) if node is not None else None

    return node_info
