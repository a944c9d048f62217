"""Give the C allocator's free memory back to the system, now and then.

A server process that streams replies allocates text in its hop threads and
frees it on the event loop (and the other way round). glibc's malloc keeps
an arena per thread and returns a freed chunk to the system only when it
sits at the top of its heap, so RSS creeps up over hours although the
objects the process holds level off (docs/perf.md, round eight: the
collector's object counts flat from the third minute of a soak while RSS
kept rising). `malloc_trim(0)` hands back every whole free page of every
arena. It runs in a thread of its own (ctypes releases the GIL for the
call), so the event loop does not wait for it.

Only glibc has `malloc_trim`; elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def available() -> bool:
    return _malloc_trim() is not None


def trim() -> bool:
    """Release the allocator's free pages now; True when some memory went back."""
    malloc_trim = _malloc_trim()
    return bool(malloc_trim(0)) if malloc_trim is not None else False


async def trim_every(seconds: float) -> None:
    """Trim every `seconds` until cancelled (0 or less, or no glibc: return at once)."""
    if seconds <= 0 or not available():
        return
    while True:
        await asyncio.sleep(seconds)
        started = time.perf_counter()
        released = await asyncio.to_thread(trim)
        log.debug("malloc_trimmed", released=released, ms=round((time.perf_counter() - started) * 1000, 2))
