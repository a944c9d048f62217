"""Extraction, chunking and indexing of uploads, in a thread pool of this process (never the event loop).

An upload is stored and its row committed `pending` by the request; then
`submit()` hands it to one of DOCUMENTS_WORKERS threads, which claims it
(`pending` -> `processing`, one conditional UPDATE), reports progress on the
row, and ends it `ready` (chunks written, in one transaction) or `failed`
(reason on the row, file removed, no chunks). The page polls the list
endpoint for these states.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta

import structlog
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from documents.chunking import Piece, chunk_blocks
from documents.extraction import extract
from documents.files import Refused, sniff
from documents.models import Attachment, Chunk
from documents.signals import delete_stored_file

log = structlog.get_logger(__name__)

# Extraction takes this share of the progress bar; chunking and indexing the rest.
EXTRACTION_SHARE = 90
# A row `pending` or `processing` untouched this long belongs to a process that died.
STALE_AFTER = timedelta(minutes=5)
PROGRESS_EVERY_SECONDS = 0.3
INSERT_BATCH = 200
INSERT_CHUNK = (
    "INSERT INTO documents_chunk (attachment_id, ordinal, page, heading, text, overlap) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_in_flight: set[uuid.UUID] = set()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=max(1, settings.DOCUMENTS_WORKERS), thread_name_prefix="documents"
            )
        return _executor


def submit(attachment_id: uuid.UUID) -> Future:
    """Process an attachment in this process's pool (call once its row is committed)."""
    _in_flight.add(attachment_id)
    future = _pool().submit(_run, attachment_id)
    future.add_done_callback(lambda _: _in_flight.discard(attachment_id))
    return future


def _run(attachment_id: uuid.UUID) -> None:
    close_old_connections()
    try:
        process_attachment(attachment_id)
    except Exception:  # never let a bug leave the row spinning: say it failed
        log.exception("attachment_processing_crashed", attachment_id=str(attachment_id))
        _fail(attachment_id, "The file could not be processed (an internal error).")
    finally:
        close_old_connections()


def process_attachment(attachment_id: uuid.UUID) -> Attachment | None:
    """Claim, extract, chunk and index one attachment; returns the row as it ends (None if gone)."""
    now = timezone.now()
    claimed = Attachment.objects.filter(pk=attachment_id, status=Attachment.Status.PENDING).update(
        status=Attachment.Status.PROCESSING, progress=0, updated_at=now
    )
    if not claimed:
        return Attachment.objects.filter(pk=attachment_id).first()
    attachment = Attachment.objects.get(pk=attachment_id)
    started = time.monotonic()
    report = _Reporter(attachment_id)
    try:
        with attachment.file.open("rb") as file:
            sniffed = sniff(file, name=attachment.name)
            extracted = extract(file, kind=sniffed.kind, encoding=sniffed.encoding, progress=report)
        pieces = chunk_blocks(extracted.blocks)
    except Refused as refused:
        log.info("attachment_refused", attachment_id=str(attachment_id), code=refused.code)
        return _fail(attachment_id, refused.message)
    except FileNotFoundError:
        return _fail(attachment_id, "The uploaded file is missing from storage; upload it again.")

    if not store_chunks(attachment_id, pieces, pages=extracted.pages):
        return None
    log.info(
        "attachment_processed",
        attachment_id=str(attachment_id),
        kind=sniffed.kind,
        pages=extracted.pages,
        chunks=len(pieces),
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    return Attachment.objects.filter(pk=attachment_id).first()


def store_chunks(attachment_id: uuid.UUID, pieces: list[Piece], *, pages: int | None) -> bool:
    """Write an attachment's chunks and mark it ready, in one transaction (False: it was deleted)."""
    with transaction.atomic():
        # Locked: a delete that races us waits, or has already won.
        if not Attachment.objects.select_for_update().filter(pk=attachment_id).exists():
            return False
        # Plain tuples through the cursor rather than bulk_create's model instances:
        # a large file is tens of thousands of chunks, and that many objects
        # wake the garbage collector, whose full passes pause every thread
        # (the event loop's too) for hundreds of milliseconds.
        key = Chunk._meta.get_field("attachment").get_db_prep_value(attachment_id, connection)
        with connection.cursor() as cursor:
            for start in range(0, len(pieces), INSERT_BATCH):
                cursor.executemany(
                    INSERT_CHUNK,
                    [
                        (key, start + i, piece.page, piece.heading[:300], piece.text, piece.overlap)
                        for i, piece in enumerate(pieces[start : start + INSERT_BATCH])
                    ],
                )
                time.sleep(0)  # hand the GIL to the event loop between batches
        Attachment.objects.filter(pk=attachment_id).update(
            status=Attachment.Status.READY, progress=100, pages=pages, error="", updated_at=timezone.now()
        )
    return True


def _fail(attachment_id: uuid.UUID, message: str) -> Attachment | None:
    """The row says why; the file and any chunks are gone (nothing half-stored)."""
    row = Attachment.objects.filter(pk=attachment_id).first()
    if row is None:
        return None
    name = row.file.name
    with transaction.atomic():
        Chunk.objects.filter(attachment_id=attachment_id).delete()
        Attachment.objects.filter(pk=attachment_id).update(
            status=Attachment.Status.FAILED, error=message, progress=0, file="", updated_at=timezone.now()
        )
    delete_stored_file(name)
    return Attachment.objects.filter(pk=attachment_id).first()


class _Reporter:
    """Writes extraction progress to the row, at most a few times a second."""

    def __init__(self, attachment_id: uuid.UUID) -> None:
        self.attachment_id = attachment_id
        self.last = 0.0
        self.percent = 0

    def __call__(self, fraction: float) -> None:
        percent = min(EXTRACTION_SHARE, int(fraction * EXTRACTION_SHARE))
        now = time.monotonic()
        if percent <= self.percent or now - self.last < PROGRESS_EVERY_SECONDS:
            return
        self.percent, self.last = percent, now
        Attachment.objects.filter(pk=self.attachment_id, status=Attachment.Status.PROCESSING).update(
            progress=percent, updated_at=timezone.now()
        )


def fail_stale(attachments: list[Attachment]) -> list[Attachment]:
    """Rows left `pending`/`processing` by a process that died are marked failed (in place)."""
    cutoff = timezone.now() - STALE_AFTER
    for attachment in attachments:
        if not attachment.is_settled and attachment.updated_at < cutoff and attachment.id not in _in_flight:
            failed = _fail(
                attachment.id, "Processing was interrupted (the server restarted); upload it again."
            )
            if failed is not None:
                attachment.status, attachment.error, attachment.progress = failed.status, failed.error, 0
    return attachments
