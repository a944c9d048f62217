"""What a send costs the database: a bounded number of queries, and none per token.

Counts every SQL statement the process runs (all threads: the consumer's hop,
the runtime's job load, checkpoints, the final write) from the send to the
reply's `message.completed`, with the scripted provider.
"""

from __future__ import annotations

import select
import threading
import uuid
from contextlib import contextmanager

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.db.backends.utils import CursorWrapper

from conftest import require_service
from conversations.tests.conftest import make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake_llm")]

db = database_sync_to_async


@contextmanager
def counting_queries():
    """Every statement Django sends, from any thread, and every one a send runs on the
    event loop's own connection (conversations/loop_send.py), in order."""
    import psycopg

    statements: list[str] = []
    lock = threading.Lock()
    execute, executemany = CursorWrapper.execute, CursorWrapper.executemany
    execute_on_loop = psycopg.AsyncCursor.execute

    def record(sql) -> None:
        # A query of a send on the loop holds several statements (loop_send.script). Transaction
        # control: SQLite's are statements, and so are a send's on the loop.
        for statement in str(sql).split("; "):
            if not statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT", "ROLLBACK")):
                with lock:
                    statements.append(statement.split(" WHERE ")[0][:160])

    def counted(original):
        def wrapper(self, sql, *args, **kwargs):
            record(sql)
            return original(self, sql, *args, **kwargs)

        return wrapper

    async def counted_on_loop(self, sql, *args, **kwargs):
        record(sql)
        return await execute_on_loop(self, sql, *args, **kwargs)

    CursorWrapper.execute, CursorWrapper.executemany = counted(execute), counted(executemany)
    psycopg.AsyncCursor.execute = counted_on_loop
    try:
        yield statements
    finally:
        CursorWrapper.execute, CursorWrapper.executemany = execute, executemany
        psycopg.AsyncCursor.execute = execute_on_loop


async def one_reply(socket, content: str) -> dict:
    await socket.send({"type": "message.send", "content": content, "client_id": str(uuid.uuid4())})
    return await socket.receive_until("message.completed", timeout=10)


async def queries_for(tokens: int, settings) -> list[str]:
    user = await db(make_user)(f"q{tokens}")
    conversation = await db(make_conversation)(user, title="titled already")
    socket, (ok, _) = await open_socket(user, conversation.id)
    assert ok
    await one_reply(socket, "warm up [[tokens:3]]")  # the first send of a process loads what it caches
    with counting_queries() as statements:
        final = await one_reply(socket, f"count me [[tokens:{tokens}]]")
    assert final["status"] == "complete"
    await socket.close()
    return statements


async def test_a_send_costs_a_bounded_number_of_queries_and_none_per_token(settings):
    settings.LLM_FAKE_TOKENS_PER_SECOND = 0  # as fast as the relay takes them: no checkpoint falls due
    short = await queries_for(5, settings)
    long = await queries_for(200, settings)

    assert len(long) == len(short), "a longer reply ran more queries"
    # 3 in the send's transaction (the locks, the checks, both messages with the touch), 1 for
    # the job (the reply with its conversation and its branch's tail), 2 for the final write
    # (the reply; its usage event with the conversation's time). Was 21 (docs/perf.md).
    # SQLite writes each touch apart (no data-modifying WITH) and reads the tail apart: 3 more.
    assert len(short) == (6 if connection.vendor == "postgresql" else 9), short


def test_the_send_itself_is_three_statements(django_assert_num_queries):
    from conversations import services

    user = make_user("three")
    services.message_send(  # a first send: what a process caches is loaded
        conversation_id=make_conversation(user).id, user=user, content="1", client_id=uuid.uuid4(), worker="w"
    )
    conversation = make_conversation(user, title="titled already")
    statements = 3 if connection.vendor == "postgresql" else 4  # the touch apart on SQLite
    with django_assert_num_queries(statements + 2):  # and the test's SAVEPOINT, RELEASE
        services.message_send(
            conversation_id=conversation.id, user=user, content="2", client_id=uuid.uuid4(), worker="w"
        )


@contextmanager
def counting_round_trips(busy: float = 0.0):
    """How often psycopg read PostgreSQL's answer, from a thread or on an event loop (a
    socket's send on the loop, conversations/loop_send.py): the times its socket was
    readable (an answer this small arrives in one read). Not the times it asked to read
    alone: in pipeline mode an answer that comes back while psycopg is still writing, as on a
    busy machine, is read by the wait for the socket to be readable or writable. `busy`
    holds psycopg before each wait that reads until PostgreSQL's answer is there to read, or
    for that many seconds when none is coming, as a busy machine does."""
    import psycopg.waiting

    reads: list[str] = []
    wait, wait_async = psycopg.waiting.wait, psycopg.waiting.wait_async

    def reading(gen, fileno):
        try:
            wanted = next(gen)
            while True:
                if busy and wanted & psycopg.waiting.Wait.R:
                    select.select([fileno], [], [], busy)
                ready = yield wanted
                if ready and ready & psycopg.waiting.Ready.R:
                    reads.append(getattr(gen, "__qualname__", "?"))
                wanted = gen.send(ready)
        except StopIteration as stop:
            return stop.value

    def counted(gen, fileno, *args, **kwargs):
        return wait(reading(gen, fileno), fileno, *args, **kwargs)

    async def counted_async(gen, fileno, *args, **kwargs):
        return await wait_async(reading(gen, fileno), fileno, *args, **kwargs)

    psycopg.waiting.wait, psycopg.waiting.wait_async = counted, counted_async
    try:
        yield reads
    finally:
        psycopg.waiting.wait, psycopg.waiting.wait_async = wait, wait_async


def test_a_socket_send_waits_for_postgresql_six_times():
    """The send's hop (the service, then the reply's job): BEGIN; the locks; the checks; both
    messages with the touch; COMMIT; the reply's job with its branch. Each is a release of the
    GIL and a wait to get it back, what a hop waits on in a burst (docs/perf.md, round
    seven). Eight before round seven, nine with the pool's check, which a pooled connection
    handed out within the last second no longer makes (this suite's connections have no pool)."""
    from conversations import services
    from conversations.generation.runtime import stored_with_job

    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")
    user = make_user("trips")
    # A process's first send loads what it caches; a connection's second run of a statement prepares it.
    for content in ("warm up", "prepare", "count me"):
        conversation = make_conversation(user, title="titled already")
        with counting_round_trips() as reads:
            start, job = stored_with_job(
                services.message_send,
                conversation_id=conversation.id,
                user=user,
                content=content,
                client_id=uuid.uuid4(),
                worker="w",
            )
    assert start.created and job is not None and job.history[-1].content == "count me"
    assert len(reads) == 6, reads
