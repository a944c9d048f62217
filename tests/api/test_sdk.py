"""The API through the official openai SDK (sync and async, streaming and not) against a live daphne.

The model behind the server is the scripted OpenAI-compatible upstream, so
each test knows the exact reply ([[echo]]...) or scripts a failure, and can
read what the model was sent and when its stream was closed.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import openai
import pytest
from channels.db import database_sync_to_async
from django.test import Client

from api.models import ApiKey
from api.services import api_key_create
from conversations.models import Conversation, Message, UsageEvent
from tests.api.conftest import (
    CONCURRENT_REPLIES,
    DAILY_BUDGET,
    RATE_PER_MINUTE,
    UPSTREAM_MODEL,
    async_client_for,
    client_for,
)
from tests.security.conftest import make_user, session_cookie, ws_open

pytestmark = pytest.mark.django_db(transaction=True)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def wait_for(condition, *, timeout: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- the happy paths ------------------------------------------------------------------------


def test_models_lists_the_models_the_user_may_use(api_server, alice_key):
    models = client_for(api_server, alice_key).models.list()
    assert [m.id for m in models.data] == [UPSTREAM_MODEL]
    assert models.data[0].object == "model"


def test_a_completion_answers_in_openais_shape_and_leaves_only_a_usage_event(api_server, alice, alice_key):
    completion = client_for(api_server, alice_key).chat.completions.create(
        model=UPSTREAM_MODEL, messages=ask("[[echo]]Hello from the API")
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from the API"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens > 0
    assert (
        completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    event = wait_for(
        lambda: UsageEvent.objects.filter(user=alice, source="api").first(), what="a usage event"
    )
    assert event.api_key_name == "laptop"
    assert event.status == "ok"
    assert event.completion_tokens == completion.usage.completion_tokens
    # `store` defaults to false: nothing of the exchange is kept.
    wait_for(
        lambda: not Conversation.objects.filter(owner=alice).exists(), what="the exchange to be discarded"
    )
    assert UsageEvent.objects.get(pk=event.pk).conversation_id is None


async def test_a_streamed_completion_sends_chunks_then_usage_then_done(api_server, alice_key):
    client = async_client_for(api_server, alice_key)
    stream = await client.chat.completions.create(
        model=UPSTREAM_MODEL,
        messages=ask("[[echo]]one two three four five"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    await client.close()
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four five"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_a_stream_without_include_usage_has_no_usage_chunk(api_server, alice_key):
    stream = client_for(api_server, alice_key).chat.completions.create(
        model=UPSTREAM_MODEL, messages=ask("[[echo]]short"), stream=True
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "short"
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_a_non_streaming_call_through_the_async_client(api_server, alice_key):
    client = async_client_for(api_server, alice_key)
    completion = await client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("[[echo]]async ok"))
    await client.close()
    assert completion.choices[0].message.content == "async ok"


def test_the_system_prompt_and_earlier_turns_reach_the_model(api_server, upstream, alice_key):
    marker = uuid.uuid4().hex
    client_for(api_server, alice_key).chat.completions.create(
        model=UPSTREAM_MODEL,
        messages=[
            {"role": "system", "content": f"be brief {marker}"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": [{"type": "text", "text": f"[[echo]]second {marker}"}]},
        ],
    )
    record = next(r for r in reversed(upstream.completions()) if marker in r.last_user_message)
    sent = [(m["role"], m["content"]) for m in record.messages]
    assert sent[0][0] == "system" and f"be brief {marker}" in sent[0][1]
    assert sent[1:] == [
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", f"[[echo]]second {marker}"),
    ]


def test_sampling_options_reach_the_model_and_a_cut_reply_says_length(api_server, upstream, alice_key):
    marker = uuid.uuid4().hex
    completion = client_for(api_server, alice_key).chat.completions.create(
        model=UPSTREAM_MODEL,
        messages=ask(f"[[tokens:50]] {marker}"),
        max_completion_tokens=5,
        temperature=0.3,
        top_p=0.9,
        stop=["never-in-the-reply"],
    )
    record = next(r for r in upstream.completions() if marker in r.last_user_message)
    assert (record.max_tokens, record.temperature, record.top_p, record.stop) == (
        5,
        0.3,
        0.9,
        ["never-in-the-reply"],
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5


def test_store_true_keeps_the_exchange_as_an_api_conversation_the_user_can_open(api_server, alice, alice_key):
    client_for(api_server, alice_key).chat.completions.create(
        model=UPSTREAM_MODEL, messages=ask("[[echo]]kept for later"), extra_body={"store": True}
    )
    conversation = wait_for(
        lambda: Conversation.objects.filter(owner=alice, source="api").first(), what="the stored conversation"
    )
    messages = wait_for(
        lambda: (
            [
                (m.role, m.content, m.status)
                for m in conversation.visible_messages()
                if m.role == "user" or m.status == "complete"
            ]
            if conversation.visible_messages().filter(status="complete").exists()
            else None
        ),
        what="the stored reply",
    )
    assert messages == [
        ("user", "[[echo]]kept for later", "complete"),
        ("assistant", "kept for later", "complete"),
    ]
    web = Client()
    web.force_login(alice)
    page = web.get(f"/c/{conversation.id}/")
    assert page.status_code == 200
    assert b"kept for later" in page.content
    assert UsageEvent.objects.get(user=alice).conversation_id == conversation.id


# --- errors, each with its status ---------------------------------------------------------


def test_a_missing_or_unknown_key_is_401(api_server):
    no_key = httpx.get(f"{api_server.url}/v1/models")
    assert no_key.status_code == 401
    assert no_key.json()["error"]["code"] == "missing_api_key"
    assert "***" not in no_key.json()["error"]["message"]  # the hint survives the log redaction
    with pytest.raises(openai.AuthenticationError) as refused:
        client_for(api_server, "sk-chat-" + "x" * 43).models.list()
    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"


def test_a_revoked_key_is_refused(api_server, alice):
    api_key, key = api_key_create(user=alice, name="old")
    client = client_for(api_server, key)
    assert client.models.list().data
    api_key.revoke()
    with pytest.raises(openai.AuthenticationError) as refused:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("hello"))
    assert refused.value.code == "invalid_api_key"
    assert not Conversation.objects.filter(owner=alice).exists()


def test_a_session_cookie_is_no_key(api_server, alice):
    web = Client()
    web.force_login(alice)
    cookie = f"sessionid={web.cookies['sessionid'].value}"
    response = httpx.post(
        f"{api_server.url}/v1/chat/completions",
        headers={"Cookie": cookie},
        json={"model": UPSTREAM_MODEL, "messages": ask("hi")},
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": ask("hi")}, "model"),
        ({"model": UPSTREAM_MODEL, "messages": []}, "messages"),
        ({"model": UPSTREAM_MODEL, "messages": ask("hi"), "temperature": 5}, "temperature"),
        ({"model": UPSTREAM_MODEL, "messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"model": UPSTREAM_MODEL, "messages": [{"role": "assistant", "content": "x"}]}, "messages[0].role"),
        ({"model": UPSTREAM_MODEL, "messages": ask("hi"), "max_tokens": 0}, "max_tokens"),
    ],
)
def test_an_invalid_request_is_400_naming_the_parameter(api_server, alice_key, body, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client_for(api_server, alice_key).post("/chat/completions", body=body, cast_to=object)
    assert refused.value.status_code == 400
    assert refused.value.param == param
    assert refused.value.type == "invalid_request_error"


def test_a_body_that_is_not_json_is_400(api_server, alice_key):
    response = httpx.post(
        f"{api_server.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {alice_key}", "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_an_unknown_model_is_404(api_server, alice_key):
    with pytest.raises(openai.NotFoundError) as refused:
        client_for(api_server, alice_key).chat.completions.create(model="no-such-model", messages=ask("hi"))
    assert refused.value.code == "model_not_found"


def test_a_body_over_the_limit_is_413_and_a_message_over_the_limit_is_400(api_server, alice, alice_key):
    client = client_for(api_server, alice_key)
    with pytest.raises(openai.APIStatusError) as too_large:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("x" * 1_100_000))
    assert too_large.value.status_code == 413
    assert too_large.value.code == "request_too_large"
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("x" * 40_000))
    assert too_long.value.code == "string_above_max_length"
    assert not UsageEvent.objects.filter(user=alice).exists()


def test_over_the_rate_limit_is_429_with_retry_after(api_server, alice_key):
    client = client_for(api_server, alice_key)
    refused = None
    for _attempt in range(3):  # a minute boundary mid-way starts a new count: then again
        minute = int(time.time() // 60)
        for _ in range(RATE_PER_MINUTE + 1):
            try:
                client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("[[echo]]ok"))
            except openai.RateLimitError as error:
                refused = error
                break
        if refused is not None and int(time.time() // 60) == minute:
            break
        refused = None
    assert refused is not None, f"{RATE_PER_MINUTE + 1} calls in one minute were all accepted"
    assert refused.status_code == 429
    assert refused.code == "rate_limit_exceeded"
    assert 1 <= int(refused.response.headers["Retry-After"]) <= 60


async def test_more_replies_at_once_than_allowed_is_429(api_server, alice, alice_key):
    client = async_client_for(api_server, alice_key)
    running = [
        await client.chat.completions.create(
            model=UPSTREAM_MODEL, messages=ask("[[slow:50]][[tokens:200]]"), stream=True
        )
        for _ in range(CONCURRENT_REPLIES)
    ]
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("[[echo]]third"))
    assert refused.value.response.headers["Retry-After"]
    for stream in running:
        await stream.close()
    await client.close()
    await database_sync_to_async(wait_for)(
        lambda: not Conversation.objects.filter(owner=alice).exists(), what="the stopped calls' rows to go"
    )


async def test_a_user_at_the_daily_budget_is_refused_by_the_api_and_by_the_chat(api_server, alice, alice_key):
    client = async_client_for(api_server, alice_key)
    first = await client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("[[echo]]spend a little"))
    spent_by_api = first.usage.total_tokens

    def fill_the_rest_in_the_chat():
        UsageEvent.objects.create(
            user=alice,
            provider="openai",
            model=UPSTREAM_MODEL,
            status="ok",
            prompt_tokens=DAILY_BUDGET - spent_by_api,
        )
        return Conversation.objects.create(owner=alice), session_cookie(alice)

    chat, cookie = await database_sync_to_async(fill_the_rest_in_the_chat)()
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("more"))
    await client.close()
    assert refused.value.code == "insufficient_quota"
    retry_after = int(refused.value.response.headers["Retry-After"])
    assert 1 <= retry_after <= 86_400

    socket = await ws_open(api_server, chat.id, cookie)
    await socket.send(json.dumps({"type": "message.send", "content": "hi", "client_id": str(uuid.uuid4())}))
    frame = json.loads(await socket.recv())
    await socket.close()
    assert frame["type"] == "error" and frame["code"] == "quota_exceeded"


def test_a_provider_failure_is_502_and_a_timeout_is_504(api_server, alice, alice_key):
    client = client_for(api_server, alice_key)
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("[[fail:provider_error]]"))
    assert failed.value.status_code == 502
    assert failed.value.code == "provider_error"
    with pytest.raises(openai.InternalServerError) as slow:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("[[fail:timeout]]"), stream=True)
    assert slow.value.status_code == 504
    assert slow.value.code == "timeout"
    events = wait_for(
        lambda: (
            list(UsageEvent.objects.filter(user=alice).values_list("status", "error_code", "source"))
            if UsageEvent.objects.filter(user=alice).count() == 2
            else None
        ),
        what="both usage events",
    )
    assert sorted(events) == [("failed", "provider_error", "api"), ("failed", "timeout", "api")]


def test_a_failure_mid_stream_ends_the_stream_with_an_error_event(api_server, alice_key):
    stream = client_for(api_server, alice_key).chat.completions.create(
        model=UPSTREAM_MODEL, messages=ask("[[tokens:40]][[fail:provider_error:3]]"), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as failed:
        for chunk in stream:
            received.append(chunk)
    assert received, "the tokens before the failure arrive first"
    assert "provider" in str(failed.value).lower()


# --- isolation and stop ----------------------------------------------------------------------


def test_one_users_key_never_reaches_another_users_data(api_server, upstream, alice, alice_key):
    bob = make_user("bob")
    secret = f"bob-secret-{uuid.uuid4().hex}"
    bobs = Conversation.objects.create(owner=bob, title=secret, system_prompt=secret)
    Message.objects.create(conversation=bobs, role="user", content=secret)
    marker = uuid.uuid4().hex
    client_for(api_server, alice_key).chat.completions.create(
        model=UPSTREAM_MODEL,
        messages=ask(f"[[echo]]{marker}"),
        # What other platforms took as "continue this chat" (CVE-2026-45349) means nothing here.
        extra_body={"chat_id": str(bobs.id), "conversation_id": str(bobs.id), "store": True},
    )
    record = next(r for r in upstream.completions() if marker in r.last_user_message)
    assert secret not in str(record.messages)
    assert bobs.messages.count() == 1
    assert not UsageEvent.objects.filter(user=bob).exists()
    stored = wait_for(
        lambda: Conversation.objects.filter(owner=alice, source="api").first(), what="alice's row"
    )
    assert stored.id != bobs.id
    web = Client()
    web.force_login(bob)
    assert web.get(f"/c/{stored.id}/").status_code == 404


def test_a_client_that_disconnects_mid_stream_closes_the_providers_stream(
    api_server, upstream, alice, alice_key
):
    marker = uuid.uuid4().hex
    stream = client_for(api_server, alice_key).chat.completions.create(
        model=UPSTREAM_MODEL, messages=ask(f"[[slow:20]][[tokens:1000]] {marker}"), stream=True
    )
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received >= 3:
            break
    stream.close()
    closed_at = time.monotonic()
    record = wait_for(
        lambda: next(
            (r for r in upstream.completions() if marker in r.last_user_message and r.closed_by_client_at),
            None,
        ),
        timeout=5,
        what="the provider's stream to be closed",
    )
    assert record.closed_by_client_at - closed_at < 1.0
    assert record.tokens_sent < 1000
    event = wait_for(lambda: UsageEvent.objects.filter(user=alice).first(), what="the usage event")
    assert (event.status, event.source, event.api_key_name) == ("cancelled", "api", "laptop")
    wait_for(
        lambda: not Conversation.objects.filter(owner=alice).exists(), what="the exchange to be discarded"
    )


def test_a_client_that_gives_up_on_a_non_streamed_call_stops_the_model(
    api_server, upstream, alice, alice_key
):
    marker = uuid.uuid4().hex
    impatient = openai.OpenAI(base_url=f"{api_server.url}/v1", api_key=alice_key, max_retries=0, timeout=2)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(
            model=UPSTREAM_MODEL, messages=ask(f"[[slow:20]][[tokens:1000]] {marker}")
        )
    gave_up = time.monotonic()
    record = wait_for(
        lambda: next(
            (r for r in upstream.completions() if marker in r.last_user_message and r.closed_by_client_at),
            None,
        ),
        timeout=5,
        what="the provider's stream to be closed",
    )
    assert record.closed_by_client_at - gave_up < 1.0
    assert record.tokens_sent < 1000
    event = wait_for(lambda: UsageEvent.objects.filter(user=alice).first(), what="the usage event")
    assert (event.status, event.source) == ("cancelled", "api")
    wait_for(
        lambda: not Conversation.objects.filter(owner=alice).exists(), what="the exchange to be discarded"
    )


def test_keys_are_stored_only_as_hashes(alice):
    api_key, key = api_key_create(user=alice, name="check")
    row = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert key not in str(row)
    assert key.startswith(row["prefix"]) and len(row["prefix"]) < len(key) // 2


def test_a_model_the_users_groups_do_not_grant_is_neither_listed_nor_served(api_server, alice, alice_key):
    from django.contrib.auth.models import Group

    from accounts.models import GroupModelAccess

    narrow = Group.objects.create(name="narrow")
    GroupModelAccess.objects.create(group=narrow, model="some-other-model")
    alice.groups.set([narrow])
    client = client_for(api_server, alice_key)
    assert client.models.list().data == []
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(model=UPSTREAM_MODEL, messages=ask("hi"))
    assert refused.value.code == "model_not_found"
    assert not UsageEvent.objects.filter(user=alice).exists()


def test_a_bad_key_is_told_before_anything_wrong_with_the_request(api_server, alice_key):
    url = f"{api_server.url}/v1/chat/completions"
    bad_key = httpx.post(
        url, headers={"Authorization": "Bearer sk-chat-nope-nope-nope"}, content=b"{not json"
    )
    assert bad_key.status_code == 401
    wrong_method = httpx.get(url, headers={"Authorization": f"Bearer {alice_key}"})
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
