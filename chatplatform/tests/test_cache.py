"""The Redis cache: one client a process; the rate limit's counter, one command on Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.db import database_sync_to_async
from django.core.cache import cache as default_cache
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache

from chatplatform.cache import ChatRedisCache, _loop_cache, acount, count


@pytest.fixture
def redis_cache(redis_url):
    cache = ChatRedisCache(redis_url, {"KEY_PREFIX": f"test-{uuid.uuid4().hex}"})
    yield cache
    cache.clear()


def test_redis_counter_counts_in_a_fixed_window(redis_cache):
    assert [redis_cache.count("sends", 120) for _ in range(3)] == [1, 2, 3]
    assert redis_cache.get("sends") == 3  # the cache's own reads see the count
    client = redis_cache._cache.get_client(write=True)
    key = redis_cache.make_and_validate_key("sends")
    ttl = client.ttl(key)
    assert 0 < ttl <= 120
    client.expire(key, 5)
    assert redis_cache.count("sends", 120) == 4
    assert client.ttl(key) <= 5  # a later count does not stretch the window


def test_redis_counter_starts_again_once_its_window_is_gone(redis_cache):
    redis_cache.count("sends", 120)
    redis_cache.delete("sends")
    assert redis_cache.count("sends", 120) == 1


def test_redis_counter_is_one_command(redis_cache, monkeypatch):
    redis_cache.count("warm", 120)
    client = redis_cache._cache.get_client(write=True)
    sent = []
    execute = client.execute_command
    monkeypatch.setattr(
        client, "execute_command", lambda *args, **kw: sent.append(args[0]) or execute(*args, **kw)
    )
    monkeypatch.setattr(client, "pipeline", None)  # no pipeline either
    assert redis_cache.count("sends", 120) == 1
    assert sent == ["EVALSHA"]


def test_redis_counter_loads_its_script_again_after_a_flush(redis_cache):
    assert redis_cache.count("sends", 120) == 1
    redis_cache._cache.get_client(write=True).script_flush()
    assert redis_cache.count("sends", 120) == 2


def test_redis_counter_without_a_timeout_never_expires(redis_cache):
    assert redis_cache.count("forever", None) == 1
    client = redis_cache._cache.get_client(write=True)
    assert client.ttl(redis_cache.make_and_validate_key("forever")) == -1


def test_one_redis_client_per_connection_pool(redis_cache):
    client = redis_cache._cache.get_client(write=True)
    assert redis_cache._cache.get_client(write=True) is client


def test_cache_objects_of_one_configuration_share_one_client(redis_url):
    same = ChatRedisCache(redis_url, {"OPTIONS": {"socket_timeout": 1}})
    again = ChatRedisCache(redis_url, {"OPTIONS": {"socket_timeout": 1}})
    other = ChatRedisCache(redis_url, {"OPTIONS": {"socket_timeout": 2}})
    assert same._cache is again._cache
    assert same._cache.get_client(write=True) is again._cache.get_client(write=True)
    assert other._cache is not same._cache


async def test_sockets_first_counts_share_one_connection_pool(settings, redis_url):
    """Each consumer runs in its own asyncio context, where Django makes it a cache object of
    its own: their first sends all count through one pool, not a Redis connection each."""
    settings.CACHES = {
        "default": {"BACKEND": "chatplatform.cache.ChatRedisCache", "LOCATION": redis_url, "KEY_PREFIX": "t"}
    }
    key = f"first-{uuid.uuid4().hex}"

    def first_count():
        counted = count(key, 120)
        return id(caches["default"]), caches["default"]._cache.get_client(write=True).connection_pool, counted

    async def consumer():  # a task: a context of its own, as a consumer's
        return await database_sync_to_async(first_count, thread_sensitive=False)()

    seen = await asyncio.gather(*(consumer() for _ in range(20)))
    assert len({cache_id for cache_id, _, _ in seen}) > 1  # Django's own rule still holds
    pools = {id(pool) for _, pool, _ in seen}
    assert len(pools) == 1
    (pool,) = {pool for _, pool, _ in seen}
    assert len(pool._available_connections) + len(pool._in_use_connections) <= 6  # the hop threads
    assert sorted(counted for _, _, counted in seen) == list(range(1, 21))


def test_other_backends_count_with_add_and_incr(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert [count("sends", 120) for _ in range(3)] == [1, 2, 3]
    default_cache.delete("sends")
    assert count("sends", 120) == 1


async def test_a_count_on_the_event_loop_keeps_the_window_and_lets_the_loop_run(redis_cache):
    assert [await redis_cache.acount("sends", 120), redis_cache.count("sends", 120)] == [1, 2]
    client = redis_cache._cache.get_client(write=True)
    assert 0 < client.ttl(redis_cache.make_and_validate_key("sends")) <= 120

    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    client.execute_command("CLIENT", "PAUSE", 300, "WRITE")  # Redis holds every write for 0.3 s
    before = ticks
    assert await redis_cache.acount("sends", 120) == 3
    during = ticks - before
    ticker.cancel()
    assert during >= 3  # the loop went on while Redis held the count (a blocking count: 0)


def test_each_event_loop_counts_on_a_client_of_its_own_closed_with_the_loop(redis_cache):
    loops = [asyncio.new_event_loop() for _ in range(2)]
    counted = [loop.run_until_complete(redis_cache.acount("sends", 120)) for loop in loops]
    scripts = [redis_cache._cache._loop_scripts[loop] for loop in loops]
    pools = [script.registered_client.connection_pool for script in scripts]
    assert counted == [1, 2] and pools[0] is not pools[1]
    assert all(pool._available_connections for pool in pools)

    for loop in loops:
        loop.close()

    assert (
        loops[0] not in redis_cache._cache._loop_scripts and loops[1] not in redis_cache._cache._loop_scripts
    )
    assert all(loop.is_closed() for loop in loops)
    assert not any(c.is_connected for pool in pools for c in pool._available_connections)


async def test_other_backends_count_on_the_loop_as_they_count_anywhere(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert [await acount("loop-sends", 120), count("loop-sends", 120)] == [1, 2]
    default_cache.delete("loop-sends")


async def test_counts_on_the_loop_share_one_cache_object_whatever_their_context(settings, redis_url):
    """`cache` makes a cache object for each asyncio context (each socket's first send);
    the loop's counts use one of the process's, made again when CACHES changes."""
    settings.CACHES = {
        "default": {"BACKEND": "chatplatform.cache.ChatRedisCache", "LOCATION": redis_url, "KEY_PREFIX": "t1"}
    }
    made: list[str] = []
    make = type(caches).create_connection

    def counted(self, alias):
        made.append(alias)
        return make(self, alias)

    type(caches).create_connection = counted
    try:
        key = f"ctx-{uuid.uuid4().hex}"
        counts = await asyncio.gather(*(acount(key, 120) for _ in range(5)))  # five tasks, five contexts
        assert sorted(counts) == [1, 2, 3, 4, 5] and made == ["default"]

        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        assert await acount(key, 120) == 1  # counted by the new configuration's backend
        assert isinstance(_loop_cache(), LocMemCache)
    finally:
        type(caches).create_connection = make
        default_cache.delete(key)
