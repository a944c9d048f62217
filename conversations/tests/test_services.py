"""The chat domain's services, called directly (no socket): each write, its rules and its events.

The concurrency tests run real threads against the real database (PostgreSQL
in CI): the rules hold because the send re-reads and locks rows, not because
one test happens to run alone.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from conversations import services
from conversations.models import Conversation, Message, UsageEvent
from conversations.services import SendRefused
from conversations.tests import rows

pytestmark = pytest.mark.usefixtures("fake_llm")

WORKER = "specific.test!worker"


def send(conversation, user, content="hi", client_id=None):
    return services.message_send(
        conversation_id=conversation.id,
        user=user,
        content=content,
        client_id=client_id or uuid.uuid4(),
        worker=WORKER,
    )


def at_once(calls: list) -> list:
    """Run the calls in threads released together; each result or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


# --- conversations ------------------------------------------------------------


@pytest.mark.django_db
def test_conversation_create_belongs_to_its_owner():
    alice = rows.user("alice")
    conversation = services.conversation_create(owner=alice, model="m", system_prompt="Be brief.")
    assert (conversation.owner, conversation.model, conversation.system_prompt) == (alice, "m", "Be brief.")


@pytest.mark.django_db
def test_conversation_update_changes_only_what_is_given_and_trims_the_title():
    conversation = rows.conversation(rows.user(), title="Old", model="m", system_prompt="p")
    services.conversation_update(conversation=conversation, title="  New title  ")
    conversation.refresh_from_db()
    assert (conversation.title, conversation.model, conversation.system_prompt) == ("New title", "m", "p")


@pytest.mark.django_db
def test_conversation_delete_removes_messages_and_keeps_usage():
    alice = rows.user()
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "q", "a")
    event = rows.usage(alice, conversation=conversation)
    services.conversation_delete(conversation=conversation)
    assert not Message.objects.exists()
    event.refresh_from_db()
    assert event.conversation is None


@pytest.mark.django_db
def test_autotitle_returns_the_titled_row_as_stored_in_one_statement(django_assert_num_queries):
    conversation = rows.conversation(rows.user(), title="", model="m1", system_prompt="Be brief.")
    with django_assert_num_queries(1):
        titled = services.conversation_autotitle(
            conversation_id=conversation.id, title="  " + "A long title " * 20 + " "
        )
    stored = Conversation.objects.get(pk=conversation.id)
    assert titled is not None and not titled._state.adding
    assert stored.title == ("A long title " * 20).strip()[: services.TITLE_MAX_CHARS]
    assert stored.updated_at > conversation.updated_at
    fields = [f.attname for f in Conversation._meta.concrete_fields]
    assert [getattr(titled, name) for name in fields] == [getattr(stored, name) for name in fields]


@pytest.mark.django_db
def test_autotitle_never_replaces_a_title_the_user_chose():
    conversation = rows.conversation(rows.user(), title="Mine")
    assert services.conversation_autotitle(conversation_id=conversation.id, title="Model's") is None
    conversation.refresh_from_db()
    assert conversation.title == "Mine"


# --- sends --------------------------------------------------------------------


@pytest.mark.django_db
def test_send_stores_the_question_and_a_streaming_reply_after_the_last_message():
    alice = rows.user()
    conversation = rows.conversation(alice)
    _, answer = rows.exchange(conversation, "q", "a")
    start = send(conversation, alice, "next")
    assert start.created
    assert (start.user_message.parent_id, start.user_message.content) == (answer.id, "next")
    assert (start.reply.status, start.reply.parent_id, start.reply.worker) == (
        "streaming",
        start.user_message.id,
        WORKER,
    )


@pytest.mark.django_db
def test_a_send_stores_rows_whose_keys_sort_by_when_they_were_made():
    alice = rows.user()
    conversation = services.conversation_create(owner=alice)
    start = send(conversation, alice, "next")
    keys = [conversation.id, start.user_message.id, start.reply.id]
    assert [key.version for key in keys] == [7, 7, 7]  # chatplatform/ids.py
    stored = Message.objects.filter(conversation=conversation).order_by("id").values_list("id", flat=True)
    assert list(stored) == [start.user_message.id, start.reply.id]


@pytest.mark.django_db
def test_send_to_someone_elses_conversation_is_refused_as_not_found():
    conversation = rows.conversation(rows.user("alice"))
    with pytest.raises(SendRefused) as refused:
        send(conversation, rows.user("mallory"))
    assert refused.value.code == "not_found"
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_resend_with_a_known_client_id_returns_the_stored_rows():
    alice = rows.user()
    conversation = rows.conversation(alice)
    client_id = uuid.uuid4()
    first = send(conversation, alice, client_id=client_id)
    again = send(conversation, alice, client_id=client_id)
    assert not again.created
    assert (again.user_message.id, again.reply.id) == (first.user_message.id, first.reply.id)


