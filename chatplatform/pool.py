"""The database pool's check of a connection it hands out, skipped for one in steady use.

psycopg_pool checks every connection it hands out with an empty query (what
Django asks of it with CONN_HEALTH_CHECKS): one round trip to PostgreSQL per
request and per database hop, one of the nine a send made (docs/perf.md,
round seven). A connection handed out less than `recent` seconds ago is
handed out again unchecked, as PgBouncer's `server_check_delay` does (30 s by
default there): under load every connection is in use many times a second,
and an idle one is checked as before. The cost: a connection the database
dropped in that second fails the hop that gets it (that request or send
fails, as it would have while the database was away), and the pool replaces
it when it comes back (psycopg_pool discards a broken connection).
"""

from __future__ import annotations

import functools
from time import monotonic
from weakref import WeakKeyDictionary

_handed_out: WeakKeyDictionary = WeakKeyDictionary()


def check_unless_recent(recent: float):
    """The pool's `check` callback: psycopg_pool's own check, unless the connection
    was handed out (and checked or used since) less than `recent` seconds ago."""
    return functools.partial(_check, recent)


def _check(recent: float, conn) -> None:
    now = monotonic()
    last = _handed_out.get(conn)
    if last is None or now - last >= recent:
        from psycopg_pool import ConnectionPool

        ConnectionPool.check_connection(conn)  # raises when the connection is broken
    _handed_out[conn] = now
