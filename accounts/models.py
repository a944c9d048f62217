"""What the platform keeps about a person beyond Django's user: preferences and limits."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Profile(models.Model):
    """One row per user, made on first need (`accounts.selectors.profile_get`).

    Preferences apply to conversations the user starts; limit overrides
    (blank = the site-wide setting) are set by admins.
    """

    class Theme(models.TextChoices):
        SYSTEM = "system"
        LIGHT = "light"
        DARK = "dark"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    # Preferences (the user's own settings page).
    default_model = models.CharField(max_length=200, blank=True, default="")
    custom_instructions = models.TextField(blank=True, default="")
    theme = models.CharField(max_length=8, choices=Theme.choices, default=Theme.SYSTEM)
    # Per-user overrides of CHAT_DAILY_TOKEN_BUDGET and CHAT_CONCURRENT_REPLIES (admin only).
    daily_token_budget = models.PositiveIntegerField(null=True, blank=True)
    concurrent_replies = models.PositiveSmallIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"profile of {self.user}"
