"""Informers: list, then watch from the list's resourceVersion.

The contract is client-go's reflector's: after a (paginated) list the store
holds exactly the apiserver's view; a watch then continues from the list's
resourceVersion with bookmarks, and every change reaches the handler in order.
When the watch's resourceVersion has been compacted away (410 Gone, or an
ERROR event with code 410) the informer lists again and reconciles: objects
gone from the new list are delivered as deletions, new ones as additions and
changed ones as updates, so the handler never misses a transition. Any other
stream failure reconnects from the last seen resourceVersion with jittered
exponential backoff.

Handlers are plain functions called on the event loop; they must not block.
"""

from __future__ import annotations

import asyncio
import logging
import random
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
        self, path: str, *, params: Mapping[str, str | int | bool], timeout: float | None = None
    ) -> AsyncIterator[JSON]: ...


class _Gone(Exception):
    """The resourceVersion we watch from is too old: relist."""


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
        page_size: int = 500,
        backoff: Backoff | None = None,
        name: str = "",
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
        self._backoff = backoff or Backoff()
        self.name = name or path
        self.store: dict[str, T] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.relists = 0

    async def run(self) -> None:
        """Run until cancelled. Cancelling is safe at any point."""
        failures = 0
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                    self.synced.set()
                failures = 0
                await self._watch()
            except _Gone:
                log.info("informer=%s resourceVersion expired; relisting", self.name)
                self.relists += 1
                metrics.informer_relists.labels(self.name).inc()
                need_list = True
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
                delay = self._backoff.delay(failures)
                failures += 1
                log.warning(
                    "informer=%s stream failed (%s); retrying in %.1f s", self.name, e, delay
                )
                if isinstance(e, ApiError) and e.gone:
                    need_list = True
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        fresh: dict[str, T] = {}
        params: dict[str, str | int | bool] = {**self._selectors, "limit": self._page_size}
        while True:
            try:
                page = await self._client.request("GET", self._path, params=params, timeout=120)
            except ApiError as e:
                if e.gone and "continue" in params:  # continue token expired mid-list
                    params.pop("continue")
                    fresh.clear()
                    continue
                raise
            for item in page.get("items") or ():
                obj = self._decode(item)
                fresh[obj.key] = obj
            meta = page.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                self.resource_version = meta.get("resourceVersion", "")
                break
            params["continue"] = token
        self._reconcile(fresh)

    def _reconcile(self, fresh: dict[str, T]) -> None:
        old_store = self.store
        self.store = fresh
        for k, old in old_store.items():
            if k not in fresh:
                self._handler.on_delete(old)
        for k, new in fresh.items():
            prev = old_store.get(k)
            if prev is None:
                self._handler.on_add(new)
            elif prev.resource_version != new.resource_version:
                self._handler.on_update(prev, new)

    async def _watch(self) -> None:
        params: dict[str, str | int | bool] = {
            **self._selectors,
            "watch": True,
            "allowWatchBookmarks": True,
            "resourceVersion": self.resource_version,
            # client-go spreads watch renewals between 5 and 10 minutes.
            "timeoutSeconds": random.randint(300, 600),
        }
        async for event in self._client.stream(self._path, params=params):
            self._apply(event)

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
        obj = self._decode(raw)
        k = obj.key
        self.resource_version = obj.resource_version
        if kind in ("ADDED", "MODIFIED"):
            prev = self.store.get(k)
            self.store[k] = obj
            if prev is None:
                self._handler.on_add(obj)
            else:
                self._handler.on_update(prev, obj)
        elif kind == "DELETED":
            prev = self.store.pop(k, None)
            self._handler.on_delete(prev if prev is not None else obj)
        else:
            log.warning("informer=%s ignoring watch event of type %r", self.name, kind)
