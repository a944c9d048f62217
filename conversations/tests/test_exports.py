"""Exports of conversations: JSON and Markdown of the visible branch, content verbatim."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from conversations.exports import (
    conversation_to_dict,
    conversation_to_markdown,
    conversations_to_json,
    conversations_to_markdown,
)
from conversations.models import Message
from conversations.tests import rows

pytestmark = pytest.mark.django_db

TRICKY = "Use `<script>alert(1)</script>` & **bold**\n\n```python\nprint('hi')\n```\n"


@pytest.fixture
def chat():
    owner = rows.user()
    conversation = rows.conversation(owner, title="Plans", model="gpt-4o-mini", system_prompt="Be brief.")
    rows.exchange(
        conversation, "What is 2+2?", "4", model="gpt-4o-mini", prompt_tokens=12, completion_tokens=1
    )
    rows.exchange(conversation, "And code?", TRICKY, completion_tokens=30)
    return conversation


def test_dict_has_the_conversation_fields(chat):
    data = conversation_to_dict(chat)
    assert (data["title"], data["model"], data["system_prompt"]) == ("Plans", "gpt-4o-mini", "Be brief.")
    assert data["created_at"] == chat.created_at.isoformat()
    assert data["updated_at"] == chat.updated_at.isoformat()


def test_dict_messages_are_in_order_with_role_status_model_tokens_and_time(chat):
    messages = conversation_to_dict(chat)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    first_reply = messages[1]
    assert first_reply["content"] == "4"
    assert first_reply["status"] == "complete"
    assert first_reply["model"] == "gpt-4o-mini"
    assert (first_reply["prompt_tokens"], first_reply["completion_tokens"]) == (12, 1)
    assert first_reply["created_at"] == chat.messages.get(content="4").created_at.isoformat()


def test_content_is_exported_verbatim_in_json(chat):
    document = json.loads(conversations_to_json([chat]))
    assert document["conversations"][0]["messages"][-1]["content"] == TRICKY


def test_only_the_current_branch_is_exported(chat):
    question = chat.messages.get(content="And code?")
    regenerated = rows.message(
        chat,
        "A better answer",
        role=Message.Role.ASSISTANT,
        parent=question,
        created_at=chat.updated_at + timedelta(hours=1),
    )
    contents = [m["content"] for m in conversation_to_dict(chat)["messages"]]
    assert contents == ["What is 2+2?", "4", "And code?", regenerated.content]


def test_json_holds_every_selected_conversation(chat):
    other = rows.conversation(chat.owner, title="Second")
    document = json.loads(conversations_to_json([chat, other]))
    assert [c["title"] for c in document["conversations"]] == ["Plans", "Second"]


def test_markdown_has_title_system_prompt_and_verbatim_messages(chat):
    text = conversation_to_markdown(chat)
    assert text.startswith("# Plans\n")
    assert "## System prompt\n\nBe brief.\n" in text
    assert TRICKY.rstrip("\n") in text
    assert text.index("What is 2+2?") < text.index("And code?")


def test_markdown_says_when_a_reply_did_not_complete():
    owner = rows.user()
    conversation = rows.conversation(owner, title="Cut short")
    rows.exchange(conversation, "Tell me a story", "Once upon", status=Message.Status.CANCELLED)
    assert "## Assistant (" in conversation_to_markdown(conversation)
    assert "cancelled)" in conversation_to_markdown(conversation)


def test_markdown_of_several_conversations_is_one_document(chat):
    other = rows.conversation(chat.owner, title="Second")
    rows.exchange(other, "Hi", "Hello there")
    text = conversations_to_markdown([chat, other])
    assert text.count("\n---\n") == 1
    assert text.index("# Plans") < text.index("# Second") < text.index("Hello there")
