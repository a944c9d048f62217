"""The WebSocket consumer: one method per client frame and per server event (docs/protocol.md).

The socket does no long work and holds no rows: it checks a frame's shape,
calls one service (which re-reads and locks what it needs, checks the rules
and writes, announcing after commit) and names the reply to this process's
generation runtime. Refused frames get an `error` frame; the socket stays
open. A socket whose session ends (logout, password change, deactivation,
expiry) is closed with 4403.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import structlog
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from chatplatform import tracing
from conversations import events, loop_send, selectors, services
from conversations.generation import get_runtime
from conversations.generation.hops import parallel_hop
from conversations.generation.runtime import stored_with_job
from conversations.models import is_storable_text
from conversations.services import SendRefused
from documents.selectors import sources_of
from ops import metrics

log = structlog.get_logger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_SESSION_ENDED = 4403
CLOSE_NOT_FOUND = 4404

STREAM_EVENTS = frozenset({"message.delta", "message.blocks"})
# How long live deltas wait for a sync answer before they flow again (its process may have
# died, or, busy, take seconds to answer).
SYNC_ANSWER_WAIT = 10.0


class FrameError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ConversationConsumer(AsyncWebsocketConsumer):
    conversation_id: uuid.UUID | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.syncing: dict[str, float] = {}  # message id -> when a `sync` for it was asked

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
        if not await database_sync_to_async(selectors.conversation_exists)(
            user=user, conversation_id=conversation_id
        ):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.user = user
        self.conversation_id = conversation_id
        self.runtime = get_runtime()
        await self.runtime.ensure_started()
        self.groups_joined = (events.group_name(conversation_id), events.user_group(user.pk))
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.runtime.sockets.join(group, self.channel_name, self.dispatch)
        self.session_timer = self._expire_with_session()
        metrics.SOCKETS_OPEN.inc()
        structlog.contextvars.bind_contextvars(user_id=user.pk, conversation_id=str(conversation_id))

    async def disconnect(self, code: int) -> None:
        if self.conversation_id is None:
            return
        self.session_timer.cancel()
        for group in self.groups_joined:
            self.runtime.sockets.leave(group, self.channel_name)
            with contextlib.suppress(Exception):  # Redis away: the membership expires by itself
                await self.channel_layer.group_discard(group, self.channel_name)
        metrics.SOCKETS_OPEN.dec()
        self.conversation_id = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.conversation_id is None:
            return
        frame: dict[str, Any] = {}
        try:
            frame = self._parse(text_data, bytes_data)
            handler = self.CLIENT_FRAMES.get(frame["type"])
            if handler is None:
                raise FrameError("unknown_type", f"Unknown frame type {frame['type'][:40]!r}.")
            # One server span per client frame; a reply it starts is a child of it.
            with tracing.span(
                f"ws {frame['type']}",
                kind="server",
                conversation_id=self.conversation_id,
                user_id=self.user.pk,
            ):
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
        "message.continue": "message_continue",
        "sync": "sync",
    }

    async def message_send(self, frame: dict[str, Any]) -> None:
        fields = {"content": _content(frame), "client_id": _uuid(frame, "client_id")}
        if loop_send.enabled():
            self._check_accepting()
            started = await loop_send.message_send(
                conversation_id=self.conversation_id, user=self.user, worker=self.runtime.channel, **fields
            )
            if started is not None:
                start, job = started
                await self.runtime.start(start.reply.id, job=job)
                return
        await self._begin(services.message_send, **fields)  # elsewhere, or a resend

    async def message_edit(self, frame: dict[str, Any]) -> None:
        fields = {
            "content": _content(frame),
            "message_id": _uuid(frame, "message_id"),
            "client_id": _uuid(frame, "client_id") if "client_id" in frame else uuid.uuid4(),
        }
        await self._begin(services.message_edit, **fields)

    async def message_regenerate(self, frame: dict[str, Any]) -> None:
        await self._begin(services.message_regenerate, message_id=_uuid(frame, "message_id"))

    async def message_continue(self, frame: dict[str, Any]) -> None:
        await self._begin(services.message_continue, message_id=_uuid(frame, "message_id"))

    async def generation_stop(self, frame: dict[str, Any]) -> None:
        message_id = await database_sync_to_async(services.generation_stop_target)(
            conversation_id=self.conversation_id, user=self.user
        )
        if message_id is not None:  # nothing running: stopping twice is not an error
            await self.runtime.stop(message_id)

    async def sync(self, frame: dict[str, Any]) -> None:
        message_id = _uuid(frame, "message_id")
        offset = frame.get("offset", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise FrameError("invalid", '"offset" must be a non-negative integer.')
        # Until the answer arrives, live deltas of that reply are covered by it (see chat_event).
        self.syncing[str(message_id)] = time.monotonic()
        if not await self.runtime.sync(
            message_id, offset, self.channel_name, conversation_id=self.conversation_id
        ):
            self.syncing.pop(str(message_id), None)
            raise FrameError("not_found", "No such message in this conversation.")

    async def _begin(self, service, **fields) -> None:
        """A send, edit or regenerate: the service writes (or finds a resend), the runtime streams."""
        self._check_accepting()
        start, job = await parallel_hop(stored_with_job)(
            service,
            conversation_id=self.conversation_id,
            user=self.user,
            worker=self.runtime.channel,
            **fields,
        )
        if start.created:
            await self.runtime.start(start.reply.id, job=job)
            return
        # A resend: acknowledge again, to this socket only, without a second row.
        for message in (start.user_message, start.reply):
            if message is not None:
                await self.send(text_data=events.encode("message.created", message=message.to_wire()))
        if start.reply is not None and start.reply.is_final:
            sources = await database_sync_to_async(sources_of)(message_id=start.reply.id)
            event_type, payload = events.reply_final(start.reply, sources=sources)
            await self.send(text_data=events.encode(event_type, **payload))

    def _check_accepting(self) -> None:
        if not self.runtime.accepting:
            raise FrameError("unavailable", "This server is restarting; send again in a moment.")

    # --- server events (from the channel layer, or directly from this process) ---

    async def dispatch(self, message: dict[str, Any]) -> None:
        # channels closes stale database connections before every message, in a hop
        # to the one sync thread (whose connection is the only one it can close). The
        # hot paths skip it: a delta touches no database, and every database hop of a
        # client frame is database_sync_to_async, which does that housekeeping in the
        # thread it runs on. Under a burst of sends, those hops queued one after the
        # other on that thread (docs/perf.md, round three).
        kind = message.get("type")
        if kind == events.EVENT:
            await self.chat_event(message)
        elif kind == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def chat_event(self, event: dict[str, Any]) -> None:
        """Every server event: its frame is already encoded.

        After a `sync`, live deltas of that reply that come before the answer
        are dropped: the answer (sent later on the same channel by the reply's
        process) holds their text, so the client gets one gapless run.
        """
        if self.syncing:
            message_id = event.get("message_id")
            asked = self.syncing.get(message_id) if message_id else None
            if asked is not None:
                if event.get("sync_answer") or event.get("event") not in STREAM_EVENTS:
                    if event.get("event") != "message.blocks":  # blocks come first, then the delta
                        del self.syncing[message_id]
                elif time.monotonic() - asked < SYNC_ANSWER_WAIT:
                    return
        await self.send(text_data=event["frame"])

    async def chat_session(self, event: dict[str, Any]) -> None:
        """The user's sessions changed somewhere: close this socket if its session ended."""
        session = self.scope.get("session")
        mine = getattr(session, "session_key", None)
        if event.get("session_key") and event["session_key"] != mine:
            return  # another session of the same user logged out
        if event.get("force") or event.get("session_key") or not await self._session_valid():
            log.info("socket_session_ended", reason=event.get("reason", ""))
            await self.close(code=CLOSE_SESSION_ENDED)

    # --- sessions -------------------------------------------------------------

    async def _session_valid(self) -> bool:
        session = self.scope.get("session")
        return await database_sync_to_async(selectors.session_is_valid)(
            session_key=getattr(session, "session_key", None), user_id=self.user.pk
        )

    def _expire_with_session(self) -> asyncio.TimerHandle:
        """Check the session again when it is due to expire."""
        session = self.scope.get("session")
        seconds = session.get_expiry_age() if session is not None else settings.SESSION_COOKIE_AGE
        loop = asyncio.get_running_loop()
        return loop.call_later(
            max(1, seconds), lambda: loop.create_task(self.chat_session({"reason": "expired"}))
        )


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
