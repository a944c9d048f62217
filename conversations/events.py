"""Server events of the wire contract, encoded once and fanned out through the channel layer.

Every event about rows is sent after its transaction commits, so no client
ever hears of a row that was rolled back. A frame is JSON-encoded here, once,
and every socket of the group forwards the same text.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def group_name(conversation_id: uuid.UUID | str) -> str:
    return f"conversation.{conversation_id}"


def encode(event_type: str, **payload: Any) -> str:
    return json.dumps({"type": event_type, **payload}, separators=(",", ":"), default=str)


def envelope(event_type: str, **payload: Any) -> dict:
    """A channel-layer message whose `frame` is the ready-to-send text."""
    return {"type": event_type, "frame": encode(event_type, **payload)}


async def publish(conversation_id: uuid.UUID | str, event_type: str, **payload: Any) -> None:
    await get_channel_layer().group_send(group_name(conversation_id), envelope(event_type, **payload))


def publish_on_commit(conversation_id: uuid.UUID | str, event_type: str, **payload: Any) -> None:
    """From synchronous code: send the event once the current transaction commits."""
    message = envelope(event_type, **payload)
    group = group_name(conversation_id)
    transaction.on_commit(lambda: async_to_sync(get_channel_layer().group_send)(group, message))


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
