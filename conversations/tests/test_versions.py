"""Versions of a message (edit, regenerate, retry) and the branch the owner chose to see."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from conversations.exports import conversation_to_dict, conversation_to_markdown
from conversations.models import Conversation, Message
from conversations.selectors import conversation_history
from conversations.tests import rows
from conversations.versions import VersionRefused, version_show

pytestmark = pytest.mark.django_db


@pytest.fixture
def forked():
    """Q1 -> A1 -> Q2 -> A2, then A1 regenerated as A1' (with Q3 -> A3 after it)."""
    owner = rows.user()
    conversation = rows.conversation(owner)
    q1, a1 = rows.exchange(conversation, "first question", "first answer")
    q2, a2 = rows.exchange(conversation, "second question", "old continuation")
    a1b = rows.message(conversation, "regenerated answer", role=Message.Role.ASSISTANT, parent=q1)
    q3, a3 = rows.exchange(conversation, "third question", "new continuation")
    assert q3.parent_id == a1b.id
    return conversation, {"q1": q1, "a1": a1, "q2": q2, "a2": a2, "a1b": a1b, "q3": q3, "a3": a3}


def contents(conversation: Conversation) -> list[str]:
    return [m.content for m in Conversation.objects.get(pk=conversation.pk).visible_messages()]


def test_the_newest_branch_is_shown_until_another_version_is_chosen(forked):
    conversation, _ = forked
    assert contents(conversation) == [
        "first question",
        "regenerated answer",
        "third question",
        "new continuation",
    ]


def test_switching_to_the_previous_version_shows_its_old_continuation(forked):
    conversation, m = forked
    leaf = version_show(conversation=conversation, message_id=m["a1"].id)
    assert leaf == m["a2"].id
    assert contents(conversation) == ["first question", "first answer", "second question", "old continuation"]


def test_the_choice_is_kept_on_the_conversation_for_every_reader(forked, client):
    conversation, m = forked
    version_show(conversation=conversation, message_id=m["a1"].id)
    fresh = Conversation.objects.get(pk=conversation.pk)
    messages, _ = conversation_history(conversation=fresh)
    assert [x.content for x in messages][-1] == "old continuation"


def test_a_message_newer_than_the_choice_shows_its_own_branch_again(forked):
    conversation, m = forked
    version_show(conversation=conversation, message_id=m["a1"].id)
    conversation.refresh_from_db()
    later = conversation.branch_chosen_at + timedelta(seconds=1)
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="regenerated again",
        parent=m["q1"],
        created_at=later,
    )
    assert contents(conversation) == ["first question", "regenerated again"]


def test_the_next_send_follows_the_shown_branch(forked):
    conversation, m = forked
    version_show(conversation=conversation, message_id=m["a1"].id)
    conversation.refresh_from_db()
    assert conversation.visible_message_ids()[-1] == m["a2"].id  # the parent a send will take


def test_versions_are_numbered_among_siblings_oldest_first(forked):
    conversation, m = forked
    messages, _ = conversation_history(conversation=conversation)
    by_content = {x.content: x for x in messages}
    versions = by_content["regenerated answer"].versions
    assert (versions.index, versions.count) == (2, 2)
    assert (versions.previous_id, versions.next_id) == (m["a1"].id, None)
    assert by_content["first question"].versions is None
    assert by_content["third question"].versions is None


def test_an_edited_first_message_has_versions_too():
    owner = rows.user()
    conversation = rows.conversation(owner)
    rows.exchange(conversation, "original", "answer")
    edited = rows.message(conversation, "edited", parent=None)
    messages, _ = conversation_history(conversation=conversation)
    assert messages[0].id == edited.id
    assert (messages[0].versions.index, messages[0].versions.count) == (2, 2)


def test_switching_to_a_message_of_another_conversation_is_refused(forked):
    conversation, _ = forked
    other = rows.conversation(conversation.owner)
    foreign, _ = rows.exchange(other, "elsewhere", "reply")
    with pytest.raises(VersionRefused) as refused:
        version_show(conversation=conversation, message_id=foreign.id)
    assert refused.value.code == "not_found"


