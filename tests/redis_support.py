"""Real Redis for the tests of the scale-out pieces: each test gets a key prefix of its own (keys
and pub/sub channels alike) and leaves nothing under it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from support import service_missing

REDIS_URL = os.environ.get("VIDGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/1")


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A fresh `vidgate-test-...:` prefix on the test Redis, its keys deleted afterwards; skips
    (fails under CI=true) when Redis is not running."""
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing(f"Redis is not reachable at {REDIS_URL}: {exc}")
    prefix = f"vidgate-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        stale = list(client.scan_iter(match=f"{prefix}*"))
        if stale:
            client.delete(*stale)
        client.close()
