"""One call of POST /v1/chat/completions: rows written, reply started, events turned into OpenAI's shapes.

A call writes a conversation marked `api` (the request's turns) and, through
the chat's own send service, the last user message and a `streaming` reply,
under the chat's limits. The runtime generates the reply in this process;
the call listens to the conversation's events and answers with one JSON
body or a stream of `chat.completion.chunk` events. The reply's usage event
is written by the runtime's final write, marked `api` with the key's name
(taken from the conversation); once it is final, unless the request said
`store: true`, the conversation is deleted (the usage event stays, its links
set NULL). A client that goes away stops the reply, as
`generation.stop` does in the chat, and the same cleanup follows.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction

from api import bridge
from api import services as api_services
from api.auth import invalid_key
from api.errors import ApiError, from_provider_failure, from_refusal
from api.models import ApiKey
from api.schema import CompletionRequest
from api.services import api_key_authenticate
from conversations import services
from conversations.services import SendRefused

log = structlog.get_logger(__name__)

FINAL_EVENTS = frozenset({"message.completed", "message.failed"})
# The running pumps and stops (the event loop keeps only weak references to tasks).
_pumps: set[asyncio.Task] = set()


def idle_timeout() -> float:
    """How long a call waits for the next event before it gives up (the provider's own
    timeouts end a stuck reply long before; this only guards against a lost event)."""
    return settings.LLM_TIMEOUT * 2 + settings.CHAT_STALE_AFTER_SECONDS


@dataclass(frozen=True)
class Started:
    conversation_id: uuid.UUID
    reply_id: uuid.UUID


def _start_rows(
    *, token: str, problem: ApiError | None, request: CompletionRequest | None, worker: str
) -> tuple[ApiKey, Started]:
    """The key, then the conversation and the chat's send, in one database hop and one
    transaction: a refused send leaves no rows. A bad key answers 401 before anything the
    request itself got wrong (`problem`, found before any database work)."""
    api_key = api_key_authenticate(key=token)
    if api_key is None:
        raise invalid_key()
    if problem is not None:
        raise problem
    with transaction.atomic():
        rows = api_services.completion_conversation_create(
            user=api_key.user, api_key_name=api_key.name, request=request
        )
        start = services.message_send(
            conversation_id=rows.conversation_id,
            user=api_key.user,
            content=request.exchange[-1].content,
            client_id=rows.client_id,
            worker=worker,
        )
    return api_key, Started(conversation_id=rows.conversation_id, reply_id=start.reply.id)


class Call:
    """A started reply, the events of its conversation, and the response that consumes them.

    A task of its own (the pump) listens to the conversation until the reply is
    final and then does the cleanup, so a response that goes away (a client
    disconnecting cancels it) never leaves a reply unaccounted: it only asks the
    runtime to stop, and the pump still sees the final write.
    """

    def __init__(self, *, token: str, request: CompletionRequest | None) -> None:
        self.token = token
        self.api_key: ApiKey | None = None  # known once open() has authenticated the token
        self.request = request
        self.created = int(time.time())
        self.started: Started | None = None
        self.final: dict | None = None
        self.held = ""  # the reply's text as far as this call has passed it on
        self._queue: asyncio.Queue[dict] = asyncio.Queue()
        self._pump: asyncio.Task | None = None
        self._stopping = False

    @property
    def id(self) -> str:
        return f"chatcmpl-{self.started.reply_id.hex}" if self.started else "chatcmpl-"

    async def open(self, *, problem: ApiError | None = None) -> None:
        """Authenticate, write the rows and start the reply; an ApiError (401, 429, 404, ...)
        leaves nothing behind. `problem`: what is wrong with the request, told after the key."""
        worker, accepting = await bridge.ready()
        if not accepting:
            raise ApiError(
                503, "This server is shutting down; retry.", type="server_error", code="server_shutting_down"
            )
        try:
            self.api_key, self.started = await database_sync_to_async(_start_rows)(
                token=self.token, problem=problem, request=self.request, worker=worker
            )
        except SendRefused as refused:
            raise from_refusal(refused.code, refused.message) from refused
        # Listen before starting, so no event of the reply is missed.
        listening = asyncio.get_running_loop().create_future()
        self._pump = bridge.detached(self._listen(listening))
        _pumps.add(self._pump)
        self._pump.add_done_callback(_pumps.discard)
        try:
            await listening
            await bridge.start(self.started.reply_id, options=self.request.options)
        except BaseException:
            # The client left (or the start failed) between the rows and the reply: stop it,
            # which marks a reply no process runs `interrupted`; the pump then cleans up.
            self.abandon()
            raise
        log.info(
            "api_call_started",
            api_key_id=self.api_key.pk,
            user_id=self.api_key.user_id,
            message_id=str(self.started.reply_id),
            stream=self.request.stream,
            end_user=self.request.user or None,
        )

    async def _listen(self, listening: asyncio.Future) -> None:
        """The pump: the reply's events into the queue until the final one, then the cleanup."""
        reply_id = str(self.started.reply_id)
        try:
            async with bridge.listen(self.started.conversation_id) as events:
                listening.set_result(None)
                while True:
                    try:
                        async with asyncio.timeout(idle_timeout()):
                            event = await anext(events)
                    except TimeoutError:
                        # A lost final event: stop the reply and let the response answer 504.
                        log.warning("api_call_idle", message_id=reply_id)
                        await bridge.stop(self.started.reply_id)
                        self._queue.put_nowait({"type": "api.timeout"})
                        break
                    if event.get("message_id") != reply_id:
                        continue
                    self._queue.put_nowait(event)
                    if event.get("type") in FINAL_EVENTS:
                        break
        except BaseException as exc:
            if not listening.done():
                listening.set_exception(exc)
            raise
        finally:
            await database_sync_to_async(_after_final)(
                conversation_id=self.started.conversation_id, store=self.request.store
            )

    async def next_text(self) -> str | None:
        """The next piece of reply text, or None once the reply is final (see `final`)."""
        while self.final is None:
            event = await self._queue.get()
            kind = event.get("type")
            if kind == "message.delta":
                text = self._new_text(event)
                if text:
                    return text
            elif kind in FINAL_EVENTS:
                self.final = event
            elif kind == "api.timeout":
                raise ApiError(504, "The model did not answer in time.", type="server_error", code="timeout")
        return None

    def _new_text(self, event: dict) -> str:
        # Deltas carry their offset: pass on only what this call does not hold yet.
        offset, text = event.get("offset", 0), event.get("text", "")
        if offset > len(self.held):
            return ""  # a gap; the final event's content fills it
        fresh = text[len(self.held) - offset :]
        self.held += fresh
        return fresh

    def failure(self) -> ApiError | None:
        if self.final is None or self.final["type"] != "message.failed":
            return None
        error = self.final.get("error") or {}
        return from_provider_failure(error.get("code", ""), error.get("message", ""))

    @property
    def content(self) -> str:
        return (self.final or {}).get("content", self.held)

    @property
    def finish_reason(self) -> str:
        reason = (self.final or {}).get("finish_reason", "")
        return "length" if reason == "length" else "stop"

    @property
    def usage(self) -> dict:
        usage = (self.final or {}).get("usage") or {}
        prompt, completion = usage.get("prompt_tokens", 0) or 0, usage.get("completion_tokens", 0) or 0
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def finished(self) -> None:
        """Wait for the pump's cleanup (the rows discarded unless stored)."""
        if self._pump is not None:
            await asyncio.shield(self._pump)

    def abandon(self) -> None:
        """The client left (or the response broke) before the final event: stop the reply.

        Called from a cancelled task, so the stop runs in a task of its own; the
        pump sees the reply's final write and cleans up as always.
        """
        if self.final is not None or self.started is None or self._stopping:
            return
        self._stopping = True
        task = bridge.detached(self._stop())
        _pumps.add(task)
        task.add_done_callback(_pumps.discard)

    async def _stop(self) -> None:
        await bridge.stop(self.started.reply_id)
        log.info("api_call_abandoned", message_id=str(self.started.reply_id))

    # --- OpenAI's shapes ------------------------------------------------------------

    def completion(self) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
            "usage": self.usage,
            "system_fingerprint": None,
        }

    def chunk(self, delta: dict, finish_reason: str | None = None) -> bytes:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.request.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.request.include_usage:
            body["usage"] = None
        return sse(body)

    def usage_chunk(self) -> bytes:
        return sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.request.model,
                "system_fingerprint": None,
                "choices": [],
                "usage": self.usage,
            }
        )


