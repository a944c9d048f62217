"""Reactions to account changes made anywhere (admin, pages, shell, createsuperuser):

- every new account joins the `member` group;
- membership of the `admin` group is what makes a user staff (the admin site's gate);
- losing a group (a role, or the models it granted) or the account itself closes the
  user's open sockets on every process at once (4403): they reconnect, if they still
  may, under the new rules;
- a changed password clears the login lockout of that username and revokes the
  user's API keys (a deactivated user's keys are refused by the API itself).

Deactivation and password changes close sockets through `conversations.signals`
(each socket re-checks its session); a group removal leaves the session valid, so
it forces them closed.
"""

from __future__ import annotations

import structlog
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from accounts.models import ADMIN_GROUP, MEMBER_GROUP, role_group
from conversations.events import end_user_sessions

log = structlog.get_logger(__name__)

User = get_user_model()


@receiver(post_save, sender=User)
def new_accounts_are_members(sender, instance, created, raw=False, **kwargs) -> None:
    if created and not raw:
        instance.groups.add(role_group(MEMBER_GROUP))


def _sync_staff(user_ids) -> None:
    """is_staff follows membership of the admin group (superusers stay staff)."""
    users = User.objects.filter(pk__in=list(user_ids))
    admins = users.filter(groups__name=ADMIN_GROUP)
    # Queryset updates: no post_save, so no session recheck for a change that grants.
    admins.exclude(is_staff=True).update(is_staff=True)
    users.exclude(pk__in=admins.values("pk")).filter(is_superuser=False, is_staff=True).update(is_staff=False)


@receiver(m2m_changed, sender=User.groups.through)
def groups_changed(sender, instance, action, reverse, model, pk_set, **kwargs) -> None:
    if action not in {"post_add", "post_remove", "pre_clear", "post_clear"}:
        return
    if action == "pre_clear":
        # Who is about to lose every group (or every member): gone by post_clear.
        instance._cleared_user_ids = (
            list(instance.user_set.values_list("pk", flat=True)) if reverse else [instance.pk]
        )
        return
    if action == "post_clear":
        user_ids = getattr(instance, "_cleared_user_ids", [])
    else:
        user_ids = list(pk_set or []) if reverse else [instance.pk]
    if action in {"post_remove", "post_clear"}:
        for user_id in user_ids:
            end_user_sessions(user_id, reason="role_changed", force=True)
        log.info("user_groups_removed", user_ids=list(user_ids), action=action)
    if reverse and instance.name != ADMIN_GROUP:
        return
    if (
        not reverse
        and action != "post_clear"
        and not Group.objects.filter(pk__in=pk_set or [], name=ADMIN_GROUP).exists()
    ):
        return
    _sync_staff(user_ids)


@receiver(pre_save, sender=User)
def password_changed(sender, instance, update_fields=None, **kwargs) -> None:
    """A new password (changed, reset, or set by an admin) clears the username's login
    lockout and revokes the user's API keys: a password is changed when an account may be
    compromised, and keys made by whoever held it must not outlive it."""
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    old = User.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is None or old == instance.password:
        return
    from axes.utils import reset

    reset(username=instance.get_username())
    revoked = 0
    if apps.is_installed("api"):
        from api.models import ApiKey

        revoked = ApiKey.objects.filter(user_id=instance.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
    log.info("password_changed", user_id=instance.pk, api_keys_revoked=revoked)


@receiver(post_delete, sender=User)
def deleted_accounts_lose_their_sockets(sender, instance, **kwargs) -> None:
    end_user_sessions(instance.pk, reason="account_deleted", force=True)
