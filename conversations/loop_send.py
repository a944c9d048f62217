"""A socket's send on the event loop: `services.message_send` and the reply's job, awaited.

The thread hop a send took (`runtime.stored_with_job`) waited for PostgreSQL
six times, each a release of the GIL and a wait to get it back behind the
event loop and the other hops; in a burst of sends that wait was most of a
send (docs/perf.md, rounds seven, thirteen and fourteen). Here the same
statements (the locks, the checks, both messages with the touch, then the
job) run on the loop's own connection (chatplatform/loopdb.py), pipelined
into three round trips: each is an await, and the loop serves other sockets
meanwhile.

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
    async with loopdb.connection() as conn, conn.pipeline():
        # In psycopg's pipeline mode a statement goes out when executed and its answer is
        # awaited when read: BEGIN, the locks and the checks share a round trip, the INSERT,
        # the COMMIT and the job a second, the pipeline's end a third (six in the thread
        # hop). BEGIN and COMMIT are statements: psycopg's `transaction()` in a pipeline
        # waits for the server as it begins and as it ends.
        lock, checks = conn.cursor(), conn.cursor()
        await conn.execute("BEGIN")
        await lock.execute(*lock_for_send_statement(conversation_id, user.pk))
        # A statement of its own, run once the locks are granted (services.send_state says why).
        await checks.execute(
            *send_state_statement(
                conversation_id, since=since, default_model=default_model, client_id=client_id
            )
        )
        try:
            rows = await _checked_and_inserted(
                lock, checks, content=content, client_id=client_id, worker=worker
            )
        except BaseException:
            # After a statement's error the pipeline refuses this too; a connection left in
            # a transaction is closed, not reused (loopdb).
            with contextlib.suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
            raise
        if rows is None:  # a resend
            await conn.execute("ROLLBACK")
            return None
        await conn.execute("COMMIT")
        user_message, reply = rows
        await checks.execute(*job_statement(reply.id))
        row = await checks.fetchone()  # after the INSERT's and the COMMIT's answers, or their error
    mark_inserted(rows)
    for message in rows:
        events.post_committed(reply.conversation_id, "message.created", message=message.to_wire())
    job = job_from_row(row) if row is not None and not job_reads_more(row) else None
    return ReplyStart(user_message=user_message, reply=reply, created=True), job


async def _checked_and_inserted(
    lock, checks, *, content: str, client_id: uuid.UUID, worker: str
) -> list | None:
    """Inside the send's transaction: the locked conversation and its checks read, the
    rules applied (`SendRefused`), both messages inserted with the touch. None: a resend."""
    conversation = locked_for_send(await lock.fetchone())
    if conversation is None:
        raise SendRefused("not_found", "No such conversation.")
    state = send_state_from(await checks.fetchone())
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
    await lock.execute(
        *insert_rows_and_update_statement(
            rows, Conversation, {"updated_at": timezone.now()}, pk=conversation.pk
        )
    )
    return rows
