"""A socket's send on PostgreSQL runs its statements on the event loop (conversations/loop_send.py)."""

from __future__ import annotations

import asyncio
import threading
import uuid

import psycopg
import pytest
from channels.db import database_sync_to_async
from django.db import connection

from chatplatform import loopdb
from conftest import require_service
from conversations import consumers
from conversations.generation import runtime as runtime_module
from conversations.models import Message
from conversations.tests.conftest import make_conversation, make_user, open_socket
from conversations.tests.test_queries_per_send import counting_round_trips

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake_llm")]

db = database_sync_to_async


@pytest.fixture(autouse=True)
def _postgresql():
    # The loop's connections are PostgreSQL's: CI fails without it, elsewhere the test skips.
    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")


async def socket_of(name: str):
    user = await db(make_user)(name)
    conversation = await db(make_conversation)(user, title="titled already")
    socket, (ok, _) = await open_socket(user, conversation.id)
    assert ok
    return socket, conversation


async def send(socket, content: str, client_id: str | None = None) -> None:
    await socket.send(
        {"type": "message.send", "content": content, "client_id": client_id or str(uuid.uuid4())}
    )


async def test_a_send_runs_on_the_loop_with_no_thread_hop(monkeypatch):
    hops: list[str] = []

    def recording(parallel_hop):
        def hop(fn):
            hops.append(fn.__name__)
            return parallel_hop(fn)

        return hop

    monkeypatch.setattr(consumers, "parallel_hop", recording(consumers.parallel_hop))
    monkeypatch.setattr(runtime_module, "parallel_hop", recording(runtime_module.parallel_hop))
    threads: set[int] = set()
    execute = psycopg.AsyncCursor.execute

    async def on_which_thread(self, *args, **kwargs):
        threads.add(threading.get_ident())
        return await execute(self, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", on_which_thread)
    socket, conversation = await socket_of("looped")

    await send(socket, "hello [[tokens:4]]")
    created = [await socket.receive_until("message.created") for _ in range(2)]
    final = await socket.receive_until("message.completed")
    await socket.close()

    assert [frame["message"]["role"] for frame in created] == ["user", "assistant"]
    assert final["status"] == "complete" and final["message_id"] == created[1]["message"]["id"]
    # The send and the reply's job were not thread hops (the socket's connect and the
    # reply's final write are); the statements ran on this test's loop, in its thread.
    assert "stored_with_job" not in hops and "load_job" not in hops, hops
    assert threads == {threading.get_ident()}
    stored = await db(list)(Message.objects.filter(conversation=conversation).values_list("role", "status"))
    assert sorted(stored) == [("assistant", "complete"), ("user", "complete")]


async def test_a_refused_send_stores_nothing_and_leaves_its_connection_idle(settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 1
    socket, conversation = await socket_of("refused")
    await send(socket, "one")
    await socket.receive_until("message.completed")

    await send(socket, "two")
    error = await socket.receive_until("error")
    await socket.close()

    assert error["code"] == "rate_limited"
    contents = await db(list)(
        Message.objects.filter(conversation=conversation, role="user").values_list("content")
    )
    assert contents == [("one",)]
    idle = loopdb._POOLS[asyncio.get_running_loop()].idle
    assert idle and all(conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE for conn, _ in idle)


async def test_a_connection_the_database_dropped_is_replaced_before_a_send_uses_it(settings):
    settings.DB_POOL_CHECK_AFTER = 0  # check a connection whenever it is taken
    socket, _ = await socket_of("dropped")
    await send(socket, "first")
    await socket.receive_until("message.completed")
    idle = loopdb._POOLS[asyncio.get_running_loop()].idle
    pids = [conn.info.backend_pid for conn, _ in idle]
    assert pids

    def terminate() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])

    await db(terminate)()
    await send(socket, "second")
    final = await socket.receive_until("message.completed")
    await socket.close()

    assert final["status"] == "complete"
    assert not {conn.info.backend_pid for conn, _ in idle} & set(pids)


async def test_sends_wait_for_one_of_the_loops_few_connections(settings):
    settings.DB_LOOP_CONNECTIONS = 2
    sockets = [await socket_of(f"many{n}") for n in range(6)]
    for n, (socket, _) in enumerate(sockets):
        await send(socket, f"hello {n}")
    finals = [await socket.receive_until("message.completed") for socket, _ in sockets]
    for socket, _ in sockets:
        await socket.close()

    assert [final["status"] for final in finals] == ["complete"] * 6
    assert len(loopdb._POOLS[asyncio.get_running_loop()].idle) <= 2


