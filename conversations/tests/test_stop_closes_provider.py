"""A stop stops the model itself: the provider's HTTP stream is closed, so no tokens are paid for after it."""

from __future__ import annotations

import time
import uuid

import pytest
from channels.db import database_sync_to_async

from bench.fake_openai_server import ScriptedOpenAIServer
from conversations.llm import reset_provider
from conversations.tests.conftest import make_conversation, make_user, open_socket

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def scripted_openai(settings):
    server = ScriptedOpenAIServer(ttft_ms=20, tokens_per_second=50, tokens=500).start_in_thread()
    settings.LLM_PROVIDER = "openai"
    settings.LLM_BASE_URL = server.base_url
    settings.LLM_API_KEY = "sk-test-key"
    settings.LLM_MODEL = "scripted"
    settings.CHAT_TITLE_FROM_MODEL = False
    reset_provider()
    yield server
    server.stop()
    reset_provider()


async def test_after_stop_the_provider_sees_its_connection_closed_within_a_second(scripted_openai):
    user = await database_sync_to_async(make_user)("alice")
    conversation = await database_sync_to_async(make_conversation)(user)
    socket, (ok, _) = await open_socket(user, conversation.id)
    assert ok
    await socket.send({"type": "message.send", "content": "go on", "client_id": str(uuid.uuid4())})
    await socket.receive_until("message.delta")
    await socket.receive_until("message.delta")

    await socket.send({"type": "generation.stop"})
    stopped_at = time.monotonic()
    final = await socket.receive_until("message.completed", timeout=3)

    record = scripted_openai.last_completion()
    assert final["status"] == "cancelled"
    assert record.closed_by_client_at is not None, "the provider's stream was left open"
    assert record.closed_by_client_at - stopped_at < 1.0
    assert record.tokens_sent < 500  # the model stopped: it did not stream the rest into the void
    assert final["usage"]["completion_tokens"] <= record.tokens_sent
