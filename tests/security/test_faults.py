"""Faults over real processes: the provider failing every way it can, the browser leaving
mid-reply, Redis restarting and the database going away, each while daphne serves.

Expected each time: a clear `message.failed` with the right code or a recovery,
`/health/deps` saying 503 while a dependency is away, the user's message never
lost, the partial reply kept, and service back by itself when the dependency
returns. A server process SIGKILLed mid-reply (its reply becomes `interrupted`
with the checkpointed text) is tests/test_multiprocess.py::
test_reply_of_a_killed_process_becomes_interrupted_with_its_checkpointed_text.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import websockets
from channels.db import database_sync_to_async

from bench.fake_openai_server import ScriptedOpenAIServer, expected_reply
from conftest import require_service
from conversations.models import Conversation, Message, UsageEvent
from tests.faults import RedisServer, TcpProxy
from tests.security.conftest import (
    assemble,
    chat_turn,
    make_user,
    recv_until,
    send_frame,
    server_env,
    session_cookie,
    ws_open,
)
from tests.servers import daphne

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]

db = database_sync_to_async

LLM_TIMEOUT = 1.0


# --- helpers -------------------------------------------------------------------------------


def deps(server) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{server.url}/health/deps", timeout=6) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def wait_for_deps(server, status: int, *, within: float) -> tuple[float, dict]:
    """Poll /health/deps until it answers `status`; how long that took, and the body."""
    started = time.monotonic()
    body: dict = {}
    while time.monotonic() - started < within:
        code, body = await asyncio.to_thread(deps, server)
        if code == status:
            return time.monotonic() - started, body
        await asyncio.sleep(0.2)
    raise AssertionError(f"/health/deps did not answer {status} within {within}s; last: {body}")


async def new_chat(username: str = "") -> tuple[Conversation, str]:
    user = await db(make_user)(username or None)
    conversation = await db(Conversation.objects.create)(owner=user)
    return conversation, await db(session_cookie)(user)


async def rows(conversation) -> list[Message]:
    return await db(lambda: list(Message.objects.filter(conversation=conversation).order_by("created_at")))()


async def wait_for_row(message_id: str, *, until, within: float = 10) -> Message:
    deadline = time.monotonic() + within
    while True:
        row = await db(Message.objects.get)(pk=message_id)
        if until(row) or time.monotonic() > deadline:
            return row
        await asyncio.sleep(0.1)


# --- the provider failing ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted():
    """The scripted OpenAI-compatible server, behind a proxy that can cut it off."""
    server = ScriptedOpenAIServer(ttft_ms=20, tokens_per_second=200, tokens=30).start_in_thread()
    with TcpProxy("127.0.0.1", server.port) as proxy:
        yield server, proxy
    server.stop()


@pytest.fixture(scope="module")
def provider_server(django_db_setup, scripted, tmp_path_factory):
    _, proxy = scripted
    env = server_env(
        LLM_PROVIDER="openai",
        LLM_BASE_URL=f"http://127.0.0.1:{proxy.port}/v1",
        LLM_MODEL="scripted-model",
        LLM_API_KEY="sk-faults-test",
        LLM_TIMEOUT=str(LLM_TIMEOUT),
    )
    with daphne(env, log_dir=tmp_path_factory.mktemp("faults"), name="provider") as server:
        yield server


PROVIDER_FAULTS = [
    # (directive, error code, tokens that arrive before the failure)
    ("[[drop:5]]", "provider_error", 5),
    ("[[garbage:3]]", "provider_error", 3),
    ("[[hang]]", "timeout", 0),
    ("[[tokens:6]][[slow:1800]]", "timeout", 1),  # stalls mid-reply for longer than LLM_TIMEOUT
    ("[[error:429]]", "rate_limited", 0),
    ("[[error:500]]", "provider_error", 0),
    ("[[error:503]]", "provider_error", 0),
    ("[[error:401]]", "auth", 0),
    ("[[error:400:context_length_exceeded]]", "context_too_long", 0),
    ("[[fail:rate_limited:4]]", "rate_limited", 4),
]


@pytest.mark.parametrize(("directive", "code", "kept"), PROVIDER_FAULTS, ids=[f[0] for f in PROVIDER_FAULTS])
async def test_a_failing_provider_gives_a_clear_failure_and_keeps_the_message_and_the_partial_reply(
    provider_server, directive, code, kept
):
    conversation, cookie = await new_chat()
    question = f"{directive} tell me about tides"
    started = time.monotonic()
    async with await ws_open(provider_server, conversation.id, cookie) as ws:
        frames, final = await chat_turn(ws, question, timeout=10)
    elapsed = time.monotonic() - started

    assert final["type"] == "message.failed"
    assert (final["status"], final["error"]["code"]) == ("failed", code)
    assert final["error"]["message"]
    partial = "".join(_tokens(question)[:kept])
    assert final["content"] == partial == assemble(frames, final["message_id"])
    asked, reply = await rows(conversation)
    assert (asked.role, asked.content) == ("user", question)
    assert (reply.status, reply.content, reply.error_code) == ("failed", partial, code)
    if code == "timeout":
        assert elapsed < LLM_TIMEOUT + 3


def _tokens(question: str) -> list[str]:
    from conversations.llm.fake import reply_tokens

    return reply_tokens(question, tokens=30)[0]


async def test_an_unreachable_provider_fails_fast_shows_in_health_and_comes_back(provider_server, scripted):
    _, proxy = scripted
    conversation, cookie = await new_chat()
    with proxy.outage():
        async with await ws_open(provider_server, conversation.id, cookie) as ws:
            _, final = await chat_turn(ws, "anyone there?", timeout=10)
        status, body = await asyncio.to_thread(deps, provider_server)
    assert (final["type"], final["error"]["code"]) == ("message.failed", "unreachable")
    assert status == 503
    assert body["checks"]["provider"]["status"] == "down"
    assert body["checks"]["database"]["status"] == "up"

    await wait_for_deps(provider_server, 200, within=5)
    async with await ws_open(provider_server, conversation.id, cookie) as ws:
        _, final = await chat_turn(ws, "and now?", timeout=10)
    assert (final["type"], final["status"]) == ("message.completed", "complete")


async def test_a_browser_leaving_mid_reply_does_not_stop_it(provider_server):
    conversation, cookie = await new_chat()
    question = "[[tokens:60]][[slow:15]] a long answer please"
    async with await ws_open(provider_server, conversation.id, cookie) as ws:
        await ws.send(send_frame(question))
        await recv_until(ws, "message.delta")
        reply_id = (await db(Message.objects.filter(conversation=conversation, role="assistant").get)()).id
    # The tab is gone; the reply goes on and is stored whole.
    reply = await wait_for_row(str(reply_id), until=lambda r: r.status != "streaming")
    assert reply.status == "complete"
    assert reply.content == expected_reply(question)
    assert reply.completion_tokens == 60


# --- Redis restarting ----------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path):
    if not RedisServer.available():
        require_service("redis-server (for the Redis restart test)", False)
    redis = RedisServer(tmp_path).start()
    yield redis
    redis.stop()


async def test_redis_restarting_is_reported_and_service_comes_back_by_itself(own_redis, tmp_path):
    env = server_env(REDIS_URL=own_redis.url)
    with daphne(env, log_dir=tmp_path, name="redis-fault") as server:
        conversation, cookie = await new_chat()
        async with await ws_open(server, conversation.id, cookie) as ws:
            _, final = await chat_turn(ws, "before the restart")
        assert final["status"] == "complete"

        own_redis.stop()
        _, body = await wait_for_deps(server, 503, within=3.5)
        assert body["checks"]["channel_layer"]["status"] == "down"
        assert body["checks"]["database"]["status"] == "up"

        own_redis.start()
        await wait_for_deps(server, 200, within=10)
        async with await ws_open(server, conversation.id, cookie) as ws:
            frames, final = await chat_turn(ws, "after the restart")
        assert final["status"] == "complete"
        assert assemble(frames, final["message_id"]) == final["content"]
        assert [m.status for m in await rows(conversation)] == ["complete"] * 4


async def test_redis_going_away_mid_reply_does_not_lose_the_reply(own_redis, tmp_path):
    env = server_env(REDIS_URL=own_redis.url, LLM_FAKE_TOKENS_PER_SECOND="40", LLM_FAKE_TOKENS="80")
    with daphne(env, log_dir=tmp_path, name="redis-mid-reply") as server:
        conversation, cookie = await new_chat()
        async with await ws_open(server, conversation.id, cookie) as ws:
            await ws.send(send_frame("a long one"))
            await recv_until(ws, "message.delta")
            own_redis.stop()
            reply_id = (
                await db(Message.objects.filter(conversation=conversation, role="assistant").get)()
            ).id
            reply = await wait_for_row(str(reply_id), until=lambda r: r.status != "streaming", within=10)
        own_redis.start()
    assert reply.status == "complete"
    assert reply.completion_tokens == 80
    assert reply.content == expected_reply("a long one", tokens=80)


# --- the database going away -------------------------------------------------------------


@pytest.fixture
def db_proxy():
    from django.db import connection

    settings_dict = connection.settings_dict
    with TcpProxy(settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)) as proxy:
        yield proxy


def _through(proxy: TcpProxy) -> str:
    from django.db import connection

    db_settings = connection.settings_dict
    user = urllib.parse.quote(db_settings["USER"], safe="")
    password = urllib.parse.quote(db_settings["PASSWORD"], safe="")
    return f"postgres://{user}:{password}@127.0.0.1:{proxy.port}/{db_settings['NAME']}"


async def test_the_database_away_for_a_few_seconds_is_reported_and_service_comes_back(db_proxy, tmp_path):
    env = server_env(DATABASE_URL=_through(db_proxy))
    with daphne(env, log_dir=tmp_path, name="db-fault") as server:
        conversation, cookie = await new_chat()
        async with await ws_open(server, conversation.id, cookie) as ws:
            _, final = await chat_turn(ws, "before the outage")
        assert final["status"] == "complete"

        db_proxy.cut()
        took, body = await wait_for_deps(server, 503, within=3.5)
        assert body["checks"]["database"]["status"] == "down"
        assert took < 3.0
        # A tab that sends now is refused quickly (not left hanging) and keeps its message.
        held = send_frame("sent during the outage")
        with pytest.raises((websockets.InvalidStatus, websockets.ConnectionClosed, TimeoutError)):
            async with asyncio.timeout(5), await ws_open(server, conversation.id, cookie) as ws:
                await ws.send(held)
                await recv_until(ws, "message.created", timeout=5)
        await asyncio.sleep(1)
        db_proxy.restore()

        await wait_for_deps(server, 200, within=5)
        async with await ws_open(server, conversation.id, cookie) as ws:
            await ws.send(held)  # the browser resends what was never acknowledged
            final = await recv_until(ws, "message.completed", timeout=10)
        assert final["status"] == "complete"
        assert [(m.role, m.status) for m in await rows(conversation)] == [
            ("user", "complete"),
            ("assistant", "complete"),
        ] * 2


async def test_a_reply_ending_while_the_database_is_away_is_written_when_it_returns(db_proxy, tmp_path):
    env = server_env(DATABASE_URL=_through(db_proxy), LLM_FAKE_TOKENS_PER_SECOND="40", LLM_FAKE_TOKENS="60")
    with daphne(env, log_dir=tmp_path, name="db-mid-reply") as server:
        conversation, cookie = await new_chat()
        async with await ws_open(server, conversation.id, cookie) as ws:
            await ws.send(send_frame("a long one"))
            await recv_until(ws, "message.delta")
            with db_proxy.outage():  # checkpoints and the final write (at ~1.5 s) meet a dead database
                await asyncio.sleep(3)
            final = await recv_until(ws, "message.completed", timeout=15)
            # The first exchange titles the conversation after the reply; let that finish too.
            await recv_until(ws, "conversation.updated", timeout=5)
    assert final["status"] == "complete"
    reply = await db(Message.objects.get)(pk=final["message_id"])
    assert (reply.status, reply.content) == ("complete", expected_reply("a long one", tokens=60))
    assert reply.content == final["content"]
    assert await db(UsageEvent.objects.filter(message=reply).count)() == 1
