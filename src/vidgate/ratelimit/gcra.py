"""Per-key request rate limits with GCRA (the generic cell rate algorithm).

One timestamp per key (the theoretical arrival time) instead of a window of counters: O(1) memory
and work per request, smooth at window edges. This store is in-process (embedded mode); the
scale-out deployment swaps in a Redis store with the same interface (redis_store.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from vidgate.settings import Settings


@dataclass(frozen=True, kw_only=True)
class Decision:
    allowed: bool
    limit: int  # burst size: requests allowed at once
    remaining: int
    retry_after_s: float  # 0 when allowed
    reset_s: float  # seconds until the bucket is full again
    window_s: float  # time to refill the whole burst

    def headers(self) -> dict[str, str]:
        """IETF RateLimit header fields (draft-ietf-httpapi-ratelimit-headers)."""
        headers = {
            "RateLimit-Policy": f'"per-key";q={self.limit};w={max(1, math.ceil(self.window_s))}',
            "RateLimit": f'"per-key";r={self.remaining};t={math.ceil(self.reset_s)}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return headers


US = 1_000_000  # times are whole microseconds, so every store computes exactly the same


def interval_us_of(rate_per_s: float) -> int:
    return max(1, round(US / rate_per_s))


def decide(
    *, stored_tat_us: int | None, now_us: int, interval_us: int, burst: int
) -> tuple[Decision, int | None]:
    """GCRA: the decision for a request now, and the key's new TAT when it is allowed (the Redis
    store's Lua script makes the same test to write the TAT atomically)."""
    window = interval_us * burst
    tat = max(stored_tat_us if stored_tat_us is not None else now_us, now_us)
    new_tat = tat + interval_us
    allow_at = new_tat - window
    if allow_at > now_us:
        refused = Decision(
            allowed=False,
            limit=burst,
            remaining=0,
            retry_after_s=(allow_at - now_us) / US,
            reset_s=(tat - now_us) / US,
            window_s=window / US,
        )
        return refused, None
    allowed = Decision(
        allowed=True,
        limit=burst,
        remaining=min(burst - 1, (now_us - allow_at) // interval_us),
        retry_after_s=0.0,
        reset_s=(new_tat - now_us) / US,
        window_s=window / US,
    )
    return allowed, new_tat


class RateLimiter(Protocol):
    async def hit(self, key: str, *, rate_per_s: float, burst: int) -> Decision: ...

    async def peek(self, key: str, *, rate_per_s: float, burst: int) -> Decision:
        """Would a hit be allowed now? Counts nothing."""
        ...

    async def close(self) -> None: ...


class InMemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._tat: dict[str, int] = {}  # theoretical arrival time, in microseconds
        self._max_keys = max_keys

    async def hit(self, key: str, *, rate_per_s: float, burst: int) -> Decision:
        return self._decide(key, rate_per_s=rate_per_s, burst=burst, record=True)

    async def peek(self, key: str, *, rate_per_s: float, burst: int) -> Decision:
        return self._decide(key, rate_per_s=rate_per_s, burst=burst, record=False)

    async def close(self) -> None:
        return None

    def _decide(self, key: str, *, rate_per_s: float, burst: int, record: bool) -> Decision:
        now = round(self._clock() * US)
        stored = self._tat.get(key)
        decision, new_tat = decide(
            stored_tat_us=stored, now_us=now, interval_us=interval_us_of(rate_per_s), burst=burst
        )
        if record and new_tat is not None:
            if stored is None and len(self._tat) >= self._max_keys:
                self._forget_idle(now)
            self._tat[key] = new_tat
        return decision

    def _forget_idle(self, now: int) -> None:
        # A key whose TAT has passed is indistinguishable from a new key.
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """The request-rate store: Redis, shared by every API process, when VIDGATE_REDIS_URL is set
    (this process's own limiter stands in while Redis is down, in `open` failure mode); else in
    process."""
    if settings.redis_url is None:
        return InMemoryRateLimiter()
    # Imported here: the Redis store builds on this module's Decision.
    from vidgate.ratelimit.redis_store import RedisRateLimiter
    from vidgate.redis_client import open_redis

    return RedisRateLimiter(
        open_redis(settings.redis_url),
        prefix=settings.redis_prefix,
        failure_mode=settings.redis_failure_mode,
        fallback=InMemoryRateLimiter(),
    )
