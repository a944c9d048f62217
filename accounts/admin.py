"""The admin for people and access: per-user limits on the user page, each group's
models on the group page, and invite links (each shown once, when made)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import REDIRECT_FIELD_NAME, get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import GroupModelAccess, Invite, Profile, invite_token_hash


class ProfileInline(admin.StackedInline):
    model = Profile
    can_delete = False
    verbose_name = verbose_name_plural = "limits and preferences"
    fields = ["daily_token_budget", "concurrent_replies", "email_verified", "default_model", "theme"]
    extra = 0
    max_num = 1


class GroupModelAccessInline(admin.TabularInline):
    model = GroupModelAccess
    extra = 1
    verbose_name_plural = 'models this group may use ("*": every model)'


def _extend_registered(model, **attrs) -> None:
    """Re-register `model`'s admin as a subclass with `attrs` (keeps what other apps added)."""
    registered = type(admin.site.get_model_admin(model))
    extended = type(registered.__name__, (registered,), {"__module__": __name__, **attrs})
    admin.site.unregister(model)
    admin.site.register(model, extended)


_user_admin = admin.site.get_model_admin(get_user_model())
_extend_registered(get_user_model(), inlines=[*_user_admin.inlines, ProfileInline])
_extend_registered(Group, inlines=[*admin.site.get_model_admin(Group).inlines, GroupModelAccessInline])


@admin.register(Invite)
class InviteAdmin(admin.ModelAdmin):
    list_display = ["__str__", "created_by", "created_at", "expires_at", "state"]
    list_filter = ["used_at"]
    search_fields = ["email", "note"]
    fields = ["email", "note", "expires_at"]
    actions = ["revoke"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {"expires_at": timezone.now() + timedelta(days=settings.SIGNUP_INVITE_DAYS)}

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    @admin.display(description="state")
    def state(self, invite: Invite) -> str:
        if invite.used_at:
            return f"used by {invite.used_by or 'a deleted account'}"
        return "open" if invite.usable else "expired"

    def save_model(self, request: HttpRequest, obj: Invite, form, change: bool) -> None:
        token = services.invite_token_new()
        obj.token_hash = invite_token_hash(token)
        obj.created_by = request.user
        super().save_model(request, obj, form, change)
        link = request.build_absolute_uri(reverse("invite", args=[token]))
        mode = settings.SIGNUP_MODE
        warning = (
            " Sign-up is closed on this server (SIGNUP_MODE=closed): the link will not work."
            if mode == "closed"
            else ""
        )
        messages.warning(request, f"Invite link (shown only now, works once): {link}{warning}")

    @admin.action(description="Revoke the selected invites")
    def revoke(self, request: HttpRequest, queryset) -> None:
        revoked = queryset.filter(used_at__isnull=True).update(expires_at=timezone.now())
        messages.success(request, f"{revoked} invite(s) revoked.")


def _admin_login(request: HttpRequest, extra_context=None):
    """One login page for everything (throttled, with single sign-on): the admin's sends here."""
    if request.user.is_authenticated:
        # Signed in but not staff: the stock page would say so; a redirect would loop.
        raise PermissionDenied("This account may not use the admin.")
    target = request.GET.get(REDIRECT_FIELD_NAME) or reverse("admin:index")
    return redirect_to_login(target, login_url=reverse("login"))


admin.site.login = _admin_login
