"""Server events of the wire contract: their payloads, their one envelope, and how they are sent.

Every event is JSON-encoded once, here, and travels in one envelope type,
`chat.event`, whose `frame` is the ready-to-send text: a socket forwards it
as it is, so a new event type needs no handler on any process. Events about
rows go out after their transaction commits (`publish_on_commit`), so no
client hears of a row that was rolled back; they are queued on this
process's outbox and sent by its event loop (conversations/generation/).

Sessions: every socket also joins its user's group. `end_user_sessions`
asks each of that user's sockets, on every process, to check its session
again (logout, password change, deactivation) or to close at once.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.db import transaction

EVENT = "chat.event"  # the one envelope type of every server event
SESSION = "chat.session"  # to a user's sockets: check your session (or close)


def group_name(conversation_id: uuid.UUID | str) -> str:
    return f"conversation.{conversation_id}"


def user_group(user_id: int | str) -> str:
    return f"user.{user_id}"


def encode(event_type: str, **payload: Any) -> str:
    return json.dumps({"type": event_type, **payload}, separators=(",", ":"), default=str)


def envelope(event_type: str, *, sync_answer: bool = False, **payload: Any) -> dict:
    """A channel-layer message whose `frame` is the ready-to-send text.

    `event` and `message_id` let a socket route it without decoding the frame;
    `sync_answer` marks the answer to a `sync` (see the consumer's `chat_event`).
    """
    message = {"type": EVENT, "event": event_type, "frame": encode(event_type, **payload)}
    if "message_id" in payload:
        message["message_id"] = payload["message_id"]
    if sync_answer:
        message["sync_answer"] = True
    return message


async def publish(conversation_id: uuid.UUID | str, event_type: str, **payload: Any) -> None:
    """From the event loop: send an event to every socket of the conversation, on every process."""
    from conversations.generation import get_runtime

    await get_runtime().publish(group_name(conversation_id), envelope(event_type, **payload))


def publish_on_commit(conversation_id: uuid.UUID | str, event_type: str, **payload: Any) -> None:
    """From synchronous code: send the event once the current transaction commits."""
    _on_commit(group_name(conversation_id), envelope(event_type, **payload))


def post_committed(conversation_id: uuid.UUID | str, event_type: str, **payload: Any) -> None:
    """From the event loop, once what the event tells is committed (a send on the loop,
    conversations/loop_send.py; `publish_on_commit` needs Django's transaction): queued
    in the runtime's outbox as `publish_on_commit`'s are, so a reply's first delta still
    waits for it."""
    from conversations.generation import get_runtime

    get_runtime().post(group_name(conversation_id), envelope(event_type, **payload))


def end_user_sessions(
    user_id: int, *, reason: str, force: bool = False, session_key: str | None = None
) -> None:
    """After commit, close the user's open sockets (code 4403) whose session ended, on every process.

    With `session_key`, only the sockets of that session close (a logout);
    with `force`, all of them; otherwise each checks its session again
    (password changed, account deactivated).
    """
    message = {"type": SESSION, "reason": reason, "force": force, "session_key": session_key}
    _on_commit(user_group(user_id), message)


def _on_commit(group: str, message: dict) -> None:
    from conversations.generation import get_runtime

    runtime = get_runtime()
    transaction.on_commit(lambda: runtime.post(group, message))


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


def reply_final(message, *, sources: list[dict] | tuple[dict, ...] | None = None) -> tuple[str, dict]:
    """The event that carries the whole final state of a finished reply (with the
    attachments' passages it was given, as `sources`, when the caller has them)."""
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
    # `model`: what wrote it (the page shows it under the reply).
    completed = {**base, "finish_reason": message.finish_reason, "model": message.model, "usage": usage}
    if sources is not None:
        completed["sources"] = list(sources)
    return "message.completed", completed
