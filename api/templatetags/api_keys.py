"""`{% api_keys_section %}`: the settings page's API keys section, with its own data."""

from __future__ import annotations

from django import template

from api.pages import pop_flash
from api.selectors import api_key_list

register = template.Library()


@register.inclusion_tag("api/_settings_api_keys.html", takes_context=True)
def api_keys_section(context) -> dict:
    request = context["request"]
    new_key, notice = pop_flash(request)
    return {
        "api_keys": list(api_key_list(user=request.user)),
        "new_key": new_key,
        "notice": notice,
        "csrf_token": context.get("csrf_token"),
        "request": request,
    }
