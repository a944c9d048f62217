"""The cache backends this project names in CACHES: Django's own, with one Redis client a process.

Django makes a cache object per thread and per asyncio context (`caches` is
an asgiref `Local`), and its Redis backend a client and connection pool per
cache object: every WebSocket consumer's first send opened a Redis connection
of its own (name lookup, connect, handshake), which it kept while its socket
lived. In a burst of first messages from new sockets the count was a third of
a send's database hop, nearly half of that connecting (docs/perf.md, round
fourteen). `ChatRedisCache` shares one client (one connection pool a server)
among all of a process's cache objects of the same configuration; redis-py's
pools are thread-safe.

The rate limit counts every send: with Django's API that is `add` then `incr`,
three Redis round trips (`incr` asks `EXISTS` first). `count` is one command,
a script that increments and sets the window's expiry on the first count.
Other backends (a development process's local memory) count with `add` and
`incr`, which is as exact, in more steps.
"""

from __future__ import annotations

import threading

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


# Atomic in Redis: the first count of a window starts its expiry, later ones leave it.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 and ARGV[1] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class ChatRedisCacheClient(RedisCacheClient):
    """Django's client with its pools, one client per pool and the count's script made
    once, when the process's one client of a configuration is made (none of it talks to
    Redis before a command), instead of on first use by whichever threads ask at once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pools = {
            index: self._pool_class.from_url(server, **self._pool_options)
            for index, server in enumerate(self._servers)
        }
        self._clients = {index: self._client(connection_pool=pool) for index, pool in self._pools.items()}
        self._count_script = self._clients[0].register_script(_COUNT)  # counts are writes: the first server

    def _get_connection_pool(self, write):
        return self._pools[self._get_connection_pool_index(write)]

    def get_client(self, key=None, *, write=False):
        """One client per connection pool (a client is thread-safe), not a new one per call."""
        return self._clients[self._get_connection_pool_index(write)]

    def count(self, key: str, timeout: int | None) -> int:
        """One EVALSHA (the script is loaded again by redis-py if the server lost it).

        The value is a plain integer, as Django's serializer stores one, so the
        cache's own `get` reads it."""
        return self._count_script(keys=[key], args=["" if timeout is None else int(timeout)])


class ChatRedisCache(RedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = ChatRedisCacheClient
        self._client_key = (tuple(self._servers), repr(sorted(self._options.items())))

    @property
    def _cache(self) -> ChatRedisCacheClient:
        """The process's client for these servers and options, made by the first cache object that asks."""
        client = _CLIENTS.get(self._client_key)
        if client is None:
            with _LOCK:
                client = _CLIENTS.get(self._client_key)
                if client is None:
                    client = _CLIENTS[self._client_key] = self._class(self._servers, **self._options)
        return client

    def count(self, key: str, timeout: int, version: int | None = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        return self._cache.count(key, self.get_backend_timeout(timeout))


_CLIENTS: dict[tuple, ChatRedisCacheClient] = {}
_LOCK = threading.Lock()  # a configuration's client is made once however many threads ask at once
