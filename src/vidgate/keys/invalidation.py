"""Telling every API process to forget a cached principal (keys/cache.py) when a key is revoked
or an account changes, wherever that happened: another API process, the admin CLI.

With Redis (VIDGATE_REDIS_URL) an invalidation is published on one pub/sub channel and every
API process's listener applies it to its cache as it arrives: effective everywhere at once.
Without Redis, or while it is unreachable, the other processes forget within the cache's TTL
(VIDGATE_PRINCIPAL_CACHE_TTL_S, 1 s), the bound that holds in any case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from vidgate.keys.cache import DEFAULT_TTL_S, PrincipalCache
from vidgate.redis_client import FAILURES, open_redis

if TYPE_CHECKING:
    import redis.asyncio as redis

    from vidgate.settings import Settings

logger = logging.getLogger("vidgate.keys")

RECONNECT_S = 1.0
# A listener's wait for a message between health checks (PING) of its connection.
LISTEN_WAIT_S = 5.0


class Scope(StrEnum):
    KEY = "key"
    ACCOUNT = "account"


@dataclass(frozen=True)
class Invalidation:
    scope: Scope
    id: int

    def encode(self) -> str:
        return f"{self.scope}:{self.id}"

    @classmethod
    def decode(cls, message: str) -> Invalidation | None:
        scope, _, number = message.partition(":")
        if scope not in tuple(Scope) or not number.isdigit():
            return None
        return cls(Scope(scope), int(number))


Apply = Callable[[Invalidation], None]


class PrincipalInvalidator(Protocol):
    async def publish(self, invalidation: Invalidation) -> None:
        """Tell every other process; never raises (the TTL bound still holds)."""
        ...

    async def start(self, apply: Apply) -> None:
        """Apply the invalidations other processes publish, from now until close()."""
        ...

    async def close(self) -> None: ...


class InProcessInvalidator:
    """Embedded mode: the local cache's own drop is all there is; other processes (the CLI's
    changes) take effect within the TTL."""

    async def publish(self, invalidation: Invalidation) -> None:
        return None

    async def start(self, apply: Apply) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisInvalidator:
    def __init__(self, url: str, *, prefix: str) -> None:
        self._url = url
        self._channel = f"{prefix}principal-invalidations"
        self._publisher = open_redis(url)
        self._listener: asyncio.Task[None] | None = None
        self._deaf = False  # the listener has lost Redis

    async def publish(self, invalidation: Invalidation) -> None:
        try:
            await self._publisher.publish(self._channel, invalidation.encode())
        except FAILURES as exc:
            logger.warning(
                "could not announce the invalidation of %s %s through Redis (%s); other "
                "processes forget it within the principal cache TTL",
                invalidation.scope,
                invalidation.id,
                exc,
            )

    async def start(self, apply: Apply) -> None:
        if self._listener is not None:
            return
        tried = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(apply, tried))
        # Serve with the subscription in place when Redis answers; do not wait on a dead one.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tried.wait(), timeout=1.0)

    async def _listen(self, apply: Apply, tried: asyncio.Event) -> None:
        client = open_redis(self._url, command_timeout_s=None)
        try:
            while True:
                try:
                    await self._relay(client, apply, tried)
                except FAILURES as exc:
                    if not self._deaf:  # once per outage
                        logger.warning(
                            "principal invalidations from other processes are not received "
                            "(Redis: %s); cached keys expire within the TTL meanwhile",
                            exc,
                        )
                    self._deaf = True
                    tried.set()
                await asyncio.sleep(RECONNECT_S)
        finally:
            await client.aclose()

    async def _relay(self, client: redis.Redis, apply: Apply, tried: asyncio.Event) -> None:
        async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self._channel)
            tried.set()
            if self._deaf:
                logger.info("principal invalidations are received from Redis again")
                self._deaf = False
            while True:
                message = await pubsub.get_message(timeout=LISTEN_WAIT_S)
                if message is None or message["type"] != "message":
                    continue
                invalidation = Invalidation.decode(message["data"])
                if invalidation is not None:
                    apply(invalidation)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        await self._publisher.aclose()


class SharedPrincipalCache(PrincipalCache):
    """The process's principal cache whose invalidations reach every other process: each
    invalidate_* call drops the entries here at once and publishes; what other processes
    publish is applied here (start() to close())."""

    def __init__(self, *, invalidator: PrincipalInvalidator, ttl_s: float = DEFAULT_TTL_S):
        super().__init__(ttl_s=ttl_s)
        self.invalidator = invalidator
        self._applying = False  # dropping for a received invalidation: nothing to publish
        self._publishing: set[asyncio.Task[None]] = set()

    def invalidate_key(self, key_id: int) -> None:
        super().invalidate_key(key_id)
        self._publish(Invalidation(Scope.KEY, key_id))

    def invalidate_account(self, account_id: int) -> None:
        with self._locally():  # one announcement for the account, none per key
            super().invalidate_account(account_id)
        self._publish(Invalidation(Scope.ACCOUNT, account_id))

    def apply(self, invalidation: Invalidation) -> None:
        with self._locally():
            if invalidation.scope is Scope.KEY:
                self.invalidate_key(invalidation.id)
            else:
                self.invalidate_account(invalidation.id)

    async def start(self) -> None:
        await self.invalidator.start(self.apply)

    async def close(self) -> None:
        if self._publishing:
            await asyncio.wait(self._publishing, timeout=1.0)
        await self.invalidator.close()

    @contextlib.contextmanager
    def _locally(self) -> Iterator[None]:
        applying, self._applying = self._applying, True
        try:
            yield
        finally:
            self._applying = applying

    def _publish(self, invalidation: Invalidation) -> None:
        # Called from request handlers, which need not wait: the publish goes out with the next
        # turn of the loop, before the answer reaches the client.
        if self._applying:
            return
        try:
            task = asyncio.get_running_loop().create_task(self.invalidator.publish(invalidation))
        except RuntimeError:  # no loop, no listener anywhere to tell
            return
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)


def build_invalidator(settings: Settings) -> PrincipalInvalidator:
    if settings.redis_url is None:
        return InProcessInvalidator()
    return RedisInvalidator(settings.redis_url, prefix=settings.redis_prefix)


async def announce(settings: Settings, invalidation: Invalidation) -> None:
    """For processes without a cache of their own (the admin CLI): publish once, then close."""
    invalidator = build_invalidator(settings)
    try:
        await invalidator.publish(invalidation)
    finally:
        await invalidator.close()
