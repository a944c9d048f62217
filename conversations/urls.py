"""Page routes of the chat domain: conversations, history fragments, exports."""

from __future__ import annotations

from django.urls import path

from conversations import views

urlpatterns = [
    path("", views.home, name="home"),
    path("archived/", views.archived_list, name="archived"),
    path("conversations/", views.conversation_list_fragment, name="conversation-list"),
    path("c/new/", views.conversation_new, name="conversation-new"),
    path("c/<uuid:conversation_id>/", views.conversation_detail, name="conversation"),
    path("c/<uuid:conversation_id>/messages/", views.conversation_messages, name="conversation-messages"),
    path("c/<uuid:conversation_id>/rename/", views.conversation_rename, name="conversation-rename"),
    path("c/<uuid:conversation_id>/archive/", views.conversation_archive, name="conversation-archive"),
    path("c/<uuid:conversation_id>/pin/", views.conversation_pin, name="conversation-pin"),
    path("c/<uuid:conversation_id>/settings/", views.conversation_settings, name="conversation-settings"),
    path("c/<uuid:conversation_id>/delete/", views.conversation_delete, name="conversation-delete"),
    path("c/<uuid:conversation_id>/version/", views.conversation_version, name="conversation-version"),
    path("c/<uuid:conversation_id>/feedback/", views.conversation_feedback, name="conversation-feedback"),
    path(
        "c/<uuid:conversation_id>/export.md",
        views.conversation_export,
        {"fmt": "md"},
        name="conversation-export-md",
    ),
    path(
        "c/<uuid:conversation_id>/export.json",
        views.conversation_export,
        {"fmt": "json"},
        name="conversation-export-json",
    ),
]
