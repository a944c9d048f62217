"""Every URL route of the project, from the resolver, with a way to fill in its parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.contrib.contenttypes.models import ContentType
from django.urls import URLResolver, get_resolver

from conversations.models import Conversation, UsageEvent

UNKNOWN_UUID = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Route:
    path: str  # the route as the resolver spells it, e.g. "c/<uuid:conversation_id>/"
    namespace: str | None
    name: str | None

    @property
    def label(self) -> str:
        return self.name or self.path

    def url(self, **values: str) -> str:
        """The route with its parameters filled in (regex routes of the admin by hand)."""
        path = self.path
        if path.startswith("admin/^"):
            path = "admin/" + values.get("app_label", "conversations") + "/"
        elif path == "admin/(?P<url>.*)$":
            path = "admin/no-such-page/"
        # A parameter not given: "1", or (for a uuid converter) a well-formed id that
        # matches nothing, so the route still resolves and its view really runs.
        path = re.sub(
            r"<(?:(\w+):)?(\w+)>",
            lambda m: values.get(m.group(2), UNKNOWN_UUID if m.group(1) == "uuid" else "1"),
            path,
        )
        return "/" + path


def _walk(patterns, prefix: str = "", namespace: str | None = None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(
                pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace
            )
        else:
            yield Route(prefix + str(pattern.pattern), namespace, pattern.name)


ROUTES = list(_walk(get_resolver().url_patterns))
CONVERSATION_ROUTES = [r for r in ROUTES if "<uuid:conversation_id>" in r.path]
ADMIN_ROUTES = [r for r in ROUTES if r.namespace == "admin"]


def admin_object_ids(conversation: Conversation) -> dict[str, str]:
    return {
        "conversations.conversation": str(conversation.pk),
        "conversations.message": str(conversation.messages.first().pk),
        "conversations.usageevent": str(UsageEvent.objects.first().pk),
        "auth.user": str(conversation.owner.pk),
        "auth.group": "1",
    }


def object_values(route: Route, ids: dict[str, str]) -> dict[str, str]:
    """Parameters for an admin route: an existing object of its model, so the view really runs."""
    match = re.match(r"admin/(\w+)/(\w+)/", route.path)
    object_id = ids.get(
        f"{match.group(1)}.{match.group(2)}" if match else "", ids["conversations.conversation"]
    )
    content_type = ContentType.objects.get_for_model(Conversation)
    return {"object_id": object_id, "id": object_id, "content_type_id": str(content_type.pk)}


def every_url(conversation: Conversation) -> list[tuple[str, str]]:
    """(label, url) of every route, with real ids (of `conversation` and its rows) so each reaches its view."""
    ids = admin_object_ids(conversation)
    return [
        (route.label, route.url(conversation_id=str(conversation.id), **object_values(route, ids)))
        for route in ROUTES
        if route.path != "admin/(?P<url>.*)$"
    ]
