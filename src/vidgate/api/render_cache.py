"""Rendered JSON of ended tasks, so polling a finished task costs no database read.

An ended task does not change, so its status body is rendered once and reused for `ttl_s`
(its signed result URL stays valid for hours, and is re-signed after the TTL). Entries are
per surface and carry the owning account, so another account's key still gets a 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vidgate.ttlcache import TtlCache

DEFAULT_TTL_S = 60.0


class RenderCache:
    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bodies: TtlCache[tuple[str, str], tuple[int, bytes]] = TtlCache(
            ttl_s=ttl_s, max_entries=max_entries, clock=clock
        )

    def get(self, surface: str, task_id: str, *, account_id: int) -> bytes | None:
        entry = self._bodies.get((surface, task_id))
        if entry is None:
            return None
        owner, body = entry
        return body if owner == account_id else None

    def put(self, surface: str, task_id: str, *, account_id: int, body: bytes) -> None:
        self._bodies.put((surface, task_id), (account_id, body))

    def forget(self, task_id: str) -> None:
        """A stored result went away (deleted): render it afresh next time."""
        for key in self._bodies.cached_keys():
            if key[1] == task_id:
                self._bodies.pop(key)
