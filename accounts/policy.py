"""What one person may do: which models (by their groups) and how much (their limits).

The picker filters with `allowed_models`; every send (socket and API) reads
the same rules (groups' model access, profile overrides through `limits_from`)
in the one statement that checks it (`conversations/send_state.py`, decided by
`conversations.services.check_can_generate`). Each call reads the database, so
a change an admin makes applies to the very next request on every process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from accounts.models import ANY_MODEL, GroupModelAccess, Profile


@dataclass(frozen=True)
class Limits:
    daily_tokens: int
    concurrent_replies: int


def granted_models(user) -> set[str]:
    """The model names the user's groups grant (may contain ANY_MODEL); superusers get ANY_MODEL."""
    if not user.is_active:
        return set()
    if user.is_superuser:
        return {ANY_MODEL}
    return set(GroupModelAccess.objects.filter(group__user=user).values_list("model", flat=True))


def default_model() -> str:
    """The model a conversation with no model of its own uses (the provider's configured one)."""
    from conversations import llm

    provider = llm.get_provider()
    return provider.model if provider is not None else ""


def allowed_models(user, models: Iterable[str]) -> list[str]:
    """Those of `models` the user may use, in the given order."""
    granted = granted_models(user)
    models = list(models)
    if ANY_MODEL in granted:
        return models
    return [name for name in models if name in granted]


def model_allowed(user, model: str) -> bool:
    """May the user generate with `model` ("" = the provider's default model)?"""
    granted = granted_models(user)
    if ANY_MODEL in granted:
        return True
    return (model or default_model()) in granted


def user_limits(user) -> Limits:
    """The user's daily token budget and concurrent replies: their profile's overrides, else the settings."""
    overrides = (
        Profile.objects.filter(user=user).values("daily_token_budget", "concurrent_replies").first() or {}
    )
    return limits_from(overrides.get("daily_token_budget"), overrides.get("concurrent_replies"))


def limits_from(daily_override: int | None, concurrent_override: int | None) -> Limits:
    """Limits from a profile's overrides (None: the site-wide setting)."""
    return Limits(
        daily_tokens=settings.CHAT_DAILY_TOKEN_BUDGET if daily_override is None else daily_override,
        concurrent_replies=(
            settings.CHAT_CONCURRENT_REPLIES if concurrent_override is None else concurrent_override
        ),
    )
