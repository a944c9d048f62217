"""An attachment's file goes when its row goes: deleted singly, or with its conversation or its owner.

Cascades from Conversation and from the user reach Attachment through the
ORM's collector, which sends post_delete for every row of a model that has a
receiver, so this one place covers all three. The file is removed once the
transaction commits: a rolled-back delete keeps its file.
"""

from __future__ import annotations

import structlog
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from documents.models import Attachment, attachment_storage

log = structlog.get_logger(__name__)


def delete_stored_file(name: str) -> None:
    if not name:
        return
    try:
        attachment_storage().delete(name)
    except OSError as exc:  # the row is gone either way; say so and move on
        log.warning("attachment_file_delete_failed", file=name, error=str(exc))


@receiver(post_delete, sender=Attachment, dispatch_uid="documents_delete_attachment_file")
def _delete_file_with_row(sender, instance: Attachment, **kwargs) -> None:
    name = instance.file.name
    transaction.on_commit(lambda: delete_stored_file(name))
