"""Reads of the API app: a user's keys, and the models a user may call."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from accounts import policy
from api.errors import ApiError
from api.models import ApiKey
from conversations.llm import get_provider, provider_status

MODELS_TIMEOUT_SECONDS = 3.0


def api_key_list(*, user) -> QuerySet[ApiKey]:
    """The user's keys, live first, newest first (revoked ones stay listed as revoked)."""
    return ApiKey.objects.filter(user=user).order_by("revoked_at", "-created_at")


async def provider_models() -> list[str]:
    """The models the provider offers (its list is cached a minute; no database)."""
    provider = get_provider()
    if provider is None:
        raise ApiError(
            503,
            provider_status()["reason"] or "No model is configured.",
            type="server_error",
            code="no_model_configured",
        )
    try:
        return list(await asyncio.wait_for(provider.list_models(), timeout=MODELS_TIMEOUT_SECONDS))
    except TimeoutError:
        return [provider.model] if provider.model else []


async def models_for(*, user) -> list[str]:
    """The models this user may call: the provider's list, filtered by the user's groups."""
    return await sync_to_async(policy.allowed_models)(user, await provider_models())
