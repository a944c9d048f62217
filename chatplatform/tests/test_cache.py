"""The rate limit's counter: one round trip on Redis, `add` and `incr` elsewhere."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache as default_cache

from chatplatform.cache import ChatRedisCache, count


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


def test_redis_counter_sends_its_two_commands_in_one_round_trip(redis_cache):
    redis_cache.count("warm", 120)
    client = redis_cache._cache.get_client(write=True)
    before = client.info("stats")["total_commands_processed"]
    redis_cache.count("sends", 120)
    # INFO itself is counted once; the count adds SET and INCR, nothing else (no EXISTS).
    assert client.info("stats")["total_commands_processed"] - before <= 3


def test_one_redis_client_per_connection_pool(redis_cache):
    client = redis_cache._cache.get_client(write=True)
    assert redis_cache._cache.get_client(write=True) is client


def test_other_backends_count_with_add_and_incr(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert [count("sends", 120) for _ in range(3)] == [1, 2, 3]
    default_cache.delete("sends")
    assert count("sends", 120) == 1
