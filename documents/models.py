"""Files attached to a conversation, the chunks of text extracted from them, and the citations of replies."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.files.storage import storages
from django.core.signals import setting_changed
from django.db import models
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone
from django.utils.functional import LazyObject, empty


class _AttachmentStorage(LazyObject):
    """The storage named "attachments" in STORAGES (DOCUMENTS_STORAGE_BACKEND), looked up when
    first used and again after STORAGES changes (as Django's default_storage is)."""

    def _setup(self) -> None:
        self._wrapped = storages["attachments"]


_storage = _AttachmentStorage()


@receiver(setting_changed, dispatch_uid="documents_attachment_storage_reset")
def _reset_storage(*, setting: str, **kwargs) -> None:
    if setting == "STORAGES":
        _storage._wrapped = empty


def attachment_storage() -> _AttachmentStorage:
    # A callable, so migrations name this function rather than a storage instance.
    return _storage


def attachment_path(attachment: Attachment, filename: str) -> str:
    # Never the uploaded name: it is the user's, and only shown, never used as a path.
    return f"{attachment.conversation_id}/{attachment.id}"


class Attachment(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        READY = "ready"
        FAILED = "failed"

    class Kind(models.TextChoices):
        TEXT = "text", "plain text"
        MARKDOWN = "markdown", "Markdown"
        CSV = "csv", "CSV"
        HTML = "html", "HTML"
        PDF = "pdf", "PDF"
        DOCX = "docx", "DOCX"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    conversation = models.ForeignKey(
        "conversations.Conversation", on_delete=models.CASCADE, related_name="attachments"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments")
    # As shown to people: the uploaded name, sanitised (documents.files.clean_name).
    name = models.CharField(max_length=200)
    size = models.PositiveBigIntegerField()
    # Decided from the file's bytes, never from its name or the browser's claim.
    kind = models.CharField(max_length=16, choices=Kind.choices)
    content_type = models.CharField(max_length=100)
    file = models.FileField(storage=attachment_storage, upload_to=attachment_path, max_length=200)
    pages = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Percent of the extraction done, for the chip while processing.
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at"], name="attachment_conversation_time")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["pending", "processing", "ready", "failed"]),
                name="attachment_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_settled(self) -> bool:
        return self.status in {self.Status.READY, self.Status.FAILED}

    def to_json(self) -> dict:
        """The attachment as the HTTP API and the page see it (docs/api.md)."""
        return {
            "id": str(self.id),
            "name": self.name,
            "size": self.size,
            "kind": self.kind,
            "content_type": self.content_type,
            "status": self.status,
            "progress": self.progress,
            "pages": self.pages,
            "error": self.error,
            "created_at": self.created_at.isoformat(),
        }


class Chunk(models.Model):
    """A passage of an attachment's text, the unit of retrieval.

    The full-text index over `heading` and `text` is kept by the database
    itself (documents/search/): on PostgreSQL a generated `search` tsvector
    column with a GIN index, on SQLite an FTS5 table kept by triggers.
    """

    attachment = models.ForeignKey(Attachment, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    # 1-based page of a PDF (or of a DOCX with page breaks); null where a format has none.
    page = models.PositiveIntegerField(null=True, blank=True)
    heading = models.CharField(max_length=300, blank=True, default="")
    text = models.TextField()
    # How many leading characters of `text` repeat the end of the chunk before.
    overlap = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["attachment", "ordinal"]
        constraints = [
            models.UniqueConstraint(fields=["attachment", "ordinal"], name="chunk_ordinal_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.attachment_id} #{self.ordinal}"


class Citation(models.Model):
    """A source a reply was given: numbered as shown under the reply, with the quoted passage."""

    message = models.ForeignKey("conversations.Message", on_delete=models.CASCADE, related_name="citations")
    number = models.PositiveSmallIntegerField()
    # Kept (with its name) when the file is removed later: the reply still says what it used.
    attachment = models.ForeignKey(
        Attachment, null=True, blank=True, on_delete=models.SET_NULL, related_name="citations"
    )
    name = models.CharField(max_length=200)
    page = models.PositiveIntegerField(null=True, blank=True)
    snippet = models.TextField()

    class Meta:
        ordering = ["message", "number"]
        constraints = [models.UniqueConstraint(fields=["message", "number"], name="citation_number_unique")]

    def __str__(self) -> str:
        return f"[{self.number}] {self.name}"

    def to_wire(self) -> dict:
        """One entry of `sources` on `message.completed` (docs/protocol.md)."""
        return {
            "number": self.number,
            "attachment_id": str(self.attachment_id) if self.attachment_id else None,
            "name": self.name,
            "page": self.page,
            "snippet": self.snippet,
        }
