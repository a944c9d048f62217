"""A reply's text on its way to the tabs: coalesced deltas and finished markdown blocks.

The provider's tokens are `feed()` in as they come; a pump sends what is
pending at most once per flush interval (`message.delta`, new text only, with
its offset; `flush_interval`: longer when the process is busy), and, as
markdown blocks finish, their sanitised HTML once (`message.blocks`).
`answer_sync` tells a tab that reconnected what it misses. Nothing here
touches the database.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from conversations import events
from conversations.rendering import StableBlocks, render_markdown

Publish = Callable[..., Awaitable[None]]
SendTo = Callable[[str, dict], Awaitable[None]]

# How long before a frame a resting reader takes its input again (`read_pause`), so
# that the text it finds is fed before the pump wakes for that frame.
READ_LEAD = 0.005


class Relay:
    def __init__(
        self,
        message_id: str,
        *,
        publish: Publish,
        send_to: SendTo,
        initial: str = "",
        interval: Callable[[], float] | None = None,
    ) -> None:
        self.message_id = message_id
        self._interval = interval or (lambda: settings.CHAT_FLUSH_INTERVAL_MS / 1000)
        self._publish = publish
        self._send_to = send_to
        self._parts: list[str] = [initial] if initial else []
        self._flushed = len(initial)  # characters already sent as deltas (a continued reply's text was)
        self._pending: list[str] = []  # received, not yet sent
        self._blocks = StableBlocks()
        self._stable = len(self._blocks.feed(initial))  # length of the finished markdown blocks
        self._done = False
        self._waiter: asyncio.Future | None = None  # the pump, asleep
        self._text_wakes = False  # whether new text ends the pump's sleep (not while it rate-limits)
        self._last_flush = float("-inf")
        self._lock = asyncio.Lock()  # a sync answer never interleaves with a flush

    def content(self) -> str:
        return "".join(self._parts)

    def feed(self, text: str) -> None:
        self._parts.append(text)
        self._pending.append(text)
        if self._text_wakes:
            self._wake()

    def end(self) -> None:
        """No more text: the pump sends what is pending now, not at the next flush."""
        self._done = True
        self._wake()

    async def pump(self, *, every: float, tick: Callable[[], None]) -> None:
        """Send pending text at most once per flush interval until `end()`; call `tick`
        at least every `every` seconds while streaming (the checkpoint clock).

        One future and one timer per sleep, no task: this runs once per frame of
        every reply (asyncio.wait_for made a task and two callbacks each time).
        """
        loop = asyncio.get_running_loop()
        while True:
            flush_at = self._last_flush + self._interval()
            if not self._done and loop.time() < flush_at:
                # Nothing goes out before then, whatever comes meanwhile: one sleep per
                # frame while text keeps coming (not a wake-up for the first token after a
                # flush and a second sleep to its frame); end() still wakes it.
                await self._sleep(loop, flush_at, text_wakes=False)
            if not self._pending and not self._done:
                await self._sleep(loop, loop.time() + every, text_wakes=True)
            if self._pending:
                await self._flush()
            if self._done and not self._pending:
                return
            tick()

    def read_pause(self) -> float:
        """Seconds the provider's input may stay unread after a read (`Stream.gather`):
        until just before the frame after the one that sends what was just read.

        A token waits for the next frame either way: in `_pending` when it is read as it
        comes, in the kernel when it is read just before that frame. Read so, a reply's
        input costs one read (a wake-up of the loop, the parser and the reply's task) a
        frame instead of one a packet, and a token still goes out at most about one flush
        interval after it came (docs/perf.md, change 59).
        """
        now = asyncio.get_running_loop().time()
        interval = self._interval()
        due = max(now, self._last_flush + interval)  # the frame that sends what was just read
        return max(0.0, due + interval - READ_LEAD - now)

    async def answer_sync(self, reply_channel: str, offset: int) -> None:
        """What a socket that holds `offset` characters misses of the text sent so far
        (what is still pending follows in the next delta)."""
        async with self._lock:
            sent = self.content()[: self._flushed]
            offset = max(0, min(offset, len(sent)))
            if self._stable:
                html = render_markdown(sent[: self._stable])
                await self._send_to(
                    reply_channel,
                    events.envelope(
                        "message.blocks",
                        sync_answer=True,
                        message_id=self.message_id,
                        start=0,
                        end=self._stable,
                        html=html,
                    ),
                )
            await self._send_to(
                reply_channel,
                events.envelope(
                    "message.delta",
                    sync_answer=True,
                    message_id=self.message_id,
                    offset=offset,
                    text=sent[offset:],
                ),
            )

    async def _sleep(self, loop: asyncio.AbstractEventLoop, until: float, *, text_wakes: bool) -> None:
        """Until the loop's clock reads `until`, `end()`, or (with `text_wakes`) new text."""
        waiter = self._waiter = loop.create_future()
        self._text_wakes = text_wakes
        handle = loop.call_at(until, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter, self._text_wakes = None, False

    def _wake(self) -> None:
        if self._waiter is not None:
            _resolve(self._waiter)

    async def _flush(self) -> None:
        async with self._lock:
            text = "".join(self._pending)
            self._pending.clear()
            offset = self._flushed
            self._flushed += len(text)
            self._last_flush = asyncio.get_running_loop().time()
            await self._publish("message.delta", message_id=self.message_id, offset=offset, text=text)
            await self._publish_finished_blocks(text)

    async def _publish_finished_blocks(self, text: str) -> None:
        # Only the new text is scanned and rendered: nothing here grows with the reply.
        block = self._blocks.feed(text)
        if not block:
            return
        start, self._stable = self._stable, self._stable + len(block)
        await self._publish(
            "message.blocks",
            message_id=self.message_id,
            start=start,
            end=self._stable,
            html=render_markdown(block),
        )


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def flush_interval(streaming: int) -> float:
    """Seconds between a reply's deltas when this process streams `streaming` replies:
    CHAT_FLUSH_INTERVAL_MS while the process sends fewer than
    CHAT_FLUSH_FRAMES_PER_SECOND deltas a second, then longer so that it keeps to
    that many, up to CHAT_FLUSH_MAX_INTERVAL_MS (docs/perf.md: a frame is ~55 us
    of the process's CPU, a quarter of a reply's at N=100)."""
    base, longest, frames_per_second = _pace()
    return min(longest, max(base, streaming / frames_per_second))


@functools.cache
def _pace() -> tuple[float, float, int]:
    """The three settings above, read once: every read and every frame of every reply
    asks for them, and a read of Django's lazy settings is ~1 us (docs/perf.md, change 49)."""
    base = settings.CHAT_FLUSH_INTERVAL_MS / 1000
    return (
        base,
        max(base, settings.CHAT_FLUSH_MAX_INTERVAL_MS / 1000),
        max(1, settings.CHAT_FLUSH_FRAMES_PER_SECOND),
    )


@receiver(setting_changed)
def _forget_pace(*, setting: str, **kwargs) -> None:
    if setting.startswith("CHAT_FLUSH_"):
        _pace.cache_clear()