@pytest.mark.django_db
def test_send_while_a_reply_runs_in_the_conversation_is_refused_busy():
    alice = rows.user()
    conversation = rows.conversation(alice)
    send(conversation, alice)
    with pytest.raises(SendRefused) as refused:
        send(conversation, alice)
    assert refused.value.code == "busy"


@pytest.mark.django_db
def test_send_of_an_inactive_user_is_refused():
    alice = rows.user(is_active=False)
    with pytest.raises(SendRefused) as refused:
        send(rows.conversation(alice), alice)
    assert refused.value.code == "session_ended"


@pytest.mark.django_db
def test_send_over_the_daily_budget_is_refused(settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    alice = rows.user()
    rows.usage(alice, prompt_tokens=60, completion_tokens=40)
    with pytest.raises(SendRefused) as refused:
        send(rows.conversation(alice), alice)
    assert refused.value.code == "quota_exceeded"


@pytest.mark.django_db
def test_yesterdays_usage_does_not_count_against_todays_budget(settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 100
    alice = rows.user()
    rows.usage(alice, at=timezone.now() - timedelta(days=1), prompt_tokens=500)
    assert send(rows.conversation(alice), alice).created


@pytest.mark.django_db
def test_edit_forks_beside_the_edited_message():
    alice = rows.user()
    conversation = rows.conversation(alice)
    question, _ = rows.exchange(conversation, "q", "a")
    start = services.message_edit(
        conversation_id=conversation.id,
        user=alice,
        message_id=question.id,
        content="q2",
        client_id=uuid.uuid4(),
        worker=WORKER,
    )
    assert (start.user_message.parent_id, start.user_message.content) == (question.parent_id, "q2")


@pytest.mark.django_db
def test_regenerate_adds_a_sibling_reply_and_keeps_the_old_one():
    alice = rows.user()
    conversation = rows.conversation(alice)
    question, answer = rows.exchange(conversation, "q", "a")
    start = services.message_regenerate(
        conversation_id=conversation.id, user=alice, message_id=answer.id, worker=WORKER
    )
    assert start.reply.parent_id == question.id
    assert Message.objects.filter(parent=question).count() == 2


@pytest.mark.django_db
def test_regenerate_of_a_user_message_is_refused_as_not_found():
    alice = rows.user()
    conversation = rows.conversation(alice)
    question, _ = rows.exchange(conversation, "q", "a")
    with pytest.raises(SendRefused) as refused:
        services.message_regenerate(
            conversation_id=conversation.id, user=alice, message_id=question.id, worker=WORKER
        )
    assert refused.value.code == "not_found"


@pytest.mark.django_db
def test_stop_target_is_the_streaming_reply_of_my_conversation_only():
    alice, mallory = rows.user("alice"), rows.user("mallory")
    conversation = rows.conversation(alice)
    start = send(conversation, alice)
    assert services.generation_stop_target(conversation_id=conversation.id, user=alice) == start.reply.id
    assert services.generation_stop_target(conversation_id=conversation.id, user=mallory) is None


# --- a reply's life -------------------------------------------------------------


@pytest.mark.django_db
def test_checkpoints_write_several_replies_text_in_one_statement(django_assert_num_queries):
    alice = rows.user()
    first, second = send(rows.conversation(alice), alice), send(rows.conversation(alice), alice)
    with django_assert_num_queries(1):
        services.replies_checkpoint(contents={first.reply.id: "one", second.reply.id: "two"})
    assert [Message.objects.get(pk=s.reply.id).content for s in (first, second)] == ["one", "two"]


@pytest.mark.django_db
def test_a_checkpoint_keeps_any_text_exactly_and_leaves_finished_replies_alone():
    alice = rows.user()
    running, finished = send(rows.conversation(alice), alice), send(rows.conversation(alice), alice)
    Message.objects.filter(pk=finished.reply.id).update(status=Message.Status.COMPLETE, content="final")
    before = Message.objects.get(pk=running.reply.id).heartbeat_at
    text = "100 % 'quoted' %s %(x)s \\ ünïcode; DROP TABLE x; --"

    services.replies_checkpoint(contents={running.reply.id: text, finished.reply.id: "late"})

    running_row = Message.objects.get(pk=running.reply.id)
    assert running_row.content == text
    assert before is None or running_row.heartbeat_at > before
    assert Message.objects.get(pk=finished.reply.id).content == "final"


@pytest.mark.django_db
def test_reply_finish_writes_the_reply_and_one_usage_event():
    alice = rows.user()
    conversation = rows.conversation(alice)
    start = send(conversation, alice)
    message = services.reply_finish(
        message_id=start.reply.id,
        user_id=alice.id,
        conversation_id=conversation.id,
        outcome="complete",
        content="done",
        finish_reason="stop",
        error_code="",
        error="",
        provider="fake",
        model="fake-model",
        prompt_tokens=3,
        completion_tokens=4,
        ttft_ms=5,
        duration_ms=6,
    )
    assert (message.status, message.content, message.worker) == ("complete", "done", "")
    assert UsageEvent.objects.get().total_tokens == 7


@pytest.mark.django_db
def test_interrupting_an_orphan_keeps_its_text_and_only_for_its_owner():
    alice = rows.user()
    start = send(rows.conversation(alice), alice)
    services.replies_checkpoint(contents={start.reply.id: "partial"})
    assert services.reply_interrupt(message_id=start.reply.id, worker="specific.other!x") is None
    interrupted = services.reply_interrupt(message_id=start.reply.id, worker=WORKER)
    assert (interrupted.status, interrupted.content, interrupted.error_code) == (
        "interrupted",
        "partial",
        "interrupted",
    )


@pytest.mark.django_db
def test_sweep_interrupts_replies_whose_heartbeat_stopped(settings):
    alice = rows.user()
    start = send(rows.conversation(alice), alice)
    Message.objects.filter(pk=start.reply.id).update(heartbeat_at=timezone.now() - timedelta(minutes=1))
    assert [m.id for m in services.replies_interrupt_stale()] == [start.reply.id]


# --- under concurrency (real threads, real database) -----------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_of_one_user_never_exceed_the_concurrent_reply_limit(settings):
    settings.CHAT_CONCURRENT_REPLIES = 2
    settings.CHAT_MESSAGES_PER_MINUTE = 100
    alice = rows.user()
    conversations = [rows.conversation(alice) for _ in range(6)]
    results = at_once([lambda c=c: send(c, alice) for c in conversations])
    started = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, SendRefused)]
    assert len(started) == 2
    assert {r.code for r in refused} == {"rate_limited"} and len(refused) == 4
    assert Message.objects.filter(status="streaming").count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_never_overrun_the_daily_budget(settings):
    settings.CHAT_DAILY_TOKEN_BUDGET = 1000
    settings.LLM_MAX_OUTPUT_TOKENS = 100
    settings.CHAT_CONCURRENT_REPLIES = 10
    settings.CHAT_MESSAGES_PER_MINUTE = 100
    alice = rows.user()
    rows.usage(alice, prompt_tokens=920, completion_tokens=0)  # under budget, but not with one reply reserved
    conversations = [rows.conversation(alice) for _ in range(5)]
    results = at_once([lambda c=c: send(c, alice) for c in conversations])
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert {r.code for r in results if isinstance(r, SendRefused)} == {"quota_exceeded"}


