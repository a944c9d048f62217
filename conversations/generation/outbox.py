"""Events queued after commit, from any thread, and sent in order by the event loop.

Services run in the ORM's thread; `transaction.on_commit` puts their events
here without waiting for anything, and the runtime's loop sends them, one
after the other, as the transaction ordered them. A reply's first delta waits
for `flushed()`, so no tab hears of a delta before its `message.created`.
"""

from __future__ import annotations

import asyncio
import threading

import structlog
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from conversations.generation.sockets import LocalSockets

log = structlog.get_logger(__name__)


class Outbox:
    def __init__(self, sockets: LocalSockets, loop: asyncio.AbstractEventLoop) -> None:
        self.sockets = sockets
        self.loop = loop
        self._queue: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()
        self._queued = 0
        self._sent = 0
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self._thread: int | None = None

    def start(self) -> None:
        """Start sending; called on the loop's own thread."""
        self._thread = threading.get_ident()
        self._task = self.loop.create_task(self._drain(), name="outbox")

    async def close(self) -> None:
        """Send what is queued (briefly), then stop."""
        try:
            async with asyncio.timeout(2):
                await self.flushed()
        except TimeoutError:
            log.warning("outbox_not_flushed", queued=self._queue.qsize())
        if self._task is not None:
            self._task.cancel()

    def put(self, group: str, message: dict) -> None:
        """Queue an event for a group; callable from any thread."""
        if self.loop.is_closed() or not self.loop.is_running():
            # No loop to send it (a management command, a synchronous test): send it now.
            async_to_sync(get_channel_layer().group_send)(group, message)
        elif threading.get_ident() == self._thread:
            self._enqueue(group, message)
        else:
            self.loop.call_soon_threadsafe(self._enqueue, group, message)

    def _enqueue(self, group: str, message: dict) -> None:
        self._queued += 1
        self._queue.put_nowait((group, message))

    async def flushed(self) -> None:
        """Return once everything queued before this call has been sent."""
        if self._sent >= self._queued:
            return
        waiter = self.loop.create_future()
        self._waiters.append((self._queued, waiter))
        await waiter

    async def _drain(self) -> None:
        while True:
            group, message = await self._queue.get()
            try:
                await self.sockets.group_send(group, message)
            except Exception as exc:  # Redis away: this event is lost; tabs catch up on reconnect
                log.warning("outbox_send_failed", group=group, error=type(exc).__name__)
            self._sent += 1
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        still = []
        for target, waiter in self._waiters:
            if self._sent >= target:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((target, waiter))
        self._waiters = still
