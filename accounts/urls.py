"""Page routes of a person's account: log in and out, sign-up, invites, the first admin,
single sign-on, passwords, and the settings page with its sections."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import data_views, views

urlpatterns = [
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/invite/<str:token>/", views.invite_signup, name="invite"),
    path("accounts/setup/", views.setup, name="setup"),
    path("accounts/oidc/", include("accounts.oidc_urls")),
    path("accounts/password/reset/", views.password_reset, name="password_reset"),
    path("accounts/password/reset/sent/", views.password_reset_done, name="password_reset_done"),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        views.password_reset_confirm,
        name="password_reset_confirm",
    ),
    path("accounts/password/reset/done/", views.password_reset_complete, name="password_reset_complete"),
    path("settings/", views.settings_page, name="account-settings"),
    path("settings/preferences/", views.preferences_save, name="account-preferences"),
    path("settings/data/export/", data_views.data_export, name="account-data-export"),
    path("settings/delete-account/", data_views.account_delete_view, name="account-delete"),
    path("settings/password/", views.password_change, name="password-change"),
]