@pytest.mark.parametrize("busy", [0.0, 0.02], ids=["quiet", "busy"])
async def test_a_send_on_the_loop_waits_for_postgresql_twice(monkeypatch, settings, busy):
    """BEGIN, the locks and the checks in one round trip; the INSERT, the COMMIT and the
    reply's job in a second (six in the thread hop, three in psycopg's pipeline mode). On
    a busy machine the answers are all there before psycopg waits: still two reads."""
    from conversations import loop_send
    from conversations.generation import get_runtime

    settings.DB_POOL_CHECK_AFTER = 60  # no check of the connection between these sends
    posted = []
    monkeypatch.setattr(get_runtime(), "post", lambda group, message: posted.append(message["event"]))
    user = await db(make_user)("trips")
    # The first send connects and loads what a process caches; the second is counted.
    for content in ("connect", "count me"):
        conversation = await db(make_conversation)(user, title="titled already")
        with counting_round_trips(busy) as reads:
            start, job = await loop_send.message_send(
                conversation_id=conversation.id,
                user=user,
                content=content,
                client_id=uuid.uuid4(),
                worker="w",
            )
    assert start.created and job is not None and job.history[-1].content == "count me"
    assert posted[-2:] == ["message.created", "message.created"]
    assert len(reads) == 2, reads


async def test_a_message_is_stored_as_sent_whatever_it_holds():
    """The loop binds a send's values itself (one query, several statements): quotes,
    backslashes, placeholders and separators in a message are its text, nothing else."""
    socket, conversation = await socket_of("quoted")
    content = "it's \\' %s %(x)s; ROLLBACK; -- $1 \\x00 ünï 🙂\n\ttab"
    await send(socket, content)
    created = await socket.receive_until("message.created")
    await socket.receive_until("message.completed")
    await socket.close()

    assert created["message"]["content"] == content
    stored = await db(Message.objects.get)(conversation=conversation, role="user")
    assert stored.content == content


async def test_a_send_whose_insert_fails_stores_nothing_and_keeps_its_connection(monkeypatch, settings):
    from conversations import loop_send
    from conversations.generation import get_runtime

    settings.DB_POOL_CHECK_AFTER = 60
    monkeypatch.setattr(get_runtime(), "post", lambda group, message: None)
    user = await db(make_user)("failing")
    first, second = [await db(make_conversation)(user, title="titled already") for _ in range(2)]
    fields = {"user": user, "worker": "w", "client_id": uuid.uuid4()}
    await loop_send.message_send(conversation_id=first.id, content="first", **fields)
    pool = loopdb._POOLS[asyncio.get_running_loop()]
    ((conn, _),) = pool.idle
    insert = loop_send.insert_rows_and_update_statement
    monkeypatch.setattr(
        loop_send, "insert_rows_and_update_statement", lambda *args, **kwargs: ("SELECT 1/0", [])
    )

    with pytest.raises(psycopg.errors.DivisionByZero):
        await loop_send.message_send(conversation_id=second.id, content="second", **fields)

    assert not await db(Message.objects.filter(conversation=second).exists)()
    # Rolled back and kept: the same connection, idle, its prepared statements still there.
    assert [idle for idle, _ in pool.idle] == [conn]
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    monkeypatch.setattr(loop_send, "insert_rows_and_update_statement", insert)
    fields["client_id"] = uuid.uuid4()
    start, _ = await loop_send.message_send(conversation_id=second.id, content="again", **fields)
    assert start.created and [idle for idle, _ in pool.idle] == [conn]


async def test_a_send_on_the_loop_builds_its_statements_without_looking_up_a_connection(monkeypatch):
    """`connections[...]` (and `connection.x`) is a lookup in asgiref's Local each time: the
    statements are built with one wrapper of the process's, which never connects."""
    from django.db import connections

    from chatplatform.loopdb import backend
    from conversations import loop_send
    from conversations.generation import get_runtime

    monkeypatch.setattr(get_runtime(), "post", lambda group, message: None)
    user = await db(make_user)("unlooked")
    conversations = [await db(make_conversation)(user, title="titled already") for _ in range(2)]
    await loop_send.message_send(  # the first send of the process builds and prepares its statements
        conversation_id=conversations[0].id, content="first", user=user, worker="w", client_id=uuid.uuid4()
    )
    lookups: list[str] = []
    handler = type(connections)
    lookup = handler.__getitem__

    def counted(self, alias):
        lookups.append(alias)
        return lookup(self, alias)

    monkeypatch.setattr(handler, "__getitem__", counted)
    assert loop_send.enabled()  # what the socket asks first
    start, job = await loop_send.message_send(
        conversation_id=conversations[1].id, content="second", user=user, worker="w", client_id=uuid.uuid4()
    )

    assert start.created and job is not None and job.history[-1].content == "second"
    assert lookups == []
    assert backend().connection is None
