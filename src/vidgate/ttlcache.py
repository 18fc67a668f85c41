"""A small in-process cache whose entries expire: the principal cache and the render cache.

Written here rather than taken from a library because both need only get/put/pop with a fixed
TTL on a monotonic clock, on the hot path, and a bound that evicts expired entries first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(
        self,
        *,
        ttl_s: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._evict()
        self._entries[key] = (self._clock() + self.ttl_s, value)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def cached_keys(self) -> list[K]:
        return list(self._entries)

    def _evict(self) -> None:
        now = self._clock()
        for key in [k for k, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key]
        if len(self._entries) >= self.max_entries:  # all fresh: start over rather than grow
            self._entries.clear()
