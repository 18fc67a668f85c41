"""Per-key request rate limits with GCRA (the generic cell rate algorithm).

One timestamp per key (the theoretical arrival time) instead of a window of counters: O(1) memory
and work per request, smooth at window edges. This store is in-process (embedded mode); the
scale-out deployment swaps in a Redis store with the same interface.
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


class RateLimiter(Protocol):
    async def hit(self, key: str, *, rate_per_s: float, burst: int) -> Decision: ...

    async def peek(self, key: str, *, rate_per_s: float, burst: int) -> Decision:
        """Would a hit be allowed now? Counts nothing."""
        ...


class InMemoryRateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._max_keys = max_keys

    async def hit(self, key: str, *, rate_per_s: float, burst: int) -> Decision:
        return self._decide(key, rate_per_s=rate_per_s, burst=burst, record=True)

    async def peek(self, key: str, *, rate_per_s: float, burst: int) -> Decision:
        return self._decide(key, rate_per_s=rate_per_s, burst=burst, record=False)

    def _decide(self, key: str, *, rate_per_s: float, burst: int, record: bool) -> Decision:
        now = self._clock()
        interval = 1.0 / rate_per_s
        window = interval * burst
        tat = max(self._tat.get(key, now), now)
        new_tat = tat + interval
        allow_at = new_tat - window
        if allow_at > now:
            return Decision(
                allowed=False,
                limit=burst,
                remaining=0,
                retry_after_s=allow_at - now,
                reset_s=tat - now,
                window_s=window,
            )
        if record:
            if len(self._tat) >= self._max_keys:
                self._forget_idle(now)
            self._tat[key] = new_tat
        remaining = int((now - allow_at) / interval)
        return Decision(
            allowed=True,
            limit=burst,
            remaining=min(burst - 1, remaining),
            retry_after_s=0.0,
            reset_s=new_tat - now,
            window_s=window,
        )

    def _forget_idle(self, now: float) -> None:
        # A key whose TAT has passed is indistinguishable from a new key.
        for key in [k for k, tat in self._tat.items() if tat <= now]:
            del self._tat[key]


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """The request-rate store: in process now; the scale-out deployment adds a Redis store."""
    return InMemoryRateLimiter()
