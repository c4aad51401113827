"""Django's Redis cache (the rate limits' store), keeping one client per
connection pool, with a counter that costs one round trip.

Django's builds a new redis.Redis for every call, and with redis-py 8 the
constructor alone costs about 0.3 ms: a tenth of an admission's CPU on the
2-core machine of docs/performance.md."""

import threading
from typing import TYPE_CHECKING, Any

from django.core.cache.backends import redis as django_redis

if TYPE_CHECKING:
    from redis import ConnectionPool, Redis

# One INCR, and the count's lifetime set by the hit that starts it: atomic in
# Redis, so no count outlives its period however requests interleave.
COUNT_HIT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class RedisCacheClient(django_redis.RedisCacheClient):
    if TYPE_CHECKING:  # Django's own, private: django-stubs leaves them out
        _client: type["Redis"]

        def _get_connection_pool(self, write: bool) -> "ConnectionPool": ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Redis] = {}  # id of a connection pool (kept for good in self._pools) -> its client
        self._counting = threading.local()  # each thread's connection for count_hit

    def get_client(self, key: "django_redis._Key | None" = None, *, write: bool = False) -> "Redis":
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            # Threads may race to make one: both are usable, one is kept.
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client

    def count_hit(self, key: str, seconds: int) -> int:
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
            count: int = connection.read_response()
            return count
        except BaseException:
            connection.disconnect()
            raise


class RedisCache(django_redis.RedisCache):
    if TYPE_CHECKING:  # Django's own, private: django-stubs leaves them out
        _class: type[RedisCacheClient]
        _cache: RedisCacheClient

    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    def count_hit(self, key: str, seconds: int) -> int:
        """Add one to the count at ``key`` and return it; the count starts
        over ``seconds`` after its first hit. One round trip to Redis."""
        return self._cache.count_hit(self.make_and_validate_key(key), seconds)
