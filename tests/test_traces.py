"""Traces for real: a daphne process exports over OTLP/HTTP to a receiver on loopback."""

from __future__ import annotations

import re
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from conversations.models import Conversation, Message
from tests.otlp import otlp_receiver, tree
from tests.servers import daphne

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]

SERVER = 2  # SpanKind.SERVER in OTLP's enumeration (0 unspecified, 1 internal, 2 server, 3 client)


@pytest.fixture
def traced_server(live_database_url, redis_url, tmp_path):
    with otlp_receiver() as receiver:
        env = {
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
        }
        with daphne(env, log_dir=tmp_path, name="traced") as server:
            yield server, receiver


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
