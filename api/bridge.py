"""The generation runtime as the API uses it: start a reply, hear its events, stop it.

The API is a second caller of the chat's runtime (conversations/generation/),
so a call gets the chat's limits, stop and accounting for free. These
functions are the only place the API touches it.

Work that outlives the request runs in a context of its own (`detached`):
WhiteNoise's middleware is synchronous, so Django runs an async view through
async_to_sync, and a task created there would inherit that call's thread
executor, which quits when the view returns; the reply's database writes
would then fail ("CurrentThreadExecutor already quit").
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from conversations.generation import get_runtime
from conversations.llm.base import GenerationOptions


def detached(coroutine) -> asyncio.Task:
    """A task in a fresh context: nothing of the request's context (its thread executor) leaks in."""
    return asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())


async def ready() -> tuple[str, bool]:
    """This process's control channel (recorded on the replies it starts) and whether it takes new ones."""
    runtime = get_runtime()
    await detached(runtime.ensure_started())
    return runtime.channel, runtime.accepting


async def start(message_id: uuid.UUID, *, options: GenerationOptions) -> None:
    """Start generating a `streaming` reply in this process."""
    await detached(get_runtime().start(message_id, options=options))


async def stop(message_id: uuid.UUID) -> None:
    await detached(get_runtime().stop(message_id))


def listen(conversation_id: uuid.UUID) -> AbstractAsyncContextManager[AsyncIterator[dict]]:
    """The conversation's events in this process, as dicts, while the block runs."""
    return get_runtime().listen(conversation_id)
