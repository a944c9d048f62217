"""Conversations as portable documents: JSON for machines, Markdown for people.

Shared by the admin export action and the browser's download link. Message
content is exported verbatim (it is the user's data, not HTML); only the
visible branch is exported, in order, as the person sees it (the version path
the owner chose); the JSON export can add every branch (`branches=True`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from conversations.models import Conversation, Message

EXPORT_FORMAT_VERSION = 1


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def message_to_dict(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "created_at": _iso(message.created_at),
        "parent_id": str(message.parent_id) if message.parent_id else None,
        "feedback": message.feedback,
    }


def conversation_to_dict(conversation: Conversation, *, branches: bool = False) -> dict[str, Any]:
    """One conversation and its visible messages, oldest first; with `branches`, also
    `all_messages`: every message of every branch (oldest first, linked by parent_id)."""
    document = {
        "id": str(conversation.id),
        "title": conversation.title,
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "archived": conversation.archived,
        "created_at": _iso(conversation.created_at),
        "updated_at": _iso(conversation.updated_at),
        "messages": [message_to_dict(m) for m in conversation.visible_messages()],
    }
    if branches:
        everything = conversation.messages.exclude(role=Message.Role.SYSTEM).order_by("created_at", "id")
        document["all_messages"] = [message_to_dict(m) for m in everything]
    return document


def conversations_to_json(conversations: Iterable[Conversation]) -> str:
    """A JSON document holding every given conversation (a queryset or a list)."""
    document = {
        "format": "chatplatform.conversations",
        "version": EXPORT_FORMAT_VERSION,
        "conversations": [conversation_to_dict(c) for c in conversations],
    }
    return json.dumps(document, ensure_ascii=False, indent=2)


_ROLE_HEADINGS = {
    Message.Role.SYSTEM: "System",
    Message.Role.USER: "User",
    Message.Role.ASSISTANT: "Assistant",
}


def _message_heading(message: Message) -> str:
    heading = _ROLE_HEADINGS.get(message.role, message.role.capitalize())
    details = [_stamp(message.created_at)]
    if message.role == Message.Role.ASSISTANT and message.model:
        details.append(message.model)
    if message.status != Message.Status.COMPLETE:
        # A reader must know that a reply stopped short, not take it as whole.
        details.append(message.status)
    return f"## {heading} ({', '.join(details)})"


def conversation_to_markdown(conversation: Conversation) -> str:
    """One conversation as a Markdown document; message text is copied verbatim."""
    lines = [f"# {conversation.display_title}", ""]
    lines.append(f"- Created: {_stamp(conversation.created_at)}")
    lines.append(f"- Updated: {_stamp(conversation.updated_at)}")
    if conversation.model:
        lines.append(f"- Model: {conversation.model}")
    lines.append("")
    if conversation.system_prompt:
        lines += ["## System prompt", "", conversation.system_prompt.rstrip("\n"), ""]
    for message in conversation.visible_messages():
        lines += [_message_heading(message), "", message.content.rstrip("\n"), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def conversations_to_markdown(conversations: Iterable[Conversation]) -> str:
    """Several conversations in one Markdown file, separated by rules."""
    return "\n---\n\n".join(conversation_to_markdown(c) for c in conversations)
