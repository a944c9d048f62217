"""The OpenAI-compatible endpoints under /v1/: async views, Bearer keys only, OpenAI's error objects.

No session and no CSRF here: a request is whoever its key belongs to, and a
browser's cookies carry no weight (csrf_exempt is safe because a cookie never
authenticates these views).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from api import completions
from api.auth import authenticate, bearer_token
from api.errors import ApiError
from api.schema import parse_body, parse_completion
from api.selectors import models_for, provider_models


def _only(method: str, request: HttpRequest) -> None:
    if request.method != method:
        raise ApiError(405, f"{request.method} is not allowed here; use {method}.", code="method_not_allowed")


def _body(request: HttpRequest) -> bytes:
    declared = request.headers.get("Content-Length", "")
    limit = settings.API_MAX_REQUEST_BYTES
    too_large = ApiError(413, f"Request bodies are limited to {limit} bytes.", code="request_too_large")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    try:
        body = request.body
    except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE
        raise too_large from None
    if len(body) > limit:
        raise too_large
    return body


@csrf_exempt
async def models(request: HttpRequest) -> HttpResponse:
    """GET /v1/models: the models this key's user may use."""
    try:
        api_key = await authenticate(request)
        _only("GET", request)
        names = await models_for(user=api_key.user)
    except ApiError as error:
        return error.response()
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "chatplatform"} for name in names]
    return JsonResponse({"object": "list", "data": data})


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    """POST /v1/chat/completions: one reply, as JSON or as server-sent events."""
    try:
        token = bearer_token(request)
        # What is wrong with the request is found without the database and told only once
        # the key is known good: the key, the rows and the send are then one database hop.
        completion, problem = None, None
        try:
            _only("POST", request)
            completion = parse_completion(parse_body(_body(request)))
            # Whether the model exists is the provider's (cached) list; whether this user may
            # use it is checked with the chat's other limits, in the send's own transaction.
            if completion.model not in await provider_models():
                raise ApiError(
                    404,
                    f"The model {completion.model!r} does not exist or you do not have access to it.",
                    code="model_not_found",
                    param="model",
                )
        except ApiError as error:
            problem = error
        call = completions.Call(token=token, request=completion)
        await call.open(problem=problem)
        if not completion.stream:
            return JsonResponse(await completions.complete(call))
        first = await completions.first_text(call)
    except ApiError as error:
        return error.response()
    response = StreamingHttpResponse(completions.stream(call, first), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
