"""Reads of the API app: a user's keys, and the models a user may call."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from api.errors import ApiError
from api.models import ApiKey
from conversations.llm import get_provider, provider_status

MODELS_TIMEOUT_SECONDS = 3.0


def api_key_list(*, user) -> QuerySet[ApiKey]:
    """The user's keys, live first, newest first (revoked ones stay listed as revoked)."""
    return ApiKey.objects.filter(user=user).order_by("revoked_at", "-created_at")


def _allowed(user, models: list[str]) -> list[str]:
    # Model access by group (accounts.policy) applies wherever it exists; without it, every model.
    try:
        from accounts import policy
    except ImportError:
        return models
    return list(policy.allowed_models(user, models))


async def models_for(*, user) -> list[str]:
    """The models this user may call: the provider's list, filtered by the user's access."""
    provider = get_provider()
    if provider is None:
        raise ApiError(
            503,
            provider_status()["reason"] or "No model is configured.",
            type="server_error",
            code="no_model_configured",
        )
    try:
        models = list(await asyncio.wait_for(provider.list_models(), timeout=MODELS_TIMEOUT_SECONDS))
    except TimeoutError:
        models = [provider.model] if provider.model else []
    return await sync_to_async(_allowed)(user, models)
