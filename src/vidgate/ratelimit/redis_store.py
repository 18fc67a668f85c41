"""The per-key request limit shared by every API process: GCRA in Redis, one Lua script per call.

The script reads and writes the key's theoretical arrival time atomically and takes "now" from
the Redis server (TIME), so API processes on machines with skewed clocks agree on every bucket.
It computes exactly what InMemoryRateLimiter does, and a key expires once its bucket is full
again (an idle key is indistinguishable from a new one).

When Redis cannot be reached the failure mode decides: `open` limits each process on its own
(the in-process limiter) and logs a warning at most every WARN_EVERY_S; `closed` answers 503 with
Retry-After. Either way Redis is not asked again for RETRY_S, so a dead Redis costs one short
timeout per second, not one per request.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Literal

import redis.asyncio as redis

from vidgate.errors import RateLimitStoreUnavailable
from vidgate.ratelimit.gcra import Decision, RateLimiter, decide, interval_us_of
from vidgate.redis_client import FAILURES

logger = logging.getLogger("vidgate.ratelimit")

RETRY_S = 1.0
WARN_EVERY_S = 10.0

# KEYS[1]: the bucket; ARGV: interval (microseconds per request), burst, record (1: count it,
# 0: peek). Writes the new TAT when the request is allowed and recorded; returns the TAT it read
# (-1: none) and the server's now, from which gcra.decide builds the answer as the in-process
# store does. Times are whole microseconds: exact in Lua's doubles.
GCRA_SCRIPT = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then tat = math.max(tonumber(stored), now) end
local new_tat = tat + interval
if ARGV[3] == '1' and new_tat - interval * burst <= now then
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
             'PX', math.ceil((new_tat - now) / 1000))
end
return {stored or '-1', string.format('%.0f', now)}
"""


class RedisRateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        failure_mode: Literal["open", "closed"],
        fallback: RateLimiter,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._script = client.register_script(GCRA_SCRIPT)
        self._prefix = f"{prefix}ratelimit:"
        self._failure_mode = failure_mode
        self._fallback = fallback
        self._clock = clock
        self._down_until = -math.inf
        self._warned_at = -math.inf

    async def hit(self, key: str, *, rate_per_s: float, burst: int) -> Decision:
        return await self._decide(key, rate_per_s=rate_per_s, burst=burst, record=True)

    async def peek(self, key: str, *, rate_per_s: float, burst: int) -> Decision:
        return await self._decide(key, rate_per_s=rate_per_s, burst=burst, record=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def _decide(self, key: str, *, rate_per_s: float, burst: int, record: bool) -> Decision:
        if self._clock() >= self._down_until:
            interval = interval_us_of(rate_per_s)
            try:
                stored, now = await self._script(
                    keys=[self._prefix + key], args=[interval, burst, int(record)]
                )
            except FAILURES as exc:
                self._down_until = self._clock() + RETRY_S
                self._warn(exc)
            else:
                decision, _ = decide(
                    stored_tat_us=None if stored == "-1" else int(stored),
                    now_us=int(now),
                    interval_us=interval,
                    burst=burst,
                )
                return decision
        if self._failure_mode == "closed":
            raise RateLimitStoreUnavailable(headers={"Retry-After": str(math.ceil(RETRY_S))})
        limit = self._fallback.hit if record else self._fallback.peek
        return await limit(key, rate_per_s=rate_per_s, burst=burst)

    def _warn(self, exc: BaseException) -> None:
        now = self._clock()
        if now - self._warned_at < WARN_EVERY_S:
            return
        self._warned_at = now
        consequence = (
            "requests are limited by each process on its own"
            if self._failure_mode == "open"
            else "requests are refused with 503"
        )
        logger.warning(
            "the Redis rate-limit store is unreachable (%s): %s (VIDGATE_REDIS_FAILURE_MODE=%s)",
            exc.__class__.__name__ if not str(exc) else exc,
            consequence,
            self._failure_mode,
        )
