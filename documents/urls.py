"""Routes of a conversation's attachments (docs/api.md)."""

from __future__ import annotations

from django.urls import path

from documents import views

urlpatterns = [
    path(
        "c/<uuid:conversation_id>/attachments/",
        views.attachment_collection,
        name="attachments",
    ),
    path(
        "c/<uuid:conversation_id>/attachments/<uuid:attachment_id>/",
        views.attachment_detail,
        name="attachment",
    ),
    path(
        "c/<uuid:conversation_id>/attachments/<uuid:attachment_id>/download/",
        views.attachment_download,
        name="attachment-download",
    ),
]
