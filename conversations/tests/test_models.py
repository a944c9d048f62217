"""The data model's guarantees: constraints in the database, cascades, branches, the ledger, stale replies."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from conftest import require_service
from conversations.models import Conversation, Message, UsageEvent
from conversations.tests import rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    return rows.user("alice")


@pytest.fixture
def chat(alice):
    return rows.conversation(alice)


# --- constraints ----------------------------------------------------------------
def test_a_client_id_is_refused_twice_in_one_conversation(chat):
    client_id = uuid.uuid4()
    rows.message(chat, "first send", client_id=client_id)
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.message(chat, "resend", client_id=client_id)


def test_the_same_client_id_is_allowed_in_another_conversation(chat, alice):
    client_id = uuid.uuid4()
    rows.message(chat, "here", client_id=client_id)
    rows.message(rows.conversation(alice), "there", client_id=client_id)
    assert Message.objects.filter(client_id=client_id).count() == 2


def test_messages_without_client_id_are_not_unique_on_it(chat):
    rows.message(chat, "one")
    rows.message(chat, "two")
    assert chat.messages.filter(client_id__isnull=True).count() == 2


def test_a_second_streaming_reply_in_a_conversation_is_refused(chat):
    rows.message(chat, "", role=Message.Role.ASSISTANT, status=Message.Status.STREAMING)
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.message(chat, "", role=Message.Role.ASSISTANT, status=Message.Status.STREAMING)


def test_streaming_replies_in_different_conversations_are_allowed(chat, alice):
    rows.message(chat, "", role=Message.Role.ASSISTANT, status=Message.Status.STREAMING)
    rows.message(rows.conversation(alice), "", role=Message.Role.ASSISTANT, status=Message.Status.STREAMING)
    assert Message.objects.filter(status=Message.Status.STREAMING).count() == 2


def test_an_unknown_status_is_refused_by_the_database(chat):
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.message(chat, "x", status="thinking")


# --- indexes -----------------------------------------------------------------------
CHAT_TABLES = [Conversation._meta.db_table, Message._meta.db_table, UsageEvent._meta.db_table]


def test_no_index_of_the_chat_tables_begins_another():
    """A plain index whose columns begin another index's serves no lookup the other does
    not, and every row version written maintains it (docs/perf.md, change 35)."""
    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT t.relname, i.relname, x.indkey::int2[], x.indisunique, x.indpred IS NOT NULL, am.amname
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class t ON t.oid = x.indrelid
            JOIN pg_am am ON am.oid = i.relam
            WHERE t.relname = ANY(%s) AND x.indexprs IS NULL
            """,
            [CHAT_TABLES],
        )
        indexes = cursor.fetchall()
    btrees = [row for row in indexes if row[5] == "btree" and not row[4]]
    covered = [
        (name, other)
        for table, name, columns, unique, _, _ in btrees
        if not unique
        for other_table, other, other_columns, _, _, _ in btrees
        if other_table == table and other != name and other_columns[: len(columns)] == columns
    ]
    assert covered == []
    assert len(indexes) > len(CHAT_TABLES)  # the query found the tables' indexes


# --- cascades ----------------------------------------------------------------------
def test_deleting_a_conversation_deletes_its_messages(chat, alice):
    rows.exchange(chat, "q", "a")
    kept = rows.conversation(alice)
    rows.exchange(kept, "q", "a")
    chat.delete()
    assert set(Message.objects.values_list("conversation", flat=True)) == {kept.pk}


def test_deleting_a_conversation_keeps_its_usage_events_detached(chat, alice):
    _, reply = rows.exchange(chat, "q", "a")
    event = rows.usage(alice, conversation=chat, message=reply, prompt_tokens=42)
    chat.delete()
    event.refresh_from_db()
    assert (event.conversation_id, event.message_id, event.prompt_tokens) == (None, None, 42)


