"""Small row builders for the admin, export, seed and model tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from conversations.models import Conversation, Message, UsageEvent


def user(username: str = "alice", **fields):
    # No password: hashing is slow on purpose, and these users never log in.
    return get_user_model().objects.create_user(username=username, **fields)


def conversation(owner, **fields) -> Conversation:
    fields.setdefault("title", "A conversation")
    return Conversation.objects.create(owner=owner, **fields)


def message(conversation: Conversation, content: str = "Hello", **fields) -> Message:
    """A message a second after the conversation's previous one (order must not hang on ties)."""
    if "created_at" not in fields:
        last = conversation.messages.order_by("-created_at").values_list("created_at", flat=True).first()
        fields["created_at"] = (last or conversation.created_at) + timedelta(seconds=1)
    fields.setdefault("role", Message.Role.USER)
    return Message.objects.create(conversation=conversation, content=content, **fields)


def exchange(
    conversation: Conversation, question: str, answer: str, **reply_fields
) -> tuple[Message, Message]:
    """A user message and the assistant's reply to it, chained after the current branch."""
    previous = conversation.visible_messages().last()
    asked = message(conversation, question, parent=previous)
    reply_fields.setdefault("prompt_tokens", 10)
    reply_fields.setdefault("completion_tokens", 5)
    answered = message(conversation, answer, role=Message.Role.ASSISTANT, parent=asked, **reply_fields)
    return asked, answered


def usage(user, *, at: datetime | None = None, **fields) -> UsageEvent:
    fields.setdefault("provider", "openai")
    fields.setdefault("model", "gpt-4o-mini")
    fields.setdefault("status", UsageEvent.Status.OK)
    return UsageEvent.objects.create(user=user, created_at=at or timezone.now(), **fields)


def superuser_client(client):
    """`client` logged in as a superuser (no password, so no slow hashing)."""
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", None)
    client.force_login(admin)
    return client
