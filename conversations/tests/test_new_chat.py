"""New chat stores nothing; the first message creates the conversation (POST /c/new/).

Here: what is refused before any reply starts, and `services.conversation_start`.
The whole flow, the runtime streaming the first reply on a live daphne, is in
tests/browser/test_history.py (three New chat clicks, the first message, a refusal).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.urls import reverse

from conversations.models import Conversation, Message
from conversations.tests.conftest import make_user, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake_llm")]

db = database_sync_to_async


CSRF = "a" * 32  # a CSRF secret the test sends as both cookie and header


class Client:
    """Requests through the real ASGI application, as daphne serves them (a thread
    context per request, CSRF enforced), signed in by session cookie."""

    def __init__(self, cookie: bytes) -> None:
        self.cookie = cookie + b"; csrftoken=" + CSRF.encode()

    async def request(self, method: str, path: str, body: bytes = b"", content_type: str = "") -> Response:
        from chatplatform.asgi import application

        headers = [(b"host", b"localhost"), (b"cookie", self.cookie), (b"x-csrftoken", CSRF.encode())]
        if content_type:
            headers.append((b"content-type", content_type.encode()))
        communicator = HttpCommunicator(application, method, path, body=body, headers=headers)
        answer = await communicator.get_response(timeout=30)
        return Response(answer)

    async def get(self, path: str) -> Response:
        return await self.request("GET", path)

    async def post(self, path: str, body, content_type: str = "application/json") -> Response:
        if isinstance(body, dict):
            body, content_type = urlencode(body).encode(), "application/x-www-form-urlencoded"
        return await self.request(
            "POST", path, body if isinstance(body, bytes) else body.encode(), content_type
        )


class Response:
    def __init__(self, answer: dict) -> None:
        self.status_code = answer["status"]
        self.content = answer["body"]
        self.headers = {k.decode().lower(): v.decode() for k, v in answer["headers"]}

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def json(self):
        return json.loads(self.content)


async def signed_in(username: str = "alice"):
    user = await db(make_user)(username)
    return user, Client(await db(session_cookie)(user))


async def post_first(client, content: str = "[[echo]]hello there", client_id: str | None = None):
    body = {"content": content, "client_id": client_id or str(uuid.uuid4())}
    return await client.post(reverse("conversation-new"), json.dumps(body))


async def reply_done(reply_id: str, timeout: float = 10) -> Message:
    async with asyncio.timeout(timeout):
        while True:
            reply = await Message.objects.aget(pk=reply_id)
            if reply.is_final:
                return reply
            await asyncio.sleep(0.05)


async def test_new_chat_page_stores_nothing_however_often_it_is_opened():
    user, client = await signed_in()
    for _ in range(3):
        response = await client.get(reverse("conversation-new"))
        assert response.status_code == 200
        assert b'id="composer-input"' in response.content
    assert await Conversation.objects.filter(owner=user).acount() == 0


async def test_home_of_someone_with_no_conversation_opens_the_new_chat_page_and_stores_nothing():
    user, client = await signed_in()
    response = await client.get(reverse("home"))
    assert response["Location"] == reverse("conversation-new")
    assert await Conversation.objects.filter(owner=user).acount() == 0


async def test_an_empty_or_malformed_first_message_stores_nothing():
    user, client = await signed_in()
    for body in (
        {"content": "   ", "client_id": str(uuid.uuid4())},
        {"content": "hi"},
        ["not", "an", "object"],
    ):
        response = await client.post(
            reverse("conversation-new"), json.dumps(body), content_type="application/json"
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid"
    response = await client.post(reverse("conversation-new"), "{not json")
    assert response.status_code == 400
    assert await Conversation.objects.filter(owner=user).acount() == 0


# --- services.conversation_start (the write behind POST /c/new/) ---------------------


def start(user, client_id=None, content="hello"):
    from conversations import services

    return services.conversation_start(
        owner=user, content=content, client_id=client_id or uuid.uuid4(), worker="test-worker"
    )


def test_the_first_message_makes_the_conversation_its_message_and_a_streaming_reply():
    user = make_user("ada")
    begun = start(user, content="plan a trip")
    conversation = Conversation.objects.get(owner=user)
    assert begun.created and begun.user_message.conversation_id == conversation.id
    assert (begun.user_message.content, begun.user_message.parent_id) == ("plan a trip", None)
    assert (begun.reply.status, begun.reply.parent_id, begun.reply.worker) == (
        "streaming",
        begun.user_message.id,
        "test-worker",
    )


def test_a_resend_with_the_same_client_id_finds_the_same_conversation():
    user = make_user("ada")
    client_id = uuid.uuid4()
    first, again = start(user, client_id), start(user, client_id)
    assert not again.created and again.reply.id == first.reply.id
    assert Conversation.objects.filter(owner=user).count() == 1


def test_a_refused_first_send_leaves_no_conversation_behind(settings):
    from conversations import services

    settings.CHAT_MESSAGES_PER_MINUTE = 0
    user = make_user("ada")
    with pytest.raises(services.SendRefused) as refused:
        start(user)
    assert refused.value.code == "rate_limited"
    assert not Conversation.objects.filter(owner=user).exists()
