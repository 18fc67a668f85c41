"""The Redis connection of a scale-out deployment (VIDGATE_REDIS_URL), made one way for everyone.

Commands sit on the request path, so a Redis that is down or unreachable must cost little: short
timeouts and no retries inside the client; the callers decide what a failure means (the rate
limiter's failure mode, the invalidator's TTL bound).
"""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

# A Redis on the same network answers in well under a millisecond; a quarter of a second means
# it is gone, and a request should not wait longer than that to learn so.
TIMEOUT_S = 0.25

# What a failed command raises: the client's errors and the socket's own.
FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def open_redis(url: str, *, command_timeout_s: float | None = TIMEOUT_S) -> redis.Redis:
    """A client for `url` (connects lazily, on first use). `command_timeout_s=None` suits a
    pub/sub listener, whose reads wait for the next message."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=TIMEOUT_S,
        socket_timeout=command_timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=15,
        decode_responses=True,
    )
