"""Server events of the wire contract, encoded once and fanned out through the channel layer.

Every event about rows is sent after its transaction commits, so no client
ever hears of a row that was rolled back. A frame is JSON-encoded here, once,
and every socket of the group forwards the same text.

Every socket joins its conversation's group on the channel layer, so an event
from any process reaches it. The sockets of the publishing process itself are
handed the frame directly (`join_local`): with channels-redis a frame through
Redis costs about ten commands, and a process reads its sockets' messages one
at a time through a single receive loop (four round trips each), which caps
it at a few thousand frames a second however idle the CPU is. Only the
group's members on other processes go through the layer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.db import transaction

log = structlog.get_logger(__name__)

Deliver = Callable[[dict], Awaitable[None]]


def group_name(conversation_id: uuid.UUID | str) -> str:
    return f"conversation.{conversation_id}"


def encode(event_type: str, **payload: Any) -> str:
    return json.dumps({"type": event_type, **payload}, separators=(",", ":"), default=str)


def envelope(event_type: str, **payload: Any) -> dict:
    """A channel-layer message whose `frame` is the ready-to-send text."""
    return {"type": event_type, "frame": encode(event_type, **payload)}


async def publish(conversation_id: uuid.UUID | str, event_type: str, **payload: Any) -> None:
    await group_send(group_name(conversation_id), envelope(event_type, **payload))


def publish_on_commit(conversation_id: uuid.UUID | str, event_type: str, **payload: Any) -> None:
    """From synchronous code: send the event once the current transaction commits."""
    message = envelope(event_type, **payload)
    group = group_name(conversation_id)
    transaction.on_commit(lambda: async_to_sync(group_send)(group, message))


# --- fan-out: this process's sockets directly, the others through the layer ----


# Deltas and blocks follow each other many times a second: they may go to the group's
# members as read up to MEMBERS_TTL seconds before. A tab that joins on another process
# in the middle of a reply may so miss up to a second of deltas: it sees a gap in the
# offsets and asks `sync`, as after any reconnect (and a `sync` refreshes the members).
# Every other event reads the members afresh.
MEMBERS_TTL = 1.0
STREAM_EVENTS = frozenset({"message.delta", "message.blocks"})


class _LocalSockets:
    """The sockets of one event loop (a server process has one), by group and by channel."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Deliver]] = {}
        self.channels: dict[str, Deliver] = {}
        self.members: dict[str, tuple[float, list[str]]] = {}  # group -> (read at, channels)


_local: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LocalSockets] = weakref.WeakKeyDictionary()


def _sockets() -> _LocalSockets | None:
    try:
        return _local.get(asyncio.get_running_loop())
    except RuntimeError:  # no running loop
        return None


def join_local(group: str, channel: str, deliver: Deliver) -> None:
    """A socket of this process (already in the layer's group) takes its group's events directly."""
    sockets = _local.setdefault(asyncio.get_running_loop(), _LocalSockets())
    sockets.groups.setdefault(group, {})[channel] = deliver
    sockets.channels[channel] = deliver
    sockets.members.pop(group, None)


def leave_local(group: str, channel: str) -> None:
    sockets = _sockets()
    if sockets is None:
        return
    sockets.channels.pop(channel, None)
    sockets.members.pop(group, None)
    members = sockets.groups.get(group)
    if members is not None:
        members.pop(channel, None)
        if not members:
            del sockets.groups[group]


def forget_members(group: str) -> None:
    """Read the group's members afresh for the next event (someone joined elsewhere)."""
    sockets = _sockets()
    if sockets is not None:
        sockets.members.pop(group, None)


async def _deliver(deliver: Deliver, message: dict) -> None:
    try:
        await deliver(message)
    except Exception:  # one closing socket must not stop the others' events
        log.debug("local_delivery_failed", exc_info=True)


async def group_send(group: str, message: dict) -> None:
    """`layer.group_send`, but this process's members get the message without the layer."""
    layer = get_channel_layer()
    sockets = _sockets()
    local = dict(sockets.groups.get(group, {})) if sockets is not None else {}
    members = None
    if local:
        cached = sockets.members.get(group) if message.get("type") in STREAM_EVENTS else None
        if cached is not None and time.monotonic() - cached[0] < MEMBERS_TTL:
            members = cached[1]
        else:
            read_at = time.monotonic()
            members = await _group_members(layer, group)
            if members is not None and group in sockets.groups:
                sockets.members[group] = (read_at, members)
    if members is None:  # nobody here (or a layer whose groups can't be read): the layer does it all
        await layer.group_send(group, message)
        return
    for deliver in local.values():
        await _deliver(deliver, message)
    for channel in members:
        if channel not in local:
            try:
                await layer.send(channel, message)
            except Exception as exc:  # a full or vanished channel, as group_send would skip it
                log.warning("group_member_send_failed", channel=channel, error=type(exc).__name__)


async def send_to(channel: str, message: dict) -> None:
    """`layer.send` to one socket's channel, directly when the socket is in this process."""
    sockets = _sockets()
    deliver = sockets.channels.get(channel) if sockets is not None else None
    if deliver is not None:
        await _deliver(deliver, message)
    else:
        await get_channel_layer().send(channel, message)


async def _group_members(layer, group: str) -> list[str] | None:
    """The group's channels, as the layer's own group_send would find them (None: unknown layer)."""
    if isinstance(layer, RedisChannelLayer):
        # One ZRANGEBYSCORE on the group key, members newer than the group expiry (channels-redis 4).
        connection = layer.connection(layer.consistent_hash(group))
        names = await connection.zrangebyscore(
            layer._group_key(group), min=int(time.time()) - layer.group_expiry, max="+inf"
        )
        return [name.decode() for name in names]
    if isinstance(layer, InMemoryChannelLayer):
        return list(layer.groups.get(group, {}))
    return None


def conversation_payload(conversation) -> dict:
    return {
        "conversation": {
            "id": str(conversation.id),
            "title": conversation.display_title,
            "model": conversation.model,
            "system_prompt": conversation.system_prompt,
            "archived": conversation.archived,
            "updated_at": conversation.updated_at.isoformat(),
        }
    }


def reply_final(message) -> tuple[str, dict]:
    """The event that carries the whole final state of a finished reply."""
    from conversations.rendering import render_markdown

    base = {
        "message_id": str(message.id),
        "status": message.status,
        "content": message.content,
        "html": render_markdown(message.content),
    }
    if message.status in {"failed", "interrupted"}:
        error = {"code": message.error_code or "provider_error", "message": message.error}
        return "message.failed", {**base, "error": error}
    usage = {
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "ttft_ms": message.ttft_ms,
        "duration_ms": message.duration_ms,
    }
    return "message.completed", {**base, "finish_reason": message.finish_reason, "usage": usage}
