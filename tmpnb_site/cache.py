"""Django's Redis cache (the rate limits' store), keeping one client per
connection pool, with a counter that costs one round trip.

Django's builds a new redis.Redis for every call, and with redis-py 8 the
constructor alone costs about 0.3 ms: a tenth of an admission's CPU on the
2-core machine of docs/performance.md."""

import threading

from django.core.cache.backends import redis as django_redis

# One INCR, and the count's lifetime set by the hit that starts it: atomic in
# Redis, so no count outlives its period however requests interleave.
COUNT_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}  # id of a connection pool (kept for good in self._pools) -> its client
        self._counting = threading.local()  # each thread's connection for count_hit

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            # Threads may race to make one: both are usable, one is kept.
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client

    def count_hit(self, key, seconds):
        """One EVAL on a connection of the thread's own, outside the pool:
        a pool's checkout (its lock, a poll that the connection has nothing
        left to read, its metrics) cost twice the command itself, on every
        request. A connection that fails is closed, and the next hit opens
        it again."""
        connection = getattr(self._counting, "connection", None)
        if connection is None:
            pool = self._get_connection_pool(write=True)
            connection = self._counting.connection = pool.connection_class(**pool.connection_kwargs)
        try:
            connection.send_command("EVAL", COUNT_HIT, 1, key, seconds)
            return connection.read_response()
        except BaseException:
            connection.disconnect()
            raise


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient

    def count_hit(self, key, seconds):
        """Add one to the count at ``key`` and return it; the count starts
        over ``seconds`` after its first hit. One round trip to Redis."""
        return self._cache.count_hit(self.make_and_validate_key(key), seconds)
