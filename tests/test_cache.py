"""The Redis cache (the spawn rate limit's store), against a real Redis."""

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

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


def test_threads_count_on_connections_of_their_own_and_no_hit_is_lost(redis_server):
    cache = RedisCache(redis_server.url, {})
    key = f"test-{secrets.token_hex(4)}"
    with ThreadPoolExecutor(4) as threads:
        counts = list(threads.map(lambda _: cache.count_hit(key, 60), range(100)))
    assert sorted(counts) == list(range(1, 101))
    cache.delete(key)


def test_a_count_after_redis_dropped_the_connection_fails_once_then_reconnects(redis_server):
    cache = RedisCache(redis_server.url, {})
    key = f"test-{secrets.token_hex(4)}"
    assert cache.count_hit(key, 60) == 1
    counting = cache._cache._counting.connection  # this thread's; kill only it (other tests share the server)
    counting.send_command("CLIENT", "ID")
    assert cache._cache.get_client(write=True).client_kill_filter(_id=counting.read_response()) == 1
    with pytest.raises(redis.ConnectionError):  # the rate limit lets that request through
        cache.count_hit(key, 60)
    assert cache.count_hit(key, 60) == 2
    cache.delete(key)
