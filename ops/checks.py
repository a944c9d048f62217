"""Dependency checks for /health/deps: each bounded by a timeout, run concurrently."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connections

CHECK_TIMEOUT_SECONDS = 2.5


def _database_round_trip() -> None:
    connection = connections["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()  # this worker thread keeps nothing open


async def check_database() -> dict:
    await sync_to_async(_database_round_trip, thread_sensitive=False)()
    return {"engine": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]}


async def check_channel_layer() -> dict:
    layer = get_channel_layer()
    # The default prefix: channels-redis serves all of a process's own channels
    # through one receive loop, which only reads channels of one prefix.
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "health.ping":
        raise RuntimeError("channel layer returned a different message")
    return {"backend": type(layer).__name__}


async def check_provider() -> dict:
    from conversations.llm import get_provider, provider_status

    provider = await sync_to_async(get_provider)()  # the first call may ask the endpoint for its model
    if provider is None:
        raise RuntimeError(provider_status()["reason"])
    await provider.health()
    return {"provider": provider.name, "model": provider.model}


CHECKS: dict[str, Callable[[], Awaitable[dict]]] = {
    "database": check_database,
    "channel_layer": check_channel_layer,
    "provider": check_provider,
}


async def _run(name: str, check: Callable[[], Awaitable[dict]]) -> dict:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
        result = {"status": "up", **detail}
    except TimeoutError:
        result = {"status": "down", "error": f"no answer within {CHECK_TIMEOUT_SECONDS}s"}
    except Exception as exc:  # a check reports any failure; it never raises
        result = {"status": "down", "error": _describe(exc)}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _describe(exc: Exception) -> str:
    # The class name and message, never a URL with credentials in it.
    from conversations.llm.base import redact

    return redact(f"{type(exc).__name__}: {exc}")[:300]


async def run_checks() -> dict[str, dict]:
    names = list(CHECKS)
    results = await asyncio.gather(*(_run(name, CHECKS[name]) for name in names))
    return dict(zip(names, results, strict=True))