@pytest.mark.django_db(transaction=True)
def test_the_same_client_id_from_two_sockets_at_once_stores_one_message(settings):
    settings.CHAT_MESSAGES_PER_MINUTE = 100
    alice = rows.user()
    conversation = rows.conversation(alice)
    client_id = uuid.uuid4()
    results = at_once([lambda: send(conversation, alice, client_id=client_id) for _ in range(4)])
    assert not [r for r in results if isinstance(r, Exception)]
    assert sum(r.created for r in results) == 1
    assert len({r.user_message.id for r in results}) == 1
    assert Message.objects.filter(client_id=client_id).count() == 1
    assert Conversation.objects.get().messages.count() == 2


@pytest.mark.django_db
def test_sweep_spares_a_busy_process_that_still_says_it_is_alive_and_not_a_dead_one():
    from django.core.cache import cache

    from conversations.generation import liveness

    alice = rows.user()
    start = send(rows.conversation(alice), alice)
    Message.objects.filter(pk=start.reply.id).update(heartbeat_at=timezone.now() - timedelta(minutes=1))
    liveness.announce(WORKER)
    assert services.replies_interrupt_stale(alive=liveness.alive) == []
    cache.clear()  # the process stopped saying so: it died
    assert [m.id for m in services.replies_interrupt_stale(alive=liveness.alive)] == [start.reply.id]
