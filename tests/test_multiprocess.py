"""Two real daphne processes sharing PostgreSQL and Redis: any process serves any socket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from pathlib import Path

import pytest
import websockets
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client

from conversations.models import Conversation, Message
from tests.servers import daphne

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def server_env(live_database_url, redis_url) -> dict[str, str]:
    return {
        "DATABASE_URL": live_database_url,
        "REDIS_URL": redis_url,
        "APP_ENV": "test",
        "LLM_PROVIDER": "fake",
        "LLM_FAKE_TTFT": "0.05",
        "LLM_FAKE_TOKENS_PER_SECOND": "40",
        "LLM_FAKE_TOKENS": "80",
        "CHAT_TITLE_FROM_MODEL": "false",
        "CHAT_CHECKPOINT_SECONDS": "0.25",
        "CHAT_STALE_AFTER_SECONDS": "2",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def log_dir(tmp_path) -> Path:
    return tmp_path


@pytest.fixture
def two_servers(server_env, log_dir):
    with (
        daphne(server_env, log_dir=log_dir, name="a") as a,
        daphne(server_env, log_dir=log_dir, name="b") as b,
    ):
        yield a, b


@pytest.fixture
def chat():
    user = get_user_model().objects.create_user("alice", password="pw-for-tests-1")
    conversation = Conversation.objects.create(owner=user)
    client = Client()
    client.force_login(user)
    return conversation, f"sessionid={client.cookies['sessionid'].value}"


async def open_ws(server, conversation, cookie):
    return await websockets.connect(
        f"{server.ws_url}/ws/conversations/{conversation.id}/",
        additional_headers={"Cookie": cookie, "Origin": server.url},
        open_timeout=10,
    )


async def frames_until(ws, event_type: str, *, timeout: float = 15, into: list | None = None) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if into is not None:
                into.append(frame)
            if frame["type"] == event_type:
                return frame


def apply(text: str, frames: list[dict], message_id: str) -> str:
    """Apply deltas as the browser does; fail on a gap."""
    for frame in frames:
        if frame["type"] != "message.delta" or frame["message_id"] != message_id:
            continue
        assert frame["offset"] <= len(text), f"gap: delta at {frame['offset']}, held {len(text)}"
        text += frame["text"][len(text) - frame["offset"] :]
    return text


async def start_reply(ws) -> str:
    await ws.send(json.dumps({"type": "message.send", "content": "hello", "client_id": str(uuid.uuid4())}))
    await frames_until(ws, "message.created")
    return (await frames_until(ws, "message.created"))["message"]["id"]


async def test_reply_streamed_on_one_process_arrives_complete_on_the_other(two_servers, chat):
    a, b = two_servers
    conversation, cookie = chat
    async with await open_ws(a, conversation, cookie) as on_a, await open_ws(b, conversation, cookie) as on_b:
        seen_on_b: list[dict] = []
        reply_id = await start_reply(on_a)
        final_a = await frames_until(on_a, "message.completed")
        final_b = await frames_until(on_b, "message.completed", into=seen_on_b)
    assert final_b["content"] == final_a["content"]
    assert apply("", seen_on_b, reply_id) == final_a["content"]
    assert final_a["usage"]["completion_tokens"] == 80


async def test_stop_sent_through_the_other_process_stops_the_reply_within_a_second(two_servers, chat):
    a, b = two_servers
    conversation, cookie = chat
    async with await open_ws(a, conversation, cookie) as on_a, await open_ws(b, conversation, cookie) as on_b:
        await start_reply(on_a)
        await frames_until(on_b, "message.delta")
        stopped_at = time.monotonic()
        await on_b.send(json.dumps({"type": "generation.stop"}))
        final = await frames_until(on_b, "message.completed", timeout=5)
        elapsed = time.monotonic() - stopped_at
    assert final["status"] == "cancelled"
    assert elapsed < 1.0
    assert 0 < final["usage"]["completion_tokens"] < 80
    reply = await database_sync_to_async(Message.objects.get)(pk=final["message_id"])
    assert (reply.status, reply.content) == ("cancelled", final["content"])


async def test_socket_closed_mid_reply_and_resynced_on_the_other_process_gets_the_whole_reply(
    two_servers, chat
):
    a, b = two_servers
    conversation, cookie = chat
    held_frames: list[dict] = []
    async with await open_ws(a, conversation, cookie) as on_a:
        reply_id = await start_reply(on_a)
        for _ in range(3):
            await frames_until(on_a, "message.delta", into=held_frames)
    held = apply("", held_frames, reply_id)
    assert held

    async with await open_ws(b, conversation, cookie) as on_b:
        later: list[dict] = []
        await on_b.send(json.dumps({"type": "sync", "message_id": reply_id, "offset": len(held)}))
        final = await frames_until(on_b, "message.completed", into=later)
    deltas = [f for f in later if f["type"] == "message.delta"]
    assert deltas[0]["offset"] == len(held)  # the sync answer starts where the client stopped
    assert apply(held, later, reply_id) == final["content"]
    assert final["status"] == "complete"


async def test_reply_of_a_killed_process_becomes_interrupted_with_its_checkpointed_text(
    server_env, log_dir, chat
):
    conversation, cookie = chat
    with daphne(server_env, log_dir=log_dir, name="victim") as victim:
        async with await open_ws(victim, conversation, cookie) as ws:
            reply_id = await start_reply(ws)
            received: list[dict] = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # past at least one checkpoint
                await frames_until(ws, "message.delta", into=received)
                row = await database_sync_to_async(Message.objects.get)(pk=reply_id)
                if row.content:
                    break
            victim.kill()
    checkpointed = (await database_sync_to_async(Message.objects.get)(pk=reply_id)).content
    assert checkpointed

    with daphne(server_env, log_dir=log_dir, name="restarted"):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = await database_sync_to_async(Message.objects.get)(pk=reply_id)
            if row.status != "streaming":
                break
            await asyncio.sleep(0.2)
    assert row.status == "interrupted"
    assert row.content == checkpointed
    seen = apply("", received, reply_id)
    assert seen.startswith(row.content) or row.content.startswith(seen)


async def test_stop_of_a_reply_whose_process_was_killed_marks_it_interrupted_within_two_seconds(
    server_env, log_dir, chat
):
    conversation, cookie = chat
    server_env = {**server_env, "CHAT_STALE_AFTER_SECONDS": "60"}  # the sweep must not be what ends it
    with daphne(server_env, log_dir=log_dir, name="survivor") as survivor:
        with daphne(server_env, log_dir=log_dir, name="victim") as victim:
            async with await open_ws(victim, conversation, cookie) as on_victim:
                reply_id = await start_reply(on_victim)
                await frames_until(on_victim, "message.delta")
                victim.kill()
        async with await open_ws(survivor, conversation, cookie) as on_survivor:
            stopped_at = time.monotonic()
            await on_survivor.send(json.dumps({"type": "generation.stop"}))
            failed = await frames_until(on_survivor, "message.failed", timeout=5)
            elapsed = time.monotonic() - stopped_at
    assert (failed["message_id"], failed["status"]) == (reply_id, "interrupted")
    assert elapsed < 2.0
    row = await database_sync_to_async(Message.objects.get)(pk=reply_id)
    assert row.status == "interrupted"


async def test_a_new_server_event_type_reaches_a_socket_on_another_process(two_servers, chat):
    from channels.layers import get_channel_layer

    from conversations import events

    _, b = two_servers
    conversation, cookie = chat
    async with await open_ws(b, conversation, cookie) as on_b:
        await on_b.send(json.dumps({"type": "ready?"}))
        await frames_until(on_b, "error")  # joined its groups
        # This test process is "another process": it publishes the way every process does.
        await get_channel_layer().group_send(
            events.group_name(conversation.id), events.envelope("brand.new", detail={"answer": 42})
        )
        frame = await frames_until(on_b, "brand.new", timeout=5)
    assert frame["detail"] == {"answer": 42}


async def test_logout_on_one_process_closes_the_sessions_socket_on_the_other(two_servers, chat):
    _, b = two_servers
    conversation, cookie = chat
    async with await open_ws(b, conversation, cookie) as on_b:
        await on_b.send(json.dumps({"type": "ready?"}))
        await frames_until(on_b, "error")

        def logout_elsewhere():
            # This test process serves the logout, as any other process would.
            client = Client()
            client.cookies["sessionid"] = cookie.split("=", 1)[1]
            assert client.post("/accounts/logout/").status_code == 302

        await asyncio.to_thread(logout_elsewhere)
        async with asyncio.timeout(5):
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    await on_b.recv()
    assert on_b.close_code == 4403
