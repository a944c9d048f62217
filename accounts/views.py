"""A person's own account pages. Each concern (preferences, password, API keys,
data) is one section of the settings page, one partial template each."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from conversations.views import sidebar_context


@never_cache
@login_required
@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    return render(
        request, "accounts/settings.html", {**sidebar_context(request, archived=False), "settings_view": True}
    )