def sse(body: dict) -> bytes:
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"


def _after_final(*, conversation_id: uuid.UUID, store: bool) -> None:
    if not store:
        api_services.conversation_discard(conversation_id=conversation_id)


async def complete(call: Call) -> dict:
    """The whole reply as one `chat.completion` body (raises its failure as an ApiError)."""
    try:
        while await call.next_text() is not None:
            pass
    except BaseException:
        call.abandon()
        raise
    await call.finished()  # when the answer arrives, nothing of an unstored exchange is left
    failure = call.failure()
    if failure is not None:
        raise failure
    return call.completion()


async def first_text(call: Call) -> str | None:
    """Wait for the reply's first text before answering, so a failure before it gets its own status."""
    try:
        text = await call.next_text()
    except BaseException:
        call.abandon()
        raise
    if text is None:
        failure = call.failure()
        if failure is not None:
            await call.finished()
            raise failure
    return text


async def stream(call: Call, first: str | None) -> AsyncIterator[bytes]:
    """The reply as server-sent events: a role chunk, content chunks, the finish, usage, [DONE]."""
    try:
        yield call.chunk({"role": "assistant", "content": "", "refusal": None})
        text = first
        while text is not None:
            yield call.chunk({"content": text})
            text = await call.next_text()
        failure = call.failure()
        if failure is not None:
            yield failure.sse()
            return
        yield call.chunk({}, finish_reason=call.finish_reason)
        if call.request.include_usage:
            yield call.usage_chunk()
        await call.finished()  # by [DONE], nothing of an unstored exchange is left
        yield DONE
    except ApiError as error:
        yield error.sse()
    except BaseException:  # the client went away (cancelled) or the stream broke: stop the model
        call.abandon()
        raise
