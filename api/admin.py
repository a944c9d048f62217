"""API keys in the admin: see every key (never the key itself) and revoke."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from api import services
from api.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "prefix_shown", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    list_select_related = ["user"]
    search_fields = ["name", "prefix", "user__username"]
    search_help_text = "Searches key names, prefixes and usernames."
    fields = ["name", "user", "prefix_shown", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]
    ordering = ["-created_at"]

    @admin.display(description="key", ordering="prefix")
    def prefix_shown(self, api_key: ApiKey) -> str:
        return f"{api_key.prefix}…"

    # Keys are made by their owner (settings page) or an operator (manage.py api_key), where
    # the key can be shown once; the admin only sees and revokes them.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("api.change_apikey")

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(services.api_key_revoke(api_key=api_key) for api_key in queryset)
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
