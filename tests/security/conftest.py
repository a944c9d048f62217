"""The security and reliability suite's shared pieces: live servers, signed-in users, socket helpers.

Tests that need real processes share one daphne per module, on the pytest
test database (rows a test commits are what the server reads) and the
machine's Redis. In-process socket tests use the real ASGI application
through `WebsocketCommunicator`, as `conversations/tests` do.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from django.contrib.auth import get_user_model
from django.test import Client

from conftest import require_service
from conversations.tests.conftest import _fresh_channel_layer, fake_llm  # noqa: F401 (fixtures)
from tests.servers import Server, daphne

PASSWORD = "pw-for-security-tests-1"

# The per-user limits are not what these servers are tested for (test_frames holds them).
UNLIMITED = {
    "CHAT_MESSAGES_PER_MINUTE": "100000",
    "CHAT_CONCURRENT_REPLIES": "1000",
    "CHAT_DAILY_TOKEN_BUDGET": "1000000000",
}


@pytest.fixture(autouse=True)
def _own_rate_limit_cache(settings):
    """In-process tests count rate limits in a local cache of their own, so flushing it
    never touches the Redis that a module's live server is using."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "security"}
    }
    from django.core.cache import cache

    cache.clear()


def database_url_for_servers() -> str:
    """The pytest test database as a URL, for server processes (valid once django_db_setup ran)."""
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def server_env(**overrides: str) -> dict[str, str]:
    """The environment of a live test server: scripted model, fast, no per-user limits."""
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    require_service("PostgreSQL (DATABASE_URL)", database_url.startswith("postgres"))
    require_service("Redis (REDIS_URL)", bool(redis_url))
    env = {
        "CHATPLATFORM_IGNORE_DOTENV": "1",
        "DJANGO_SETTINGS_MODULE": "chatplatform.settings",
        "APP_ENV": "test",
        "DEBUG": "false",
        "DATABASE_URL": database_url_for_servers(),
        "REDIS_URL": redis_url,
        "LLM_PROVIDER": "fake",
        "LLM_FAKE_TTFT": "0.01",
        "LLM_FAKE_TOKENS_PER_SECOND": "1000",
        "LLM_FAKE_TOKENS": "20",
        "LLM_MAX_OUTPUT_TOKENS": "4096",
        "CHAT_TITLE_FROM_MODEL": "false",
        "CHAT_CHECKPOINT_SECONDS": "0.25",
        "LOG_LEVEL": "WARNING",
        **UNLIMITED,
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def chat_server(django_db_setup, tmp_path_factory) -> Iterator[Server]:
    """One daphne for the module with the scripted model (modules may override this fixture)."""
    with daphne(server_env(), log_dir=tmp_path_factory.mktemp("live"), name="live") as server:
        yield server


# --- users ----------------------------------------------------------------------


def make_user(username: str | None = None, *, password: str | None = None, **fields):
    """A user; without a password unless asked (hashing is slow on purpose; sessions need none)."""
    username = username or f"user-{uuid.uuid4().hex[:8]}"
    return get_user_model().objects.create_user(username=username, password=password, **fields)


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def logged_in_client(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


# --- sockets on a live server ----------------------------------------------------


async def ws_open(server: Server, conversation_id, cookie: str | None, *, origin: str | None = ""):
    """A WebSocket to a live server; `origin=""` means the server's own origin, None sends none."""
    headers = {}
    if cookie:
        headers["Cookie"] = cookie
    if origin == "":
        origin = server.url
    if origin is not None:
        headers["Origin"] = origin
    return await websockets.connect(
        f"{server.ws_url}/ws/conversations/{conversation_id}/",
        additional_headers=headers,
        open_timeout=10,
        max_size=None,
    )


async def recv_frame(ws, timeout: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())


async def recv_until(
    ws, event_type: str, *, timeout: float = 15, into: list | None = None, **match: Any
) -> dict[str, Any]:
    """Frames until one of `event_type` (with the given fields) arrives; all of them go `into`."""
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if into is not None:
                into.append(frame)
            if frame["type"] == event_type and all(frame.get(k) == v for k, v in match.items()):
                return frame


async def close_code(ws, timeout: float = 5) -> int | None:
    """The code the server closes the socket with; a frame before the close fails the test."""
    async with asyncio.timeout(timeout):
        try:
            frame = await ws.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    raise AssertionError(f"the server sent {frame!r} before closing")


def send_frame(content: str, client_id: str | None = None) -> str:
    return json.dumps(
        {"type": "message.send", "content": content, "client_id": client_id or str(uuid.uuid4())}
    )


async def chat_turn(ws, content: str, *, timeout: float = 15) -> tuple[list[dict], dict]:
    """Send a message; every frame until its reply ends, and the final frame."""
    frames: list[dict] = []
    await ws.send(send_frame(content))
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            frames.append(frame)
            if frame["type"] in {"message.completed", "message.failed"}:
                return frames, frame
            if frame["type"] == "error":
                raise AssertionError(f"refused: {frame}")


def assemble(frames: list[dict], message_id: str) -> str:
    """Apply a reply's deltas as the browser does (docs/protocol.md), failing on a gap."""
    text = ""
    for frame in frames:
        if frame["type"] != "message.delta" or frame["message_id"] != message_id:
            continue
        assert frame["offset"] <= len(text), f"gap: delta at {frame['offset']}, held {len(text)}"
        text += frame["text"][len(text) - frame["offset"] :]
    return text
