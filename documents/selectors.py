"""Reads of attachments: only the conversation owner's, 404 for anyone else."""

from __future__ import annotations

import uuid

from django.db.models import Count, QuerySet
from django.http import Http404

from conversations.models import Conversation
from documents.models import Attachment, Citation


def attachment_list(*, conversation: Conversation) -> list[Attachment]:
    from documents.processing import fail_stale

    return fail_stale(list(Attachment.objects.filter(conversation=conversation).order_by("created_at", "id")))


def attachment_get(*, conversation: Conversation, attachment_id: uuid.UUID | str) -> Attachment:
    """The attachment of this (already owner-checked) conversation; 404 otherwise."""
    attachment = Attachment.objects.filter(pk=attachment_id, conversation=conversation).first()
    if attachment is None:
        raise Http404("No such attachment")
    return attachment


def attachments_with_chunk_counts(queryset: QuerySet[Attachment]) -> QuerySet[Attachment]:
    return queryset.annotate(chunk_count=Count("chunks"))


def sources_of(*, message_id: uuid.UUID | str) -> list[dict]:
    """A reply's citations as the `sources` of `message.completed`."""
    return [
        citation.to_wire() for citation in Citation.objects.filter(message_id=message_id).order_by("number")
    ]
