"""Conversations, their messages, and the usage ledger."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from chatplatform.ids import uuid7

# PostgreSQL text cannot hold NUL, and UTF-8 cannot encode an unpaired surrogate
# (which JSON's "\ud800" decodes to): such text is refused from users and
# replaced in model output before it reaches the database or a socket.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable_text(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def storable_text(text: str) -> str:
    """`text` with every character the database cannot store replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


class Source(models.TextChoices):
    """Where a conversation or a provider call came from: the chat UI or the HTTP API (api/)."""

    CHAT = "chat"
    API = "api"


class Conversation(models.Model):
    # Time-ordered (chatplatform/ids.py): the indexes that begin with a conversation's
    # key keep its recent conversations' entries together.
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # No index of its own: the two indexes below begin with it (every row write
    # maintains each index, docs/perf.md change 35).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations", db_index=False
    )
    title = models.CharField(max_length=200, blank=True, default="")
    # Blank means "the provider's default model".
    model = models.CharField(max_length=200, blank=True, default="")
    system_prompt = models.TextField(blank=True, default="")
    archived = models.BooleanField(default=False)
    # Pinned conversations head the sidebar, whatever their age.
    pinned = models.BooleanField(default=False)
    # An API call with `store: true` keeps its exchange as a conversation marked `api`.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.CHAT)
    # For an API call's conversation: the key's name, which its usage events carry.
    api_key_name = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    # The version path the owner chose ("Previous version" / "Next version"):
    # the branch ending at `current_leaf` is shown until a message newer than
    # `branch_chosen_at` exists; a send, edit or regenerate then shows its own
    # branch again without any service having to move this pointer.
    current_leaf = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    branch_chosen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["owner", "-updated_at"], name="conversation_owner_recent"),
            # The sidebar's pages: (pinned, updated_at, id) keyset per owner and shelf.
            models.Index(
                fields=["owner", "archived", "-pinned", "-updated_at", "-id"], name="conversation_sidebar"
            ),
        ]
        ordering = ["-updated_at"]

    def __str__(self) -> str:
        return self.title or "New conversation"

    @property
    def display_title(self) -> str:
        return str(self)

    def visible_messages(self) -> models.QuerySet[Message]:
        """The current branch, oldest first: the latest message and its ancestors.

        Edits and regenerations start new branches whose parent is where they
        fork; the old branch stays in the table but is not on this path.
        """
        return Message.objects.filter(pk__in=self.visible_message_ids()).order_by("created_at", "id")

    def visible_message_ids(self, *, leaf: uuid.UUID | None = None) -> list[uuid.UUID]:
        """Ids of the branch ending at `leaf` (default: the shown leaf), oldest first.

        The shown leaf is the one the owner chose with the version switcher, as
        long as no message was written after that choice; otherwise the newest
        message (which a send, edit or regenerate just made).
        """
        rows = list(
            Message.objects.filter(conversation=self)
            .order_by("created_at", "id")
            .values_list("id", "parent_id", "created_at")
        )
        if not rows:
            return []
        parents = {row[0]: row[1] for row in rows}
        if leaf is None:
            leaf = self.shown_leaf_id(rows)
        path: list[uuid.UUID] = []
        seen: set[uuid.UUID] = set()
        current: uuid.UUID | None = leaf
        while current is not None and current not in seen:
            path.append(current)
            seen.add(current)
            current = parents.get(current)
        path.reverse()
        return path

    def shown_leaf_id(self, rows: list[tuple[uuid.UUID, uuid.UUID | None, datetime]]) -> uuid.UUID:
        """The leaf of the shown branch among `rows` (id, parent_id, created_at; oldest first).

        The send reads the same rule in SQL (conversations/send_state.py)."""
        newest_id, _, newest_at = rows[-1]
        chosen = self.current_leaf_id
        if chosen is None or self.branch_chosen_at is None or newest_at > self.branch_chosen_at:
            return newest_id
        return chosen if any(row[0] == chosen for row in rows) else newest_id

    def set_pinned(self, pinned: bool) -> None:
        """Pin or unpin; the conversation keeps its place in time (updated_at is left alone)."""
        Conversation.objects.filter(pk=self.pk).update(pinned=pinned)
        self.pinned = pinned


