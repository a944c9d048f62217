"""Reads of the chat domain: what a user may see, and nothing more."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from conversations.models import Conversation, Message


def conversation_list(*, user, query: str = "", archived: bool = False) -> QuerySet[Conversation]:
    """The user's conversations, newest first; `query` matches titles and message content."""
    conversations = Conversation.objects.filter(owner=user, archived=archived)
    query = query.strip()
    if query:
        in_messages = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
        conversations = conversations.filter(Q(title__icontains=query) | Exists(in_messages))
    return conversations.order_by("-updated_at")


def conversation_get(*, user, conversation_id: uuid.UUID | str) -> Conversation:
    """The conversation if `user` owns it; 404 otherwise (the same for missing and foreign ids)."""
    conversation = Conversation.objects.filter(pk=conversation_id, owner=user).first()
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


def conversation_history(
    *, conversation: Conversation, before: uuid.UUID | str | None = None, limit: int | None = None
) -> tuple[list[Message], bool]:
    """A page of the visible branch, oldest first, ending just before `before`
    (or at the newest message). Returns (messages, has_earlier)."""
    limit = limit or settings.CHAT_HISTORY_PAGE
    ids = conversation.visible_message_ids()
    if before is not None:
        try:
            ids = ids[: ids.index(uuid.UUID(str(before)))]
        except ValueError:
            ids = []
    page = ids[-limit:]
    by_id = Message.objects.in_bulk(page)
    return [by_id[i] for i in page if i in by_id], len(ids) > len(page)
