"""The generation pipeline: one reply streamed from the provider to every tab.

A `Generation` is owned by the server process (see worker.py), never by a
socket: closing the browser does not stop it; `stop()` does, from any tab on
any process, and closing the provider's stream stops the model itself.

Per reply it writes the database a handful of times: the row is created
`streaming` by the services, the text is checkpointed about once a second
(with a heartbeat for crash recovery), and the final row and one UsageEvent
are written once at the end. Tokens are coalesced into one `message.delta`
frame per flush interval, each carrying only the new text.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
import weakref
from dataclasses import dataclass

import structlog
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from conversations import events, services
from conversations.llm.base import ChatMessage, GenerationOptions, LLMError, LLMProvider
from conversations.llm.context import build_context
from conversations.models import storable_text
from conversations.rendering import render_markdown, stable_prefix_length
from ops import metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReplyJob:
    """What a generation needs to know about its reply, read once before it starts."""

    message_id: uuid.UUID
    conversation_id: uuid.UUID
    user_id: int
    model: str
    system_prompt: str
    history: tuple[ChatMessage, ...]
    first_exchange: bool


class Generation:
    def __init__(self, job: ReplyJob, provider: LLMProvider) -> None:
        self.job = job
        self.provider = provider
        self.task: asyncio.Task | None = None
        self._parts: list[str] = []  # everything received
        self._length = 0
        self._flushed = 0  # characters already sent as deltas
        self._pending: list[str] = []  # received, not yet sent
        self._tail = ""  # text after the last finished markdown block
        self._stable = 0  # length of the finished markdown blocks
        self._wake = asyncio.Event()
        self._done = False
        self._napping: asyncio.Future | None = None  # the pump waiting for the next flush
        self._last_flush = float("-inf")
        self._last_checkpoint = time.monotonic()
        self._checkpointing: asyncio.Task | None = None
        self._send_lock = asyncio.Lock()
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.stopped = False
        self._streaming = True  # False once the reply is being finished: too late to stop
        self._publish_failed = False  # log a channel-layer outage once, not per frame

    @property
    def message_id(self) -> str:
        return str(self.job.message_id)

    def content(self) -> str:
        return "".join(self._parts)

    # --- control -----------------------------------------------------------

    def start(self) -> asyncio.Task:
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"generation-{self.message_id}")
        return self.task

    def stop(self) -> None:
        """Stop the reply; the partial text is kept as a `cancelled` reply."""
        if self.task is not None and self._streaming and not self.stopped:
            self.stopped = True
            self.task.cancel()

    async def send_sync(self, reply_channel: str, offset: int) -> None:
        """Answer a `sync` from a socket on any process: what it misses of the
        text sent so far (what is still pending follows in the next delta)."""
        events.forget_members(events.group_name(self.job.conversation_id))  # the asker may be new
        async with self._send_lock:
            sent = self.content()[: self._flushed]
            offset = max(0, min(offset, len(sent)))
            if self._stable:
                await events.send_to(
                    reply_channel,
                    events.envelope(
                        "message.blocks",
                        message_id=self.message_id,
                        start=0,
                        end=self._stable,
                        html=render_markdown(sent[: self._stable]),
                    ),
                )
            await events.send_to(
                reply_channel,
                events.envelope(
                    "message.delta", message_id=self.message_id, offset=offset, text=sent[offset:]
                ),
            )

    # --- the run -----------------------------------------------------------

    async def run(self) -> None:
        metrics.GENERATIONS_IN_FLIGHT.inc()
        structlog.contextvars.bind_contextvars(
            user_id=self.job.user_id,
            conversation_id=str(self.job.conversation_id),
            message_id=self.message_id,
        )
        pump = asyncio.get_running_loop().create_task(self._pump())
        stream = None
        outcome, error = "complete", None
        try:
            messages = build_context(
                provider=self.provider, system_prompt=self.job.system_prompt, history=list(self.job.history)
            )
            stream = self.provider.stream(messages, model=self.job.model or None)
            async for raw in stream:
                text = storable_text(raw)  # model output is untrusted, down to the code point
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                self._parts.append(text)
                self._pending.append(text)
                self._length += len(text)
                self._wake.set()
        except asyncio.CancelledError:
            outcome = "cancelled"
        except LLMError as exc:
            outcome, error = "failed", exc
        except Exception as exc:  # a bug or an unexpected provider failure: still a clear reply state
            log.exception("generation_crashed")
            outcome, error = "failed", LLMError(f"Unexpected error: {type(exc).__name__}")
        finally:
            self._streaming = False
            if stream is not None:
                await asyncio.shield(stream.aclose())
        try:
            self._done = True
            self._wake.set()
            if self._napping is not None and not self._napping.done():
                self._napping.set_result(None)  # the last text goes now, not at the next flush
            try:
                await pump
            except Exception:  # whatever went wrong while streaming, the reply is still written
                log.exception("generation_pump_failed")
            await self._finish(outcome, error, stream)
        finally:
            metrics.GENERATIONS_IN_FLIGHT.dec()
            structlog.contextvars.unbind_contextvars("user_id", "conversation_id", "message_id")

    async def _pump(self) -> None:
        """Send pending text at most once per flush interval; checkpoint about once a second."""
        interval = settings.CHAT_FLUSH_INTERVAL_MS / 1000
        checkpoint_every = settings.CHAT_CHECKPOINT_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=checkpoint_every)
            self._wake.clear()
            delay = self._last_flush + interval - time.monotonic()
            if delay > 0 and not self._done:
                await self._nap(delay)
            if self._pending:
                await self._flush()
            if time.monotonic() - self._last_checkpoint >= checkpoint_every and not self._done:
                self._checkpoint_soon()
            if self._done and not self._pending:
                break
        if self._checkpointing is not None:
            await self._checkpointing

    async def _nap(self, delay: float) -> None:
        """Wait until the next flush is due, or until the reply ends (see run)."""
        loop = asyncio.get_running_loop()
        napping = self._napping = loop.create_future()
        handle = loop.call_later(delay, lambda: napping.done() or napping.set_result(None))
        try:
            await napping
        finally:
            handle.cancel()
            self._napping = None

    async def _flush(self) -> None:
        async with self._send_lock:
            text = "".join(self._pending)
            self._pending.clear()
            offset = self._flushed
            self._flushed += len(text)
            self._last_flush = time.monotonic()
            await self._publish("message.delta", message_id=self.message_id, offset=offset, text=text)
            await self._publish_finished_blocks(text)

    async def _publish_finished_blocks(self, text: str) -> None:
        # Only the new text is scanned and rendered: nothing here grows with the reply.
        self._tail += text
        finished = stable_prefix_length(self._tail)
        if not finished:
            return
        block, self._tail = self._tail[:finished], self._tail[finished:]
        start, self._stable = self._stable, self._stable + finished
        await self._publish(
            "message.blocks",
            message_id=self.message_id,
            start=start,
            end=self._stable,
            html=render_markdown(block),
        )

    async def _publish(self, event_type: str, **payload) -> None:
        """Send an event to the conversation's tabs, best effort.

        The channel layer (Redis) may be away for a while: the reply goes on
        and is stored whole; tabs catch up with `sync` when they reconnect.
        """
        try:
            await events.publish(self.job.conversation_id, event_type, **payload)
        except Exception as exc:
            if not self._publish_failed:
                log.warning("generation_publish_failed", event=event_type, error=type(exc).__name__)
            self._publish_failed = True
        else:
            self._publish_failed = False

    def _checkpoint_soon(self) -> None:
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        self._last_checkpoint = time.monotonic()
        self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint(self.content()))

    async def _checkpoint(self, content: str) -> None:
        try:
            await _checkpoints().write(self.job.message_id, content)
        except DatabaseError as exc:
            # The database is away: the next checkpoint or the final write catches up.
            log.warning("generation_checkpoint_failed", error=type(exc).__name__)

    async def _finish(self, outcome: str, error: LLMError | None, stream) -> None:
        finished = time.monotonic()
        content = self.content()
        result = stream.result if stream is not None else None
        usage = result.usage if result is not None else None
        prompt_tokens = usage.prompt_tokens if usage else 0
        completion_tokens = usage.completion_tokens if usage else 0
        if completion_tokens == 0 and content:
            completion_tokens = self.provider.count_tokens(content)
        ttft_ms = round((self.first_token_at - self.started) * 1000) if self.first_token_at else None
        duration_ms = round((finished - self.started) * 1000)
        finish_reason = {"cancelled": "stopped", "failed": "error"}.get(outcome) or (
            (result.finish_reason if result else "") or "stop"
        )
        # A title from the first words is written in the same database hop as the reply.
        first_title = ""
        if self.job.first_exchange and outcome == "complete" and not settings.CHAT_TITLE_FROM_MODEL:
            first_title = title_from_text(self._first_user_text())
        message, titled = await self._write_final(
            first_title,
            message_id=self.job.message_id,
            user_id=self.job.user_id,
            conversation_id=self.job.conversation_id,
            outcome=outcome,
            content=content,
            finish_reason=finish_reason,
            error_code=error.code if error else "",
            error=error.message if error else "",
            provider=self.provider.name,
            model=self.job.model or self.provider.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ttft_ms=ttft_ms,
            duration_ms=duration_ms,
        )
        if message is None:  # the row vanished (conversation deleted mid-reply)
            return
        event_type, payload = events.reply_final(message)
        await self._publish(event_type, **payload)
        self._record(outcome, error, prompt_tokens, completion_tokens, ttft_ms, duration_ms, finished)
        if titled is not None:
            await self._publish("conversation.updated", **events.conversation_payload(titled))
        elif self.job.first_exchange and outcome == "complete" and settings.CHAT_TITLE_FROM_MODEL:
            try:
                await self._title()
            except Exception:  # a title is a nicety; the reply is already stored
                log.warning("generation_title_failed", exc_info=True)

    async def _write_final(self, first_title: str, **fields):
        """reply_finish (and the first title, if any), retried while the database is away.

        Retries stop after CHAT_STALE_AFTER_SECONDS: by then the crash sweep
        treats the reply as a dead process's and keeps its last checkpoint.
        """
        deadline = time.monotonic() + settings.CHAT_STALE_AFTER_SECONDS
        delay = 0.2
        while True:
            try:
                return await database_sync_to_async(_finish_and_title)(first_title, fields)
            except DatabaseError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("generation_final_write_retry", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _record(
        self, outcome, error, prompt_tokens, completion_tokens, ttft_ms, duration_ms, finished
    ) -> None:
        provider = self.provider.name
        metrics.GENERATIONS.labels(provider=provider, outcome=outcome).inc()
        metrics.TOKENS.labels(provider=provider, direction="in").inc(prompt_tokens)
        metrics.TOKENS.labels(provider=provider, direction="out").inc(completion_tokens)
        if self.first_token_at is not None:
            metrics.TTFT.labels(provider=provider).observe(self.first_token_at - self.started)
            if completion_tokens > 1:
                metrics.TPOT.labels(provider=provider).observe(
                    (finished - self.first_token_at) / (completion_tokens - 1)
                )
        if error is not None:
            metrics.PROVIDER_ERRORS.labels(provider=provider, code=error.code).inc()
        log.info(
            "generation_finished",
            provider=provider,
            model=self.job.model or self.provider.model,
            outcome=outcome,
            error_code=error.code if error else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ttft_ms=ttft_ms,
            duration_ms=duration_ms,
        )

    def _first_user_text(self) -> str:
        return next((m.content for m in self.job.history if m.role == "user"), "")

    async def _title(self) -> None:
        """After the first exchange: a short title from the model, else the first words."""
        first_user = self._first_user_text()
        title = ""
        if settings.CHAT_TITLE_FROM_MODEL:
            title = await title_from_model(self.provider, first_user)
        conversation = await database_sync_to_async(services.conversation_autotitle)(
            conversation_id=self.job.conversation_id, title=title or title_from_text(first_user)
        )
        if conversation is not None:
            await events.publish(
                conversation.id, "conversation.updated", **events.conversation_payload(conversation)
            )


def _finish_and_title(first_title: str, fields: dict):
    """The final write and, after a first exchange, its title: one database hop (one connection)."""
    message = services.reply_finish(**fields)
    titled = None
    if first_title and message is not None:
        try:
            titled = services.conversation_autotitle(
                conversation_id=fields["conversation_id"], title=first_title
            )
        except DatabaseError:  # a title is a nicety: never retry (and so repeat) the final write for it
            log.warning("generation_title_failed", exc_info=True)
    return message, titled


class CheckpointBatch:
    """The checkpoints of every reply of this process, written together.

    Each reply asks for its checkpoint about once a second; what is asked
    within a short window goes in one statement, so a process streaming N
    replies makes a few database hops a second instead of N (each hop is a
    turn of the one thread the ORM runs in, and a new connection when
    connections are not persistent).
    """

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


_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CheckpointBatch] = weakref.WeakKeyDictionary()


def _checkpoints() -> CheckpointBatch:
    loop = asyncio.get_running_loop()
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = CheckpointBatch(window=min(0.25, settings.CHAT_CHECKPOINT_SECONDS / 4))
    return batch


TITLE_PROMPT = (
    "Write a title of at most six words for a conversation that starts with the message below. "
    "Answer with the title only, no quotes.\n\n"
)


async def title_from_model(provider: LLMProvider, first_message: str) -> str:
    stream = provider.stream(
        [ChatMessage(role="user", content=TITLE_PROMPT + first_message[:2000])],
        options=GenerationOptions(max_tokens=16),
    )
    parts: list[str] = []
    try:
        async with asyncio.timeout(10):
            async for text in stream:
                parts.append(text)
    except (LLMError, TimeoutError):
        return ""
    finally:
        await stream.aclose()
    return clean_title("".join(parts))


def clean_title(text: str) -> str:
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = line.strip().strip("\"'*#` ").removeprefix("Title:").strip()
    words = line.split()
    return " ".join(words[:8])[:80]


def title_from_text(text: str) -> str:
    words = text.split()
    title = " ".join(words[:6])
    return (title[:77] + "...") if len(title) > 80 else (title or "New conversation")
