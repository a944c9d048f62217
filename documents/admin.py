"""Attachments in the admin: listed inline on their conversation, and a list of their own."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat

from documents.models import Attachment
from documents.selectors import attachments_with_chunk_counts


class AttachmentColumnsMixin:
    @admin.display(description="size", ordering="size")
    def size_display(self, attachment: Attachment) -> str:
        return filesizeformat(attachment.size)

    @admin.display(description="chunks", ordering="chunk_count")
    def chunk_count(self, attachment: Attachment) -> int:
        return getattr(attachment, "chunk_count", None) or attachment.chunks.count()


class AttachmentInline(AttachmentColumnsMixin, admin.TabularInline):
    model = Attachment
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["name", "size_display", "content_type", "pages", "status", "chunk_count", "error", "created_at"]
    readonly_fields = fields
    ordering = ["created_at", "id"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Attachment]:
        return attachments_with_chunk_counts(super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Attachment)
class AttachmentAdmin(AttachmentColumnsMixin, admin.ModelAdmin):
    list_display = ["name", "conversation", "owner", "size_display", "content_type", "pages", "status", "chunk_count", "created_at"]  # fmt: skip
    list_filter = ["status", "kind", "created_at"]
    list_select_related = ["conversation", "owner"]
    search_fields = ["name", "owner__username"]
    show_full_result_count = False
    fields = [
        "name",
        "conversation",
        "owner",
        "size_display",
        "kind",
        "content_type",
        "pages",
        "status",
        "progress",
        "error",
        "chunk_count",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Attachment]:
        return attachments_with_chunk_counts(super().get_queryset(request))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # files arrive through a conversation, never the admin

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
