"""Principal-cache invalidations announced through a real Redis: what one process drops, the
others drop as it arrives; one announcement per change; a dead Redis costs no request anything."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from redis_support import REDIS_URL, redis_prefix
from support import free_port
from vidgate.keys.invalidation import (
    Invalidation,
    RedisInvalidator,
    Scope,
    SharedPrincipalCache,
    announce,
)
from vidgate.keys.service import Principal
from vidgate.settings import Settings


def principal(key_id: int, account_id: int) -> Principal:
    return Principal(
        key_id=key_id, account_id=account_id, rate_limit_per_second=None, max_concurrent_jobs=None
    )


@pytest.fixture
def prefix() -> Iterator[str]:
    with redis_prefix() as value:
        yield value


@pytest.fixture
async def caches(prefix: str) -> AsyncIterator[tuple[SharedPrincipalCache, SharedPrincipalCache]]:
    """Two processes' caches (a long TTL: only an announcement makes an entry go early)."""
    pair = tuple(
        SharedPrincipalCache(invalidator=RedisInvalidator(REDIS_URL, prefix=prefix), ttl_s=60)
        for _ in range(2)
    )
    for cache in pair:
        await cache.start()
    yield pair[0], pair[1]
    for cache in pair:
        await cache.close()


async def until(condition: object, timeout_s: float = 2.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if callable(condition) and condition():
            return time.monotonic() - started
        await asyncio.sleep(0.002)
    raise AssertionError("not within the time")


async def test_a_key_dropped_in_one_process_is_dropped_in_the_other(
    caches: tuple[SharedPrincipalCache, SharedPrincipalCache],
) -> None:
    here, there = caches
    for cache in caches:
        cache.put("h1", principal(1, account_id=7))
        cache.put("h2", principal(2, account_id=7))
    here.invalidate_key(1)
    assert here.get("h1") is None  # at once here
    await until(lambda: there.get("h1") is None)
    assert there.get("h2") == principal(2, account_id=7)


async def test_an_account_change_is_one_announcement_that_drops_every_key_of_it(
    caches: tuple[SharedPrincipalCache, SharedPrincipalCache], prefix: str
) -> None:
    here, there = caches
    heard: list[str] = []
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
        await pubsub.subscribe(f"{prefix}principal-invalidations")
        for cache in caches:
            cache.put("h1", principal(1, account_id=7))
            cache.put("h2", principal(2, account_id=7))
            cache.put("h3", principal(3, account_id=8))
        here.invalidate_account(7)
        await until(lambda: there.get("h1") is None and there.get("h2") is None)
        # Half a second more: anything else published would have arrived by then.
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=0.05)  # None also for the subscribe
            if message is not None:
                heard.append(message["data"])
    await client.aclose()
    assert heard == ["account:7"]  # one announcement; the receiving process republished nothing
    assert there.get("h3") == principal(3, account_id=8)


async def test_the_cli_announcement_reaches_a_running_process(
    caches: tuple[SharedPrincipalCache, SharedPrincipalCache], prefix: str
) -> None:
    _, there = caches
    there.put("h5", principal(5, account_id=1))
    await announce(Settings(redis_url=REDIS_URL, redis_prefix=prefix), Invalidation(Scope.KEY, 5))
    await until(lambda: there.get("h5") is None)


async def test_a_dead_redis_costs_nothing_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vidgate.keys")
    dead = f"redis://127.0.0.1:{free_port()}/0"
    cache = SharedPrincipalCache(invalidator=RedisInvalidator(dead, prefix="x:"), ttl_s=60)
    started = time.monotonic()
    await cache.start()  # the server starts all the same
    cache.put("h1", principal(1, account_id=1))
    cache.invalidate_key(1)
    assert cache.get("h1") is None
    await cache.close()  # waits for the announcement, which fails
    assert time.monotonic() - started < 0.5
    messages = [record.getMessage() for record in caplog.records]
    assert any("are not received" in m for m in messages), messages
    assert any("could not announce the invalidation of key 1" in m for m in messages), messages


def test_messages_that_are_not_invalidations_are_ignored() -> None:
    assert Invalidation.decode("key:12") == Invalidation(Scope.KEY, 12)
    assert Invalidation.decode("account:3") == Invalidation(Scope.ACCOUNT, 3)
    for junk in ("key:", "key:x", "task:1", "", "account:-1"):
        assert Invalidation.decode(junk) is None
