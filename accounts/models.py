"""What the platform keeps about people beyond Django's user: preferences, limits, roles' model access, invites."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone


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
    # False only for an address typed into the open sign-up form: single sign-on
    # never links an identity to an account whose email nobody confirmed.
    email_verified = models.BooleanField(
        default=True, help_text="Single sign-on may log into this account by its email address."
    )

    def __str__(self) -> str:
        return f"profile of {self.user}"


# The two roles. Admins manage people, groups, invites and model access in the
# admin (is_staff follows membership); members chat. Every new account is a member.
ADMIN_GROUP = "admin"
MEMBER_GROUP = "member"
# A GroupModelAccess row with this model name grants every model the provider offers.
ANY_MODEL = "*"


class GroupModelAccess(models.Model):
    """One model that the members of one group may use (the picker, the socket and the API check it)."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="model_access")
    model = models.CharField(
        max_length=200, help_text='A model name as the provider lists it, or "*" for every model.'
    )

    class Meta:
        verbose_name = "model access"
        verbose_name_plural = "model access"
        constraints = [models.UniqueConstraint(fields=["group", "model"], name="group_model_access_unique")]

    def __str__(self) -> str:
        return f"{self.group.name}: {self.model}"


def role_group(name: str) -> Group:
    """The `admin` or `member` group, made when missing (a member group made here grants
    every model, as the migration's does, so a wiped table never locks everyone out)."""
    group, created = Group.objects.get_or_create(name=name)
    if created and name == MEMBER_GROUP:
        GroupModelAccess.objects.get_or_create(group=group, model=ANY_MODEL)
    return group


def invite_token_hash(token: str) -> str:
    """Invites are looked up by the hash of their token: the database never holds a usable link."""
    return hashlib.sha256(token.encode()).hexdigest()


class InviteQuerySet(models.QuerySet):
    def usable(self) -> InviteQuerySet:
        return self.filter(used_at__isnull=True, expires_at__gt=timezone.now())


class Invite(models.Model):
    """A sign-up link an admin made. It works once, before it expires; its link is shown only at creation."""

    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    email = models.EmailField(blank=True, help_text="If set, only this address may sign up with the link.")
    note = models.CharField(max_length=200, blank=True, help_text="Who it is for (shown to admins only).")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True, editable=False)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )

    objects = InviteQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invite for {self.email or self.note or 'anyone'}"

    @property
    def usable(self) -> bool:
        return self.used_at is None and self.expires_at > timezone.now()

    def redeem(self, *, user) -> bool:
        """Mark the invite used by `user`; False when it was used or expired meanwhile (one conditional UPDATE)."""
        now = timezone.now()
        claimed = Invite.objects.filter(pk=self.pk, used_at__isnull=True, expires_at__gt=now).update(
            used_at=now, used_by=user
        )
        return claimed == 1
