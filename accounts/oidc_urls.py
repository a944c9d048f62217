"""Routes of single sign-on (OpenID Connect): start a login, and the provider's callback."""

from __future__ import annotations

from django.urls import path

from accounts import oidc

urlpatterns = [
    path("authenticate/", oidc.AuthenticationRequestView.as_view(), name="oidc_authentication_init"),
    path("callback/", oidc.AuthenticationCallbackView.as_view(), name="oidc_authentication_callback"),
]
