"""Page routes of a person's account: the settings page and its sections."""

from __future__ import annotations

from django.urls import path

from accounts import data_views, views

urlpatterns = [
    path("settings/", views.settings_page, name="account-settings"),
    path("settings/data/export/", data_views.data_export, name="account-data-export"),
    path("settings/delete-account/", data_views.account_delete_view, name="account-delete"),
]
