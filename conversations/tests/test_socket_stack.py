"""A socket is signed in by its session cookie, and its frames skip channels' session wrapper
(anonymous sockets: conversations/tests/test_consumer.py)."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from channels.sessions import InstanceSessionWrapper

from conversations.tests.conftest import make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake_llm")]

db = database_sync_to_async


async def test_a_signed_in_socket_streams_a_reply_without_the_session_wrapper_on_its_frames(monkeypatch):
    wrapped: list[str] = []
    send = InstanceSessionWrapper.send

    async def counted(self, message):
        wrapped.append(message["type"])
        return await send(self, message)

    monkeypatch.setattr(InstanceSessionWrapper, "send", counted)
    user = await db(make_user)("stack")
    conversation = await db(make_conversation)(user)
    socket, (connected, _) = await open_socket(user, conversation.id)
    assert connected  # the session cookie signed the socket in

    await socket.send({"type": "message.send", "content": "hi [[tokens:20]]", "client_id": str(uuid.uuid4())})
    final = await socket.receive_until("message.completed", timeout=10)
    await socket.close()

    assert final["status"] == "complete"
    assert wrapped == []  # accept, every delta and the final event went out directly
