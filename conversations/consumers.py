"""The WebSocket consumer: one method per client frame and per server event (docs/protocol.md).

The socket does no long work: it checks a frame (shape, ownership, limits),
calls one service that writes and announces after commit, and hands the reply
to this process's worker. Refused frames get an `error` frame; the socket
stays open.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import structlog
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations import events, services
from conversations.llm.base import ChatMessage
from conversations.models import Conversation, Message, is_storable_text
from conversations.pipeline import ReplyJob
from conversations.services import ReplyStart, SendRefused
from conversations.worker import get_worker
from ops import metrics

log = structlog.get_logger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ConversationConsumer(AsyncWebsocketConsumer):
    conversation: Conversation | None = None

    # --- lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        # Accept first so that the close code reaches the browser (a refused
        # handshake only shows a generic failure).
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        self.conversation = await database_sync_to_async(
            Conversation.objects.filter(pk=conversation_id, owner=user).first
        )()
        if self.conversation is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.group = events.group_name(self.conversation.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        events.join_local(self.group, self.channel_name, self.forward)
        self.worker = get_worker()
        await self.worker.ensure_started()
        metrics.SOCKETS_OPEN.inc()
        structlog.contextvars.bind_contextvars(user_id=user.pk, conversation_id=str(self.conversation.id))

    async def disconnect(self, code: int) -> None:
        if self.conversation is not None:
            events.leave_local(self.group, self.channel_name)
            await self.channel_layer.group_discard(self.group, self.channel_name)
            metrics.SOCKETS_OPEN.dec()
            self.conversation = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.conversation is None:
            return
        frame: dict[str, Any] = {}
        try:
            frame = self._parse(text_data, bytes_data)
            handler = self.CLIENT_FRAMES.get(frame["type"])
            if handler is None:
                raise FrameError("unknown_type", f"Unknown frame type {frame['type'][:40]!r}.")
            await getattr(self, handler)(frame)
        except (FrameError, SendRefused) as refused:
            payload = {"code": refused.code, "message": refused.message}
            if isinstance(frame.get("client_id"), str):
                payload["client_id"] = frame["client_id"]
            await self.send(text_data=events.encode("error", **payload))

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        raw = text_data if text_data is not None else bytes_data
        if raw is None:
            raise FrameError("invalid", "Empty frame.")
        size = len(raw.encode()) if isinstance(raw, str) else len(raw)
        if size > settings.CHAT_MAX_FRAME_BYTES:
            raise FrameError("too_large", f"Frames are limited to {settings.CHAT_MAX_FRAME_BYTES} bytes.")
        try:
            frame = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
            raise FrameError("bad_json", "The frame is not valid JSON.") from exc
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise FrameError("invalid", 'A frame is a JSON object with a string "type".')
        return frame

    # --- client frames -----------------------------------------------------

    CLIENT_FRAMES = {
        "message.send": "message_send",
        "generation.stop": "generation_stop",
        "message.regenerate": "message_regenerate",
        "message.edit": "message_edit",
        "sync": "sync",
    }

    async def message_send(self, frame: dict[str, Any]) -> None:
        content = _content(frame)
        client_id = _uuid(frame, "client_id")
        start, job = await database_sync_to_async(_start)(
            services.message_send,
            conversation=self.conversation,
            user=self.scope["user"],
            content=content,
            client_id=client_id,
            worker=self.worker.channel,
        )
        await self._begin(start, job)

    async def message_edit(self, frame: dict[str, Any]) -> None:
        content = _content(frame)
        message_id = _uuid(frame, "message_id")
        client_id = _uuid(frame, "client_id") if "client_id" in frame else uuid.uuid4()
        start, job = await database_sync_to_async(_start)(
            services.message_edit,
            conversation=self.conversation,
            user=self.scope["user"],
            message_id=message_id,
            content=content,
            client_id=client_id,
            worker=self.worker.channel,
        )
        await self._begin(start, job)

    async def message_regenerate(self, frame: dict[str, Any]) -> None:
        message_id = _uuid(frame, "message_id")
        start, job = await database_sync_to_async(_start)(
            services.message_regenerate,
            conversation=self.conversation,
            user=self.scope["user"],
            message_id=message_id,
            worker=self.worker.channel,
        )
        await self._begin(start, job)

    async def generation_stop(self, frame: dict[str, Any]) -> None:
        reply = await database_sync_to_async(
            Message.objects.filter(conversation=self.conversation, status=Message.Status.STREAMING).first
        )()
        if reply is None:
            return  # nothing running: stopping twice is not an error
        await self.worker.stop(message_id=str(reply.id), worker=reply.worker)

    async def sync(self, frame: dict[str, Any]) -> None:
        message_id = _uuid(frame, "message_id")
        offset = frame.get("offset", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise FrameError("invalid", '"offset" must be a non-negative integer.')
        message = await database_sync_to_async(
            Message.objects.filter(conversation=self.conversation, pk=message_id).first
        )()
        if message is None:
            raise FrameError("not_found", "No such message in this conversation.")
        if message.status == Message.Status.STREAMING:
            await self.worker.sync(
                message_id=str(message.id),
                worker=message.worker,
                offset=offset,
                reply_channel=self.channel_name,
            )
            return
        # Finished: the final state answers everything the client missed.
        await self._send_final(message)

    async def _begin(self, start: ReplyStart, job: ReplyJob | None) -> None:
        if not start.created:
            # A resend: acknowledge again, to this socket only, without a second row.
            for message in (start.user_message, start.reply):
                if message is not None:
                    await self.send(text_data=events.encode("message.created", message=message.to_wire()))
            if start.reply is not None and start.reply.is_final:
                await self._send_final(start.reply)
            return
        self.worker.start(job)

    async def _send_final(self, message: Message) -> None:
        event_type, payload = events.reply_final(message)
        await self.send(text_data=events.encode(event_type, **payload))

    # --- server events (from the channel layer, or directly from this process; already encoded)

    async def forward(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["frame"])

    message_created = forward
    message_delta = forward
    message_blocks = forward
    message_completed = forward
    message_failed = forward
    conversation_updated = forward


def _content(frame: dict[str, Any]) -> str:
    content = frame.get("content")
    if not isinstance(content, str):
        raise FrameError("invalid", '"content" must be a string.')
    if not is_storable_text(content):
        raise FrameError("invalid", '"content" holds a NUL or an unpaired surrogate, which cannot be stored.')
    if not content.strip():
        raise FrameError("empty", "The message is empty.")
    if len(content) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise FrameError(
            "too_large", f"Messages are limited to {settings.CHAT_MAX_MESSAGE_CHARS} characters."
        )
    return content


def _uuid(frame: dict[str, Any], field: str) -> uuid.UUID:
    value = frame.get(field)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return uuid.UUID(value)
    raise FrameError("invalid", f'"{field}" must be a UUID string.')


def _start(service, **fields) -> tuple[ReplyStart, ReplyJob | None]:
    """A send, edit or regenerate and, for a new reply, what its generation needs: one database hop."""
    start = service(**fields)
    return start, (_reply_job(start.reply) if start.created else None)


def _reply_job(reply: Message) -> ReplyJob:
    conversation = reply.conversation
    history = services.reply_history(reply=reply)
    return ReplyJob(
        message_id=reply.id,
        conversation_id=conversation.id,
        user_id=conversation.owner_id,
        model=conversation.model,
        system_prompt=conversation.system_prompt,
        history=tuple(ChatMessage(role=m.role, content=m.content) for m in history),
        first_exchange=not conversation.title and len(history) == 1,
    )
