"""Informers: the whole view first, then a watch from its resourceVersion.

The contract is client-go's reflector's: once the store holds exactly the
apiserver's view, a watch continues from its resourceVersion with bookmarks,
and every change reaches the handler in order. The view comes, as client-go's
reflector asks for it by default since Kubernetes v1.35, as a *streaming
list*: one watch with ``sendInitialEvents``, whose first events are every
object (ADDED) and whose bookmark annotated ``k8s.io/initial-events-end``
says the view is complete; the same stream then goes on as the watch. Each
object is decoded on its own as it arrives, with no page round trips and no
page of hundreds of decoded objects at once. An apiserver that refuses it
(the WatchList feature off: 422) gets a paginated list and a watch instead,
from then on; a stream that fails otherwise is followed by one paginated
list, so that a resource whose streams keep failing still gets its view.
When the watch's resourceVersion has been compacted away (410 Gone, or an
ERROR event with code 410) the informer takes the whole view again and
reconciles: objects gone from it are delivered as deletions, new ones as
additions and changed ones as updates, so the handler never misses a
transition. Any other stream failure reconnects from the last seen
resourceVersion with jittered exponential backoff.

**Liveness.** A watch can die silently: a proxy or a NAT that keeps the TCP
connection open but forwards nothing delivers no error, only silence. A
healthy apiserver sends a bookmark every one to two minutes on every watch
that asked for them, so a watch that has delivered nothing (no event, no
bookmark) for ``idle_timeout`` is treated as dead: the informer says so in
the log and a metric, closes it, and watches again from the last
resourceVersion it saw. The apiserver replays what happened meanwhile, or,
when that is no longer in its window, answers 410 Gone and the informer
lists again; either way nothing is missed, and a healthy but quiet watch
costs one new request, not a relist of every object.
:meth:`Informer.health` tells readiness the same.

**Error boundary.** One object must never stop an informer. An object that
``decode`` cannot read, or a handler that raises, is reported to
``on_error`` (the scheduler turns it into a Warning Event on the pod), logged
with its traceback and counted; the stream goes on with the next event.
Only the stream itself (the connection, the apiserver's answers) can make the
informer reconnect or relist, and nothing but cancellation ends :meth:`run`.

Handlers are plain functions called on the event loop; they must not block.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from lasched import metrics
from lasched.kube.client import JSON, ApiError

log = logging.getLogger(__name__)


class Keyed(Protocol):
    """What an informer reads of its objects: an identity and a version."""

    @property
    def key(self) -> str: ...

    @property
    def resource_version(self) -> str: ...


T = TypeVar("T", bound=Keyed)
T_contra = TypeVar("T_contra", contravariant=True)


class Handler(Protocol[T_contra]):
    """Receives an informer's changes, in order, on the event loop."""

    def on_add(self, obj: T_contra) -> None: ...
    def on_update(self, old: T_contra, new: T_contra) -> None: ...
    def on_delete(self, obj: T_contra) -> None: ...


class StoreOnly:
    """A handler for informers whose store is all that is read."""

    def on_add(self, obj: object) -> None:
        return None

    def on_update(self, old: object, new: object) -> None:
        return None

    def on_delete(self, obj: object) -> None:
        return None


class ListWatchClient(Protocol):
    """What an informer needs of a client (KubeClient provides it)."""

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int | bool] | None = None,
        timeout: float | None = 30.0,
    ) -> JSON: ...

    def stream(
        self,
        path: str,
        *,
        params: Mapping[str, str | int | bool],
        timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[JSON]: ...


class _Gone(Exception):
    """The resourceVersion we watch from is too old: relist."""


class _Silent(Exception):
    """The watch delivered nothing, not even a bookmark, for the idle timeout: watch anew."""


# What a broken connection or a refusing apiserver raises (orjson: ValueError).
_STREAM_ERRORS = (ApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError)

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
"""The annotation of the bookmark that ends a watch's initial events."""

# What an apiserver without streaming lists (the WatchList feature off) answers a
# watch with sendInitialEvents: 422 Invalid, or 400 from a proxy in between.
_WATCH_LIST_REFUSED = frozenset({400, 422})

ErrorHook = Callable[[JSON, BaseException], None]
"""Told of an object the informer could not decode or hand over: (its JSON, the error)."""

# A healthy apiserver sends a bookmark every one to two minutes on each watch.
DEFAULT_IDLE_TIMEOUT = 180.0

PAGE_SIZE = 100
"""Objects per page of a paginated list (an apiserver without streaming lists). A decoded
page is transient but the heap it grew stays fragmented around the objects kept from it:
in process, 2,000 pods decoded in pages of 500 leave the process 12 MB larger than in
pages of 100, and 30,000 pods likewise (docs/architecture.md, "Decoding"). The next
page is asked for while one is decoded, so more round trips cost little time."""


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.8
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.factor**attempt)
        return base * (1 + random.uniform(-self.jitter, self.jitter))


