"""Django's Redis cache, with one client per connection pool and window counters in one round trip.

Django builds a new `redis.Redis` (with its table of some 170 response callbacks) for every
operation, and its `incr` asks whether the key exists first. The API throttles count every call
in two windows (claims/throttling.py), which cost six clients and six round trips; here it is one.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient

# Count one in each window (KEYS[i]) and start a new window's expiry (ARGV[i] seconds), atomically.
# A single Redis server: in a cluster the keys of one call would have to share a hash slot.
COUNT_IN_WINDOWS = """
local counts = {}
for i, key in ipairs(KEYS) do
    counts[i] = redis.call('INCR', key)
    if counts[i] == 1 then
        redis.call('EXPIRE', key, ARGV[i])
    end
end
return counts
"""


class RedisCacheClient(DjangoRedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}
        self._count_script = None

    def get_client(self, key=None, *, write=False):
        # redis.Redis is thread-safe and its pool reconnects after a fork, so one per pool will do.
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def count_in_windows(self, windows: list[tuple[str, int]]) -> list[int]:
        client = self.get_client(write=True)
        if self._count_script is None:
            self._count_script = client.register_script(COUNT_IN_WINDOWS)  # EVALSHA, loaded when missing
        return self._count_script(
            keys=[key for key, _ in windows], args=[timeout for _, timeout in windows], client=client
        )


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = RedisCacheClient

    def count_in_windows(self, windows: list[tuple[str, int]]) -> list[int]:
        return self._cache.count_in_windows([(self.make_and_validate_key(key), timeout) for key, timeout in windows])