def test_deleting_a_user_deletes_their_conversations_messages_and_usage(chat, alice):
    rows.exchange(chat, "q", "a")
    rows.usage(alice, conversation=chat)
    bob = rows.user("bob")
    rows.exchange(rows.conversation(bob), "q", "a")
    rows.usage(bob)
    alice.delete()
    assert set(Conversation.objects.values_list("owner", flat=True)) == {bob.pk}
    assert Message.objects.count() == 2
    assert set(UsageEvent.objects.values_list("user", flat=True)) == {bob.pk}


# --- branches ----------------------------------------------------------------------
def test_visible_messages_are_the_conversation_in_order(chat):
    rows.exchange(chat, "q1", "a1")
    rows.exchange(chat, "q2", "a2")
    assert [m.content for m in chat.visible_messages()] == ["q1", "a1", "q2", "a2"]


def test_visible_messages_follow_a_regenerated_reply(chat):
    question, _ = rows.exchange(chat, "q1", "first answer")
    rows.message(chat, "second answer", role=Message.Role.ASSISTANT, parent=question)
    assert [m.content for m in chat.visible_messages()] == ["q1", "second answer"]


def test_visible_messages_follow_an_edit_fork(chat):
    rows.exchange(chat, "q1", "a1")
    _, a2 = rows.exchange(chat, "q2", "a2")
    first_answer = chat.messages.get(content="a1")
    edited = rows.message(chat, "q2 edited", parent=first_answer)
    rows.message(chat, "a2 for the edit", role=Message.Role.ASSISTANT, parent=edited)
    assert [m.content for m in chat.visible_messages()] == ["q1", "a1", "q2 edited", "a2 for the edit"]
    assert a2 not in chat.visible_messages()


def test_an_empty_conversation_has_no_visible_messages(chat):
    assert list(chat.visible_messages()) == []


# --- the ledger ---------------------------------------------------------------------
def test_totals_for_sum_a_users_tokens_and_calls_since_a_moment(alice):
    now = timezone.now()
    rows.usage(alice, at=now - timedelta(hours=1), prompt_tokens=100, completion_tokens=20)
    rows.usage(alice, at=now - timedelta(hours=2), prompt_tokens=50, completion_tokens=5, status="failed")
    rows.usage(alice, at=now - timedelta(days=2), prompt_tokens=1000)
    rows.usage(rows.user("bob"), at=now, prompt_tokens=7777)

    totals = UsageEvent.objects.totals_for(alice, since=now - timedelta(days=1))

    assert totals == {"prompt_tokens": 150, "completion_tokens": 25, "calls": 2}


def test_totals_for_a_user_without_usage_are_zero(alice):
    assert UsageEvent.objects.totals_for(alice, since=timezone.now() - timedelta(days=1)) == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "calls": 0,
    }


# --- stale replies ------------------------------------------------------------------
def streaming(conversation: Conversation, *, heartbeat_seconds_ago: float) -> Message:
    return rows.message(
        conversation,
        "partial text",
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        heartbeat_at=timezone.now() - timedelta(seconds=heartbeat_seconds_ago),
    )


def test_interrupt_stale_marks_a_silent_streaming_reply_interrupted(chat, settings):
    stale = streaming(chat, heartbeat_seconds_ago=settings.CHAT_STALE_AFTER_SECONDS + 5)
    Message.objects.interrupt_stale()
    stale.refresh_from_db()
    assert (stale.status, stale.content) == (Message.Status.INTERRUPTED, "partial text")


def test_interrupt_stale_leaves_a_live_streaming_reply_alone(chat, settings):
    live = streaming(chat, heartbeat_seconds_ago=1)
    Message.objects.interrupt_stale()
    live.refresh_from_db()
    assert live.status == Message.Status.STREAMING


def test_interrupt_stale_leaves_finished_replies_alone(chat, settings):
    old = timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER_SECONDS * 10)
    done = rows.message(
        chat, "done", role=Message.Role.ASSISTANT, status=Message.Status.COMPLETE, heartbeat_at=old
    )
    Message.objects.interrupt_stale()
    done.refresh_from_db()
    assert done.status == Message.Status.COMPLETE
