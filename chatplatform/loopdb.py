"""The event loop's own PostgreSQL connections, for the statements a socket's send runs on it.

Django's ORM is synchronous, so a socket's database work runs in a thread
hop, and every round trip to PostgreSQL there releases the GIL and waits to
get it back behind the event loop and the other hops: under a burst of
sends, that wait is what a send takes (docs/perf.md, rounds seven, thirteen
and fourteen). The send's statements are hand-written SQL already
(conversations/statements.py, send_state.py); `conversations/loop_send.py`
runs them here, on psycopg's async connections, where a round trip is an
await: the loop serves other sockets meanwhile and no thread takes the GIL.

A connection is made with Django's own parameters for the default database
(its type adapters, options, `prepare_threshold`, time zone and role) and
kept for the event loop that made it, at most `DB_LOOP_CONNECTIONS` at once:
a send waits for a free one. One idle for `DB_POOL_CHECK_AFTER` seconds or
more is checked with an empty query before it is used (the same rule as the
thread pool's, chatplatform/pool.py), and a broken one is dropped.
Statements run in autocommit; a caller that needs a transaction opens one
(`conn.transaction()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncIterator

import psycopg
import psycopg.sql
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from chatplatform import tracing
from chatplatform.handlers import ProcessWide


def available() -> bool:
    """Whether the default database is PostgreSQL (the only one with a loop connection)."""
    return backend().vendor == "postgresql"


def backend() -> BaseDatabaseWrapper:
    """The default database's wrapper for building statements and adapting values (its
    vendor, quoting and features, what `get_db_prep_*` and the ORM's converters ask of
    it), never for running them: one a process, it never connects.
    `connections[DEFAULT_DB_ALIAS]` and `connection.x` are a lookup in asgiref's `Local`
    at every use, a dozen a send, and the first in a socket's context makes a wrapper
    for it (docs/perf.md, change 64)."""
    return _PROCESS_DATABASES[DEFAULT_DB_ALIAS]


_PROCESS_DATABASES = ProcessWide(connections)


@contextlib.asynccontextmanager
async def connection() -> AsyncIterator[psycopg.AsyncConnection]:
    """A connection of the running loop's, for this block alone; idle and in autocommit."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = _LoopConnections(settings.DB_LOOP_CONNECTIONS)
    async with pool.slots:
        conn = await pool.take()
        try:
            yield conn
        finally:
            pool.give_back(conn)


def client_cursor(conn: psycopg.AsyncConnection) -> psycopg.AsyncClientCursor:
    """A cursor of `conn` that binds parameters itself, so that one query may hold several
    statements, sent in one round trip (the simple protocol; results one by one with
    `nextset()`; statements kept planned with `prepared`)."""
    return tracing.traced_cursor(psycopg.AsyncClientCursor)(conn)


async def prepared(conn: psycopg.AsyncConnection, sql: str, params: list) -> tuple[str, list]:
    """`sql` (`%s` placeholders) with `params` as an `EXECUTE` of it prepared on `conn`, for a
    `client_cursor`'s query: PostgreSQL plans it once a connection, not at every run (a
    send's statements, planned, took ~0.5 ms of PostgreSQL's CPU a send). The first time
    `conn` runs `sql` it is prepared, in a round trip of its own."""
    names = _PREPARED.setdefault(conn, {})
    name = names.get(sql)
    if name is None:
        if "%%" in sql or "%(" in sql:
            raise ValueError("only %s placeholders can be prepared")
        first, *rest = sql.split("%s")
        name = f"loop_{len(names)}"
        numbered = first + "".join(f"${n}{text}" for n, text in enumerate(rest, 1))
        await conn.execute(f"PREPARE {name} AS {numbered}".encode())  # bytes: no placeholders read
        names[sql] = name
    return (f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}"), params


def close_all() -> None:
    """Close every idle loop connection of the process (at shutdown, and after each test:
    a test's event loop ends with it, and its connections would hold the test database)."""
    for pool in list(_POOLS.values()):
        pool.close()


class _LoopConnections:
    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)
        self.idle: list[tuple[psycopg.AsyncConnection, float]] = []  # with when each was last given back

    async def take(self) -> psycopg.AsyncConnection:
        while self.idle:
            conn, since = self.idle.pop()
            if time.monotonic() - since < settings.DB_POOL_CHECK_AFTER:
                return conn
            try:
                await conn.execute("")
            except psycopg.Error:
                await conn.close()
                continue
            return conn
        return await _connect()

    def give_back(self, conn: psycopg.AsyncConnection) -> None:
        """Keep `conn` if it is idle and sound; close it otherwise (a block cancelled or
        failed in the middle of a statement leaves it busy or broken)."""
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self.idle.append((conn, time.monotonic()))
        else:
            _finish(conn)

    def close(self) -> None:
        while self.idle:
            _finish(self.idle.pop()[0])


async def _connect() -> psycopg.AsyncConnection:
    db = connections[DEFAULT_DB_ALIAS]
    params = db.get_connection_params()
    params.pop("cursor_factory", None)  # Django's, for synchronous connections
    conn = await psycopg.AsyncConnection.connect(
        **params, autocommit=True, cursor_factory=tracing.traced_cursor(psycopg.AsyncCursor)
    )
    # What Django does with a connection it makes (DatabaseWrapper._configure_connection).
    if db.timezone_name and conn.info.parameter_status("TimeZone") != db.timezone_name:
        await conn.execute(db.ops.set_time_zone_sql(), [db.timezone_name])
    if role := db.settings_dict["OPTIONS"].get("assume_role"):
        await conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Literal(role)))
    return conn


def _finish(conn: psycopg.AsyncConnection) -> None:
    """Close `conn` without awaiting (psycopg's `close()` awaits nothing either: it ends
    the libpq connection), so it can be done when its loop is gone or being cancelled."""
    conn.pgconn.finish()


# The statements prepared on each connection, by their text: name.
_PREPARED: weakref.WeakKeyDictionary[psycopg.AsyncConnection, dict[str, str]] = weakref.WeakKeyDictionary()
# Per event loop (a test's loop ends with the test; a server process has one).
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopConnections] = weakref.WeakKeyDictionary()
