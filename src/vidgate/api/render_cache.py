"""Rendered JSON of ended tasks, so polling a finished task costs no database read.

An ended task does not change, so its status body is rendered once and reused for `ttl_s`
(its signed result URL stays valid for hours, and is re-signed after the TTL). Entries are
per surface and carry the owning account, so another account's key still gets a 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_TTL_S = 60.0


class RenderCache:
    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[tuple[str, str], tuple[float, int, bytes]] = {}

    def get(self, surface: str, task_id: str, *, account_id: int) -> bytes | None:
        entry = self._entries.get((surface, task_id))
        if entry is None:
            return None
        expires, owner, body = entry
        if self._clock() >= expires:
            del self._entries[(surface, task_id)]
            return None
        return body if owner == account_id else None

    def put(self, surface: str, task_id: str, *, account_id: int, body: bytes) -> None:
        if len(self._entries) >= self.max_entries:
            now = self._clock()
            for key in [k for k, (expires, _, _) in self._entries.items() if expires <= now]:
                del self._entries[key]
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[(surface, task_id)] = (self._clock() + self.ttl_s, account_id, body)

    def forget(self, task_id: str) -> None:
        """A stored result went away (deleted): render it afresh next time."""
        for key in [k for k in self._entries if k[1] == task_id]:
            del self._entries[key]
