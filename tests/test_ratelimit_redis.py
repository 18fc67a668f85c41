"""The Redis rate-limit store against a real Redis: the same decisions as the in-process store,
one bucket for every client of it, and what a dead or hanging Redis costs in each failure mode."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Literal

import pytest
import redis

from redis_support import REDIS_URL, redis_prefix
from support import free_port
from vidgate.errors import RateLimitStoreUnavailable
from vidgate.ratelimit.gcra import Decision, InMemoryRateLimiter
from vidgate.ratelimit.redis_store import RETRY_S, RedisRateLimiter
from vidgate.redis_client import TIMEOUT_S, open_redis

RATE, BURST = 10.0, 5  # a token every 100 ms


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix() as value:
        yield value


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[RedisRateLimiter]:
    limiter = redis_store(REDIS_URL, prefix=prefix, failure_mode="closed")
    yield limiter
    await limiter.close()


def redis_store(
    url: str, *, prefix: str = "unused:", failure_mode: Literal["open", "closed"]
) -> RedisRateLimiter:
    return RedisRateLimiter(
        open_redis(url), prefix=prefix, failure_mode=failure_mode, fallback=InMemoryRateLimiter()
    )


class RedisClock:
    """The in-process store's clock set to the Redis server's time, as the Lua script reads it."""

    def __init__(self) -> None:
        self._client = redis.Redis.from_url(REDIS_URL)
        self.now = 0.0

    def sync(self) -> None:
        seconds, micros = self._client.time()
        self.now = seconds + micros / 1_000_000

    def __call__(self) -> float:
        return self.now


def assert_same(redis_decision: Decision, memory_decision: Decision) -> None:
    # The two clocks are read one round trip apart; everything else is equal.
    assert redis_decision.allowed == memory_decision.allowed
    assert redis_decision.remaining == memory_decision.remaining
    assert redis_decision.limit == memory_decision.limit
    assert redis_decision.window_s == memory_decision.window_s
    assert redis_decision.retry_after_s == pytest.approx(memory_decision.retry_after_s, abs=0.05)
    assert redis_decision.reset_s == pytest.approx(memory_decision.reset_s, abs=0.05)
    assert redis_decision.headers() == memory_decision.headers()


async def test_same_decisions_as_the_in_process_store(store: RedisRateLimiter) -> None:
    rate = 2.0  # a token every 500 ms: far from any boundary, even on a loaded machine
    clock = RedisClock()
    memory = InMemoryRateLimiter(clock=clock)
    pairs: list[tuple[Decision, Decision]] = []

    async def both(kind: Literal["hit", "peek"]) -> None:
        redis_decision = await getattr(store, kind)("k", rate_per_s=rate, burst=BURST)
        clock.sync()
        memory_decision = await getattr(memory, kind)("k", rate_per_s=rate, burst=BURST)
        pairs.append((redis_decision, memory_decision))

    for _ in range(BURST + 2):  # the burst, then two refused
        await both("hit")
    await both("peek")
    await asyncio.sleep(1.25)  # two tokens back, 250 ms away from the third
    for _ in range(3):
        await both("hit")

    for redis_decision, memory_decision in pairs:
        assert_same(redis_decision, memory_decision)
    allowed = [redis_decision.allowed for redis_decision, _ in pairs]
    assert allowed == [True] * BURST + [False, False, False] + [True, True, False]
    assert [d.remaining for d, _ in pairs[:BURST]] == [4, 3, 2, 1, 0]
    refused = pairs[BURST][0]
    assert 0.25 < refused.retry_after_s <= 0.5
    assert refused.headers()["Retry-After"] == "1"
    assert refused.headers()["RateLimit-Policy"] == '"per-key";q=5;w=3'


async def test_peek_counts_nothing(store: RedisRateLimiter) -> None:
    for _ in range(20):
        peeked = await store.peek("k", rate_per_s=RATE, burst=BURST)
        assert peeked.allowed
        assert peeked.remaining == BURST - 1
    hits = [await store.hit("k", rate_per_s=RATE, burst=BURST) for _ in range(BURST + 1)]
    assert [d.allowed for d in hits] == [True] * BURST + [False]
    assert not (await store.peek("k", rate_per_s=RATE, burst=BURST)).allowed


async def test_clients_share_one_bucket_that_expires_when_full(
    store: RedisRateLimiter, prefix: str
) -> None:
    other = redis_store(REDIS_URL, prefix=prefix, failure_mode="closed")  # another process
    try:
        decisions = [
            await (store if i % 2 else other).hit("k", rate_per_s=RATE, burst=BURST)
            for i in range(BURST + 1)
        ]
    finally:
        await other.close()
    assert [d.allowed for d in decisions] == [True] * BURST + [False]
    client = redis.Redis.from_url(REDIS_URL)
    ttl_ms = client.pttl(f"{prefix}ratelimit:k")
    assert 0 < ttl_ms <= 500  # the bucket refills in BURST / RATE s; then the key is gone
    assert (await store.hit("other", rate_per_s=RATE, burst=BURST)).remaining == BURST - 1


@contextmanager
def silent_redis() -> Iterator[str]:
    """A Redis URL whose server accepts connections and never answers (a hung or partitioned
    Redis, the case the socket timeouts are for)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join()
        for sock in accepted:
            sock.close()
        listener.close()


async def timed_hit(store: RedisRateLimiter) -> tuple[float, Decision | RateLimitStoreUnavailable]:
    started = time.perf_counter()
    try:
        result: Decision | RateLimitStoreUnavailable = await store.hit(
            "k", rate_per_s=RATE, burst=2
        )
    except RateLimitStoreUnavailable as exc:
        result = exc
    return time.perf_counter() - started, result


async def test_open_mode_limits_in_process_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = redis_store(f"redis://127.0.0.1:{free_port()}/0", failure_mode="open")
    caplog.set_level(logging.WARNING, logger="vidgate.ratelimit")
    try:
        results = [await timed_hit(store) for _ in range(3)]
    finally:
        await store.close()
    decisions = [result for _, result in results]
    assert all(isinstance(d, Decision) for d in decisions)
    assert [d.allowed for d in decisions if isinstance(d, Decision)] == [True, True, False]
    assert all(elapsed < 0.1 for elapsed, _ in results)  # a refused connect costs nothing
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "limited by each process on its own" in warnings[0]


async def test_closed_mode_refuses_with_retry_after() -> None:
    store = redis_store(f"redis://127.0.0.1:{free_port()}/0", failure_mode="closed")
    try:
        _, result = await timed_hit(store)
    finally:
        await store.close()
    assert isinstance(result, RateLimitStoreUnavailable)
    assert result.status_code == 503
    assert result.headers == {"Retry-After": "1"}
    assert "rate-limit store is unavailable" in result.message


async def test_a_hung_redis_costs_one_timeout_per_retry_period() -> None:
    with silent_redis() as url:
        store = redis_store(url, failure_mode="open")
        try:
            first, decision = await timed_hit(store)
            rest = [await timed_hit(store) for _ in range(20)]
            await asyncio.sleep(RETRY_S)
            retried, _ = await timed_hit(store)
        finally:
            await store.close()
    assert isinstance(decision, Decision)
    assert decision.allowed  # the in-process limiter answered
    assert TIMEOUT_S * 0.8 <= first < TIMEOUT_S + 0.2
    assert all(elapsed < 0.02 for elapsed, _ in rest)  # Redis is not asked again at once
    assert TIMEOUT_S * 0.8 <= retried < TIMEOUT_S + 0.2  # and is asked again after RETRY_S
