"""Routes of the API app: the OpenAI-compatible /v1/ endpoints and the settings page's key section."""

from __future__ import annotations

from django.urls import path

from api import pages, views

urlpatterns = [
    path("v1/models", views.models, name="api-models"),
    path("v1/chat/completions", views.chat_completions, name="api-chat-completions"),
    path("settings/api-keys/", pages.api_key_create, name="api-key-create"),
    path("settings/api-keys/<int:key_id>/revoke/", pages.api_key_revoke, name="api-key-revoke"),
]
