"""`manage.py purge_old_conversations`: delete conversations idle for longer than the retention.

Dry run by default: it says what it would delete. `--yes` deletes. A
conversation goes when its last activity (its `updated_at` and its newest
message) is older than `CHAT_RETENTION_DAYS` days (0: keep forever) or
`--days`. Each goes through `conversation_delete`, as a person's delete does,
so its messages and attachment files go with it; usage events stay in the
ledger (their conversation becomes empty), as for any deleted conversation.
Run it daily (cron, a Kubernetes CronJob).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, QuerySet
from django.utils import timezone

from conversations import services
from conversations.models import Conversation, Message

log = structlog.get_logger(__name__)


def conversations_older_than(cutoff: datetime) -> QuerySet[Conversation]:
    """Conversations with no activity since `cutoff`, and no reply being written."""
    recent = Message.objects.filter(conversation=OuterRef("pk"), created_at__gte=cutoff)
    streaming = Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
    return (
        Conversation.objects.filter(updated_at__lt=cutoff)
        .exclude(Exists(recent))
        .exclude(Exists(streaming))
        .order_by("updated_at", "id")
    )


class Command(BaseCommand):
    help = "Delete conversations idle for longer than CHAT_RETENTION_DAYS (dry run unless --yes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", type=int, default=None, help="retention in days (default: CHAT_RETENTION_DAYS)"
        )
        parser.add_argument("--yes", action="store_true", help="delete (without it: only report)")

    def handle(self, *args, days: int | None, yes: bool, **options) -> None:
        days = settings.CHAT_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError("--days must be 0 (keep forever) or more")
        if days == 0:
            self.stdout.write("Retention is off (CHAT_RETENTION_DAYS=0): nothing is purged.")
            return
        cutoff = timezone.now() - timedelta(days=days)
        old = conversations_older_than(cutoff)
        counted = old.aggregate(conversations=Count("id", distinct=True), messages=Count("messages"))
        found = f"{counted['conversations']} conversation(s) with {counted['messages']} message(s)"
        since = f"idle since before {cutoff:%Y-%m-%d %H:%M} UTC ({days} days)"
        if not yes:
            self.stdout.write(f"Dry run: {found} {since} would be deleted. Run with --yes to delete them.")
            return
        deleted = 0
        for conversation in old.iterator(chunk_size=200):
            with transaction.atomic():
                # Re-checked under a lock: a message that arrived meanwhile keeps it.
                still_old = (
                    conversations_older_than(cutoff).select_for_update().filter(pk=conversation.pk).first()
                )
                if still_old is None:
                    continue
                services.conversation_delete(conversation=still_old)
                deleted += 1
        log.info("conversations_purged", conversations=deleted, days=days, cutoff=cutoff.isoformat())
        self.stdout.write(f"Deleted {deleted} conversation(s) {since}.")
