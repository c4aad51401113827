"""The Redis cache (the spawn rate limit's store), against a real Redis."""

import secrets

from tmpnb_site.cache import RedisCache


def test_the_redis_cache_counts_and_reuses_one_client(redis_server):
    cache = RedisCache(redis_server.url, {})
    key = f"test-{secrets.token_hex(4)}"
    assert cache.add(key, 1, 10) and not cache.add(key, 5, 10)
    assert cache.incr(key) == 2 and cache.get(key) == 2
    assert cache._cache.get_client(write=True) is cache._cache.get_client(write=False)
    cache.delete(key)
