"""The conversations admin as a logged-in superuser: lists, search, read-only content, exports, deletes."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conftest import require_service
from conversations.models import Conversation, Message, UsageEvent
from conversations.tests import rows

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:conversations_conversation_changelist")


def change_url(conversation: Conversation) -> str:
    return reverse("admin:conversations_conversation_change", args=[conversation.pk])


def listed(response) -> list[Conversation]:
    return list(response.context["cl"].result_list)


@pytest.fixture
def admin_client(client):
    return rows.superuser_client(client)


@pytest.fixture
def alice():
    return rows.user("alice")


# --- the list ---------------------------------------------------------------
def test_changelist_shows_title_owner_model_message_count_and_tokens(admin_client, alice):
    conversation = rows.conversation(alice, title="Trip to Lisbon", model="gpt-4o-mini")
    rows.exchange(conversation, "Where to eat?", "Try the bifanas.", prompt_tokens=1200, completion_tokens=34)
    rows.exchange(conversation, "And after?", "A pastel de nata.", prompt_tokens=1300, completion_tokens=20)

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    row = listed(response)[0]
    assert (row.message_count, row.total_tokens) == (4, 2554)
    text = response.content.decode()
    for shown in ("Trip to Lisbon", "alice", "gpt-4o-mini", "2,554"):
        assert shown in text


def test_two_conversations_count_only_their_own_messages_and_tokens(admin_client, alice):
    big = rows.conversation(alice, title="Big")
    for _ in range(3):
        rows.exchange(big, "q", "a", prompt_tokens=100, completion_tokens=10)
    small = rows.conversation(alice, title="Small")
    rows.exchange(small, "q", "a", prompt_tokens=1, completion_tokens=1)
    rows.usage(alice, conversation=big, prompt_tokens=5)

    figures = {c.title: (c.message_count, c.total_tokens) for c in listed(admin_client.get(CHANGELIST))}

    assert figures == {"Big": (6, 330), "Small": (2, 2)}


def test_search_finds_a_conversation_by_the_text_of_a_message(admin_client, alice):
    wanted = rows.conversation(alice, title="Untitled chat")
    rows.exchange(wanted, "How do I tune autovacuum?", "Lower the scale factor.")
    rows.exchange(rows.conversation(alice, title="Other"), "Pasta recipes", "Boil water.")

    response = admin_client.get(CHANGELIST, {"q": "AUTOVACUUM"})

    assert listed(response) == [wanted]


def test_search_finds_a_conversation_by_title(admin_client, alice):
    wanted = rows.conversation(alice, title="Autovacuum tuning")
    rows.conversation(alice, title="Other")

    assert listed(admin_client.get(CHANGELIST, {"q": "autovacuum"})) == [wanted]


def test_search_lists_a_conversation_once_however_many_messages_match(admin_client, alice):
    conversation = rows.conversation(alice, title="Risotto")
    for _ in range(3):
        rows.exchange(conversation, "risotto again?", "Yes, risotto.")

    response = admin_client.get(CHANGELIST, {"q": "risotto"})

    assert listed(response) == [conversation]
    assert response.context["cl"].result_count == 1


def test_search_words_must_all_appear_in_title_or_messages(admin_client, alice):
    both = rows.conversation(alice, title="Lisbon")
    rows.exchange(both, "Which tram?", "The 28.")
    rows.exchange(rows.conversation(alice, title="Porto"), "Which tram?", "The 1.")

    assert listed(admin_client.get(CHANGELIST, {"q": "lisbon tram"})) == [both]


def test_owner_filter_lists_only_that_owners_conversations(admin_client, alice):
    mine = rows.conversation(alice, title="Mine")
    rows.conversation(rows.user("bob"), title="Bob's")

    assert listed(admin_client.get(CHANGELIST, {"owner__id__exact": alice.pk})) == [mine]


def test_archived_filter_lists_only_archived_conversations(admin_client, alice):
    archived = rows.conversation(alice, title="Old", archived=True)
    rows.conversation(alice, title="Current")

    assert listed(admin_client.get(CHANGELIST, {"archived__exact": "1"})) == [archived]


def test_changelist_query_count_does_not_grow_with_rows(admin_client, alice):
    bob = rows.user("bob")

    def add_conversations(count: int) -> None:
        for i in range(count):
            conversation = rows.conversation(
                alice if i % 2 else bob, title=f"Chat {i}", model=f"model-{i % 3}"
            )
            rows.exchange(conversation, "question", "answer")
            rows.usage(conversation.owner, conversation=conversation)

    add_conversations(2)
    admin_client.get(CHANGELIST)  # warm the session and content-type caches
    with CaptureQueriesContext(connection) as few:
        assert len(listed(admin_client.get(CHANGELIST))) == 2
    add_conversations(18)
    with CaptureQueriesContext(connection) as many:
        assert len(listed(admin_client.get(CHANGELIST))) == 20

    assert len(many) == len(few)


def test_search_query_count_does_not_grow_with_rows(admin_client, alice):
    for i in range(2):
        rows.exchange(rows.conversation(alice, title=f"Chat {i}"), "needle here", "answer")
    admin_client.get(CHANGELIST, {"q": "needle"})
    with CaptureQueriesContext(connection) as few:
        admin_client.get(CHANGELIST, {"q": "needle"})
    for i in range(2, 20):
        rows.exchange(rows.conversation(alice, title=f"Chat {i}"), "needle here", "answer")
    with CaptureQueriesContext(connection) as many:
        assert len(listed(admin_client.get(CHANGELIST, {"q": "needle"}))) == 20

    assert len(many) == len(few)


def test_conversations_cannot_be_added_in_the_admin(admin_client):
    assert admin_client.get(reverse("admin:conversations_conversation_add")).status_code == 403


# --- the change page ------------------------------------------------------------
def test_change_page_shows_messages_in_order_with_role_status_tokens_and_timing(admin_client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(
        conversation,
        "First question",
        "First answer",
        prompt_tokens=1234,
        completion_tokens=56,
        ttft_ms=321,
        duration_ms=4567,
    )
    rows.exchange(conversation, "Second question", "Second answer", status=Message.Status.FAILED)

    text = admin_client.get(change_url(conversation)).content.decode()

    positions = [
        text.index(s) for s in ("First question", "First answer", "Second question", "Second answer")
    ]
    assert positions == sorted(positions)
    for shown in ("Assistant", "Failed", "1,234 + 56", "321 ms / 4,567 ms"):
        assert shown in text


def test_change_page_renders_message_markdown_through_the_sanitiser(admin_client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "Show me", "**bold** <script>alert(1)</script> [x](javascript:alert(2))")

    text = admin_client.get(change_url(conversation)).content.decode()

    assert "<strong>bold</strong>" in text
    assert "<script>alert(1)" not in text
    assert 'href="javascript:' not in text


def test_change_page_has_no_inputs_for_message_content(admin_client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "Keep me", "As I am")

    text = admin_client.get(change_url(conversation)).content.decode()

    assert 'name="messages-0-content"' not in text
    assert 'name="messages-0-DELETE"' not in text
    assert 'name="messages-MAX_NUM_FORMS" value="0"' in text  # the admin's JS offers no "Add another"


def test_change_page_marks_which_messages_are_on_the_current_branch(admin_client, alice):
    conversation = rows.conversation(alice)
    question, first = rows.exchange(conversation, "Question", "Old answer")
    rows.message(conversation, "New answer", role=Message.Role.ASSISTANT, parent=question)

    response = admin_client.get(change_url(conversation))

    inline = next(f for f in response.context["inline_admin_formsets"] if f.opts.model is Message)
    assert inline.opts.on_branch(first) is False
    assert inline.opts.on_branch(question) is True


def test_change_page_lists_the_conversations_usage_events(admin_client, alice):
    conversation = rows.conversation(alice)
    rows.usage(
        alice, conversation=conversation, provider="llamacpp", error_code="context_length", status="failed"
    )
    rows.usage(alice, provider="openai", error_code="not_this_one", status="failed")

    text = admin_client.get(change_url(conversation)).content.decode()

    assert "context_length" in text
    assert "not_this_one" not in text


def test_saving_the_change_form_changes_the_title_but_never_message_content(admin_client, alice):
    conversation = rows.conversation(alice, title="Before")
    asked, _ = rows.exchange(conversation, "Original text", "Reply")
    form = {
        "title": "After",
        "messages-TOTAL_FORMS": "2",
        "messages-INITIAL_FORMS": "2",
        "messages-0-id": str(asked.pk),
        "messages-0-conversation": str(conversation.pk),
        "messages-0-content": "Tampered",
        "usage_events-TOTAL_FORMS": "0",
        "usage_events-INITIAL_FORMS": "0",
        "attachments-TOTAL_FORMS": "0",
        "attachments-INITIAL_FORMS": "0",
    }

    response = admin_client.post(change_url(conversation), form)

    assert response.status_code == 302
    conversation.refresh_from_db()
    asked.refresh_from_db()
    assert (conversation.title, asked.content) == ("After", "Original text")


# --- the message and usage admins ------------------------------------------
def test_message_admin_is_view_only(admin_client, alice):
    asked, _ = rows.exchange(rows.conversation(alice), "Original text", "Reply")
    url = reverse("admin:conversations_message_change", args=[asked.pk])

    assert admin_client.get(url).status_code == 200
    assert admin_client.post(url, {"content": "Tampered"}).status_code == 403
    assert admin_client.get(reverse("admin:conversations_message_add")).status_code == 403
    assert admin_client.get(reverse("admin:conversations_message_delete", args=[asked.pk])).status_code == 403
    asked.refresh_from_db()
    assert asked.content == "Original text"


def test_message_changelist_searches_content(admin_client, alice):
    asked, _ = rows.exchange(rows.conversation(alice), "Unusual zebra question", "Reply")

    response = admin_client.get(reverse("admin:conversations_message_changelist"), {"q": "zebra"})

    assert list(response.context["cl"].result_list) == [asked]


def test_usage_event_admin_is_view_only(admin_client, alice):
    event = rows.usage(alice)

    assert admin_client.get(reverse("admin:conversations_usageevent_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:conversations_usageevent_change", args=[event.pk]), {}).status_code
        == 403
    )


def test_usage_list_shows_totals_for_the_current_filter(admin_client, alice):
    rows.usage(alice, status="ok", prompt_tokens=100, completion_tokens=20, ttft_ms=200)
    rows.usage(alice, status="ok", prompt_tokens=300, completion_tokens=80, ttft_ms=400)
    rows.usage(
        alice, status="failed", prompt_tokens=9999, completion_tokens=0, ttft_ms=None, error_code="timeout"
    )

    response = admin_client.get(reverse("admin:conversations_usageevent_changelist"), {"status__exact": "ok"})

    totals = response.context["usage_totals"]
    assert (totals["calls"], totals["tokens"], totals["avg_ttft_ms"]) == (2, 500, 300)
    text = response.content.decode()
    assert '<span class="value" id="total-tokens">500</span>' in text
    assert '<span class="value" id="avg-ttft">300 ms</span>' in text


def test_usage_totals_cover_every_page_not_just_the_shown_one(admin_client, alice, settings):
    for _ in range(3):
        rows.usage(alice, prompt_tokens=10, completion_tokens=0)
    from conversations.admin import UsageEventAdmin

    UsageEventAdmin.list_per_page, saved = 2, UsageEventAdmin.list_per_page
    try:
        response = admin_client.get(reverse("admin:conversations_usageevent_changelist"))
    finally:
        UsageEventAdmin.list_per_page = saved

    assert len(response.context["cl"].result_list) == 2
    assert response.context["usage_totals"]["tokens"] == 30


# --- export actions ---------------------------------------------------------------
def export(admin_client, action: str, conversations: list[Conversation]):
    return admin_client.post(
        CHANGELIST, {"action": action, "_selected_action": [str(c.pk) for c in conversations]}
    )


def test_export_action_downloads_the_selected_conversations_as_json(admin_client, alice):
    chosen = rows.conversation(alice, title="Chosen")
    rows.exchange(chosen, "Question", "Answer")
    rows.conversation(alice, title="Not chosen")

    response = export(admin_client, "export_json", [chosen])

    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith('attachment; filename="conversations-')
    document = json.loads(response.content)
    assert [c["title"] for c in document["conversations"]] == ["Chosen"]
    assert [m["content"] for m in document["conversations"][0]["messages"]] == ["Question", "Answer"]


def test_export_action_downloads_several_conversations_as_one_markdown_file(admin_client, alice):
    first = rows.conversation(alice, title="First chat")
    second = rows.conversation(alice, title="Second chat")
    rows.exchange(second, "Hello", "Hi!")

    response = export(admin_client, "export_markdown", [first, second])

    assert response["Content-Type"].startswith("text/markdown")
    assert response["Content-Disposition"].endswith('.md"')
    text = response.content.decode()
    assert "# First chat" in text and "# Second chat" in text and "Hi!" in text


# --- deletion ---------------------------------------------------------------------
def test_deleting_a_conversation_in_the_admin_deletes_its_messages_and_keeps_usage(admin_client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "Question", "Answer")
    event = rows.usage(alice, conversation=conversation)

    response = admin_client.post(
        reverse("admin:conversations_conversation_delete", args=[conversation.pk]), {"post": "yes"}
    )

    assert response.status_code == 302
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    event.refresh_from_db()
    assert event.conversation_id is None


def test_deleting_a_user_in_the_admin_is_not_blocked_by_their_read_only_chats(admin_client, alice):
    conversation = rows.conversation(alice)
    rows.exchange(conversation, "Question", "Answer")
    rows.usage(alice, conversation=conversation)

    response = admin_client.post(reverse("admin:auth_user_delete", args=[alice.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=alice.pk).exists()
    assert (Conversation.objects.count(), Message.objects.count(), UsageEvent.objects.count()) == (0, 0, 0)


def test_message_page_shows_the_content_as_stored_and_escaped(admin_client, alice):
    _, reply = rows.exchange(rows.conversation(alice), "Q", "**bold** <b>raw</b>")

    text = admin_client.get(reverse("admin:conversations_message_change", args=[reply.pk])).content.decode()

    assert "<strong>bold</strong>" in text
    assert '<pre class="raw-content">**bold** &lt;b&gt;raw&lt;/b&gt;</pre>' in text


def test_message_changelist_has_no_date_links_read_over_every_message(admin_client, alice):
    rows.exchange(rows.conversation(alice), "question", "answer")
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(reverse("admin:conversations_message_changelist"))
    assert response.status_code == 200
    statements = [query["sql"].lower() for query in queries]
    assert not any("date_trunc" in sql or "django_datetime_trunc" in sql for sql in statements)
    assert not any("min(" in sql and "max(" in sql for sql in statements)


def test_message_changelist_reads_its_page_through_the_time_index(admin_client, alice):
    """The page of every message is read in index order, not sorted from the whole table."""
    require_service("PostgreSQL (DATABASE_URL)", connection.vendor == "postgresql")
    conversation = rows.conversation(alice)
    for i in range(26):  # more than a page of 50, so the page is a LIMIT
        rows.exchange(conversation, f"question {i}", "answer")
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(reverse("admin:conversations_message_changelist"))
    page = next(
        query["sql"]
        for query in queries
        if 'FROM "conversations_message"' in query["sql"]
        and "LIMIT" in query["sql"]
        and "ORDER BY" in query["sql"]
    )
    with connection.cursor() as cursor:  # inside the test's transaction, as test_history's GIN check
        # On an all but empty table the planner's choice follows its statistics of the moment
        # (whatever earlier tests and autovacuum left): with scanning the whole table and
        # sorting priced out, it reads the page in index order if an index gives that order.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {page}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_time" in plan, plan
    assert "Sort" not in plan.split("Index")[0], plan
