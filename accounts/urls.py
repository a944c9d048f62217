"""Page routes of a person's account: the settings page and its sections."""

from __future__ import annotations

from django.urls import path

from accounts import views

urlpatterns = [
    path("settings/", views.settings_page, name="account-settings"),
]
