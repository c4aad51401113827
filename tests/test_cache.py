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


def test_a_hit_count_takes_one_round_trip_and_starts_over_after_its_period(redis_server):
    cache = RedisCache(redis_server.url, {})
    key = f"test-{secrets.token_hex(4)}"
    assert [cache.count_hit(key, 60) for _ in range(3)] == [1, 2, 3]
    client = cache._cache.get_client(write=True)
    stored = cache.make_and_validate_key(key)
    assert 55 <= client.ttl(stored) <= 60  # set by the first hit, not moved by the next ones
    client.delete(stored)  # as Redis does once the period is over
    assert cache.count_hit(key, 60) == 1
    assert client.ttl(stored) > 0
    cache.delete(key)