class MessageQuerySet(models.QuerySet):
    def interrupt_stale(
        self, *, older_than: datetime | None = None, alive: Callable[[set[str]], set[str]] | None = None
    ) -> list[Message]:
        """Mark `streaming` replies whose owner stopped checkpointing as `interrupted`.

        A live generation refreshes `heartbeat_at` at every checkpoint, so a
        reply whose heartbeat is older than the staleness window belongs to a
        process that died; its checkpointed text is kept. `alive` names, of the
        stale replies' processes, those known to be alive (busy, not dead): their
        replies are left alone.
        """
        if older_than is None:
            older_than = timezone.now() - timedelta(seconds=settings.CHAT_STALE_AFTER_SECONDS)
        stale = list(
            self.filter(status=Message.Status.STREAMING, heartbeat_at__lt=older_than).values_list(
                "id", "worker"
            )
        )
        living = alive({worker for _, worker in stale if worker}) if alive and stale else set()
        return self._interrupt([pk for pk, worker in stale if worker not in living])

    def interrupt_orphan(self, *, message_id, worker: str) -> Message | None:
        """Mark one `streaming` reply `interrupted` now: its owner process `worker` is gone."""
        ids = list(
            self.filter(pk=message_id, status=Message.Status.STREAMING, worker=worker).values_list(
                "id", flat=True
            )
        )
        interrupted = self._interrupt(ids)
        return interrupted[0] if interrupted else None

    def _interrupt(self, ids: list) -> list[Message]:
        if not ids:
            return []
        # The status filter again: a reply that finished meanwhile is left alone.
        self.filter(pk__in=ids, status=Message.Status.STREAMING).update(
            status=Message.Status.INTERRUPTED,
            finish_reason="interrupted",
            error_code="interrupted",
            error="The server stopped while this reply was being written.",
            worker="",
            updated_at=timezone.now(),
        )
        return list(self.filter(pk__in=ids, status=Message.Status.INTERRUPTED))


_ROLES = ["system", "user", "assistant"]
_STATUSES = ["pending", "streaming", "complete", "cancelled", "failed", "interrupted"]


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        PENDING = "pending"
        STREAMING = "streaming"
        COMPLETE = "complete"
        CANCELLED = "cancelled"
        FAILED = "failed"
        INTERRUPTED = "interrupted"

    class Feedback(models.TextChoices):
        GOOD = "good", "Good response"
        BAD = "bad", "Bad response"

    # Time-ordered, as the conversation's (chatplatform/ids.py).
    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    # No index of its own: `message_conversation_time` begins with it.
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    # The browser's idempotency key for a send: a resend is acknowledged, never duplicated.
    client_id = models.UUIDField(null=True, blank=True)
    # The message this one follows on its branch (edits and regenerations fork here).
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    model = models.CharField(max_length=200, blank=True, default="")
    finish_reason = models.CharField(max_length=32, blank=True, default="")
    error_code = models.CharField(max_length=32, blank=True, default="")
    error = models.TextField(blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    # The owner's "Good response" / "Bad response" on a reply (blank: none given).
    feedback = models.CharField(max_length=8, choices=Feedback.choices, blank=True, default="")
    feedback_at = models.DateTimeField(null=True, blank=True)
    # While streaming: the channel of the process generating this reply (stop and
    # sync requests go there) and when it last checkpointed (crash recovery).
    worker = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conversation_time"),
            # The admin's list of every message, in this order: a page reads 50 rows, not
            # the whole table sorted (docs/perf.md, change 34).
            models.Index(fields=["created_at", "id"], name="message_time"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=Q(client_id__isnull=False),
                name="message_client_id_unique_per_conversation",
            ),
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status="streaming"),
                name="one_streaming_reply_per_conversation",
            ),
            models.CheckConstraint(condition=Q(status__in=_STATUSES), name="message_status_valid"),
            models.CheckConstraint(condition=Q(role__in=_ROLES), name="message_role_valid"),
            models.CheckConstraint(
                condition=Q(feedback__in=["", "good", "bad"]), name="message_feedback_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def is_final(self) -> bool:
        return self.status not in {self.Status.PENDING, self.Status.STREAMING}

    def to_wire(self) -> dict:
        """The `message` object of `message.created` (docs/protocol.md)."""
        return {
            "id": str(self.id),
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "client_id": str(self.client_id) if self.client_id else None,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "model": self.model,
            "created_at": self.created_at.isoformat(),
        }


class UsageEventQuerySet(models.QuerySet):
    def totals_for(self, user, *, since: datetime) -> dict[str, int]:
        """Tokens and calls a user has spent since a moment: the quota ledger."""
        return self.filter(user=user, created_at__gte=since).aggregate(
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            completion_tokens=Coalesce(Sum("completion_tokens"), 0),
            calls=Count("id"),
        )


class UsageEvent(models.Model):
    """One row per provider call. Kept when its conversation is deleted (SET_NULL):
    the ledger for quotas must not be reset by deleting a chat."""

    class Status(models.TextChoices):
        OK = "ok"
        CANCELLED = "cancelled"
        FAILED = "failed"

    # No index of its own: `usage_user_time` begins with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_events", db_index=False
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_events"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_events"
    )
    provider = models.CharField(max_length=32)
    model = models.CharField(max_length=200, blank=True, default="")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    error_code = models.CharField(max_length=32, blank=True, default="")
    # The chat UI or the HTTP API; for the API, the name of the key that made the call.
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.CHAT)
    api_key_name = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    objects = UsageEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="usage_user_time"),
            models.Index(fields=["created_at"], name="usage_time"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} {self.status} {self.total_tokens} tokens"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
