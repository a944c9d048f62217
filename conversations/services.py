"""Writes of the chat domain: plain functions, keyword-only, events after commit."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from conversations.events import conversation_payload, publish_on_commit
from conversations.models import Conversation

TITLE_MAX_CHARS = 200


def conversation_create(*, owner, model: str = "", system_prompt: str = "") -> Conversation:
    return Conversation.objects.create(owner=owner, model=model, system_prompt=system_prompt)


@transaction.atomic
def conversation_update(
    *,
    conversation: Conversation,
    title: str | None = None,
    model: str | None = None,
    system_prompt: str | None = None,
    archived: bool | None = None,
) -> Conversation:
    """Change what the owner may change; every open tab hears `conversation.updated`."""
    changes = {
        "title": title.strip()[:TITLE_MAX_CHARS] if title is not None else None,
        "model": model,
        "system_prompt": system_prompt,
        "archived": archived,
    }
    fields = [name for name, value in changes.items() if value is not None]
    for name in fields:
        setattr(conversation, name, changes[name])
    conversation.updated_at = timezone.now()
    conversation.save(update_fields=[*fields, "updated_at"])
    publish_on_commit(conversation.id, "conversation.updated", **conversation_payload(conversation))
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and its messages; its usage events stay in the ledger."""
    conversation.delete()
