"""Keep daphne's HTTP layer (Twisted) from parsing upload bodies in the event loop.

Twisted's `http.Request` parses every multipart/form-data and urlencoded POST
body into `request.args` before the application sees it, with the `email`
package, in memory and in the reactor's thread, which under daphne is the
process's one event loop: a 20 MB upload froze every socket of the process
for over a second (documents/tests/test_upload_does_not_stall.py measured
1.3 s). Daphne never reads `request.args`; Django parses the body itself, in
a worker thread. Twisted lets a request opt out (`parsePOSTFormSubmission`),
which daphne does not pass, so it is switched off here for every request.
"""

from __future__ import annotations

import inspect

import structlog

log = structlog.get_logger(__name__)


def stop_parsing_form_bodies() -> None:
    """Idempotent; a no-op where daphne (or its Twisted) is not installed or has changed."""
    try:
        from daphne.http_protocol import WebRequest
        from twisted.web import http
    except ImportError:
        return
    if getattr(WebRequest, "_form_bodies_left_to_django", False):
        return
    if "parsePOSTFormSubmission" not in inspect.signature(http.Request.__init__).parameters:
        log.warning("daphne_form_parsing_patch_skipped", reason="Twisted has no parsePOSTFormSubmission")
        return
    original_init = WebRequest.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    WebRequest.__init__ = __init__
    WebRequest._form_bodies_left_to_django = True
