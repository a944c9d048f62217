"""The attachments of a conversation over HTTP (session + CSRF): upload, list, show, delete, download.

JSON in and out (docs/api.md). Only the conversation's owner reaches any of
it; for anyone else every URL is a 404, as for a conversation that does not
exist. A download is always a download: `Content-Disposition: attachment`,
`nosniff` and a sandboxing CSP, so an uploaded HTML or SVG file never runs.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from conversations.selectors import conversation_get
from documents import selectors, services
from documents.files import Refused

# The HTTP status of each refusal code.
REFUSAL_STATUS = {"too_large": 413, "unsupported_type": 415, "binary": 415}
# Room for the multipart framing around the file itself.
MULTIPART_SLACK_BYTES = 64 * 1024


def _refusal(code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=REFUSAL_STATUS.get(code, 400))


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def attachment_collection(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    if request.method == "GET":
        attachments = selectors.attachment_list(conversation=conversation)
        return JsonResponse({"attachments": [a.to_json() for a in attachments]})
    # Refuse an oversized body from its declared length, before parsing it.
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > settings.DOCUMENTS_MAX_BYTES + MULTIPART_SLACK_BYTES:
        limit_mb = settings.DOCUMENTS_MAX_BYTES / (1024 * 1024)
        return _refusal("too_large", f"The file is larger than {limit_mb:g} MB; upload a smaller file.")
    upload = request.FILES.get("file")
    if upload is None:
        return _refusal("no_file", "Send the file as the multipart form field `file`.")
    try:
        attachment = services.attachment_create(conversation=conversation, user=request.user, upload=upload)
    except Refused as refused:
        return _refusal(refused.code, refused.message)
    return JsonResponse(attachment.to_json(), status=201)


@never_cache
@login_required
@require_http_methods(["GET", "DELETE"])
def attachment_detail(
    request: HttpRequest, conversation_id: uuid.UUID, attachment_id: uuid.UUID
) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    attachment = selectors.attachment_get(conversation=conversation, attachment_id=attachment_id)
    if request.method == "DELETE":
        services.attachment_delete(attachment=attachment)
        return HttpResponse(status=204)
    return JsonResponse(attachment.to_json())


@login_required
@require_GET
def attachment_download(
    request: HttpRequest, conversation_id: uuid.UUID, attachment_id: uuid.UUID
) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    attachment = selectors.attachment_get(conversation=conversation, attachment_id=attachment_id)
    if not attachment.file:  # refused files keep no bytes
        raise Http404("No such file")
    try:
        handle = attachment.file.open("rb")
    except FileNotFoundError as exc:
        raise Http404("No such file") from exc
    # HTML is offered as plain text: even saved and opened locally it is inert bytes.
    content_type = "text/plain" if attachment.kind == "html" else attachment.content_type
    if content_type.startswith("text/"):
        content_type += "; charset=utf-8"
    response = FileResponse(handle, as_attachment=True, filename=attachment.name, content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response
