"""GCRA rate limiting with a controlled clock."""

from __future__ import annotations

from vidgate.ratelimit.gcra import InMemoryRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_burst_then_steady_rate() -> None:
    clock = Clock()
    limiter = InMemoryRateLimiter(clock=clock)
    decisions = [await limiter.hit("k", rate_per_s=2, burst=4) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, True, False]
    assert [d.remaining for d in decisions[:4]] == [3, 2, 1, 0]
    refused = decisions[-1]
    assert 0.4 < refused.retry_after_s <= 0.5
    assert refused.headers()["Retry-After"] == "1"
    assert refused.headers()["RateLimit-Policy"] == '"per-key";q=4;w=2'
    assert refused.headers()["RateLimit"].startswith('"per-key";r=0;t=')

    clock.now += 0.5  # one token back at 2/s
    assert (await limiter.hit("k", rate_per_s=2, burst=4)).allowed
    assert not (await limiter.hit("k", rate_per_s=2, burst=4)).allowed


async def test_keys_are_independent() -> None:
    limiter = InMemoryRateLimiter(clock=Clock())
    assert (await limiter.hit("a", rate_per_s=1, burst=1)).allowed
    assert not (await limiter.hit("a", rate_per_s=1, burst=1)).allowed
    assert (await limiter.hit("b", rate_per_s=1, burst=1)).allowed


async def test_idle_keys_are_forgotten_when_full() -> None:
    clock = Clock()
    limiter = InMemoryRateLimiter(clock=clock, max_keys=2)
    await limiter.hit("a", rate_per_s=10, burst=5)
    await limiter.hit("b", rate_per_s=10, burst=5)
    clock.now += 10
    await limiter.hit("c", rate_per_s=10, burst=5)
    assert set(limiter._tat) == {"c"}
