"""Bearer authentication for /v1/: an API key, and nothing else (no session, no CSRF)."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest

from api.errors import ApiError
from api.models import ApiKey
from api.services import api_key_authenticate


def bearer_token(request: HttpRequest) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            # (Worded so that the secret redaction, which masks whatever follows "Bearer ", keeps it.)
            "You didn't provide an API key: send the header 'Authorization: Bearer' followed by your key.",
            code="missing_api_key",
        )
    return token.strip()


async def authenticate(request: HttpRequest) -> ApiKey:
    """The request's live key (with its user loaded), or a 401; the same answer for every bad key."""
    token = bearer_token(request)
    api_key = await sync_to_async(api_key_authenticate)(key=token)
    if api_key is None:
        raise invalid_key()
    return api_key


def invalid_key() -> ApiError:
    return ApiError(401, "Incorrect or revoked API key.", code="invalid_api_key")
