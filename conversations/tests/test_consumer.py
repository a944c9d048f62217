"""The WebSocket contract (docs/protocol.md), frame by frame, on the real ASGI application."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone

from conversations.models import Conversation, Message, UsageEvent
from conversations.tests.conftest import assemble, make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake_llm")]

db = database_sync_to_async


async def alice_and_chat(**fields):
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user, **fields)
    return user, conversation


async def connected(user, conversation):
    socket, (ok, code) = await open_socket(user, conversation.id)
    assert ok, code
    return socket


def send_frame(content: str, client_id: str | None = None) -> dict:
    return {"type": "message.send", "content": content, "client_id": client_id or str(uuid.uuid4())}


async def run_reply(socket, content: str = "Hello there") -> tuple[dict, dict, dict]:
    """Send a message and wait for its reply to finish: (user created, reply created, final)."""
    await socket.send(send_frame(content))
    user_created = await socket.receive_until("message.created")
    reply_created = await socket.receive_until("message.created")
    final = await socket.receive_until("message.completed")
    return user_created, reply_created, final


# --- who may connect --------------------------------------------------------


async def test_anonymous_socket_is_closed_with_4401():
    _, conversation = await alice_and_chat()
    socket, (ok, _) = await open_socket(None, conversation.id)
    assert ok  # accepted so that the close code reaches the browser
    assert await socket.communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}


async def test_someone_elses_conversation_is_closed_with_4404():
    _, conversation = await alice_and_chat()
    mallory = await db(make_user)("mallory")
    socket, _ = await open_socket(mallory, conversation.id)
    assert await socket.communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4404}


async def test_missing_conversation_is_closed_with_the_same_4404():
    user, _ = await alice_and_chat()
    socket, _ = await open_socket(user, uuid.uuid4())
    assert await socket.communicator.receive_output(timeout=2) == {"type": "websocket.close", "code": 4404}


async def test_socket_from_a_foreign_origin_is_refused():
    user, conversation = await alice_and_chat()
    _, (ok, _) = await open_socket(user, conversation.id, origin=(b"origin", b"https://evil.example"))
    assert not ok


# --- message.send -----------------------------------------------------------


async def test_send_streams_a_reply_whose_deltas_add_up_to_the_final_content():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    user_created, reply_created, final = await run_reply(socket, "Hello there")

    assert user_created["message"]["role"] == "user"
    assert user_created["message"]["content"] == "Hello there"
    assert reply_created["message"]["role"] == "assistant"
    assert reply_created["message"]["status"] == "streaming"
    reply_id = reply_created["message"]["id"]
    assert final["message_id"] == reply_id
    assert final["status"] == "complete"
    assert final["content"]
    assert assemble(socket.deltas_for(reply_id)) == final["content"]
    assert final["usage"]["completion_tokens"] > 0
    assert final["usage"]["ttft_ms"] is not None
    await socket.close()


async def test_finished_reply_and_one_usage_event_are_stored():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    _, reply_created, final = await run_reply(socket)
    await socket.close()

    reply = await db(Message.objects.get)(pk=reply_created["message"]["id"])
    assert (reply.status, reply.content) == ("complete", final["content"])
    assert reply.completion_tokens == final["usage"]["completion_tokens"]
    events = await db(lambda: list(UsageEvent.objects.filter(message=reply)))()
    assert len(events) == 1
    assert (events[0].status, events[0].provider, events[0].user_id) == ("ok", "fake", user.id)


async def test_deltas_are_coalesced_not_one_frame_per_token(fake_llm):
    fake_llm.LLM_FAKE_TOKENS = 60
    fake_llm.LLM_FAKE_TOKENS_PER_SECOND = 1000
    fake_llm.CHAT_FLUSH_INTERVAL_MS = 40
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    _, reply_created, final = await run_reply(socket)
    frames = socket.deltas_for(reply_created["message"]["id"])
    assert final["usage"]["completion_tokens"] == 60
    assert len(frames) < 20  # 60 tokens in ~60 ms: a handful of flushes
    assert assemble(frames) == final["content"]


async def test_completed_html_is_sanitised_markdown():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    _, _, final = await run_reply(socket, "[[echo]]**bold** <script>alert(1)</script>")
    assert final["content"] == "**bold** <script>alert(1)</script>"
    assert "<strong>bold</strong>" in final["html"]
    assert "<script>" not in final["html"]


async def test_resend_with_same_client_id_is_acknowledged_and_not_duplicated():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    client_id = str(uuid.uuid4())
    await socket.send(send_frame("once", client_id))
    first = await socket.receive_until("message.created")
    await socket.receive_until("message.completed")

    await socket.send(send_frame("once", client_id))
    again = await socket.receive_until("message.created")
    assert again["message"]["id"] == first["message"]["id"]
    assert await db(Message.objects.filter(conversation=conversation, role="user").count)() == 1
    assert await db(Message.objects.filter(conversation=conversation, role="assistant").count)() == 1


async def test_second_send_while_a_reply_runs_is_refused_busy(fake_llm):
    fake_llm.LLM_FAKE_TOKENS_PER_SECOND = 20
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    await socket.send(send_frame("first"))
    await socket.receive_until("message.delta")
    second_id = str(uuid.uuid4())
    await socket.send(send_frame("second", second_id))
    error = await socket.receive_until("error")
    assert (error["code"], error["client_id"]) == ("busy", second_id)
    assert not await db(Message.objects.filter(client_id=second_id).exists)()  # nothing half-stored
    await socket.send({"type": "generation.stop"})
    await socket.receive_until("message.completed")


# --- refused frames keep the socket open -------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "invalid"),
        (json.dumps({"content": "no type"}), "invalid"),
        (json.dumps({"type": "message.explode"}), "unknown_type"),
        (json.dumps({"type": "message.send", "content": 42, "client_id": str(uuid.uuid4())}), "invalid"),
        (json.dumps({"type": "message.send", "content": "hi", "client_id": "not-a-uuid"}), "invalid"),
        (json.dumps({"type": "message.send", "content": "hi"}), "invalid"),
        (json.dumps({"type": "message.send", "content": "  \n ", "client_id": str(uuid.uuid4())}), "empty"),
        (json.dumps({"type": "sync", "message_id": str(uuid.uuid4()), "offset": -1}), "invalid"),
        (json.dumps({"type": "message.regenerate", "message_id": str(uuid.uuid4())}), "not_found"),
    ],
)
async def test_refused_frame_gets_an_error_and_the_socket_keeps_working(frame, code):
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    await socket.send(frame)
    error = await socket.receive()
    assert (error["type"], error["code"]) == ("error", code)
    _, _, final = await run_reply(socket)  # still usable
    assert final["status"] == "complete"
    assert await db(Message.objects.filter(conversation=conversation).count)() == 2


async def test_message_over_the_size_limit_is_refused(fake_llm):
    fake_llm.CHAT_MAX_MESSAGE_CHARS = 100
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    await socket.send(send_frame("x" * 101))
    assert (await socket.receive())["code"] == "too_large"
    assert not await db(Message.objects.filter(conversation=conversation).exists)()


async def test_frame_over_one_megabyte_is_refused():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    await socket.send(json.dumps({"type": "message.send", "content": "x" * 1_100_000, "client_id": "x"}))
    assert (await socket.receive())["code"] == "too_large"


async def test_sends_over_the_rate_limit_are_refused(fake_llm):
    fake_llm.CHAT_MESSAGES_PER_MINUTE = 2
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    await run_reply(socket)
    await run_reply(socket)
    await socket.send(send_frame("third"))
    assert (await socket.receive_until("error"))["code"] == "rate_limited"


async def test_sends_over_the_daily_token_budget_are_refused(fake_llm):
    fake_llm.CHAT_DAILY_TOKEN_BUDGET = 100
    user, conversation = await alice_and_chat()
    await db(UsageEvent.objects.create)(
        user=user, provider="fake", status="ok", prompt_tokens=60, completion_tokens=40
    )
    socket = await connected(user, conversation)
    await socket.send(send_frame("one more"))
    assert (await socket.receive_until("error"))["code"] == "quota_exceeded"


# --- stop, regenerate, edit, sync ---------------------------------------------


async def test_stop_keeps_the_partial_text_and_closes_the_provider_stream(fake_llm):
    fake_llm.LLM_FAKE_TOKENS = 400
    fake_llm.LLM_FAKE_TOKENS_PER_SECOND = 100
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    await socket.send(send_frame("a long one"))
    await socket.receive_until("message.delta")
    await socket.receive_until("message.delta")
    await socket.send({"type": "generation.stop"})
    final = await socket.receive_until("message.completed", timeout=2)
    assert final["status"] == "cancelled"
    assert final["finish_reason"] == "stopped"
    assert 0 < final["usage"]["completion_tokens"] < 400
    reply = await db(Message.objects.get)(pk=final["message_id"])
    assert (reply.status, reply.content) == ("cancelled", final["content"])
    assert await db(UsageEvent.objects.filter(message=reply, status="cancelled").exists)()


async def test_regenerate_adds_a_new_reply_and_keeps_the_old_one():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    user_created, first_reply, _ = await run_reply(socket)
    await socket.send({"type": "message.regenerate", "message_id": first_reply["message"]["id"]})
    created = await socket.receive_until("message.created")
    await socket.receive_until("message.completed", message_id=created["message"]["id"])
    assert created["message"]["parent_id"] == user_created["message"]["id"]
    visible = await db(lambda: [str(i) for i in conversation.visible_message_ids()])()
    assert visible == [user_created["message"]["id"], created["message"]["id"]]
    assert await db(Message.objects.filter(pk=first_reply["message"]["id"]).exists)()


async def test_edit_forks_a_new_branch_and_the_old_branch_stays():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    first_user, first_reply, _ = await run_reply(socket, "first question")
    second_user, _, _ = await run_reply(socket, "second question")
    await socket.send(
        {
            "type": "message.edit",
            "message_id": second_user["message"]["id"],
            "content": "second question, rephrased",
            "client_id": str(uuid.uuid4()),
        }
    )
    edited = await socket.receive_until("message.created")
    reply = await socket.receive_until("message.created")
    await socket.receive_until("message.completed", message_id=reply["message"]["id"])
    assert edited["message"]["parent_id"] == first_reply["message"]["id"]
    visible = await db(lambda: [str(i) for i in conversation.visible_message_ids()])()
    assert visible == [
        first_user["message"]["id"],
        first_reply["message"]["id"],
        edited["message"]["id"],
        reply["message"]["id"],
    ]
    assert await db(Message.objects.filter(conversation=conversation).count)() == 6


async def test_closing_the_socket_does_not_stop_the_reply_and_sync_resumes_it(fake_llm):
    fake_llm.LLM_FAKE_TOKENS = 40
    fake_llm.LLM_FAKE_TOKENS_PER_SECOND = 100
    user, conversation = await alice_and_chat()
    first = await connected(user, conversation)
    await first.send(send_frame("tell me"))
    reply = (await first.receive_until("message.created", timeout=5)) and await first.receive_until(
        "message.created"
    )
    reply_id = reply["message"]["id"]
    await first.receive_until("message.delta")
    await first.receive_until("message.delta")
    held = assemble(first.deltas_for(reply_id))
    await first.close()

    second = await connected(user, conversation)
    await second.send({"type": "sync", "message_id": reply_id, "offset": len(held)})
    final = await second.receive_until("message.completed", timeout=10)
    text = held
    for delta in second.deltas_for(reply_id):
        if delta["offset"] <= len(text) < delta["offset"] + len(delta["text"]):
            text += delta["text"][len(text) - delta["offset"] :]
    assert text == final["content"]
    assert final["status"] == "complete"


async def test_sync_of_a_finished_reply_answers_with_its_final_state():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    _, reply, final = await run_reply(socket)
    await socket.send({"type": "sync", "message_id": reply["message"]["id"], "offset": 0})
    again = await socket.receive_until("message.completed")
    assert again["content"] == final["content"]


async def test_every_tab_sees_the_same_events():
    user, conversation = await alice_and_chat()
    tab_one = await connected(user, conversation)
    tab_two = await connected(user, conversation)
    _, reply, final = await run_reply(tab_one)
    seen = await tab_two.receive_until("message.completed")
    assert seen["content"] == final["content"]
    assert assemble(tab_two.deltas_for(reply["message"]["id"])) == final["content"]


# --- failures, titles, recovery -------------------------------------------------


async def test_provider_failure_becomes_message_failed_and_the_user_message_is_kept():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    await socket.send(send_frame("[[fail:timeout]] please"))
    created = await socket.receive_until("message.created")
    failed = await socket.receive_until("message.failed")
    assert failed["error"]["code"] == "timeout"
    assert failed["status"] == "failed"
    kept = await db(Message.objects.get)(pk=created["message"]["id"])
    assert kept.content == "[[fail:timeout]] please"


async def test_first_exchange_titles_the_conversation():
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    await run_reply(socket, "How do tides work on Mars?")
    updated = await socket.receive_until("conversation.updated")
    assert updated["conversation"]["title"] == "How do tides work on Mars?"
    assert (await db(Conversation.objects.get)(pk=conversation.pk)).title == updated["conversation"]["title"]


async def test_a_user_chosen_title_is_not_replaced():
    user, conversation = await alice_and_chat(title="My title")
    socket = await connected(user, conversation)
    await run_reply(socket)
    assert (await db(Conversation.objects.get)(pk=conversation.pk)).title == "My title"


async def _dead_reply(conversation) -> Message:
    prompt = await db(Message.objects.create)(conversation=conversation, role="user", content="hi")
    return await db(Message.objects.create)(
        conversation=conversation,
        role="assistant",
        parent=prompt,
        status="streaming",
        content="half a rep",
        worker="specific.gone!x",
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )


async def test_stale_streaming_reply_of_a_dead_process_becomes_interrupted_and_tabs_hear_it():
    from conversations.generation import get_runtime

    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    dead = await _dead_reply(conversation)
    await get_runtime().sweep_once()
    failed = await socket.receive_until("message.failed", timeout=5)
    assert (failed["message_id"], failed["status"], failed["content"]) == (
        str(dead.id),
        "interrupted",
        "half a rep",
    )
    assert failed["error"]["code"] == "interrupted"
    await db(dead.refresh_from_db)()
    assert (dead.status, dead.content) == ("interrupted", "half a rep")


async def test_a_process_sweeps_stale_replies_when_it_starts():
    user, conversation = await alice_and_chat()
    dead = await _dead_reply(conversation)
    await connected(user, conversation)  # the first request starts this process's worker
    for _ in range(50):
        await db(dead.refresh_from_db)()
        if dead.status != "streaming":
            break
        await asyncio.sleep(0.1)
    assert dead.status == "interrupted"


async def test_sweep_leaves_live_replies_alone(fake_llm):
    fake_llm.LLM_FAKE_TOKENS = 200
    fake_llm.LLM_FAKE_TOKENS_PER_SECOND = 100
    fake_llm.CHAT_CHECKPOINT_SECONDS = 0.2
    fake_llm.CHAT_STALE_AFTER_SECONDS = 1
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    await socket.send(send_frame("long"))
    await socket.receive_until("message.created")
    reply = await socket.receive_until("message.created")
    await asyncio.sleep(1.5)  # longer than the staleness window: only heartbeats keep it alive
    from conversations.services import replies_interrupt_stale

    assert await db(replies_interrupt_stale)() == []
    row = await db(Message.objects.get)(pk=reply["message"]["id"])
    assert row.status == "streaming"
    assert row.content  # checkpointed while streaming
    await socket.send({"type": "generation.stop"})
    await socket.receive_until("message.completed")


async def test_a_send_streams_and_finishes_while_the_one_sync_thread_is_busy():
    # channels runs its connection housekeeping, get_provider() once ran, and the final
    # write ran, in a hop to asgiref's one sync thread: a burst's sends (and then its
    # final writes) queued there one after the other.
    from asgiref.sync import sync_to_async

    from conversations.llm import get_provider

    await sync_to_async(get_provider)()  # built once per process, as after the first reply
    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    release = threading.Event()
    busy = asyncio.ensure_future(sync_to_async(release.wait)())  # holds the sync thread
    try:
        await socket.send(send_frame("Hello there"))
        await socket.receive_until("message.created", timeout=5)  # the user's message
        reply_created = await socket.receive_until("message.created", timeout=5)
        delta = await socket.receive_until("message.delta", timeout=5)
        assert delta["message_id"] == reply_created["message"]["id"]
        final = await socket.receive_until("message.completed", timeout=5)  # the final write too
        assert final["status"] == "complete"
        assert not busy.done()
    finally:
        release.set()
        await busy
    await socket.close()


async def test_the_model_is_asked_while_message_created_is_still_on_its_way_and_deltas_wait_for_it(
    monkeypatch,
):
    # A slow channel layer (Redis far away) holds the `message.created` events: the
    # provider's request starts anyway, and no delta reaches the tab before them.
    from conversations.generation import get_runtime
    from conversations.llm import get_provider

    user, conversation = await alice_and_chat()
    socket = await connected(user, conversation)
    runtime = get_runtime()
    sockets = runtime.sockets
    group_send = sockets.group_send
    created_out = asyncio.Event()

    async def slow_group_send(group, message, **kwargs):
        if message.get("event") == "message.created":
            await asyncio.sleep(0.3)
        await group_send(group, message, **kwargs)
        if message.get("event") == "message.created":
            created_out.set()

    asked = []
    provider = await database_sync_to_async(get_provider)()
    stream = provider.stream

    def recording_stream(*args, **kwargs):
        asked.append(created_out.is_set())
        return stream(*args, **kwargs)

    monkeypatch.setattr(sockets, "group_send", slow_group_send)
    monkeypatch.setattr(provider, "stream", recording_stream)
    await socket.send(send_frame("Hello there"))
    await socket.receive_until("message.completed")

    assert asked == [False]  # the model was asked before the tabs heard of the reply
    kinds = [frame["type"] for frame in socket.frames]
    assert kinds.index("message.delta") > max(i for i, kind in enumerate(kinds) if kind == "message.created")
    await socket.close()
