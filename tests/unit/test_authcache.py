"""The agents' token cache: hits, refusals, expiry, single-flight and rate limits."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

import orjson
import pytest

from lasched.latency.authcache import ReviewCache, ReviewCacheOptions, TokenBucket
from lasched.latency.hub import AuthError, Identity

AGENT = Identity(username="system:serviceaccount:lasched-system:lasched-agent", node="edge-1")


class Clock:
    """Monotonic and wall time in one, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeReviewer:
    """Knows a few good tokens; counts every review; can hold reviews until released."""

    def __init__(self, good: dict[str, Identity] | None = None) -> None:
        self.good = good if good is not None else {"good": AGENT}
        self.reviews: list[str] = []
        self.fail_with: AuthError | None = None
        self.gate: asyncio.Event | None = None

    async def review(self, token: str) -> Identity:
        self.reviews.append(token)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        if token in self.good:
            return self.good[token]
        raise AuthError(401, "token not valid")


def make(reviewer: FakeReviewer, clock: Clock, **options: Any) -> ReviewCache:
    return ReviewCache(reviewer, ReviewCacheOptions(**options), clock=clock, wall=clock)


def jwt(exp: float) -> str:
    def part(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(d)).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'exp': exp, 'sub': 'x'})}.signature"


async def test_a_valid_token_is_reviewed_once_then_answered_from_the_cache() -> None:
    """The second lookup of a good token costs the apiserver nothing."""
    reviewer, clock = FakeReviewer(), Clock()
    cache = make(reviewer, clock)
    assert await cache.authenticate("good", source="10.0.0.1") == AGENT
    clock.now += 299
    assert await cache.authenticate("good", source="10.0.0.1") == AGENT
    assert reviewer.reviews == ["good"]


async def test_a_valid_token_is_reviewed_again_after_the_positive_ttl() -> None:
    """Identities are reused for positive_ttl seconds, not forever."""
    reviewer, clock = FakeReviewer(), Clock()
    cache = make(reviewer, clock, positive_ttl=300)
    await cache.authenticate("good", source="a")
    clock.now += 301
    await cache.authenticate("good", source="a")
    assert reviewer.reviews == ["good", "good"]


async def test_a_token_is_not_cached_past_its_own_expiry() -> None:
    """A JWT expiring in 20 s is reviewed again after 20 s even though the TTL is 300 s."""
    clock = Clock()
    token = jwt(clock.now + 20)
    reviewer = FakeReviewer({token: AGENT})
    cache = make(reviewer, clock, positive_ttl=300)
    await cache.authenticate(token, source="a")
    clock.now += 19
    await cache.authenticate(token, source="a")
    assert len(reviewer.reviews) == 1
    clock.now += 2
    await cache.authenticate(token, source="a")
    assert len(reviewer.reviews) == 2


async def test_a_refused_token_is_refused_from_the_cache_until_the_negative_ttl() -> None:
    """401s are cached for negative_ttl: a loop on one bad token reviews once per 10 s."""
    reviewer, clock = FakeReviewer(), Clock()
    cache = make(reviewer, clock, negative_ttl=10)
    for _ in range(20):
        with pytest.raises(AuthError) as err:
            await cache.authenticate("garbage", source="a")
        assert err.value.status == 401
    assert reviewer.reviews == ["garbage"]
    clock.now += 11
    with pytest.raises(AuthError):
        await cache.authenticate("garbage", source="a")
    assert reviewer.reviews == ["garbage", "garbage"]


async def test_a_failed_review_is_not_cached() -> None:
    """A 503 (the apiserver failed) is the apiserver's state, not the token's: ask again."""
    reviewer, clock = FakeReviewer(), Clock()
    reviewer.fail_with = AuthError(503, "token review failed")
    cache = make(reviewer, clock)
    with pytest.raises(AuthError) as err:
        await cache.authenticate("good", source="a")
    assert err.value.status == 503
    reviewer.fail_with = None
    assert await cache.authenticate("good", source="a") == AGENT
    assert reviewer.reviews == ["good", "good"]


async def test_raw_tokens_are_never_kept() -> None:
    """Entries are keyed by the token's SHA-256; the token itself is nowhere in the cache."""
    reviewer, clock = FakeReviewer({"s3cret-token": AGENT}), Clock()
    cache = make(reviewer, clock)
    await cache.authenticate("s3cret-token", source="a")
    keys = list(cache._entries)
    assert keys == [hashlib.sha256(b"s3cret-token").digest()]
    assert "s3cret-token" not in repr(cache._entries)