class Informer(Generic[T]):
    """One resource kind, listed and watched, decoded into ``T`` objects.

    ``decode`` turns the apiserver's JSON into ``T``, whose ``key`` is its
    identity (namespace/name) and ``resource_version`` its version.
    """

    def __init__(
        self,
        client: ListWatchClient,
        *,
        path: str,
        decode: Callable[[JSON], T],
        handler: Handler[T],
        field_selector: str = "",
        label_selector: str = "",
        page_size: int = PAGE_SIZE,
        watch_list: bool = True,
        backoff: Backoff | None = None,
        name: str = "",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        on_error: ErrorHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._path = path
        self._decode = decode
        self._handler = handler
        self._selectors: dict[str, str] = {}
        if field_selector:
            self._selectors["fieldSelector"] = field_selector
        if label_selector:
            self._selectors["labelSelector"] = label_selector
        self._page_size = page_size
        # Stream the first state as a watch (sendInitialEvents) instead of listing
        # pages; turned off for good when the apiserver refuses it (then: pages).
        self._watch_list = watch_list
        self._backoff = backoff or Backoff()
        self.name = name or path
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, not {idle_timeout!r}")
        self.idle_timeout = idle_timeout
        self._on_error = on_error
        self._clock = clock
        self.store: dict[str, T] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.relists = 0
        self._need_list = True  # no whole view yet, or it was lost (410): list or stream it
        self._stream_failed = False  # the last streaming list was refused: list in pages once
        self.errors = 0
        # Consecutive failures to list or to watch; the backoff grows with them, and a
        # list or a watch event resets it (an apiserver that refuses is not hammered).
        self._failures = 0
        # When the stream last showed life (an event, a bookmark, a list page).
        self.last_heard = clock()
        self.connected = False

    def health(self) -> str | None:
        """None while the informer hears from the apiserver in time, else why not."""
        if not self.synced.is_set():
            return f"informer {self.name}: not synced"
        silent = self._clock() - self.last_heard
        if silent > self.idle_timeout:
            state = "watching" if self.connected else "not connected"
            return f"informer {self.name}: nothing heard for {silent:.0f} s ({state})"
        return None

    async def run(self) -> None:
        """Run until cancelled. Cancelling is safe at any point; nothing else ends it."""
        self._need_list = True
        while True:
            try:
                if self._need_list and self._watch_list and not self._stream_failed:
                    try:
                        await self._watch(initial=True)
                    except ApiError as e:
                        if e.status in _WATCH_LIST_REFUSED:
                            log.info(
                                "informer=%s the apiserver refuses a watch with its initial "
                                "events (%s: %s); listing in pages instead",
                                self.name, e.status, e.message,
                            )  # fmt: skip
                            self._watch_list = False
                            continue
                        # Any other answer before the view was in: the next attempt lists
                        # in pages, so a resource whose streams keep failing gets its view.
                        self._stream_failed = self._need_list and not e.gone
                        raise
                    if self._need_list:
                        raise ConnectionError("the watch ended before its initial events did")
                    continue  # the stream ended after its initial events: watch on
                if self._need_list:
                    await self._list()
                    self._listed()
                await self._watch()
            except _Gone:
                log.info("informer=%s resourceVersion expired; relisting", self.name)
                self.relists += 1
                metrics.informer_relists.labels(self.name).inc()
                metrics.informer_restarts.labels(self.name, "expired").inc()
                self._need_list = True
            except _Silent:
                log.warning(
                    "informer=%s watch silent for %.0f s (no event, no bookmark); "
                    "watching again from resourceVersion %s",
                    self.name, self.idle_timeout, self.resource_version,
                )  # fmt: skip
                metrics.informer_restarts.labels(self.name, "silent").inc()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                delay = self._backoff.delay(self._failures)
                self._failures += 1
                if isinstance(e, _STREAM_ERRORS):
                    log.warning(
                        "informer=%s stream failed (%s: %s); retrying in %.1f s",
                        self.name, type(e).__name__, e, delay,
                    )  # fmt: skip
                else:  # a bug: say where, and carry on from a fresh list
                    log.error(
                        "informer=%s failed; relisting in %.1f s", self.name, delay, exc_info=e
                    )
                    self._need_list = True
                if isinstance(e, ApiError) and e.gone:
                    self._need_list = True
                await asyncio.sleep(delay)
            finally:
                self.connected = False

    async def _list(self) -> None:
        """List every object, page by page, into a fresh store; then reconcile.

        The next page is asked for before this one is decoded: the apiserver prepares it
        while the objects of this one are read, instead of each side waiting for the other
        (a large cluster's first list is dozens of pages). A continue token that expires
        mid-list (410) starts the list over.
        """
        fresh: dict[str, T] = {}
        params: dict[str, str | int | bool] = {**self._selectors, "limit": self._page_size}
        pending = self._page(params)
        try:
            while True:
                try:
                    page = await pending
                except ApiError as e:
                    if e.gone and "continue" in params:  # continue token expired mid-list
                        params.pop("continue")
                        fresh.clear()
                        pending = self._page(params)
                        continue
                    raise
                self.last_heard = self._clock()
                meta = page.get("metadata") or {}
                token = meta.get("continue")
                if token:
                    params["continue"] = token
                    pending = self._page(params)
                    # One turn of the loop sends the request; then this page is decoded.
                    await asyncio.sleep(0)
                for item in page.get("items") or ():
                    obj = self._decoded(item)
                    if obj is not None:
                        fresh[obj.key] = obj
                del page  # before the next page arrives: one decoded page alive at a time
                if not token:
                    self.resource_version = meta.get("resourceVersion", "")
                    break
        finally:
            pending.cancel()  # cancelled or failed mid-list: the prefetch goes too (else no-op)
        self._reconcile(fresh)

    def _page(self, params: Mapping[str, str | int | bool]) -> asyncio.Task[JSON]:
        """One page of the list, asked for now (``params`` as they are at this call)."""
        task = asyncio.create_task(
            self._client.request("GET", self._path, params=dict(params), timeout=120),
            name=f"informer-{self.name}-page",
        )
        # A prefetch abandoned with its error (the list was cancelled) is not an
        # unretrieved exception to log: whoever awaits the task still gets the error.
        task.add_done_callback(_retrieved)
        return task

    def _listed(self) -> None:
        """The store holds the apiserver's whole view (a list, or a watch's initial events):
        from now on a broken stream resumes from the last resourceVersion."""
        self._need_list = False
        self._stream_failed = False
        self.synced.set()
        self._failures = 0

    def _reconcile(self, fresh: dict[str, T]) -> None:
        old_store = self.store
        self.store = fresh
        for k, old in old_store.items():
            if k not in fresh:
                self._deliver(self._handler.on_delete, old)
        for k, new in fresh.items():
            prev = old_store.get(k)
            if prev is None:
                self._deliver(self._handler.on_add, new)
            elif prev.resource_version != new.resource_version:
                self._deliver(self._handler.on_update, prev, new)

    def _decoded(self, raw: JSON) -> T | None:
        """``decode(raw)``, or None (reported) when the object cannot be read."""
        try:
            return self._decode(raw)
        except Exception as e:
            self._failed(raw, e, "decode")
            return None

    def _deliver(self, call: Callable[..., None], *objs: T) -> None:
        """Hand objects to the handler; its exception is reported, never raised."""
        try:
            call(*objs)
        except Exception as e:
            self._failed(_raw_of(objs[-1]), e, "handler")

    def _failed(self, raw: JSON, error: BaseException, stage: str) -> None:
        self.errors += 1
        metrics.informer_errors.labels(self.name, stage).inc()
        meta = raw.get("metadata") if isinstance(raw, Mapping) else None
        meta = meta if isinstance(meta, Mapping) else {}
        what = f"{meta.get('namespace', '')}/{meta.get('name', '?')}".lstrip("/")
        log.error("informer=%s object=%s %s failed", self.name, what, stage, exc_info=error)
        if self._on_error is not None:
            try:
                self._on_error(raw, error)
            except Exception:
                log.exception("informer=%s error hook failed for %s", self.name, what)

    async def _watch(self, *, initial: bool = False) -> None:
        """Watch from :attr:`resource_version`; ``initial``: from nothing, the apiserver
        first sending every object as ADDED (``sendInitialEvents``, client-go's
        streaming list), then a bookmark marking their end.

        The initial objects go into a fresh store, reconciled with the old one at
        that bookmark exactly as a list is; the stream then goes on as a watch.
        Each object is decoded on its own, as it arrives: no page of hundreds of
        decoded objects at a time (which fragments the heap), and no round trip
        per page. Once they are complete, a stream that breaks resumes from the
        last resourceVersion like any watch (:meth:`_listed`).
        """
        params: dict[str, str | int | bool] = {
            **self._selectors,
            "watch": True,
            "allowWatchBookmarks": True,
            "resourceVersion": self.resource_version,
            # client-go spreads watch renewals between 5 and 10 minutes.
            "timeoutSeconds": random.randint(300, 600),
        }
        fresh: dict[str, T] | None = None
        if initial:
            # A consistent start: at least as new as the apiserver's storage now.
            params |= {
                "sendInitialEvents": True,
                "resourceVersionMatch": "NotOlderThan",
                "resourceVersion": "",
            }
            fresh = {}
        stream = self._client.stream(self._path, params=params, read_timeout=self.idle_timeout)
        self.connected = True
        try:
            async for event in stream:
                self.last_heard = self._clock()
                if fresh is None:
                    self._failures = 0
                    self._apply(event)
                elif _initial_events_end(event):
                    self.resource_version = event["object"]["metadata"]["resourceVersion"]
                    self._reconcile(fresh)
                    fresh = None
                    self._listed()
                else:
                    self._initial(event, fresh)
        except TimeoutError as e:  # aiohttp's read timeout is a TimeoutError
            if self._clock() - self.last_heard >= self.idle_timeout * 0.99:
                raise _Silent() from e
            raise

    def _initial(self, event: Mapping[str, Any], fresh: dict[str, T]) -> None:
        """One of a watch's initial events: into the fresh store (no handler yet)."""
        kind = event.get("type")
        raw = event.get("object") or {}
        if kind == "ERROR":
            self._apply(event)  # raises: 410 (start over) or the apiserver's error
        elif kind == "ADDED":
            obj = self._decoded(raw)
            if obj is not None:
                fresh[obj.key] = obj
        elif kind != "BOOKMARK":  # a progress bookmark says nothing of the objects
            log.warning("informer=%s ignoring initial event of type %r", self.name, kind)

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        raw = event.get("object") or {}
        if kind == "ERROR":
            if raw.get("code") == 410:
                raise _Gone()
            raise ApiError(
                status=int(raw.get("code") or 500),
                reason=str(raw.get("reason", "")),
                message=str(raw.get("message", "")),
                body=raw,
            )
        if kind == "BOOKMARK":
            self.resource_version = raw["metadata"]["resourceVersion"]
            return
        obj = self._decoded(raw)
        if obj is None:
            # Move past it: replaying the same event would fail the same way forever.
            rv = (raw.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.resource_version = rv
            return
        k = obj.key
        self.resource_version = obj.resource_version
        if kind in ("ADDED", "MODIFIED"):
            prev = self.store.get(k)
            self.store[k] = obj
            if prev is None:
                self._deliver(self._handler.on_add, obj)
            else:
                self._deliver(self._handler.on_update, prev, obj)
        elif kind == "DELETED":
            prev = self.store.pop(k, None)
            self._deliver(self._handler.on_delete, prev if prev is not None else obj)
        else:
            log.warning("informer=%s ignoring watch event of type %r", self.name, kind)


def _initial_events_end(event: Mapping[str, Any]) -> bool:
    """The bookmark after a watch's initial events (``k8s.io/initial-events-end``)."""
    if event.get("type") != "BOOKMARK":
        return False
    meta = (event.get("object") or {}).get("metadata") or {}
    return (meta.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true"


def _retrieved(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _raw_of(obj: object) -> JSON:
    """Enough of an object's identity for an error report."""
    key = str(getattr(obj, "key", ""))
    namespace, _, name = key.rpartition("/")
    uid = str(getattr(obj, "uid", ""))
    return {"metadata": {"namespace": namespace, "name": name, "uid": uid}}
