"""Events queued after commit, from any thread, and sent in order by the event loop.

Services run in the ORM's thread; `transaction.on_commit` puts their events
here without waiting for anything, and the runtime's loop sends them, one
after the other within each group (a conversation's tabs hear them as the
transactions ordered them), and the groups beside each other: under a burst
of sends, one conversation's events never wait behind a hundred others'.
A reply's first delta waits for `flushed(its group)`, so no tab hears of a
delta before its `message.created`.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import deque

import structlog
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from conversations.generation.sockets import LocalSockets

log = structlog.get_logger(__name__)


class _Lane:
    """One group's events, sent in order by one task while any are queued."""

    __slots__ = ("items", "queued", "sent", "task", "waiters")

    def __init__(self) -> None:
        self.items: deque[tuple[dict, float]] = deque()  # (message, queued at: time.monotonic)
        self.queued = 0
        self.sent = 0
        self.task: asyncio.Task | None = None
        self.waiters: list[tuple[int, asyncio.Future]] = []


class Outbox:
    def __init__(self, sockets: LocalSockets, loop: asyncio.AbstractEventLoop) -> None:
        self.sockets = sockets
        self.loop = loop
        self._lanes: dict[str, _Lane] = {}
        self._thread: int | None = None
        self._context: contextvars.Context | None = None

    def start(self) -> None:
        """Start sending; called on the loop's own thread."""
        self._thread = threading.get_ident()
        # Lanes' tasks run in the loop's context, never in that of the thread whose
        # commit queued the event (asgiref would take a hop from there for that
        # thread's own caller, and wait for it forever).
        self._context = contextvars.copy_context()

    async def close(self) -> None:
        """Send what is queued (briefly), then stop."""
        try:
            async with asyncio.timeout(2):
                await self.flushed()
        except TimeoutError:
            log.warning("outbox_not_flushed", queued=sum(len(lane.items) for lane in self._lanes.values()))
        for lane in list(self._lanes.values()):
            if lane.task is not None:
                lane.task.cancel()

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
        lane = self._lanes.get(group)
        if lane is None:
            lane = self._lanes[group] = _Lane()
        lane.items.append((message, time.monotonic()))
        lane.queued += 1
        if lane.task is None:
            lane.task = self.loop.create_task(
                self._drain(group, lane), name=f"outbox {group}", context=self._context
            )

    async def flushed(self, group: str | None = None) -> None:
        """Return once everything queued for `group` (default: every group) before this call has been sent."""
        lanes = list(self._lanes.values()) if group is None else [self._lanes.get(group)]
        waiting = []
        for lane in lanes:
            if lane is not None and lane.sent < lane.queued:
                waiter = self.loop.create_future()
                lane.waiters.append((lane.queued, waiter))
                waiting.append(waiter)
        if waiting:
            await asyncio.gather(*waiting)

    async def _drain(self, group: str, lane: _Lane) -> None:
        try:
            while lane.items:
                message, queued_at = lane.items.popleft()
                try:
                    await self.sockets.group_send(group, message, queued_at=queued_at)
                except Exception as exc:  # Redis away: this event is lost; tabs catch up on reconnect
                    log.warning("outbox_send_failed", group=group, error=type(exc).__name__)
                lane.sent += 1
                self._wake_waiters(lane)
        finally:
            lane.task = None
            if not lane.items and self._lanes.get(group) is lane:
                del self._lanes[group]  # waiters, if any, hold the lane itself

    @staticmethod
    def _wake_waiters(lane: _Lane) -> None:
        still = []
        for target, waiter in lane.waiters:
            if lane.sent >= target:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((target, waiter))
        lane.waiters = still
