"""Feedback on replies: the owner's "Good response" / "Bad response", one per reply."""

from __future__ import annotations

import uuid

import structlog
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from conversations.models import Conversation, Message

log = structlog.get_logger(__name__)


class FeedbackRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@transaction.atomic
def message_feedback_set(*, conversation: Conversation, message_id: uuid.UUID, rating: str) -> Message:
    """Record (or, with rating "", withdraw) the owner's verdict on a finished reply."""
    if rating not in {"", *Message.Feedback.values}:
        raise FeedbackRefused("invalid", "Feedback is good, bad, or empty to withdraw it.")
    reply = (
        Message.objects.select_for_update()
        .filter(conversation=conversation, pk=message_id, role=Message.Role.ASSISTANT)
        .first()
    )
    if reply is None:
        raise FeedbackRefused("not_found", "No such reply in this conversation.")
    if not reply.is_final:
        raise FeedbackRefused("busy", "Wait for the reply to finish before rating it.")
    reply.feedback = rating
    reply.feedback_at = timezone.now() if rating else None
    reply.save(update_fields=["feedback", "feedback_at"])
    log.info("feedback_given", conversation_id=str(conversation.id), message_id=str(reply.id), rating=rating)
    return reply


def feedback_totals(*, since) -> dict[str, int]:
    """Good and bad verdicts given since a moment (the usage page)."""
    return Message.objects.filter(feedback_at__gte=since).aggregate(
        good=Count("id", filter=Q(feedback=Message.Feedback.GOOD)),
        bad=Count("id", filter=Q(feedback=Message.Feedback.BAD)),
    )
