"""The site's URLs, and one that raises: the browser tests' way to the real 500 page."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path

from chatplatform.urls import urlpatterns as site_urlpatterns

SERVER_ERROR_PATH = "__tests__/server-error/"


class DesignedFailure(RuntimeError):
    """Raised on purpose: the live server answers with its 500 page."""


def server_error(request: HttpRequest) -> HttpResponse:
    raise DesignedFailure("the browser tests asked for the 500 page")


urlpatterns = [*site_urlpatterns, path(SERVER_ERROR_PATH, server_error)]