def test_switching_while_a_reply_is_written_is_refused(forked):
    conversation, m = forked
    rows.message(conversation, "", role="assistant", status="streaming", parent=m["q3"])
    with pytest.raises(VersionRefused) as refused:
        version_show(conversation=conversation, message_id=m["a1"].id)
    assert refused.value.code == "busy"


def test_the_page_shows_the_switcher_with_its_labels(forked, client):
    conversation, _ = forked
    client.force_login(conversation.owner)
    html = client.get(reverse("conversation", args=[conversation.id])).content.decode()
    assert 'aria-label="Previous version"' in html
    assert 'aria-label="Next version"' in html
    assert "2 / 2" in html


def test_posting_a_version_switches_and_answers_with_the_leaf(forked, client):
    conversation, m = forked
    client.force_login(conversation.owner)
    response = client.post(
        reverse("conversation-version", args=[conversation.id]),
        {"message_id": str(m["a1"].id)},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200
    assert response.json() == {"current_leaf_id": str(m["a2"].id)}
    fragment = client.get(reverse("conversation-messages", args=[conversation.id])).content.decode()
    assert "old continuation" in fragment and "new continuation" not in fragment
    assert "1 / 2" in fragment


def test_posting_without_javascript_redirects_back_to_the_conversation(forked, client):
    conversation, m = forked
    client.force_login(conversation.owner)
    response = client.post(
        reverse("conversation-version", args=[conversation.id]), {"message_id": str(m["a1"].id)}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("conversation", args=[conversation.id])


def test_posting_an_unknown_message_is_a_404_with_a_reason(forked, client):
    conversation, _ = forked
    client.force_login(conversation.owner)
    response = client.post(
        reverse("conversation-version", args=[conversation.id]),
        {"message_id": "00000000-0000-4000-8000-000000000000"},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_exports_carry_the_shown_path_and_json_can_carry_every_branch(forked, client):
    conversation, m = forked
    version_show(conversation=conversation, message_id=m["a1"].id)
    conversation.refresh_from_db()
    document = conversation_to_dict(conversation)
    assert [x["content"] for x in document["messages"]][-1] == "old continuation"
    assert "all_messages" not in document
    assert "old continuation" in conversation_to_markdown(conversation)
    assert "new continuation" not in conversation_to_markdown(conversation)

    client.force_login(conversation.owner)
    response = client.get(reverse("conversation-export-json", args=[conversation.id]), {"branches": "all"})
    everything = json.loads(response.content)["all_messages"]
    assert len(everything) == 7
    by_id = {x["id"]: x for x in everything}
    assert by_id[str(m["a1b"].id)]["parent_id"] == str(m["q1"].id)


# --- a search hit opens the branch it lives in (`/c/<id>/?m=<message id>`) -----------------


def open_hit(client, conversation, message_id) -> str:
    response = client.get(reverse("conversation", args=[conversation.id]), {"m": str(message_id)})
    assert response.status_code == 200
    return response.content.decode()


def shown(html: str) -> list[str]:
    """Ids of the messages in the page's transcript (not its templates for live messages)."""
    transcript = html[html.index('id="messages"') : html.index('id="messages-empty"')]
    return re.findall(r'<article class="message[^"]*" data-message-id="([0-9a-f-]+)"', transcript)


def test_a_hit_in_a_hidden_branch_is_shown_in_its_branch_and_the_get_changes_nothing(forked, client):
    conversation, m = forked
    client.force_login(conversation.owner)
    html = open_hit(client, conversation, m["q2"].id)
    assert shown(html) == [str(m[k].id) for k in ("q1", "a1", "q2", "a2")]
    assert re.search(rf'class="message message--user message--hit" data-message-id="{m["q2"].id}"', html)
    assert f'data-hit="{m["q2"].id}"' in html
    assert f'data-show-version="{m["q2"].id}"' in html  # the page's script remembers it
    fresh = Conversation.objects.get(pk=conversation.pk)
    assert (fresh.current_leaf_id, fresh.branch_chosen_at) == (None, None)
    assert contents(conversation)[-1] == "new continuation"


def test_after_the_pages_post_a_reload_shows_the_hits_branch(forked, client):
    conversation, m = forked
    client.force_login(conversation.owner)
    html = open_hit(client, conversation, m["q2"].id)
    target = re.search(r'data-show-version="([0-9a-f-]+)"', html).group(1)
    client.post(reverse("conversation-version", args=[conversation.id]), {"message_id": target})
    html = client.get(reverse("conversation", args=[conversation.id])).content.decode()
    assert shown(html) == [str(m[k].id) for k in ("q1", "a1", "q2", "a2")]


def test_a_hit_on_the_shown_branch_is_marked_without_a_switch(forked, client):
    conversation, m = forked
    client.force_login(conversation.owner)
    html = open_hit(client, conversation, m["q1"].id)
    assert shown(html) == [str(m[k].id) for k in ("q1", "a1b", "q3", "a3")]
    assert f'data-hit="{m["q1"].id}"' in html
    assert "data-show-version" not in html


@pytest.mark.parametrize("hit", ["foreign", "unknown", "not-a-uuid", "{uuid-in-braces}"])
def test_a_foreign_unknown_or_malformed_hit_is_ignored(forked, client, hit):
    conversation, m = forked
    client.force_login(conversation.owner)
    theirs = rows.conversation(rows.user("mallory"))
    foreign = rows.message(theirs, "not yours")
    value = {
        "foreign": str(foreign.id),
        "unknown": str(uuid.uuid4()),
        "not-a-uuid": "x" * 5000,
        "{uuid-in-braces}": "{" + str(m["q2"].id) + "}",
    }[hit]
    response = client.get(reverse("conversation", args=[conversation.id]), {"m": value})
    assert response.status_code == 200
    html = response.content.decode()
    assert shown(html) == [str(m[k].id) for k in ("q1", "a1b", "q3", "a3")]
    assert "data-hit" not in html and "message--hit" not in html and "not yours" not in html


def test_a_hit_of_another_conversation_of_ones_own_is_ignored(forked, client):
    conversation, _ = forked
    client.force_login(conversation.owner)
    other = rows.conversation(conversation.owner)
    elsewhere = rows.message(other, "elsewhere")
    html = open_hit(client, conversation, elsewhere.id)
    assert "data-hit" not in html and "elsewhere" not in html


def test_a_hit_while_a_reply_is_written_stays_on_the_shown_branch_and_says_why(forked, client):
    conversation, m = forked
    client.force_login(conversation.owner)
    Message.objects.filter(pk=m["a3"].id).update(status=Message.Status.STREAMING)
    html = open_hit(client, conversation, m["q2"].id)
    assert shown(html) == [str(m[k].id) for k in ("q1", "a1b", "q3", "a3")]
    assert "data-show-version" not in html
    assert "This match is in another version of the conversation" in html


def test_a_hit_older_than_the_last_page_starts_the_page_at_it(forked, client, settings):
    settings.CHAT_HISTORY_PAGE = 2
    conversation, m = forked
    client.force_login(conversation.owner)
    html = open_hit(client, conversation, m["a1"].id)
    assert shown(html) == [str(m[k].id) for k in ("a1", "q2", "a2")]
    assert 'id="load-earlier" hidden' not in html  # q1 is still one "Load earlier" away


def test_opening_a_hit_costs_at_most_two_more_queries(forked, client):
    conversation, m = forked
    client.force_login(conversation.owner)
    url = reverse("conversation", args=[conversation.id])
    with CaptureQueriesContext(connection) as plain:
        client.get(url)
    with CaptureQueriesContext(connection) as hit:
        client.get(url, {"m": str(m["q2"].id)})
    assert len(hit) - len(plain) <= 2
