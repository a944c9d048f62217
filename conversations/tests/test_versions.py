"""Versions of a message (edit, regenerate, retry) and the branch the owner chose to see."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
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
