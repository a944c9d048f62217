"""The cache backends this project names in CACHES: Django's own, plus a counter in one round trip.

The rate limit counts every send: with Django's API that is `add` then `incr`,
three Redis round trips (`incr` asks `EXISTS` first), each through a new
client object (Django's Redis backend builds one per call, ~5 % of a send's
database hop). `count` is a `SET NX` and an `INCR` pipelined, through one
client per connection pool. Other backends (a development process's local
memory) count with `add` and `incr`, which is as exact, in more steps.
"""

from __future__ import annotations

from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient


def count(key: str, timeout: int) -> int:
    """Add one to the counter `key`, which lives `timeout` seconds from its first count; its new value."""
    counter = getattr(cache, "count", None)
    if counter is not None:
        return counter(key, timeout)
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired or evicted between add and incr
        cache.set(key, 1, timeout=timeout)
        return 1


class ChatRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, object] = {}

    def get_client(self, key=None, *, write=False):
        """One client per connection pool (a client is thread-safe), not a new one per call."""
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients.setdefault(index, super().get_client(key, write=write))
        return client

    def count(self, key: str, timeout: int | None) -> int:
        pipe = self.get_client(key, write=True).pipeline(transaction=False)
        pipe.set(key, self._serializer.dumps(0), ex=timeout, nx=True)
        pipe.incr(key)
        return pipe.execute()[1]


class ChatRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = ChatRedisCacheClient

    def count(self, key: str, timeout: int, version: int | None = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        return self._cache.count(key, self.get_backend_timeout(timeout))
