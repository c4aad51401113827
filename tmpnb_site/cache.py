"""Django's Redis cache (the spawn rate limit's store), keeping one client per
connection pool. Django's builds a new redis.Redis for every call, and with
redis-py 8 the constructor alone costs about 0.3 ms: a tenth of an
admission's CPU on the 2-core machine of docs/performance.md."""

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}  # id of a connection pool (kept for good in self._pools) -> its client

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            # Threads may race to make one: both are usable, one is kept.
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient
