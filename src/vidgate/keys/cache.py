"""The principal cache: who a key is, without a database read on every request.

An entry lives at most `ttl_s` (1 s by default), which is the bound on how long a key revoked by
another process (another API process, the admin CLI) keeps working here; a revoke through this
process's API takes effect at once (`invalidate_key`), as does an admin's change to an account
(`invalidate_account`). Failed lookups are never cached: unknown keys are throttled per client
address instead (api/deps.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vidgate.keys.service import Principal
from vidgate.ttlcache import TtlCache

DEFAULT_TTL_S = 1.0


class PrincipalCache:
    def __init__(
        self,
        *,
        ttl_s: float = DEFAULT_TTL_S,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._by_hash: TtlCache[str, Principal] = TtlCache(
            ttl_s=ttl_s, max_entries=max_entries, clock=clock
        )
        self._hash_of_key: dict[int, str] = {}
        self._keys_of_account: dict[int, set[int]] = {}

    @property
    def ttl_s(self) -> float:
        return self._by_hash.ttl_s

    def get(self, key_hash: str) -> Principal | None:
        return self._by_hash.get(key_hash)

    def put(self, key_hash: str, principal: Principal) -> None:
        if len(self._hash_of_key) >= self._by_hash.max_entries:
            # Forget the keys whose entries are gone, so the reverse map stays bounded.
            self._hash_of_key = {
                key_id: key_hash
                for key_id, key_hash in self._hash_of_key.items()
                if self._by_hash.get(key_hash) is not None
            }
            self._keys_of_account = {}
            for key_id, cached_hash in self._hash_of_key.items():
                cached = self._by_hash.get(cached_hash)
                if cached is not None:
                    self._keys_of_account.setdefault(cached.account_id, set()).add(key_id)
        self._by_hash.put(key_hash, principal)
        self._hash_of_key[principal.key_id] = key_hash
        self._keys_of_account.setdefault(principal.account_id, set()).add(principal.key_id)

    def invalidate_key(self, key_id: int) -> None:
        key_hash = self._hash_of_key.pop(key_id, None)
        if key_hash is not None:
            self._by_hash.pop(key_hash)

    def invalidate_account(self, account_id: int) -> None:
        """Forget every key of the account (approved, suspended, credits or keys changed)."""
        for key_id in self._keys_of_account.pop(account_id, set()):
            self.invalidate_key(key_id)