async def test_the_cache_is_a_bounded_lru() -> None:
    """Beyond max_entries the least recently used answer is forgotten."""
    reviewer, clock = FakeReviewer({f"t{i}": AGENT for i in range(4)}), Clock()
    cache = make(reviewer, clock, max_entries=3, burst_per_source=10)
    for t in ("t0", "t1", "t2"):
        await cache.authenticate(t, source="a")
    await cache.authenticate("t0", source="a")  # t0 is now the most recent
    await cache.authenticate("t3", source="a")  # evicts t1
    assert len(cache) == 3
    await cache.authenticate("t0", source="a")
    await cache.authenticate("t1", source="a")
    assert reviewer.reviews == ["t0", "t1", "t2", "t3", "t1"]


async def test_concurrent_lookups_of_one_token_share_one_review() -> None:
    """Fifty upgrades with the same token at once: one TokenReview, fifty answers."""
    reviewer, clock = FakeReviewer(), Clock()
    reviewer.gate = asyncio.Event()
    cache = make(reviewer, clock)
    lookups = [
        asyncio.create_task(cache.authenticate("good", source=f"10.0.0.{i}")) for i in range(50)
    ]
    await asyncio.sleep(0)
    reviewer.gate.set()
    assert await asyncio.gather(*lookups) == [AGENT] * 50
    assert reviewer.reviews == ["good"]


async def test_a_caller_giving_up_does_not_cancel_the_shared_review() -> None:
    """Cancelling one waiter leaves the review running for the others, and its answer cached."""
    reviewer, clock = FakeReviewer(), Clock()
    reviewer.gate = asyncio.Event()
    cache = make(reviewer, clock)
    first = asyncio.create_task(cache.authenticate("good", source="a"))
    second = asyncio.create_task(cache.authenticate("good", source="b"))
    await asyncio.sleep(0)
    first.cancel()
    reviewer.gate.set()
    assert await second == AGENT
    assert await cache.authenticate("good", source="c") == AGENT
    assert reviewer.reviews == ["good"]


async def test_misses_over_the_global_rate_get_429_without_a_review() -> None:
    """Past the burst, unknown tokens are answered 429 with Retry-After, and the apiserver
    is not called; the bucket refills at the configured rate."""
    reviewer, clock = FakeReviewer(), Clock()
    cache = make(
        reviewer, clock, reviews_per_second=2, burst=5, reviews_per_source_per_second=100,
        burst_per_source=100,
    )  # fmt: skip
    for i in range(5):
        with pytest.raises(AuthError) as err:
            await cache.authenticate(f"garbage-{i}", source="a")
        assert err.value.status == 401
    with pytest.raises(AuthError) as err:
        await cache.authenticate("garbage-5", source="a")
    assert err.value.status == 429
    assert err.value.retry_after == 1
    assert len(reviewer.reviews) == 5
    clock.now += 0.5  # one token back at 2/s
    with pytest.raises(AuthError) as err:
        await cache.authenticate("garbage-6", source="a")
    assert err.value.status == 401
    assert len(reviewer.reviews) == 6


async def test_one_looping_source_does_not_spend_the_others_reviews() -> None:
    """A client past its own bucket gets 429; an agent from another address is reviewed."""
    reviewer, clock = FakeReviewer(), Clock()
    cache = make(reviewer, clock, reviews_per_source_per_second=1, burst_per_source=3)
    statuses = []
    for i in range(10):
        with pytest.raises(AuthError) as err:
            await cache.authenticate(f"garbage-{i}", source="10.9.9.9")
        statuses.append(err.value.status)
    assert statuses == [401] * 3 + [429] * 7
    assert await cache.authenticate("good", source="10.0.0.1") == AGENT
    assert len(reviewer.reviews) == 4


async def test_cached_answers_are_not_rate_limited() -> None:
    """An agent reconnecting with a token already reviewed passes even while the bucket is
    empty."""
    reviewer, clock = FakeReviewer(), Clock()
    cache = make(reviewer, clock, burst=1, burst_per_source=1)
    await cache.authenticate("good", source="a")
    with pytest.raises(AuthError) as err:
        await cache.authenticate("garbage", source="b")
    assert err.value.status == 429
    assert await cache.authenticate("good", source="a") == AGENT


def test_token_bucket_waits_for_the_next_token() -> None:
    """An empty bucket names the seconds until its next token."""
    bucket = TokenBucket(rate=4, burst=2, now=0.0)
    for _ in range(2):
        assert bucket.wait(0.0) == 0
        bucket.take()
    assert bucket.wait(0.0) == pytest.approx(0.25)
    assert bucket.wait(0.25) == 0


@pytest.mark.parametrize(
    "options",
    [{"positive_ttl": -1}, {"reviews_per_second": 0}, {"burst": 0}, {"max_entries": 0}],
    ids=["negative-ttl", "zero-rate", "zero-burst", "no-entries"],
)
def test_options_name_the_wrong_field(options: dict[str, Any]) -> None:
    """Invalid options fail at construction, naming the argument."""
    with pytest.raises(ValueError, match=next(iter(options))):
        ReviewCacheOptions(**options)
