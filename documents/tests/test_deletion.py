"""Deleting an attachment, its conversation or its owner deletes the stored file (after commit)."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction

from documents import services
from documents.models import Attachment, Chunk
from documents.tests.conftest import make_conversation, make_user, stored_files


@pytest.fixture
def uploaded(db, attachment_dir):
    alice = make_user("alice")
    chat = make_conversation(alice)
    attachment = services.attachment_create(
        conversation=chat, user=alice, upload=SimpleUploadedFile("notes.txt", b"some notes")
    )
    Chunk.objects.create(attachment=attachment, ordinal=0, text="some notes")
    assert len(stored_files(attachment_dir)) == 1
    return attachment


def test_deleting_a_conversation_deletes_its_files(
    uploaded, attachment_dir, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        uploaded.conversation.delete()
    assert not Attachment.objects.exists()
    assert not Chunk.objects.exists()
    assert stored_files(attachment_dir) == []


def test_deleting_a_user_deletes_their_files(uploaded, attachment_dir, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        uploaded.owner.delete()
    assert not Attachment.objects.exists()
    assert stored_files(attachment_dir) == []


def test_a_rolled_back_delete_keeps_the_file(uploaded, attachment_dir, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                uploaded.conversation.delete()
                raise RuntimeError("changed my mind")
        except RuntimeError:
            pass
    assert callbacks == []
    assert Attachment.objects.filter(pk=uploaded.pk).exists()
    assert len(stored_files(attachment_dir)) == 1
