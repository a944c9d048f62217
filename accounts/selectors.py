"""Reads of a person's account."""

from __future__ import annotations

from accounts.models import Profile


def profile_get(*, user) -> Profile:
    """The user's profile, made with defaults the first time it is asked for."""
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile
