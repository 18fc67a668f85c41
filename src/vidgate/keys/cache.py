"""The principal cache: who a key is, without a database read on every request.

An entry lives at most `ttl_s` (1 s by default), which is the bound on how long a key revoked by
another process (another API process, the admin CLI) keeps working here; a revoke through this
process's API takes effect at once (`invalidate_key`). Failed lookups are never cached: unknown
keys are throttled per client address instead (api/deps.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vidgate.keys.service import Principal

DEFAULT_TTL_S = 1.0


class PrincipalCache:
    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._hash_of_key: dict[int, str] = {}

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        expires, principal = entry
        if self._clock() >= expires:
            del self._entries[key_hash]
            return None
        return principal

    def put(self, key_hash: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._evict_expired()
        self._entries[key_hash] = (self._clock() + self.ttl_s, principal)
        self._hash_of_key[principal.key_id] = key_hash

    def invalidate_key(self, key_id: int) -> None:
        key_hash = self._hash_of_key.pop(key_id, None)
        if key_hash is not None:
            self._entries.pop(key_hash, None)

    def _evict_expired(self) -> None:
        now = self._clock()
        for key_hash in [h for h, (expires, _) in self._entries.items() if expires <= now]:
            del self._entries[key_hash]
        if len(self._entries) >= self.max_entries:  # all fresh: start over rather than grow
            self._entries.clear()
            self._hash_of_key.clear()
