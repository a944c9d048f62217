"""Login throttling: who is asking (the client address as the trusted proxies saw it), and the lockout check."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """The peer address, or with TRUSTED_PROXY_COUNT=n the n-th address from the right of
    X-Forwarded-For (what the outermost trusted proxy saw); anything further left is the
    client's own claim and can be forged, so it is never used."""
    peer = request.META.get("REMOTE_ADDR")
    hops = settings.TRUSTED_PROXY_COUNT
    if hops <= 0:
        return peer
    forwarded = [
        part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()
    ]
    if len(forwarded) < hops:
        return peer
    return forwarded[-hops]


class LockoutBackend(AxesStandaloneBackend):
    """django-axes' check before any password is tried. A call without a request (the
    test client's `login()`, a shell) has no client to throttle: it is let through to the
    password backends rather than failing, as every web login passes its request."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
