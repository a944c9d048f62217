"""Traces for real: a daphne process exports over OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
import uuid

import pytest
import websockets
from django.contrib.auth import get_user_model
from django.test import Client

from bench.fake_openai_server import ScriptedOpenAIServer
from conversations.models import Conversation, Message
from tests.otlp import otlp_receiver, tree
from tests.servers import daphne

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]

CLIENT = 3
SERVER = 2  # SpanKind.SERVER in OTLP's enumeration (0 unspecified, 1 internal, 2 server, 3 client)


def traced_env(live_database_url: str, redis_url: str, receiver, **overrides: str) -> dict[str, str]:
    return {
        "DATABASE_URL": live_database_url,
        "REDIS_URL": redis_url,
        "APP_ENV": "test",
        "LLM_PROVIDER": "fake",
        "LLM_FAKE_TTFT": "0.05",
        "LLM_FAKE_TOKENS": "20",
        "CHAT_TITLE_FROM_MODEL": "false",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "chat-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export every 100 ms, not every 5 s
        **overrides,
    }


@pytest.fixture
def traced_server(live_database_url, redis_url, tmp_path):
    with otlp_receiver() as receiver:
        env = traced_env(live_database_url, redis_url, receiver)
        with daphne(env, log_dir=tmp_path, name="traced") as server:
            yield server, receiver


@pytest.fixture
def traced_server_with_openai_provider(live_database_url, redis_url, tmp_path):
    """The same, its model behind the scripted OpenAI-compatible HTTP server."""
    upstream = ScriptedOpenAIServer(ttft_ms=30, tokens_per_second=400, tokens=20).start_in_thread()
    try:
        with otlp_receiver() as receiver:
            env = traced_env(
                live_database_url,
                redis_url,
                receiver,
                LLM_PROVIDER="openai",
                LLM_BASE_URL=upstream.base_url,
                LLM_API_KEY="sk-test",
            )
            with daphne(env, log_dir=tmp_path, name="traced-openai") as server:
                yield server, receiver
    finally:
        upstream.stop()


def test_a_page_request_is_one_trace_with_its_queries_and_its_request_id(traced_server):
    server, receiver = traced_server
    user = get_user_model().objects.create_user("traced", password="pw-for-tests-1")
    conversation = Conversation.objects.create(owner=user, title="Traced")
    Message.objects.create(conversation=conversation, role="user", content="hello")
    client = Client()
    client.force_login(user)
    request = urllib.request.Request(
        f"{server.url}/c/{conversation.id}/",
        headers={"Cookie": f"sessionid={client.cookies['sessionid'].value}", "X-Request-ID": "req-trace-1"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    root = receiver.wait_for(
        lambda spans: next((s for s in spans if s.attributes.get("chat.request_id") == "req-trace-1"), None)
    )
    assert root.kind == SERVER and root.parent_id == ""
    assert root.service == "chat-under-test"
    assert root.attributes["chat.user_id"] == user.pk
    assert root.attributes.get("http.route", "").startswith("c/<uuid:conversation_id>/")
    queries = receiver.wait_for(
        lambda spans: [
            s for s in spans if s.trace_id == root.trace_id and s.attributes.get("db.system") == "postgresql"
        ]
    )
    assert any("conversations_message" in (q.attributes.get("db.statement") or "") for q in queries)
    # The log line of the request names the same trace.
    assert re.search(
        rf'"request_id": "req-trace-1".*"trace_id": "{root.trace_id}"|"trace_id": "{root.trace_id}".*"request_id": "req-trace-1"',
        server.log(),
    )
    print("\n" + tree(receiver.trace(root.trace_id), keys=("chat.request_id", "http.route", "db.system")))


def chat_trace(server, receiver) -> tuple[list, object]:
    """One chat over a WebSocket; its trace (once the generation span arrived) and that span."""
    user = get_user_model().objects.create_user("chatter", password="pw-for-tests-1")
    conversation = Conversation.objects.create(owner=user)
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}"

    async def chat() -> dict:
        async with websockets.connect(
            f"{server.ws_url}/ws/conversations/{conversation.id}/",
            additional_headers={"Cookie": cookie, "Origin": server.url},
            open_timeout=10,
        ) as ws:
            await ws.send(
                json.dumps({"type": "message.send", "content": "hi", "client_id": str(uuid.uuid4())})
            )
            async with asyncio.timeout(20):
                while True:
                    frame = json.loads(await ws.recv())
                    if frame["type"] in {"message.completed", "message.failed"}:
                        return frame

    final = asyncio.run(chat())
    assert final["type"] == "message.completed"
    reply_id = final["message_id"]

    generation = receiver.wait_for(
        lambda spans: next(
            (
                s
                for s in spans
                if s.name == "chat.generation" and s.attributes.get("chat.message_id") == reply_id
            ),
            None,
        )
    )
    assert generation.attributes["chat.conversation_id"] == str(conversation.id)
    assert generation.attributes["chat.outcome"] == "complete"
    assert generation.attributes["chat.ttft_ms"] == final["usage"]["ttft_ms"] >= 0
    assert generation.attributes["gen_ai.usage.output_tokens"] == final["usage"]["completion_tokens"] == 20
    assert generation.attributes["gen_ai.request.model"]
    return receiver.trace(generation.trace_id), generation


def test_one_chat_is_a_trace_whose_generation_span_carries_the_message_id_and_ttft(traced_server):
    server, receiver = traced_server
    spans, generation = chat_trace(server, receiver)
    frame = next(s for s in spans if s.span_id == generation.parent_id)
    assert (frame.name, frame.kind, frame.parent_id) == ("ws message.send", SERVER, "")
    # The send's writes and the reply's final write are in the same trace.
    statements = [
        s.attributes.get("db.statement", "") for s in spans if s.attributes.get("db.system") == "postgresql"
    ]
    # Both messages, with the conversation's time (a data-modifying WITH before the INSERT).
    assert any('INSERT INTO "conversations_message"' in st for st in statements)
    assert any("FOR UPDATE OF c, u" in st for st in statements)  # the send's locks (a prepared statement)
    assert any(st.startswith("UPDATE") and "conversations_message" in st for st in statements)
    print(
        "\n"
        + tree(
            spans,
            keys=(
                "chat.message_id",
                "chat.ttft_ms",
                "chat.outcome",
                "gen_ai.usage.output_tokens",
                "db.system",
            ),
        )
    )


def test_the_provider_request_is_a_client_span_inside_the_generation(traced_server_with_openai_provider):
    server, receiver = traced_server_with_openai_provider
    _, generation = chat_trace(server, receiver)
    assert generation.attributes["chat.provider"] == "openai"
    request = receiver.wait_for(
        lambda spans: next(
            (
                s
                for s in spans
                if s.parent_id == generation.span_id
                and s.kind == CLIENT
                and "http.request.method" in s.attributes
            ),
            None,
        )
    )
    assert request.attributes["http.request.method"] == "POST"
    assert request.attributes["url.full"].endswith("/v1/chat/completions")
    assert request.attributes["http.response.status_code"] == 200
    print(
        "\n" + tree(receiver.trace(generation.trace_id), keys=("chat.message_id", "chat.ttft_ms", "url.full"))
    )
