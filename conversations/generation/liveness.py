"""Which server processes are alive, told through the shared cache (Redis across processes).

Each runtime refreshes a key of its own every CHAT_SWEEP_SECONDS, from its
event loop and off the database's thread, so a process that is busy (its
checkpoints queued behind other database work) still says it is alive. The
crash sweep spares the replies of living processes: a reply is `interrupted`
only when its heartbeat is stale *and* its process stopped saying so.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache


def _key(channel: str) -> str:
    return f"runtime:alive:{channel}"


def announce(channel: str) -> None:
    """This process (its control channel) is alive for the next staleness window."""
    cache.set(_key(channel), 1, timeout=max(1, round(settings.CHAT_STALE_AFTER_SECONDS)))


def alive(channels: set[str]) -> set[str]:
    """Those of `channels` whose process said it was alive within the staleness window."""
    found = cache.get_many([_key(channel) for channel in channels])
    return {channel for channel in channels if _key(channel) in found}
