"""A socket's send on the event loop: `services.message_send` and the reply's job, awaited.

The thread hop a send took (`runtime.stored_with_job`) waited for PostgreSQL
six times, each a release of the GIL and a wait to get it back behind the
event loop and the other hops; in a burst of sends that wait was most of a
send (docs/perf.md, rounds seven, thirteen and fourteen). Here the same
statements (the locks, the checks, both messages with the touch, then the
job) run on the loop's own connection (chatplatform/loopdb.py) in two round
trips, each one query of several statements: each is an await, and the loop
serves other sockets meanwhile.

The rules are the service's own: the same statements, built by the same
functions, and `services.check_can_generate`'s steps deciding (the rate
limit's count awaited on the loop's own Redis client, chatplatform/cache.py).
What stays in the thread hop: a resend (a known `client_id`, answered from the ORM's rows by
`services.message_send`), the job of a conversation with documents (its
passages are read by the documents app through the ORM; the runtime loads
it), and any database but PostgreSQL.
"""

from __future__ import annotations

import contextlib
import uuid

import psycopg
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from accounts import policy
from chatplatform import loopdb
from chatplatform.cache import acount
from conversations import events, services
from conversations.generation.job import ReplyJob, job_from_row, job_reads_more, job_statement
from conversations.llm import get_provider, provider_built
from conversations.models import Conversation
from conversations.send_state import send_state_from, send_state_statement
from conversations.services import ReplyStart, SendRefused
from conversations.statements import (
    insert_rows_and_update_statement,
    lock_for_send_statement,
    locked_for_send,
    mark_inserted,
)


def enabled() -> bool:
    """Whether a socket's send runs here (CHAT_SEND_ON_LOOP, on PostgreSQL)."""
    return settings.CHAT_SEND_ON_LOOP and loopdb.available()


async def message_send(
    *, conversation_id: uuid.UUID, user, content: str, client_id: uuid.UUID, worker: str
) -> tuple[ReplyStart, ReplyJob | None] | None:
    """Store the user's message and a `streaming` reply, announce both, and read the
    reply's job (None when the runtime must load it: see the module's docstring).

    Returns None for a resend: the caller answers it with `services.message_send`
    in a thread hop. Raises `SendRefused` as the service does.
    """
    if not provider_built():  # built once per process, in a thread: a local model takes seconds to load
        await sync_to_async(get_provider)()
    since, default_model = services.budget_day(), policy.default_model()
    async with loopdb.connection() as conn:
        # Two round trips, each one query of several statements (the simple protocol, the
        # parameters bound by psycopg): BEGIN, the locks and the checks; then the INSERT,
        # the COMMIT and the job. PostgreSQL runs them in order, each with its own
        # snapshot, and stops at the first error (the rest of that query is skipped).
        cursor = loopdb.client_cursor(conn)
        try:
            await cursor.execute(
                *script(
                    ("BEGIN", []),
                    await loopdb.prepared(conn, *lock_for_send_statement(conversation_id, user.pk)),
                    # A statement of its own, run once the locks are granted (services.send_state says why).
                    await loopdb.prepared(
                        conn,
                        *send_state_statement(
                            conversation_id, since=since, default_model=default_model, client_id=client_id
                        ),
                    ),
                )
            )
            cursor.nextset()
            rows = await _checked_and_inserted(
                conn, cursor, content=content, client_id=client_id, worker=worker
            )
        except BaseException:
            # Idle again, the connection is kept (loopdb closes one left in a transaction).
            with contextlib.suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
            raise
        if rows is None:  # a resend
            await conn.execute("ROLLBACK")
            return None
        user_message, reply = rows
        cursor.nextset()  # past the INSERT's result
        cursor.nextset()  # and the COMMIT's
        row = await cursor.fetchone()
    mark_inserted(rows)
    for message in rows:
        events.post_committed(reply.conversation_id, "message.created", message=message.to_wire())
    job = job_from_row(row) if row is not None and not job_reads_more(row) else None
    return ReplyStart(user_message=user_message, reply=reply, created=True), job


def script(*statements: tuple[str, list]) -> tuple[str, list]:
    """Statements with their parameters as one query and its parameters (a client cursor's)."""
    return "; ".join(sql for sql, _ in statements), [value for _, params in statements for value in params]


async def _checked_and_inserted(
    conn: psycopg.AsyncConnection,
    cursor: psycopg.AsyncCursor,
    *,
    content: str,
    client_id: uuid.UUID,
    worker: str,
) -> list | None:
    """Inside the send's transaction, `cursor` at the locks' result: the locked conversation
    and its checks read, the rules applied (`SendRefused`), then both messages inserted with
    the touch, the COMMIT and the reply's job sent as one query. None: a resend."""
    conversation = locked_for_send(await cursor.fetchone())
    if conversation is None:
        raise SendRefused("not_found", "No such conversation.")
    cursor.nextset()
    state = send_state_from(await cursor.fetchone())
    if state.resend_id is not None:
        return None
    # services.check_can_generate's steps, the rate limit's count awaited: a blocking
    # Redis round trip here held up every other socket of the process.
    services.check_may_generate(conversation=conversation, state=state)
    key, lifetime = services.send_counter(conversation.owner_id)
    services.check_limits(state=state, sends_this_minute=await acount(key, timeout=lifetime))
    rows = list(
        services.new_exchange(
            conversation=conversation,
            content=content,
            client_id=client_id,
            parent_id=state.leaf_id,
            worker=worker,
        )
    )
    insert = insert_rows_and_update_statement(
        rows, Conversation, {"updated_at": timezone.now()}, pk=conversation.pk
    )
    await cursor.execute(
        *script(
            await loopdb.prepared(conn, *insert),
            ("COMMIT", []),
            await loopdb.prepared(conn, *job_statement(rows[-1].id)),
        )
    )
    return rows
