"""Writes of attachments and citations: check, then do; files stored through the storage API."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import structlog
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from conversations.models import Conversation
from documents import processing
from documents.files import Refused, Sniffed, clean_name, sniff
from documents.models import Attachment, Citation, attachment_storage
from documents.retrieval import Passage

log = structlog.get_logger(__name__)


def check_can_attach(*, conversation: Conversation, upload: UploadedFile) -> Sniffed:
    """Size, count and type (from the bytes): a refused file is never stored."""
    limit = settings.DOCUMENTS_MAX_BYTES
    if upload.size is None or upload.size > limit:
        raise Refused(
            "too_large", f"The file is larger than {_megabytes(limit)}; upload a smaller file or split it."
        )
    if upload.size == 0:
        raise Refused("empty", "The file is empty.")
    count = Attachment.objects.filter(conversation=conversation).count()
    if count >= settings.DOCUMENTS_MAX_PER_CONVERSATION:
        raise Refused(
            "too_many",
            f"A conversation can hold {settings.DOCUMENTS_MAX_PER_CONVERSATION} files; remove one first.",
        )
    return sniff(upload, name=upload.name or "")


def attachment_create(*, conversation: Conversation, user, upload: UploadedFile) -> Attachment:
    """Store the file and a `pending` row; processing starts in the pool once the row commits."""
    with transaction.atomic():
        # One upload at a time per conversation, so the count limit holds under races.
        Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
        sniffed = check_can_attach(conversation=conversation, upload=upload)
        now = timezone.now()
        attachment = Attachment(
            id=uuid.uuid4(),
            conversation=conversation,
            owner=user,
            name=clean_name(upload.name or ""),
            size=upload.size,
            kind=sniffed.kind,
            content_type=sniffed.content_type,
            created_at=now,
            updated_at=now,
        )
        upload.seek(0)
        attachment.file.save(attachment.name, upload, save=False)
        try:
            attachment.save(force_insert=True)
        except Exception:
            attachment_storage().delete(attachment.file.name)
            raise
        transaction.on_commit(lambda: processing.submit(attachment.id))
    log.info(
        "attachment_uploaded",
        attachment_id=str(attachment.id),
        conversation_id=str(conversation.pk),
        kind=attachment.kind,
        size=attachment.size,
    )
    return attachment


def attachment_delete(*, attachment: Attachment) -> None:
    """The row, its chunks and (after commit, see signals) its file."""
    attachment.delete()
    log.info("attachment_deleted", attachment_id=str(attachment.pk))


def citations_record(*, message_id: uuid.UUID, passages: Iterable[Passage]) -> list[Citation]:
    """Number a reply's sources 1..n in the order its context gave them (idempotent)."""
    citations = [
        Citation(
            message_id=message_id,
            number=number,
            attachment_id=passage.attachment_id,
            name=passage.name,
            page=passage.page,
            snippet=passage.snippet,
        )
        for number, passage in enumerate(passages, start=1)
    ]
    if not citations:
        return []
    with transaction.atomic():
        Citation.objects.filter(message_id=message_id).delete()
        return Citation.objects.bulk_create(citations)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"
