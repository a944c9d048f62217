"""The checkpoints of every reply of this process, written together.

Each reply asks for its checkpoint about once a second; what is asked within
a short window goes in one statement, so a process streaming N replies makes
a few database hops a second instead of N (each hop is a turn of the one
thread the ORM runs in). A checkpoint also refreshes the reply's heartbeat,
which tells the crash sweep that this process is alive.
"""

from __future__ import annotations

import asyncio
import uuid

from channels.db import database_sync_to_async

from conversations import services


class CheckpointBatch:
    def __init__(self, window: float) -> None:
        self.window = window
        self._pending: dict[uuid.UUID, str] = {}
        self._written: asyncio.Future | None = None
        self._task: asyncio.Task | None = None

    async def write(self, message_id: uuid.UUID, content: str) -> None:
        """Checkpoint this reply with the others of the window; raises what the write raised."""
        self._pending[message_id] = content
        if self._written is None:
            loop = asyncio.get_running_loop()
            self._written = loop.create_future()
            self._written.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
            self._task = loop.create_task(self._write_later(self._written))
        await asyncio.shield(self._written)

    async def _write_later(self, written: asyncio.Future) -> None:
        await asyncio.sleep(self.window)
        contents, self._pending, self._written = self._pending, {}, None
        try:
            await database_sync_to_async(services.replies_checkpoint)(contents=contents)
        except Exception as exc:
            written.set_exception(exc)
        else:
            written.set_result(None)
