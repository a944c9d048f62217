"""The admin lists a conversation's attachments inline: size, type, pages, status and chunk count."""

from __future__ import annotations

import pytest
from django.urls import reverse

from documents.models import Attachment, Chunk
from documents.tests.conftest import make_conversation, make_user


@pytest.fixture
def staff_client(client, db):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_a_conversation_lists_its_attachments_with_size_type_pages_status_and_chunks(staff_client):
    chat = make_conversation(make_user("alice"))
    attachment = Attachment.objects.create(
        conversation=chat,
        owner=chat.owner,
        name="owls-report.pdf",
        size=48213,
        kind="pdf",
        content_type="application/pdf",
        pages=12,
        status="ready",
    )
    Chunk.objects.bulk_create([Chunk(attachment=attachment, ordinal=i, text=f"chunk {i}") for i in range(7)])
    Attachment.objects.create(
        conversation=chat,
        owner=chat.owner,
        name="locked.pdf",
        size=900,
        kind="pdf",
        content_type="application/pdf",
        status="failed",
        error="This PDF is encrypted (password-protected); upload an unprotected copy.",
    )

    page = staff_client.get(
        reverse("admin:conversations_conversation_change", args=[chat.id])
    ).content.decode()

    for shown in (
        "owls-report.pdf",
        "47.1\xa0KB",
        "application/pdf",
        ">12<",
        "Ready",
        ">7<",
        "locked.pdf",
        "Failed",
    ):
        assert shown in page, shown
    assert "encrypted (password-protected)" in page


def test_the_attachment_list_and_page_open_for_staff(staff_client):
    chat = make_conversation(make_user("alice"))
    attachment = Attachment.objects.create(
        conversation=chat, owner=chat.owner, name="a.txt", size=3, kind="text", content_type="text/plain"
    )
    assert staff_client.get(reverse("admin:documents_attachment_changelist")).status_code == 200
    change = staff_client.get(reverse("admin:documents_attachment_change", args=[attachment.id]))
    assert change.status_code == 200
    assert b"a.txt" in change.content
