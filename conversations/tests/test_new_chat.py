"""New chat stores nothing; the first message creates the conversation (POST /c/new/).

Here: what is refused before any reply starts, and `services.conversation_start`.
The whole flow, the runtime streaming the first reply on a live daphne, is in
tests/browser/test_history.py (three New chat clicks, the first message, a refusal).
"""

from __future__ import annotations

import json
import uuid

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse

from conversations.models import Conversation
from conversations.tests.conftest import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fake_llm")]

db = database_sync_to_async


@pytest.fixture
def ada(client):
    user = make_user("ada")
    client.force_login(user)
    return user


def test_new_chat_page_stores_nothing_however_often_it_is_opened(client, ada):
    for _ in range(3):
        response = client.get(reverse("conversation-new"))
        assert response.status_code == 200
        assert b'id="composer-input"' in response.content
    assert not Conversation.objects.filter(owner=ada).exists()


def test_home_of_someone_with_no_conversation_opens_the_new_chat_page_and_stores_nothing(client, ada):
    assert client.get(reverse("home"))["Location"] == reverse("conversation-new")
    assert not Conversation.objects.filter(owner=ada).exists()


def test_an_empty_or_malformed_first_message_stores_nothing(client, ada):
    url = reverse("conversation-new")
    for body in (
        {"content": "   ", "client_id": str(uuid.uuid4())},
        {"content": "hi"},
        ["not", "an", "object"],
    ):
        response = client.post(url, json.dumps(body), content_type="application/json")
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid"
    assert client.post(url, "{not json", content_type="application/json").status_code == 400
    # Without JavaScript: the page again, with the reason, and the text kept.
    response = client.post(url, {"content": "   ", "client_id": str(uuid.uuid4())})
    assert response.status_code == 400 and b"The message is empty." in response.content
    assert not Conversation.objects.filter(owner=ada).exists()


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
