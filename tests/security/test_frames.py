"""Bad frames: every one gets an `error` frame with a code, nothing is half-stored, the socket
keeps working and other people's sockets do not notice.

Single refused frames of each documented kind are in conversations/tests/test_consumer.py;
this module adds floods, binary frames, deeply nested JSON, wrong types of every field,
Unicode edge cases and hostile provider output, on the real ASGI application.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import websockets
from channels.db import database_sync_to_async

from conversations.llm.base import IteratorStream, LLMProvider
from conversations.models import Message, UsageEvent
from conversations.tests.conftest import make_conversation, open_socket
from tests.security.conftest import (
    chat_turn,
    make_user,
    recv_frame,
    recv_until,
    send_frame,
    session_cookie,
    ws_open,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake_llm")]

db = database_sync_to_async


async def chat_of(username: str):
    user = await db(make_user)(username)
    conversation = await db(make_conversation)(user)
    socket, (ok, code) = await open_socket(user, conversation.id)
    assert ok, code
    return user, conversation, socket


def send(content, client_id: str | None = None, **extra) -> dict:
    return {"type": "message.send", "content": content, "client_id": client_id or str(uuid.uuid4()), **extra}


async def stored(conversation) -> list[tuple[str, str]]:
    rows = Message.objects.filter(conversation=conversation).order_by("created_at")
    return await db(lambda: [(m.role, m.status) for m in rows])()


async def still_chats(socket, conversation, content: str = "still there?") -> dict:
    """The socket answers a plain send with a complete reply."""
    await socket.send(send(content))
    final = await socket.receive_until("message.completed", timeout=10)
    assert final["status"] == "complete"
    return final


# --- floods ---------------------------------------------------------------------------


async def test_a_flood_of_sends_gets_one_answer_each_and_stores_exactly_one_exchange(fake_llm):
    fake_llm.LLM_FAKE_TOKENS = 200  # one second of reply: every other send meets it running
    fake_llm.LLM_FAKE_TOKENS_PER_SECOND = 200
    _, conversation, socket = await chat_of("flooder")
    client_ids = [str(uuid.uuid4()) for _ in range(60)]
    for client_id in client_ids:
        await socket.send(send("hello again", client_id))

    answered: dict[str, str] = {}
    final = None  # on a busy machine the reply may end before the last refusal
    async with asyncio.timeout(30):
        while len(answered) < len(client_ids):
            frame = await socket.receive(timeout=10)
            if frame["type"] == "error":
                answered[frame["client_id"]] = frame["code"]
            elif frame["type"] == "message.created" and frame["message"]["client_id"]:
                answered[frame["message"]["client_id"]] = "accepted"
            elif frame["type"] == "message.completed":
                final = frame

    assert list(answered.values()).count("accepted") == 1
    assert answered[client_ids[0]] == "accepted"
    assert set(answered.values()) <= {"accepted", "busy", "rate_limited"}
    final = final or await socket.receive_until("message.completed", timeout=10)
    assert final["status"] == "complete"
    assert await stored(conversation) == [("user", "complete"), ("assistant", "complete")]
    assert await db(UsageEvent.objects.count)() == 1


async def test_a_flood_of_malformed_frames_gets_an_error_each_and_the_socket_still_chats():
    _, conversation, socket = await chat_of("junk")
    junk = [
        "{not json",
        "[]",
        '{"type": 1}',
        '{"type": "nope"}',
        json.dumps(send(None)),
        json.dumps(send("   ")),
        json.dumps({"type": "sync", "message_id": "x"}),
    ]
    frames = [junk[i % len(junk)] for i in range(700)]
    for frame in frames:
        await socket.send(frame)
    codes = [(await socket.receive())["code"] for _ in frames]
    assert codes == [
        {
            0: "bad_json",
            1: "invalid",
            2: "invalid",
            3: "unknown_type",
            4: "invalid",
            5: "empty",
            6: "invalid",
        }[i % len(junk)]
        for i in range(len(frames))
    ]
    assert await stored(conversation) == []
    await still_chats(socket, conversation)


async def test_another_users_socket_streams_undisturbed_through_a_flood(fake_llm):
    fake_llm.LLM_FAKE_TOKENS = 60
    fake_llm.LLM_FAKE_TOKENS_PER_SECOND = 300
    _, bob_chat, bob = await chat_of("bob")
    _, _, mallory = await chat_of("mallory")

    async def flood() -> None:
        for i in range(400):
            await mallory.send("{not json" if i % 2 else json.dumps(send("")))

    await bob.send(send("a normal question"))
    flooding = asyncio.create_task(flood())
    final = await bob.receive_until("message.completed", timeout=10)
    await flooding

    assert final["status"] == "complete"
    assert final["usage"]["completion_tokens"] == 60
    assert not [f for f in bob.frames if f["type"] == "error"]
    assert {f.get("message_id") or f.get("message", {}).get("id") for f in bob.frames} <= {
        str(m) for m in await db(lambda: list(bob_chat.messages.values_list("id", flat=True)))()
    }


# --- binary frames, nesting, wrong types ------------------------------------------------


async def test_binary_garbage_is_refused_as_bad_json_and_the_socket_still_chats():
    _, conversation, socket = await chat_of("binary")
    await socket.communicator.send_to(bytes_data=b"\xff\xfe\x00\x80garbage")
    assert (await socket.receive())["code"] == "bad_json"
    assert await stored(conversation) == []
    await still_chats(socket, conversation)


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"type": "message.send", "content": ' + '{"a": ' * 50_000 + "1" + "}" * 50_001,
    ],
    ids=["nested-arrays", "nested-content"],
)
async def test_deeply_nested_json_is_refused_and_the_socket_still_chats(frame):
    _, conversation, socket = await chat_of("nested")
    await socket.send(frame)
    error = await socket.receive()
    assert error["type"] == "error"
    assert error["code"] in {"bad_json", "invalid"}
    assert await stored(conversation) == []
    await still_chats(socket, conversation)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": 5}', "invalid"),
        ('{"type": null}', "invalid"),
        ('{"type": {"nested": "message.send"}}', "invalid"),
        ("42", "invalid"),
        ('"message.send"', "invalid"),
        ("null", "invalid"),
        (json.dumps({"type": "x" * 100_000}), "unknown_type"),
        (json.dumps(send(["a", "list"])), "invalid"),
        (json.dumps(send({"text": "an object"})), "invalid"),
        (json.dumps(send(True)), "invalid"),
        (json.dumps(send("\u00a0\u3000\u2028\t")), "empty"),
        (json.dumps({"type": "message.send", "content": "hi", "client_id": 12345}), "invalid"),
        (json.dumps({"type": "message.send", "content": "hi", "client_id": None}), "invalid"),
        (json.dumps({"type": "message.edit", "message_id": str(uuid.uuid4())}), "invalid"),
        (json.dumps({"type": "message.edit", "content": "x", "message_id": 7}), "invalid"),
        (json.dumps({"type": "message.regenerate"}), "invalid"),
        (json.dumps({"type": "sync", "message_id": str(uuid.uuid4()), "offset": "3"}), "invalid"),
        (json.dumps({"type": "sync", "message_id": str(uuid.uuid4()), "offset": 1.5}), "invalid"),
        (json.dumps({"type": "sync", "message_id": str(uuid.uuid4()), "offset": True}), "invalid"),
        (json.dumps({"type": "sync", "message_id": str(uuid.uuid4()), "offset": 10**30}), "not_found"),
        (json.dumps({"type": "sync", "message_id": None, "offset": 0}), "invalid"),
    ],
)
async def test_a_field_of_the_wrong_type_is_refused_with_its_code_and_nothing_is_stored(frame, code):
    _, conversation, socket = await chat_of("types")
    await socket.send(frame)
    error = await socket.receive()
    assert (error["type"], error["code"]) == ("error", code)
    assert len(error["message"]) < 200  # an echo of a huge field is not sent back
    assert await stored(conversation) == []
    await socket.send('{"type": "generation.stop"}')  # still listening: stop with nothing running is ignored
    assert await socket.nothing_more()


# --- Unicode ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    ["nul \x00 inside", "lone \ud800 surrogate", "\udfff"],
    ids=["nul", "lone-surrogate", "only-a-low-surrogate"],
)
async def test_text_the_database_cannot_hold_is_refused_not_half_stored(content):
    _, conversation, socket = await chat_of("unicode")
    frame = json.dumps(send(content))  # json.dumps escapes them as \u0000 and \ud800
    await socket.send(frame)
    error = await socket.receive()
    assert (error["type"], error["code"]) == ("error", "invalid")
    assert await stored(conversation) == []
    await still_chats(socket, conversation)


EDGE_TEXT = (
    "emoji 👩\u200d👩\u200d👧 flags 🇵🇹 astral \U0001d518\U0001d52b\U0001d526 combining e\u0301\u0301 "
    "rtl \u202eevil\u202c zero\u200bwidth bom \ufeff cjk 漢字 max \U0010fffd"
)


async def test_unicode_edge_cases_round_trip_verbatim_with_code_point_offsets():
    _, _, socket = await chat_of("edges")
    await socket.send(send("[[echo]]" + EDGE_TEXT))
    created = await socket.receive_until("message.created")
    reply = await socket.receive_until("message.created")
    final = await socket.receive_until("message.completed")
    deltas = socket.deltas_for(reply["message"]["id"])
    text = ""
    for delta in deltas:
        assert delta["offset"] == len(text)
        text += delta["text"]
    assert text == final["content"] == EDGE_TEXT
    user_row = await db(Message.objects.get)(pk=created["message"]["id"])
    reply_row = await db(Message.objects.get)(pk=reply["message"]["id"])
    assert user_row.content == "[[echo]]" + EDGE_TEXT
    assert reply_row.content == EDGE_TEXT


# --- hostile provider output ------------------------------------------------------------


class _Scripted(IteratorStream):
    def __init__(self, parts: list[str]) -> None:
        super().__init__()
        self.parts = parts

    async def _generate(self):
        for part in self.parts:
            yield part
        self.result.finish_reason = "stop"


class RawOutputProvider(LLMProvider):
    """A model whose output is exactly `parts` (what an OpenAI-compatible server may send)."""

    name = "fake"

    def __init__(self, parts: list[str]) -> None:
        super().__init__(model="raw", context_tokens=8192, max_output_tokens=512)
        self.parts = parts

    def stream(self, messages, *, model=None, options=None):
        return _Scripted(self.parts)


@pytest.mark.parametrize(
    "parts", [["before ", "\x00", " after"], ["lone ", "\ud83d", " half"]], ids=["nul", "lone-surrogate"]
)
async def test_model_output_the_database_cannot_hold_still_completes_and_is_stored(parts, monkeypatch):
    monkeypatch.setattr("conversations.generation.runtime.get_provider", lambda: RawOutputProvider(parts))
    _, _, socket = await chat_of("rawmodel")
    await socket.send(send("say something odd"))
    final = await socket.receive_until("message.completed", timeout=10)
    reply = await db(Message.objects.get)(pk=final["message_id"])
    assert reply.status == "complete"
    assert reply.content == final["content"]
    assert reply.content.startswith(parts[0]) and reply.content.endswith(parts[-1])
    reply.content.encode("utf-8")  # what is stored and sent is valid text


# --- over a real server -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_an_empty_text_frame_over_a_real_socket_is_bad_json(chat_server):
    user = await db(make_user)()
    conversation = await db(make_conversation)(user)
    async with await ws_open(chat_server, conversation.id, await db(session_cookie)(user)) as ws:
        await ws.send("")
        assert (await recv_frame(ws))["code"] == "bad_json"
        _, final = await chat_turn(ws, "hello")
    assert final["status"] == "complete"


@pytest.mark.django_db(transaction=True)
async def test_a_frame_over_daphnes_limit_drops_only_that_connection(chat_server):
    """Frames over daphne's --websocket-max-message-size (1 MiB) never reach the application:
    daphne drops the connection (docs/protocol.md). Nobody else notices; the sender may reconnect."""
    bob = await db(make_user)("bob")
    bobs = await db(make_conversation)(bob)
    mallory = await db(make_user)("mallory")
    mallorys = await db(make_conversation)(mallory)
    bob_cookie, mallory_cookie = await db(session_cookie)(bob), await db(session_cookie)(mallory)
    async with await ws_open(chat_server, bobs.id, bob_cookie) as bob_ws:
        await bob_ws.send(send_frame("[[tokens:200]][[slow:5]] a long answer"))
        await recv_until(bob_ws, "message.delta")
        async with await ws_open(chat_server, mallorys.id, mallory_cookie) as ws:
            await ws.send(json.dumps(send("x" * 1_100_000)))
            with pytest.raises(websockets.ConnectionClosed):
                await recv_frame(ws, timeout=5)
        final = await recv_until(bob_ws, "message.completed")
    assert final["usage"]["completion_tokens"] == 200
    async with await ws_open(chat_server, mallorys.id, mallory_cookie) as ws:
        _, again = await chat_turn(ws, "sorry")
    assert again["status"] == "complete"
    assert await stored(mallorys) == [("user", "complete"), ("assistant", "complete")]
