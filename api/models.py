"""Personal API keys: stored as a hash with a short visible prefix, never in clear."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

# Keys look like OpenAI's (`sk-...`), so secret scanners and our own log redaction
# (conversations.llm.base.redact) recognise them.
KEY_MARK = "sk-chat-"
# 32 random bytes: a hash of that much entropy needs no salt or slow KDF.
KEY_RANDOM_BYTES = 32
# What the owner sees to recognise a key: the mark and the first 8 random characters.
PREFIX_LENGTH = len(KEY_MARK) + 8


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_MARK + secrets.token_urlsafe(KEY_RANDOM_BYTES)


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=32, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        constraints = [
            # A name picks one live key in the usage ledger; revoked keys may share it.
            models.UniqueConstraint(
                fields=["user", "name"], condition=Q(revoked_at__isnull=True), name="api_key_name_unique_live"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def matches(self, key: str) -> bool:
        """Constant-time: how much of a guess is right never shows in the timing."""
        return hmac.compare_digest(self.key_hash, hash_key(key))

    def revoke(self) -> bool:
        """Revoke once; True when this call revoked it (a conditional UPDATE: no race)."""
        now = timezone.now()
        revoked = ApiKey.objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now)
        if revoked:
            self.revoked_at = now
        return bool(revoked)
