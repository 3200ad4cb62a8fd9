"""Agent tokens: each reviewed once, the answer reused, the reviews rate-limited.

Without this every upgrade request cost one TokenReview, and a client looping
on garbage tokens turned the agents' port into a load generator aimed at the
apiserver. :class:`ReviewCache` stands between the hub and the reviewer:

- an answer is cached under the SHA-256 of the token (a raw token is never a
  key, so a dump of the cache reveals none): an identity for ``positive_ttl``
  or until the token expires, whichever is sooner; a refusal (401, 403) for
  ``negative_ttl``. A failed review (503) is not cached. The cache is an LRU of
  at most ``max_entries``;
- concurrent lookups of the same token share one review (single-flight);
- a lookup that must review takes a token from its source's bucket and from the
  global one; when either is empty the answer is 429 with the seconds until a
  token is back, and the apiserver is not called. Per-source buckets keep one
  looping client from spending everyone's reviews.

Time comes from ``clock`` (monotonic seconds) and ``wall`` (Unix seconds, for
the token's expiry), both injectable.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from lasched import metrics
from lasched.latency.hub import AuthError, Identity

MAX_SOURCES = 1024
"""Per-source buckets kept; the least recently used is forgotten (it was full anyway)."""


class TokenReviewer(Protocol):
    async def review(self, token: str) -> Identity:
        """The token's identity from the apiserver; raises :class:`AuthError` if refused."""
        ...


@dataclass(frozen=True, slots=True)
class ReviewCacheOptions:
    positive_ttl: float = 300.0
    negative_ttl: float = 10.0
    max_entries: int = 4096
    reviews_per_second: float = 20.0
    burst: int = 50
    reviews_per_source_per_second: float = 2.0
    burst_per_source: int = 5

    def __post_init__(self) -> None:
        for name in ("positive_ttl", "negative_ttl"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be non-negative, not {getattr(self, name)!r}")
        for name in ("reviews_per_second", "reviews_per_source_per_second"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)!r}")
        for name in ("max_entries", "burst", "burst_per_source"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("_at", "_level", "burst", "rate")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._level = float(burst)
        self._at = now

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0 if one is now)."""
        self._level = min(self.burst, self._level + (now - self._at) * self.rate)
        self._at = now
        return 0.0 if self._level >= 1 else (1 - self._level) / self.rate

    def take(self) -> None:
        """Spend the token :meth:`wait` just found."""
        self._level -= 1


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float  # on ``clock``
    identity: Identity | None
    refusal: AuthError | None


class ReviewCache:
    """Caches and rate-limits ``reviewer``; an :class:`~lasched.latency.hub.Authenticator`.

    Cancelling :meth:`authenticate` is safe: a review in flight goes on for the
    other callers and its answer is cached.
    """

    def __init__(
        self,
        reviewer: TokenReviewer,
        options: ReviewCacheOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._reviewer = reviewer
        self.options = opts = options or ReviewCacheOptions()
        self._clock = clock
        self._wall = wall
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Task[Identity]] = {}
        self._bucket = TokenBucket(opts.reviews_per_second, opts.burst, clock())
        self._sources: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def authenticate(self, token: str, *, source: str) -> Identity:
        """The token's identity; raises :class:`AuthError` (401, 403, 429 or 503) if refused."""
        key = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            if entry.expires > now:
                self._entries.move_to_end(key)
                if entry.identity is not None:
                    metrics.agent_token_reviews.labels("cached_hit").inc()
                    return entry.identity
                assert entry.refusal is not None
                metrics.agent_token_reviews.labels("cached_negative").inc()
                raise AuthError(entry.refusal.status, entry.refusal.reason)
            del self._entries[key]
        task = self._inflight.get(key)
        if task is not None:
            metrics.agent_token_reviews.labels("shared").inc()
        else:
            self._admit(source, now)
            metrics.agent_token_reviews.labels("reviewed").inc()
            task = asyncio.create_task(self._review(key, token), name="token-review")
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._reviewed, key))
        # shield: a caller that gives up must not cancel the review others wait for.
        return await asyncio.shield(task)

    def _admit(self, source: str, now: float) -> None:
        """Take a review token from ``source``'s bucket and the global one, or raise 429."""
        opts = self.options
        own = self._sources.get(source)
        if own is None:
            own = TokenBucket(opts.reviews_per_source_per_second, opts.burst_per_source, now)
            self._sources[source] = own
            if len(self._sources) > MAX_SOURCES:
                self._sources.popitem(last=False)
        self._sources.move_to_end(source)
        wait = max(own.wait(now), self._bucket.wait(now))
        if wait > 0:
            metrics.agent_token_reviews.labels("rate_limited").inc()
            raise AuthError(
                429, "too many token reviews; try again later", retry_after=math.ceil(wait)
            )
        own.take()
        self._bucket.take()

    async def _review(self, key: bytes, token: str) -> Identity:
        try:
            identity = await self._reviewer.review(token)
        except AuthError as e:
            if e.status in (401, 403) and self.options.negative_ttl > 0:
                self._store(key, _Entry(self._clock() + self.options.negative_ttl, None, e))
            raise
        ttl = self.options.positive_ttl
        expiry = _expiry(token)
        if expiry is not None:
            ttl = min(ttl, expiry - self._wall())
        if ttl > 0:
            self._store(key, _Entry(self._clock() + ttl, identity, None))
        return identity

    def _store(self, key: bytes, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.options.max_entries:
            self._entries.popitem(last=False)

    def _reviewed(self, key: bytes, task: asyncio.Task[Identity]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        # Every caller may have given up; the outcome is then read here, not lost.
        if not task.cancelled():
            task.exception()


def _expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, unverified.

    Only ever used to cache a token the apiserver accepted for *less* time;
    the apiserver did the verifying.
    """
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = orjson.loads(raw)
    except (binascii.Error, ValueError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        return None
    return float(exp)
