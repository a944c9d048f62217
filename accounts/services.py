"""Writes of accounts: sign-up (by policy), invites, the first admin, roles.

Sign-up policy is checked in one place (`check_signup`) and every new account,
however it is made (form, invite, single sign-on), goes through `user_create`.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import structlog
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts.models import ADMIN_GROUP, Invite, Profile, invite_token_hash, role_group

log = structlog.get_logger(__name__)

# An arbitrary constant naming the advisory lock that serialises the first admin's creation.
_SETUP_LOCK_KEY = 7_401_001


class SignupRefused(PermissionDenied):
    """Sign-up is not open to this request; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def email_domain_allowed(email: str) -> bool:
    if not settings.SIGNUP_ALLOWED_DOMAINS:
        return True
    domain = email.rpartition("@")[2].strip().lower()
    return bool(email) and domain in settings.SIGNUP_ALLOWED_DOMAINS


def signup_refusal(*, invite: Invite | None) -> str | None:
    """Why SIGNUP_MODE refuses this sign-up whoever asks, or None. `closed` refuses invites too."""
    if settings.SIGNUP_MODE == "closed":
        return "Sign-up is closed."
    if invite is None and settings.SIGNUP_MODE == "invite":
        return "Sign-up needs an invite link from an administrator."
    if invite is not None and not invite.usable:
        return "This invite link has been used or has expired."
    return None


def check_signup(*, email: str, invite: Invite | None) -> None:
    """Raise SignupRefused unless SIGNUP_MODE (and the invite, and the email's domain) allow it."""
    reason = signup_refusal(invite=invite)
    if reason is not None:
        raise SignupRefused(reason)
    if invite is not None:
        if invite.email and invite.email.lower() != email.strip().lower():
            raise SignupRefused("This invite link is for another email address.")
        return  # an admin chose this person: the domain list does not apply
    if not email_domain_allowed(email):
        raise SignupRefused(
            "Accounts need an email address at " + ", ".join(settings.SIGNUP_ALLOWED_DOMAINS) + "."
        )


@transaction.atomic
def user_create(
    *,
    username: str,
    email: str = "",
    password: str | None = None,
    invite: Invite | None = None,
    email_verified: bool = False,
):
    """A new member account (`password=None`: no usable password, e.g. single sign-on).

    With an invite, the invite is redeemed in the same transaction: two sign-ups
    racing for one link make one account. `email_verified`: the address was
    confirmed by someone other than the person typing it (the identity provider,
    or the admin who addressed the invite).
    """
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    verified = email_verified or (invite is not None and bool(invite.email))
    Profile.objects.update_or_create(user=user, defaults={"email_verified": verified})
    if invite is not None and not invite.redeem(user=user):
        raise SignupRefused("This invite link has been used or has expired.")
    log.info("user_signed_up", user_id=user.pk, invite_id=invite.pk if invite else None)
    return user


def invite_token_new() -> str:
    return secrets.token_urlsafe(32)


def invite_create(
    *, created_by, email: str = "", note: str = "", days: int | None = None
) -> tuple[Invite, str]:
    """A new invite and its secret token (shown once: only its hash is kept)."""
    token = invite_token_new()
    invite = Invite.objects.create(
        token_hash=invite_token_hash(token),
        email=email,
        note=note,
        created_by=created_by,
        expires_at=timezone.now() + timedelta(days=days or settings.SIGNUP_INVITE_DAYS),
    )
    log.info("invite_created", invite_id=invite.pk, created_by=getattr(created_by, "pk", None))
    return invite, token


def invite_find(*, token: str) -> Invite | None:
    """The invite of a link's token, used or not; None for a token nobody made."""
    return Invite.objects.filter(token_hash=invite_token_hash(token)).first()


# --- the first admin ---------------------------------------------------------


def setup_needed() -> bool:
    """A fresh install: no account exists yet."""
    return not get_user_model().objects.exists()


def setup_token() -> str:
    """The one-time token the setup page asks for in production.

    Derived from SECRET_KEY, so every process prints and accepts the same one;
    it is useless once the first account exists (the page is gone).
    """
    return salted_hmac("accounts.setup-token", "first-admin", algorithm="sha256").hexdigest()[:24]


def setup_token_valid(token: str) -> bool:
    return constant_time_compare((token or "").strip(), setup_token())


@transaction.atomic
def admin_create_first(*, username: str, email: str, password: str):
    """The first account, a superuser in the admin group; refused once any account exists."""
    if connection.vendor == "postgresql":
        # Two simultaneous setups must not both see an empty table; released at commit.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SETUP_LOCK_KEY])
    if not setup_needed():
        raise PermissionDenied("The admin account already exists.")
    user = get_user_model().objects.create_superuser(username=username, email=email, password=password)
    user.groups.add(role_group(ADMIN_GROUP))
    log.info("first_admin_created", user_id=user.pk)
    return user
