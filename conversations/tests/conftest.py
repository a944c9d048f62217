"""Helpers for the chat domain's tests: users, sessions, sockets on the real ASGI app."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from conversations.llm import reset_provider
from conversations.models import Conversation

ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture
def fake_llm(settings):
    """The scripted provider, quick: 10 ms to the first token, 500 tokens/s, 12 tokens."""
    settings.LLM_PROVIDER = "fake"
    settings.LLM_FAKE_TTFT = 0.01
    settings.LLM_FAKE_TOKENS_PER_SECOND = 500
    settings.LLM_FAKE_TOKENS = 12
    settings.CHAT_TITLE_FROM_MODEL = False
    reset_provider()
    yield settings
    reset_provider()


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """A channel layer per test: each async test runs its own event loop, and a
    layer keeps locks and connection pools bound to the loop that made them."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    from django.core.cache import cache

    cache.clear()


def make_user(username: str = "alice", **extra):
    return get_user_model().objects.create_user(username=username, password="pw-for-tests-1", **extra)


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def make_conversation(owner, **fields) -> Conversation:
    return Conversation.objects.create(owner=owner, **fields)


class Socket:
    """A WebsocketCommunicator on the real application, with frame helpers."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.frames: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = 5) -> dict[str, Any]:
        frame = json.loads(await self.communicator.receive_from(timeout=timeout))
        self.frames.append(frame)
        return frame

    async def receive_until(self, event_type: str, *, timeout: float = 10, **match: Any) -> dict[str, Any]:
        """Receive frames until one of `event_type` (matching `match`) arrives; return it."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout=timeout)
                if frame["type"] == event_type and all(frame.get(k) == v for k, v in match.items()):
                    return frame

    async def nothing_more(self, timeout: float = 0.2) -> bool:
        return await self.communicator.receive_nothing(timeout=timeout)

    def deltas_for(self, message_id: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "message.delta" and f["message_id"] == message_id]

    async def close(self) -> None:
        await self.communicator.disconnect()


async def open_socket(user, conversation_id, *, origin: tuple[bytes, bytes] = ORIGIN) -> tuple[Socket, Any]:
    from chatplatform.asgi import application

    headers = [origin]
    if user is not None:
        headers.append((b"cookie", await database_sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation_id}/", headers=headers
    )
    connected, code = await communicator.connect()
    return Socket(communicator), (connected, code)


def assemble(frames: list[dict[str, Any]]) -> str:
    """Apply deltas as a client does: in order, each where its offset says."""
    text = ""
    for frame in frames:
        assert frame["offset"] == len(text), f"gap or overlap at {frame['offset']} (held {len(text)})"
        text += frame["text"]
    return text
