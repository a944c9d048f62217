"""Reads of the chat domain: what a user may see, and nothing more."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.formats import date_format

from conversations.models import Conversation, Message
from conversations.versions import attach_versions


def conversation_list(*, user, archived: bool = False) -> QuerySet[Conversation]:
    """The user's conversations, newest first (search: `conversations.search`)."""
    return Conversation.objects.filter(owner=user, archived=archived).order_by("-updated_at")


def conversation_exists(*, user, conversation_id: uuid.UUID | str) -> bool:
    return Conversation.objects.filter(pk=conversation_id, owner=user).exists()


def session_is_valid(*, session_key: str | None, user_id: int) -> bool:
    """Whether a session still signs this user in: it exists and has not expired, names
    the user, the user is active and the password has not changed since it was made."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
        load_backend,
    )
    from django.contrib.sessions.backends.base import SessionBase
    from django.utils.crypto import constant_time_compare
    from django.utils.module_loading import import_string

    if not session_key:
        return False
    store: SessionBase = import_string(f"{settings.SESSION_ENGINE}.SessionStore")(session_key=session_key)
    data = store.load()  # {} when missing or expired
    if str(data.get(SESSION_KEY)) != str(user_id) or BACKEND_SESSION_KEY not in data:
        return False
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not load_backend(data[BACKEND_SESSION_KEY]).user_can_authenticate(user):
        return False
    return constant_time_compare(data.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash())


def conversation_get(*, user, conversation_id: uuid.UUID | str) -> Conversation:
    """The conversation if `user` owns it; 404 otherwise (the same for missing and foreign ids)."""
    conversation = Conversation.objects.filter(pk=conversation_id, owner=user).first()
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


def conversation_history(
    *,
    conversation: Conversation,
    before: uuid.UUID | str | None = None,
    limit: int | None = None,
    leaf: uuid.UUID | None = None,
    showing: uuid.UUID | None = None,
) -> tuple[list[Message], bool]:
    """A page of the visible branch (or of the branch ending at `leaf`), oldest first,
    ending just before `before` (or at the newest message). Returns (messages, has_earlier).

    `showing` (a search hit) is on the page: when it is older than the last page,
    the page starts at it and runs to the end of the branch.
    """
    limit = limit or settings.CHAT_HISTORY_PAGE
    ids = conversation.visible_message_ids(leaf=leaf)
    if before is not None:
        try:
            ids = ids[: ids.index(uuid.UUID(str(before)))]
        except ValueError:
            ids = []
    page = ids[-limit:]
    if showing is not None and showing in ids and showing not in page:
        page = ids[ids.index(showing) :]
    messages = messages_in_order(conversation=conversation, ids=page)
    return messages, len(ids) > len(page)


def messages_in_order(*, conversation: Conversation, ids: list[uuid.UUID]) -> list[Message]:
    """The messages of `ids`, in that order, each with its `versions` (the switcher)."""
    # Citations (documents app) are shown under replies: one query for the page.
    by_id = Message.objects.prefetch_related("citations").in_bulk(ids)
    messages = [by_id[i] for i in ids if i in by_id]
    attach_versions(conversation=conversation, messages=messages)
    return messages


# --- the sidebar ---------------------------------------------------------------------


@dataclass(frozen=True)
class SidebarGroup:
    key: str  # "pinned", "today", "yesterday", "week", "month", or "YYYY-MM"
    label: str
    conversations: list[Conversation]


@dataclass(frozen=True)
class SidebarPage:
    groups: list[SidebarGroup]
    next_cursor: str  # "" when this page is the last


def conversation_page(
    *, user, archived: bool = False, cursor: str = "", limit: int | None = None
) -> SidebarPage:
    """One page of the sidebar, grouped by date; the first page starts with every pinned one.

    Pages are cut by keyset on (updated_at, id), so a conversation that moves
    while someone scrolls is neither shown twice nor skipped below the cut.
    Raises ValueError for a cursor this function did not make.
    """
    limit = limit or settings.CHAT_SIDEBAR_PAGE
    conversations = Conversation.objects.filter(owner=user, archived=archived)
    groups: list[SidebarGroup] = []
    rest = conversations.filter(pinned=False)
    if cursor:
        moment, conversation_id = _parse_cursor(cursor)
        rest = rest.filter(Q(updated_at__lt=moment) | Q(updated_at=moment, id__lt=conversation_id))
    else:
        pinned = list(conversations.filter(pinned=True).order_by("-updated_at", "-id"))
        if pinned:
            groups.append(SidebarGroup("pinned", "Pinned", pinned))
    page = list(rest.order_by("-updated_at", "-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    groups.extend(_by_date(page))
    next_cursor = f"{page[-1].updated_at.isoformat()}|{page[-1].id}" if more else ""
    return SidebarPage(groups=groups, next_cursor=next_cursor)


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    moment_text, _, id_text = cursor.partition("|")
    moment = datetime.fromisoformat(moment_text)
    if moment.tzinfo is None:
        raise ValueError("a cursor carries an aware time")
    return moment, uuid.UUID(id_text)


def date_group(moment: datetime, *, today: date) -> tuple[str, str]:
    """(key, label) of the group a conversation last active at `moment` belongs to."""
    day = timezone.localtime(moment).date()
    age = (today - day).days
    if age <= 0:
        return "today", "Today"
    if age == 1:
        return "yesterday", "Yesterday"
    if age <= 7:
        return "week", "Previous 7 days"
    if age <= 30:
        return "month", "Previous 30 days"
    return f"{day:%Y-%m}", date_format(day, "F Y")


def _by_date(conversations: list[Conversation]) -> list[SidebarGroup]:
    today = timezone.localdate()
    groups: list[SidebarGroup] = []
    for conversation in conversations:
        key, label = date_group(conversation.updated_at, today=today)
        if not groups or groups[-1].key != key:
            groups.append(SidebarGroup(key, label, []))
        groups[-1].conversations.append(conversation)
    return groups
