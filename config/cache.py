"""Django's Redis cache, with one client per connection pool and a window counter in one round trip.

Django builds a new `redis.Redis` (with its table of some 170 response callbacks) for every
operation, and its `incr` asks whether the key exists first. The API throttles count every call
(claims/throttling.py), so a call paid for six clients and six round trips; here it is one each.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        # redis.Redis is thread-safe and its pool reconnects after a fork, so one per pool will do.
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def count_in_window(self, key: str, timeout: int) -> int:
        """Create the window's counter with its expiry if it is new, and count one: atomically (MULTI)."""
        pipeline = self.get_client(key, write=True).pipeline(transaction=True)
        pipeline.set(key, 0, ex=timeout, nx=True)
        pipeline.incr(key)
        return pipeline.execute()[1]


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient

    def count_in_window(self, key: str, timeout: int) -> int:
        return self._cache.count_in_window(self.make_and_validate_key(key), timeout)
