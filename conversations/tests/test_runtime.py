"""The generation runtime and the rules around it, over the real ASGI application:
current settings per send, sessions that end, stop of an orphaned reply, new event types."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations import events, views
from conversations.generation import get_runtime
from conversations.generation.relay import READ_LEAD
from conversations.llm import get_provider
from conversations.models import Message
from conversations.tests.conftest import make_conversation, make_user, open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fake_llm")]

db = database_sync_to_async


async def _chat():
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    socket, (ok, code) = await open_socket(user, conversation.id)
    assert ok, code
    await _joined(socket)
    return user, conversation, socket


async def _joined(socket) -> None:
    """The socket is accepted before it joins its groups: one round trip makes sure it has."""
    await socket.send({"type": "ready?"})
    await socket.receive_until("error")


async def _send(socket, content: str = "hello") -> str:
    await socket.send({"type": "message.send", "content": content, "client_id": str(uuid.uuid4())})
    await socket.receive_until("message.created")
    return (await socket.receive_until("message.created"))["message"]["id"]


def _logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def test_settings_saved_over_http_apply_to_the_next_send_on_an_open_socket(monkeypatch):
    monkeypatch.setattr(views, "available_models", lambda: ["fake-model", "other-model"])
    user, conversation, socket = await _chat()

    def save_settings():
        response = _logged_in_client(user).post(
            reverse("conversation-settings", args=[conversation.id]),
            {"model": "other-model", "system_prompt": "Answer in French."},
            HTTP_ACCEPT="application/json",
        )
        assert response.status_code == 200

    await db(save_settings)()
    reply_id = await _send(socket)
    await socket.receive_until("message.completed")
    stream = get_provider().streams[-1]
    assert stream.model == "other-model"
    assert stream.messages[0].role == "system"
    assert stream.messages[0].content == "Answer in French."
    reply = await db(Message.objects.get)(pk=reply_id)
    assert reply.model == "other-model"
    await socket.close()


async def test_custom_instructions_of_the_owner_come_before_the_system_prompt():
    from accounts.models import Profile

    user, conversation, socket = await _chat()
    await db(Profile.objects.create)(user=user, custom_instructions="Call me Ada.")
    await db(type(conversation).objects.filter(pk=conversation.pk).update)(system_prompt="Be brief.")
    await _send(socket)
    await socket.receive_until("message.completed")
    system = get_provider().streams[-1].messages[0]
    assert (system.role, system.content) == ("system", "Call me Ada.\n\nBe brief.")
    await socket.close()


async def test_a_reply_reads_its_provider_at_the_pace_of_its_frames(settings):
    settings.CHAT_FLUSH_INTERVAL_MS = 10
    settings.CHAT_FLUSH_FRAMES_PER_SECOND = 1
    settings.CHAT_FLUSH_MAX_INTERVAL_MS = 1000
    _, _, socket = await _chat()
    await _send(socket)
    await socket.receive_until("message.completed")
    stream = get_provider().streams[-1]
    replies = get_runtime().replies

    for _ in range(500):  # the reply leaves the runtime once its final write is done
        if not replies:
            break
        await asyncio.sleep(0.01)

    # Asked at every read: nothing streams now, so a frame every 10 ms and a read just before it.
    assert not replies and stream.gather() == pytest.approx(0.01 - READ_LEAD)
    replies["another"] = None
    try:
        assert stream.gather() >= 1.0 - READ_LEAD  # one reply: a frame a second, and so a read
    finally:
        del replies["another"]
    await socket.close()


# --- sessions that end --------------------------------------------------------


async def _socket_with_cookie(user, conversation, client: Client):
    from channels.testing import WebsocketCommunicator

    from chatplatform.asgi import application
    from conversations.tests.conftest import ORIGIN, Socket

    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.id}/", headers=[ORIGIN, (b"cookie", cookie)]
    )
    connected, code = await communicator.connect()
    assert connected, code
    socket = Socket(communicator)
    await _joined(socket)
    return socket


async def _closed_with(socket, timeout: float = 5) -> int | None:
    while True:
        output = await socket.communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output.get("code")


async def test_logout_closes_the_sockets_of_that_session_and_no_other():
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    laptop, phone = await db(_logged_in_client)(user), await db(_logged_in_client)(user)
    on_laptop = await _socket_with_cookie(user, conversation, laptop)
    on_phone = await _socket_with_cookie(user, conversation, phone)
    await get_runtime().ensure_started()

    await db(laptop.post)(reverse("logout"))

    assert await _closed_with(on_laptop) == 4403
    assert await on_phone.nothing_more(timeout=0.5)
    await _send(on_phone)  # the other session goes on chatting
    await on_phone.close()


async def test_a_password_change_closes_the_sockets_of_other_sessions():
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    socket = await _socket_with_cookie(user, conversation, await db(_logged_in_client)(user))

    def change_password():
        user.set_password("a-brand-new-password-1")
        user.save()

    await db(change_password)()
    assert await _closed_with(socket) == 4403


async def test_deactivating_a_user_closes_their_sockets():
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    socket = await _socket_with_cookie(user, conversation, await db(_logged_in_client)(user))

    def deactivate():
        user.is_active = False
        user.save(update_fields=["is_active"])

    await db(deactivate)()
    assert await _closed_with(socket) == 4403


async def test_a_saved_profile_that_keeps_the_session_keeps_the_socket():
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    socket = await _socket_with_cookie(user, conversation, await db(_logged_in_client)(user))

    def rename():
        user.first_name = "Ada"
        user.save()

    await db(rename)()
    assert await socket.nothing_more(timeout=0.5)
    await _send(socket)
    await socket.close()


# --- stop, the outbox and the envelope --------------------------------------------


async def _orphan_reply(conversation, *, content: str = "half a rep") -> Message:
    def create():
        prompt = Message.objects.create(conversation=conversation, role="user", content="hi")
        return Message.objects.create(
            conversation=conversation,
            role="assistant",
            parent=prompt,
            status="streaming",
            content=content,
            worker="specific.gone!nobody-listens",
            heartbeat_at=timezone.now() - timedelta(seconds=1),  # recent: the sweep would wait
        )

    return await db(create)()


async def test_stop_of_a_reply_whose_process_is_gone_marks_it_interrupted_at_once(settings):
    settings.CHAT_STOP_ACK_SECONDS = 0.3
    _, conversation, socket = await _chat()
    orphan = await _orphan_reply(conversation)
    await socket.send({"type": "generation.stop"})
    failed = await socket.receive_until("message.failed", timeout=3)
    assert (failed["message_id"], failed["status"], failed["content"]) == (
        str(orphan.id),
        "interrupted",
        "half a rep",
    )
    await db(orphan.refresh_from_db)()
    assert orphan.status == "interrupted"
    await socket.close()


async def test_a_new_server_event_type_reaches_sockets_without_a_handler():
    _, conversation, socket = await _chat()
    await events.publish(conversation.id, "brand.new", detail={"answer": 42})
    frame = await socket.receive_until("brand.new")
    assert frame["detail"] == {"answer": 42}
    await socket.close()


async def test_a_shutting_down_process_refuses_new_replies_and_lets_running_ones_finish(fake_llm):
    fake_llm.LLM_FAKE_TOKENS = 30
    fake_llm.LLM_FAKE_TOKENS_PER_SECOND = 100
    _, _, socket = await _chat()
    reply_id = await _send(socket)
    runtime = get_runtime()
    shutdown = runtime.loop.create_task(runtime.shutdown(grace=10))
    final = await socket.receive_until("message.completed")
    assert (final["message_id"], final["status"]) == (reply_id, "complete")
    await shutdown
    await socket.send({"type": "message.send", "content": "another", "client_id": str(uuid.uuid4())})
    refused = await socket.receive_until("error")
    assert refused["code"] == "unavailable"
    await socket.close()


async def test_replies_still_running_after_the_grace_period_are_interrupted_with_their_text(fake_llm):
    fake_llm.LLM_FAKE_TOKENS = 2000
    fake_llm.LLM_FAKE_TOKENS_PER_SECOND = 50
    _, _, socket = await _chat()
    reply_id = await _send(socket)
    await socket.receive_until("message.delta")
    await get_runtime().shutdown(grace=0.2)
    failed = await socket.receive_until("message.failed")
    assert (failed["message_id"], failed["status"]) == (reply_id, "interrupted")
    assert failed["error"]["code"] == "interrupted"
    reply = await db(Message.objects.get)(pk=reply_id)
    assert reply.status == "interrupted"
    assert reply.content and reply.content == failed["content"]
    await socket.close()


async def test_a_sync_after_the_final_state_gets_it_while_the_reply_still_writes_its_title(fake_llm):
    fake_llm.CHAT_TITLE_FROM_MODEL = True  # the reply's task goes on to ask the model for a title
    fake_llm.LLM_FAKE_TTFT = 0.5
    _, _, socket = await _chat()
    reply_id = await _send(socket)
    final = await socket.receive_until("message.completed", timeout=10)
    assert reply_id in get_runtime().replies  # still titling
    await socket.send({"type": "sync", "message_id": reply_id, "offset": 0})
    again = await socket.receive_until("message.completed", timeout=5)
    assert (again["message_id"], again["content"]) == (reply_id, final["content"])
    await socket.close()


async def test_a_running_server_process_hands_the_allocators_free_memory_back(settings, monkeypatch):
    from chatplatform import memory

    monkeypatch.setattr(memory, "available", lambda: True)  # the wiring, on any C library
    trimmed, loop = asyncio.Event(), asyncio.get_running_loop()
    monkeypatch.setattr(memory, "trim", lambda: loop.call_soon_threadsafe(trimmed.set) or True)  # in a thread
    settings.CHAT_MALLOC_TRIM_SECONDS = 0.01
    await _chat()  # a socket starts this process's runtime
    await asyncio.wait_for(trimmed.wait(), timeout=10)
