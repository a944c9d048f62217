"""Template context every page gets from the accounts app."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.preferences import theme_for


def theme(request: HttpRequest) -> dict:
    # Lazy: read only by pages that render base.html, once per request.
    return {"ui_theme": SimpleLazyObject(lambda: theme_for(getattr(request, "user", None)))}
