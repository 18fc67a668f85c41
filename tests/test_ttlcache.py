"""The in-process caches: entries expire, the bound evicts expired entries first, and an
invalidated key is gone at once."""

from __future__ import annotations

from vidgate.api.render_cache import RenderCache
from vidgate.keys.cache import PrincipalCache
from vidgate.keys.service import Principal
from vidgate.ttlcache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def principal(key_id: int) -> Principal:
    return Principal(
        key_id=key_id, account_id=1, rate_limit_per_second=None, max_concurrent_jobs=None
    )


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(ttl_s=1.0, max_entries=10, clock=clock)
    cache.put("a", 1)
    clock.now = 0.99
    assert cache.get("a") == 1
    clock.now = 1.0
    assert cache.get("a") is None


def test_the_bound_evicts_expired_entries_before_fresh_ones() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(ttl_s=1.0, max_entries=2, clock=clock)
    cache.put("old", 1)
    clock.now = 0.5
    cache.put("fresh", 2)
    clock.now = 1.2  # "old" expired, "fresh" not
    cache.put("new", 3)
    assert (cache.get("fresh"), cache.get("new")) == (2, 3)
    assert cache.cached_keys() == ["fresh", "new"]


def test_an_invalidated_key_is_gone_at_once_even_after_the_reverse_map_was_pruned() -> None:
    clock = Clock()
    cache = PrincipalCache(ttl_s=1.0, max_entries=2, clock=clock)
    cache.put("h1", principal(1))
    clock.now = 2.0  # h1 expired
    cache.put("h2", principal(2))
    cache.put("h3", principal(3))  # prunes key 1 from the reverse map, keeps key 2
    cache.invalidate_key(2)
    assert cache.get("h2") is None
    assert cache.get("h3") == principal(3)


def test_a_rendered_body_is_only_for_its_account_and_can_be_forgotten() -> None:
    cache = RenderCache(ttl_s=60.0)
    cache.put("apimall", "vid_1", account_id=7, body=b"{}")
    assert cache.get("apimall", "vid_1", account_id=7) == b"{}"
    assert cache.get("apimall", "vid_1", account_id=8) is None
    assert cache.get("openai", "vid_1", account_id=7) is None
    cache.forget("vid_1")
    assert cache.get("apimall", "vid_1", account_id=7) is None
