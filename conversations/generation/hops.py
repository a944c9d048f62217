"""Database hops from the event loop that may run beside each other."""

from __future__ import annotations

from channels.db import database_sync_to_async
from django.conf import settings


def parallel_hop(fn):
    """database_sync_to_async for a hop that may run beside others, on its own pooled connection.

    Django's one ORM thread serialises every hop of the process: under load a
    send queued behind the others (docs/perf.md: seconds at N=40 with the
    process at 0.2 of a core). With CHAT_PARALLEL_HOPS the send, the job load
    and the final write run on asgiref's thread pool; the connection pool
    makes a connection per thread cheap, and each hop is its own transaction.
    (The checkpoint batch stays on the one thread: its writes must land in order.)
    """
    key = (fn, settings.CHAT_PARALLEL_HOPS)
    hop = _HOPS.get(key)
    if hop is None:
        hop = _HOPS[key] = database_sync_to_async(fn, thread_sensitive=not settings.CHAT_PARALLEL_HOPS)
    return hop


# The wrappers, made once per function: making one inspects the function's signature
# (~20 us, on the event loop, for every send). The hops are module-level functions.
_HOPS: dict[tuple, database_sync_to_async] = {}
