"""The settings page's API keys section: create (the key shown once), revoke.

The section itself is `templates/api/_settings_api_keys.html`, included by
the settings page through the `api_keys_section` tag. A new key is kept in
the session only until the settings page shows it, once, right after the
redirect; the database never holds it.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from api import services
from api.models import ApiKey

NEW_KEY_SESSION = "api_new_key"
NOTICE_SESSION = "api_key_notice"
SECTION = "#api-keys"


def _back() -> HttpResponse:
    return redirect(reverse("account-settings") + SECTION)


@never_cache
@login_required
@require_POST
def api_key_create(request: HttpRequest) -> HttpResponse:
    try:
        api_key, key = services.api_key_create(user=request.user, name=request.POST.get("name", ""))
    except services.KeyRefused as refused:
        request.session[NOTICE_SESSION] = {"kind": "error", "text": refused.message}
        return _back()
    request.session[NEW_KEY_SESSION] = {"id": api_key.pk, "name": api_key.name, "key": key}
    return _back()


@never_cache
@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    api_key = ApiKey.objects.filter(pk=key_id, user=request.user).first()
    if api_key is None:  # another user's key answers exactly as a missing one
        raise Http404("No such key")
    if services.api_key_revoke(api_key=api_key):
        request.session[NOTICE_SESSION] = {
            "kind": "ok",
            "text": f"The key {api_key.name!r} is revoked; calls with it are refused from now on.",
        }
    return _back()


def pop_flash(request: HttpRequest) -> tuple[dict | None, dict | None]:
    """The key made (or the notice set) just before this page view, once: the next view has neither.

    The section keeps its own flash rather than django.contrib.messages, so that
    another section of the page reading the messages cannot swallow a new key.
    """
    return request.session.pop(NEW_KEY_SESSION, None), request.session.pop(NOTICE_SESSION, None)
