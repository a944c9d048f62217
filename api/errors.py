"""OpenAI's error object (`{"error": {"message", "type", "param", "code"}}`) with the right status.

Every refusal of the API is an `ApiError`; views turn it into a JSON response
(or, once a stream has begun, into an error event of that stream). The
statuses and codes are the table in docs/api.md.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta

from django.http import JsonResponse

from conversations.llm.base import redact


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = redact(message)
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body(), status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        if self.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response

    def sse(self) -> bytes:
        """The error as a server-sent event (the OpenAI SDK raises it from the stream)."""
        return b"data: " + json.dumps(self.body(), separators=(",", ":")).encode() + b"\n\n"


def invalid(message: str, *, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def seconds_to_next_minute() -> int:
    return max(1, 60 - int(time.time()) % 60)


def seconds_to_midnight_utc() -> int:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


# The chat's refusals (conversations.services.SendRefused codes) as the API answers them.
def from_refusal(code: str, message: str) -> ApiError:
    if code == "quota_exceeded":
        return ApiError(
            429,
            message,
            type="insufficient_quota",
            code="insufficient_quota",
            retry_after=seconds_to_midnight_utc(),
        )
    if code == "rate_limited":
        return ApiError(
            429,
            message,
            type="rate_limit_error",
            code="rate_limit_exceeded",
            retry_after=seconds_to_next_minute(),
        )
    if code == "busy":
        return ApiError(429, message, type="rate_limit_error", code="rate_limit_exceeded", retry_after=1)
    if code in {
        "model_not_allowed",
        "model_not_found",
    }:  # one answer: a model you may not use does not exist for you
        return ApiError(
            404,
            "The model does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    if code == "session_ended":  # the key's user was deactivated meanwhile
        return ApiError(401, "Incorrect or revoked API key.", code="invalid_api_key")
    if code == "no_model":
        return ApiError(503, message, type="server_error", code="no_model_configured")
    if code == "not_found":
        return ApiError(404, message, code="not_found")
    return ApiError(400, message, code=code)


# A failed reply's error code (conversations.llm.base.LLMError.code) as the API answers it.
_PROVIDER_FAILURES = {
    "timeout": (504, "server_error", "timeout"),
    "unreachable": (502, "server_error", "provider_unreachable"),
    "auth": (502, "server_error", "provider_auth"),
    "rate_limited": (502, "server_error", "provider_rate_limited"),
    "context_too_long": (400, "invalid_request_error", "context_length_exceeded"),
    "interrupted": (502, "server_error", "interrupted"),
}


def from_provider_failure(code: str, message: str) -> ApiError:
    status, type_, api_code = _PROVIDER_FAILURES.get(code, (502, "server_error", "provider_error"))
    return ApiError(status, message or "The model provider failed.", type=type_, code=api_code)
