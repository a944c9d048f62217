"""One reply, streamed from the provider to every tab and written once at the end.

A `Reply` is owned by the runtime of the process that started it, never by
a socket: closing the browser does not stop it; `stop()` does (from any tab
on any process, through the runtime), and closing the provider's stream
stops the model itself. While it streams, its text goes out through its
`Relay` and is checkpointed about once a second through the runtime's
batch; its final state and one UsageEvent are written once (final.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError

from chatplatform import tracing
from conversations import events, services
from conversations.generation import final
from conversations.generation.job import ReplyJob
from conversations.generation.relay import Relay, flush_interval
from conversations.llm.base import LLMError, LLMProvider
from conversations.llm.context import build_context
from conversations.models import storable_text
from ops import metrics

if TYPE_CHECKING:
    from conversations.generation.runtime import Runtime

log = structlog.get_logger(__name__)


class ShutdownInterrupted(LLMError):
    code = "interrupted"
    default_message = "The server restarted while this reply was being written; the text so far is kept."


class Reply:
    def __init__(self, job: ReplyJob, provider: LLMProvider, runtime: Runtime) -> None:
        self.job = job
        self.provider = provider
        self.runtime = runtime
        self.message_id = str(job.message_id)
        self.group = events.group_name(job.conversation_id)  # once: a UUID's str is ~2 us, a reply ~50 frames
        self.relay = Relay(
            self.message_id,
            publish=self._publish,
            send_to=runtime.sockets.send_to,
            initial=job.initial_text,
            interval=lambda: flush_interval(len(runtime.replies)),
        )
        self.task: asyncio.Task | None = None
        self.final_event: dict | None = None  # the final state's envelope, once written
        self.stopped_by: str | None = None  # "user" (cancelled) or "shutdown" (interrupted)
        self._streaming = True  # False once the reply is being finished: too late to stop
        self._checkpoint_every = settings.CHAT_CHECKPOINT_SECONDS  # read once: the pump asks every frame
        self._last_checkpoint = time.monotonic()
        self._checkpointing: asyncio.Task | None = None
        self._publish_failed = False  # log a channel-layer outage once, not per frame
        self.started = time.monotonic()
        self.first_token_at: float | None = None
        self.span = tracing.NO_SPAN  # the reply's trace span while it runs (chatplatform.tracing)

    def start(self) -> asyncio.Task:
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"reply-{self.message_id}")
        return self.task

    def stop(self, reason: str = "user") -> bool:
        """Stop streaming; the text so far is kept. False when it is already finishing."""
        if self.task is None or not self._streaming or self.stopped_by is not None:
            return False
        self.stopped_by = reason
        self.task.cancel()
        return True

    def _stopped_status(self) -> tuple[str, LLMError | None]:
        if self.stopped_by == "shutdown":
            return "interrupted", ShutdownInterrupted()
        return "cancelled", None

    def _stopped_here(self) -> None:
        """A stop's cancellation was caught: the task goes on to finish the reply."""
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()

    async def run(self) -> None:
        with tracing.span(
            "chat.generation",
            conversation_id=self.job.conversation_id,
            message_id=self.message_id,
            user_id=self.job.user_id,
            provider=self.provider.name,
            attributes={"gen_ai.request.model": self.job.model or self.provider.model},
        ) as self.span:
            await self._run()

    async def _run(self) -> None:
        metrics.GENERATIONS_IN_FLIGHT.inc()
        structlog.contextvars.bind_contextvars(
            user_id=self.job.user_id,
            conversation_id=str(self.job.conversation_id),
            message_id=self.message_id,
        )
        try:
            pump = asyncio.get_running_loop().create_task(self._pump())
            status, error, stream = await self._stream()
            self.relay.end()
            try:
                await pump
                if self._checkpointing is not None:
                    await self._checkpointing
            except Exception:  # whatever went wrong while streaming, the reply is still written
                log.exception("generation_pump_failed")
            await self._finish(status, error, stream)
        finally:
            metrics.GENERATIONS_IN_FLIGHT.dec()
            structlog.contextvars.unbind_contextvars("user_id", "conversation_id", "message_id")

    async def _pump(self) -> None:
        """The relay's pump, once the tabs have heard `message.created`: deltas never come
        first. The provider's request does not wait for that (the event's Redis round
        trip and its lane were on every reply's first-token path)."""
        await self.runtime.outbox.flushed(self.group)
        await self.relay.pump(every=self._checkpoint_every, tick=self._checkpoint_due)

    async def _stream(self):
        """Feed the provider's text to the relay until it ends, fails or is stopped."""
        stream = None
        status, error = "complete", None
        if self.stopped_by is not None:
            self._streaming = False
            return (*self._stopped_status(), None)
        try:
            messages = build_context(
                provider=self.provider,
                system_prompt=self.job.system_prompt,
                history=list(self.job.history),
                max_output_tokens=self.job.options.max_tokens,
            )
            stream = self.provider.stream(messages, model=self.job.model or None, options=self.job.options)
            stream.gather = self.relay.read_pause
            async for raw in stream:
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                    self.span.add_event("first_token")
                self.relay.feed(storable_text(raw))  # model output is untrusted, down to the code point
        except asyncio.CancelledError:
            self._stopped_here()
            status, error = self._stopped_status()
        except LLMError as exc:
            status, error = "failed", exc
        except Exception as exc:  # a bug or an unexpected provider failure: still a clear reply state
            log.exception("generation_crashed")
            status, error = "failed", LLMError(f"Unexpected error: {type(exc).__name__}")
        finally:
            self._streaming = False
            if stream is not None:
                await asyncio.shield(stream.aclose())
        return status, error, stream

    async def _finish(self, status: str, error: LLMError | None, stream) -> None:
        finished = time.monotonic()
        outcome = self._outcome(status, error, stream, finished)
        measured = {
            "chat.outcome": outcome.status,
            "chat.finish_reason": outcome.finish_reason,
            "chat.ttft_ms": outcome.ttft_ms,
            "chat.duration_ms": outcome.duration_ms,
            "chat.error_code": outcome.error.code if outcome.error else None,
            "gen_ai.usage.input_tokens": outcome.prompt_tokens,
            "gen_ai.usage.output_tokens": outcome.completion_tokens,
        }
        self.span.set_attributes({key: value for key, value in measured.items() if value is not None})
        message, titled = await final.write_final(self.job, outcome, provider=self.provider)
        if message is None:  # the row vanished (conversation deleted mid-reply)
            return
        event_type, payload = events.reply_final(message, sources=self.job.sources)
        # From here a sync is answered with the final state, not the relay's text.
        self.final_event = events.envelope(event_type, **payload)
        await self._publish(event_type, **payload)
        final.record(
            self.job, outcome, provider=self.provider, first_token_at=self.first_token_at, finished=finished
        )
        if titled is not None:
            await self._publish("conversation.updated", **events.conversation_payload(titled))
        elif final.wants_model_title(self.job, outcome):
            try:
                await self._model_title()
            except Exception:  # a title is a nicety; the reply is already stored
                log.warning("generation_title_failed", exc_info=True)

    def _outcome(self, status: str, error: LLMError | None, stream, finished: float) -> final.Outcome:
        content = self.relay.content()
        result = stream.result if stream is not None else None
        usage = result.usage if result is not None else None
        completion_tokens = usage.completion_tokens if usage else 0
        new_text = content[len(self.job.initial_text) :]
        if completion_tokens == 0 and new_text:
            completion_tokens = self.provider.count_tokens(new_text)
        finish_reason = {"cancelled": "stopped", "failed": "error", "interrupted": "interrupted"}.get(
            status
        ) or ((result.finish_reason if result else "") or "stop")
        return final.Outcome(
            status=status,
            error=error,
            content=content,
            finish_reason=finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=completion_tokens,
            ttft_ms=round((self.first_token_at - self.started) * 1000) if self.first_token_at else None,
            duration_ms=round((finished - self.started) * 1000),
        )

    async def _model_title(self) -> None:
        first_user = self.job.first_user_text
        title = await final.title_from_model(self.provider, first_user)
        conversation = await database_sync_to_async(services.conversation_autotitle)(
            conversation_id=self.job.conversation_id, title=title or final.title_from_text(first_user)
        )
        if conversation is not None:
            await self._publish("conversation.updated", **events.conversation_payload(conversation))

    # --- checkpoints and publishing -----------------------------------------

    def _checkpoint_due(self) -> None:
        if not self._streaming or time.monotonic() - self._last_checkpoint < self._checkpoint_every:
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        self._last_checkpoint = time.monotonic()
        self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint(self.relay.content()))

    async def _checkpoint(self, content: str) -> None:
        try:
            await self.runtime.checkpoints.write(self.job.message_id, content)
        except DatabaseError as exc:
            # The database is away: the next checkpoint or the final write catches up.
            log.warning("generation_checkpoint_failed", error=type(exc).__name__)

    async def _publish(self, event_type: str, **payload) -> None:
        """Send an event to the conversation's tabs, best effort.

        The channel layer (Redis) may be away for a while: the reply goes on
        and is stored whole; tabs catch up with `sync` when they reconnect.
        """
        try:
            await self.runtime.publish(
                self.group,
                events.envelope(event_type, **payload),
                stream=event_type in {"message.delta", "message.blocks"},
            )
        except Exception as exc:
            if not self._publish_failed:
                log.warning("generation_publish_failed", event=event_type, error=type(exc).__name__)
            self._publish_failed = True
        else:
            self._publish_failed = False
