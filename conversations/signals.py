"""Sessions that end close their sockets: logout, a password change, a deactivated account."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save
from django.dispatch import receiver

from conversations.events import end_user_sessions


@receiver(user_logged_out)
def close_sockets_of_logged_out_session(sender, request, user, **kwargs) -> None:
    if user is not None and request is not None and request.session.session_key:
        end_user_sessions(user.pk, reason="logout", session_key=request.session.session_key)


@receiver(post_save, sender=get_user_model())
def recheck_sessions_of_changed_user(sender, instance, created, update_fields=None, **kwargs) -> None:
    """Each open socket of the user checks its session again (password, is_active)."""
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    end_user_sessions(instance.pk, reason="account_changed")
