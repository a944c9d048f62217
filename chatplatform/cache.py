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

`acount` is the count for code on the event loop (a socket's send,
conversations/loop_send.py): redis-py's client is blocking, and its round trip
held up every other socket of the process. Each event loop gets an asyncio
client of its own, closed as the loop closes (the way channels-redis ends its
per-loop connections: a connection of redis-py's asyncio client must be closed
on its own loop, and tests run a loop per test).
"""

from __future__ import annotations

import asyncio
import threading

import redis.asyncio
from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, cache, caches
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.commands.core import AsyncScript

from chatplatform.handlers import ProcessWide


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


async def acount(key: str, timeout: int) -> int:
    """`count` from the event loop, without blocking it on Redis."""
    counter = getattr(_loop_cache(), "acount", None)
    if counter is not None:
        return await counter(key, timeout)
    return count(key, timeout)  # an in-process backend (local memory): nothing to wait for


def _loop_cache() -> BaseCache:
    """The default cache object of the event loop's counts, one a process: `cache` is a
    lookup in asgiref's `Local` that made a cache object in each socket's context, at its
    first send (docs/perf.md, change 65). Its client is the process's one anyway
    (`ChatRedisCache`)."""
    return _PROCESS_CACHES[DEFAULT_CACHE_ALIAS]


_PROCESS_CACHES = ProcessWide(caches)


# Atomic in Redis: the first count of a window starts its expiry, later ones leave it.
_COUNT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 and ARGV[1] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def _count_args(timeout: int | None) -> list:
    """The script's ARGV: the window's lifetime in seconds, empty for none."""
    return ["" if timeout is None else int(timeout)]


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
        self._loop_scripts: dict[asyncio.AbstractEventLoop, AsyncScript] = {}

    def _get_connection_pool(self, write):
        return self._pools[self._get_connection_pool_index(write)]

    def get_client(self, key=None, *, write=False):
        """One client per connection pool (a client is thread-safe), not a new one per call."""
        return self._clients[self._get_connection_pool_index(write)]

    def count(self, key: str, timeout: int | None) -> int:
        """One EVALSHA (the script is loaded again by redis-py if the server lost it).

        The value is a plain integer, as Django's serializer stores one, so the
        cache's own `get` reads it."""
        return self._count_script(keys=[key], args=_count_args(timeout))

    async def acount(self, key: str, timeout: int | None) -> int:
        """`count` on the running loop's own asyncio client."""
        loop = asyncio.get_running_loop()
        script = self._loop_scripts.get(loop)
        if script is None:
            script = self._loop_scripts[loop] = self._loop_client(loop).register_script(_COUNT)
        return await script(keys=[key], args=_count_args(timeout))

    def _loop_client(self, loop: asyncio.AbstractEventLoop) -> redis.asyncio.Redis:
        """An asyncio client for `loop`, with the blocking pools' options (not their parser,
        a blocking one), closed and forgotten when the loop closes."""
        options = {name: value for name, value in self._pool_options.items() if name != "parser_class"}
        client = redis.asyncio.Redis.from_url(self._servers[0], **options)
        close = loop.close

        def close_client_then_loop() -> None:
            self._loop_scripts.pop(loop, None)
            loop.close = close
            if not loop.is_running() and not loop.is_closed():
                loop.run_until_complete(client.aclose())
            close()

        loop.close = close_client_then_loop
        return client


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

    async def acount(self, key: str, timeout: int, version: int | None = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        return await self._cache.acount(key, self.get_backend_timeout(timeout))


_CLIENTS: dict[tuple, ChatRedisCacheClient] = {}
_LOCK = threading.Lock()  # a configuration's client is made once however many threads ask at once
