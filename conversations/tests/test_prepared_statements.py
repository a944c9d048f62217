"""A send's statements are prepared on PostgreSQL after DB_PREPARE_THRESHOLD runs, and only they."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection, transaction

from conftest import require_service
from conversations import services
from conversations.models import Message
from conversations.tests.conftest import make_conversation, make_user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake_llm")]


@pytest.fixture
def threshold():
    """Set the connection's threshold (settings.py sets it from DB_PREPARE_THRESHOLD)."""
    # Prepared statements are PostgreSQL's: CI fails without it, elsewhere the test skips.
    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")
    connection.ensure_connection()
    was = connection.connection.prepare_threshold

    def set_to(value: int | None) -> None:
        connection.connection.prepare_threshold = value

    yield set_to
    connection.connection.prepare_threshold = was


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def sends(count: int) -> None:
    alice = make_user()
    for _ in range(count):
        conversation = make_conversation(alice)
        start = services.message_send(
            conversation_id=conversation.id, user=alice, content="hi", client_id=uuid.uuid4(), worker="w"
        )
        Message.objects.filter(pk=start.reply.id).update(status="complete")


def test_the_send_statements_are_prepared_once_run_often_enough(threshold):
    threshold(5)
    sends(6)
    prepared = prepared_statements()
    assert any("FOR UPDATE OF c, u" in sql for sql in prepared)  # the locks
    assert any("AS resend_id" in sql for sql in prepared)  # the checks
    assert any('INSERT INTO "conversations_message"' in sql for sql in prepared)  # with the touch
    # The ORM's own statements are bound in Python and never prepared.
    assert not any('UPDATE "conversations_message" SET "status"' in sql for sql in prepared)


def test_nothing_is_prepared_with_the_threshold_off(threshold):
    threshold(None)  # DB_PREPARE_THRESHOLD=0
    sends(6)
    assert prepared_statements() == []


def test_the_checks_plan_made_once_for_every_send_finds_streaming_replies_by_their_index(threshold):
    """The checks compare with constants written into the statement, not parameters: a plan
    made once per connection (plan_cache_mode=force_generic_plan, settings.py) can then use
    the partial index of streaming replies, and PostgreSQL does not plan it on every send."""
    from conversations import send_state

    sql = send_state._statement()
    assert "'streaming'" in sql and sql.count("%s") == 4
    numbered = sql
    for n in range(1, 5):
        numbered = numbered.replace("%s", f"${n}", 1)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # the planner's choice on an all but empty database
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            cursor.execute(f"PREPARE checks_probe(uuid, timestamptz, text, uuid) AS {numbered}")
            cursor.execute(
                "EXPLAIN EXECUTE checks_probe(%s::uuid, now(), 'm', %s::uuid)",
                [str(uuid.uuid4()), str(uuid.uuid4())],
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE ALL")
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET plan_cache_mode")
    assert "$4" in plan  # the generic plan, for any conversation
    assert "one_streaming_reply_per_conversation" in plan, plan


def test_the_apps_connections_plan_each_prepared_statement_once(threshold):
    """settings.py asks for it in the connection's options while statements are prepared
    (DB_PREPARE_THRESHOLD > 0, the default); with preparing off, PostgreSQL's default stays."""
    preparing = connection.settings_dict["OPTIONS"].get("prepare_threshold") is not None
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == ("force_generic_plan" if preparing else "auto")


def test_checkpoints_are_one_prepared_statement_that_finds_replies_by_their_key(threshold):
    """However many replies a batch holds, its statement's text is the same: prepared once,
    its generic plan finds each reply through the primary key (one index probe a reply)."""
    threshold(2)
    alice = make_user()
    replies = [
        services.message_send(
            conversation_id=make_conversation(alice).id,
            user=alice,
            content="hi",
            client_id=uuid.uuid4(),
            worker="w",
        ).reply.id
        for _ in range(3)
    ]
    for n in (1, 2, 3):  # batches of one, two and three replies
        services.replies_checkpoint(contents={reply: f"text {n}" for reply in replies[:n]})

    checkpoints = [sql for sql in prepared_statements() if "unnest" in sql]
    assert len(checkpoints) == 1, checkpoints
    assert [Message.objects.get(pk=reply).content for reply in replies] == ["text 3"] * 3
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")  # the planner's choice on an all but empty database
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            cursor.execute(
                f"PREPARE checkpoint_probe(timestamptz, timestamptz, uuid[], text[], text) AS {checkpoints[0]}"
            )
            cursor.execute(
                "EXPLAIN EXECUTE checkpoint_probe(now(), now(), %s::uuid[], %s::text[], 'streaming')",
                [[str(reply) for reply in replies], ["a", "b", "c"]],
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
        finally:
            cursor.execute("DEALLOCATE ALL")
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET plan_cache_mode")
    assert "Nested Loop" in plan and "conversations_message_pkey" in plan, plan


def test_the_checks_read_only_the_senders_own_streaming_replies(threshold):
    """A send's `running` count probes the partial index of streaming replies once per
    conversation of its owner: other users' replies being written (and the dead entries
    their checkpoints leave) are not read, so a send costs the same under any load."""
    from django.utils import timezone

    from conversations.send_state import read_send_state

    others = [make_user(f"other{n}") for n in range(25)]
    Message.objects.bulk_create(
        Message(
            conversation=make_conversation(other),
            role=Message.Role.ASSISTANT,
            status=Message.Status.STREAMING,
        )
        for other in others
    )
    alice = make_user()
    mine = [make_conversation(alice) for _ in range(3)]
    Message.objects.create(conversation=mine[1], role=Message.Role.ASSISTANT, status=Message.Status.STREAMING)

    def entries_read() -> tuple[int, int]:
        """Entries the streaming index returned, and its scans, in this transaction so far."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_returned(%s::regclass), pg_stat_get_xact_numscans(%s::regclass)",
                ["one_streaming_reply_per_conversation"] * 2,
            )
            return cursor.fetchone()

    with transaction.atomic():
        before = entries_read()
        state = read_send_state(mine[0], since=timezone.now(), default_model="m")
        after = entries_read()
    assert state.running == 1 and not state.busy
    returned, scans = after[0] - before[0], after[1] - before[1]
    assert returned == 1, (returned, scans)  # mine[1]'s reply; none of the 25 others'
    assert scans <= len(mine) + 1  # a probe per conversation of alice's, and `busy`'s
