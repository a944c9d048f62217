"""Liveness, readiness and metrics endpoints for operators and orchestrators."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ops.checks import run_checks


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Process liveness: no I/O, so a slow database never restarts a healthy process."""
    return JsonResponse({"status": "ok", "app_env": settings.APP_ENV})


@never_cache
@require_GET
async def health_deps(request: HttpRequest) -> JsonResponse:
    """Readiness: database, channel layer and provider, each with status and latency."""
    checks = await run_checks()
    up = all(check["status"] == "up" for check in checks.values())
    return JsonResponse({"status": "ok" if up else "degraded", "checks": checks}, status=200 if up else 503)


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)
