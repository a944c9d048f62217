"""The generation runtime as the API uses it: start a reply, hear its events, stop it.

The API is a second caller of the chat's runtime (conversations/), so a call
gets the chat's limits, stop and accounting for free. These functions are
the only place the API touches it.

Work that outlives the request starts in a context of its own (`detached`):
WhiteNoise's middleware is synchronous, so Django runs an async view through
async_to_sync, and a task created there would inherit that call's thread
executor, which quits when the view returns; the reply's database writes
would then fail ("CurrentThreadExecutor already quit").
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import uuid
from collections.abc import AsyncIterator

from channels.db import database_sync_to_async

from conversations import events
from conversations.consumers import _reply_job
from conversations.models import Message
from conversations.worker import get_worker


def detached(coroutine) -> asyncio.Task:
    """A task in a fresh context: nothing of the request's context (its thread executor) leaks in."""
    return asyncio.get_running_loop().create_task(coroutine, context=contextvars.Context())


async def worker_channel() -> str:
    return await detached(get_worker().ensure_started())


async def start(message_id: uuid.UUID, *, options=None) -> None:
    """Start generating a `streaming` reply in this process."""
    reply = await database_sync_to_async(
        lambda: Message.objects.select_related("conversation").get(pk=message_id)
    )()
    job = await database_sync_to_async(_reply_job)(reply)

    async def run() -> None:
        worker = get_worker()
        await worker.ensure_started()
        worker.start(job)

    await detached(run())


async def stop(message_id: uuid.UUID) -> None:
    worker = get_worker()
    await worker.stop(message_id=str(message_id), worker=worker.channel)


@contextlib.asynccontextmanager
async def listen(conversation_id: uuid.UUID) -> AsyncIterator[AsyncIterator[dict]]:
    """The conversation's events in this process, as dicts, from now until the block ends."""
    queue: asyncio.Queue[dict] = asyncio.Queue()
    group = events.group_name(conversation_id)
    channel = f"api.{uuid.uuid4().hex}"

    async def deliver(message: dict) -> None:
        queue.put_nowait(json.loads(message["frame"]))

    async def iterate() -> AsyncIterator[dict]:
        while True:
            yield await queue.get()

    events.join_local(group, channel, deliver)
    try:
        yield iterate()
    finally:
        events.leave_local(group, channel)
