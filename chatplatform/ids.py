"""Primary keys that sort by the time they were made (UUID version 7, RFC 9562).

A random (version 4) key puts each new row's index entry on a random page of
the primary key's B-tree, and of every index that begins with such a key
(`message_conversation_time` begins with the conversation's). On a table
larger than PostgreSQL's buffers, every insert then reads pages from disk
or the OS cache and, after each checkpoint, writes their full images to the
WAL. A time-ordered key appends to the index's last pages instead, which stay
in memory: a send's two-message insert took half the time on the bench
database (docs/perf.md, change 40).

The layout is RFC 9562's with its "fixed-length dedicated counter" (method 1),
as Python 3.14's `uuid.uuid7`, for 3.11: 48 bits of milliseconds since the
Unix epoch, a 42-bit counter and 32 random bits. A new millisecond starts the
counter at a random value (its top bit clear, so it can count on); within one
millisecond it counts up, so keys made one after the other in this process
sort in the order they were made (a send's question before its reply).
That leaves 73 random bits in the first key of a millisecond and 32 in the
next ones: enough, as every row is reached through a check of its owner, not
by keeping its key secret. The key tells when the row was made, which the row
says anyway.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_FLAGS = (7 << 76) | (0b10 << 62)  # version 7; RFC 9562's variant
_COUNTER_MAX = (1 << 42) - 1

_lock = threading.Lock()
_last_millis = -1
_last_counter = 0


def uuid7() -> uuid.UUID:
    """A new version 7 UUID, later than the previous one this process made."""
    global _last_millis, _last_counter
    with _lock:
        millis = time.time_ns() // 1_000_000
        if millis > _last_millis:
            counter, tail = _fresh()
        else:  # the same millisecond (or the clock stepped back): count on from the last key
            millis = _last_millis
            counter = _last_counter + 1
            tail = int.from_bytes(os.urandom(4), "big")
            if counter > _COUNTER_MAX:  # 2^41 keys in a millisecond at the least: borrow the next one
                millis += 1
                counter, tail = _fresh()
        _last_millis, _last_counter = millis, counter
    return uuid.UUID(
        int=(millis & 0xFFFF_FFFF_FFFF) << 80
        | (counter >> 30) << 64  # the counter's top 12 bits, after the version
        | (counter & 0x3FFF_FFFF) << 32  # its other 30, after the variant
        | tail
        | _FLAGS
    )


def uuid7_time(value: uuid.UUID) -> float:
    """When a version 7 UUID was made, in seconds since the Unix epoch."""
    return (value.int >> 80) / 1000


def _fresh() -> tuple[int, int]:
    """A random counter with its top bit clear, and 32 random bits."""
    bits = int.from_bytes(os.urandom(10), "big")
    return (bits >> 32) & (_COUNTER_MAX >> 1), bits & 0xFFFF_FFFF
