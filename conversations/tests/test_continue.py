"""`message.continue`: a reply cut by the length limit carries on in the same row, streamed like any reply."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from conversations.models import Message, UsageEvent
from conversations.tests.conftest import make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake_llm")]

db = database_sync_to_async


async def cut_reply(fake_llm):
    """A conversation whose only reply stopped at the length limit (5 of 12 tokens)."""
    fake_llm.LLM_MAX_OUTPUT_TOKENS = 5
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    socket, (ok, code) = await open_socket(user, conversation.id)
    assert ok, code
    await socket.send(
        {
            "type": "message.send",
            "content": "tell me everything",
            "client_id": "0" * 8 + "-0000-4000-8000-" + "0" * 12,
        }
    )
    await socket.receive_until("message.created")
    await socket.receive_until("message.created")
    final = await socket.receive_until("message.completed")
    return socket, conversation, final


async def test_a_length_stopped_reply_continues_in_the_same_row(fake_llm):
    socket, conversation, first = await cut_reply(fake_llm)
    assert first["finish_reason"] == "length"
    assert first["model"] == "fake-model"  # the page shows who wrote it
    await socket.send({"type": "message.continue", "message_id": first["message_id"]})
    continued = await socket.receive_until("message.continued")
    assert continued["message"]["id"] == first["message_id"]
    assert (continued["message"]["status"], continued["message"]["content"]) == (
        "streaming",
        first["content"],
    )
    assert continued["end"] <= len(first["content"])
    delta = await socket.receive_until("message.delta", message_id=first["message_id"])
    assert delta["offset"] == len(first["content"])  # the new text follows the old
    final = await socket.receive_until("message.completed", message_id=first["message_id"])
    assert final["content"].startswith(first["content"]) and len(final["content"]) > len(first["content"])
    reply = await db(Message.objects.get)(pk=first["message_id"])
    assert (reply.status, reply.content) == ("complete", final["content"])
    assert await db(Message.objects.filter(conversation=conversation).count)() == 2  # no new message
    assert await db(UsageEvent.objects.filter(message=reply).count)() == 2  # one per provider call


async def test_a_reply_that_ended_by_itself_cannot_be_continued(fake_llm):
    socket, _conversation, first = await cut_reply(fake_llm)
    await db(Message.objects.filter(pk=first["message_id"]).update)(finish_reason="stop")
    await socket.send({"type": "message.continue", "message_id": first["message_id"]})
    error = await socket.receive_until("error")
    assert error["code"] == "not_continuable"
    reply = await db(Message.objects.get)(pk=first["message_id"])
    assert (reply.status, reply.content) == ("complete", first["content"])


async def test_continuing_someone_elses_or_a_missing_reply_is_not_found(fake_llm):
    socket, _conversation, _first = await cut_reply(fake_llm)
    await socket.send({"type": "message.continue", "message_id": "11111111-1111-4111-8111-111111111111"})
    assert (await socket.receive_until("error"))["code"] == "not_found"
