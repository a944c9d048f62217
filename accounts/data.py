"""A person's own data: the download of everything of theirs, and the deletion of their account.

The download is a zip: `data.json` (account, preferences, every conversation
with every message of every branch, the usage ledger, attachment metadata)
and each attachment's file under `attachments/`. Deleting an account deletes
each conversation through `conversations.services.conversation_delete` (so
attachment files go with them), then the user row, whose cascade takes the
rest (profile, usage, keys), then the user's sessions.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from datetime import datetime
from typing import IO, Any

import structlog
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from conversations import services as conversation_services
from conversations.models import Conversation, Message, UsageEvent

log = structlog.get_logger(__name__)

EXPORT_FORMAT = "chatplatform.account"
EXPORT_VERSION = 1
# Built in memory up to this size, then on disk: a big export never sits in RAM whole.
_SPOOL_BYTES = 8 * 1024 * 1024


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _attachment_model():
    """The documents app's Attachment, when that app is installed."""
    if not apps.is_installed("documents"):
        return None
    try:
        return apps.get_model("documents", "Attachment")
    except LookupError:
        return None


def _message(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "parent_id": str(message.parent_id) if message.parent_id else None,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "model": message.model,
        "finish_reason": message.finish_reason,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "created_at": _iso(message.created_at),
    }


def _usage(event: UsageEvent) -> dict[str, Any]:
    return {
        "conversation_id": str(event.conversation_id) if event.conversation_id else None,
        "message_id": str(event.message_id) if event.message_id else None,
        "provider": event.provider,
        "model": event.model,
        "prompt_tokens": event.prompt_tokens,
        "completion_tokens": event.completion_tokens,
        "ttft_ms": event.ttft_ms,
        "duration_ms": event.duration_ms,
        "status": event.status,
        "error_code": event.error_code,
        "created_at": _iso(event.created_at),
    }


def _profile(user) -> dict[str, Any]:
    from accounts.models import Profile

    profile = Profile.objects.filter(user=user).first()
    if profile is None:
        return {}
    return {
        "default_model": profile.default_model,
        "custom_instructions": profile.custom_instructions,
        "theme": profile.theme,
    }


def account_data(*, user) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Everything of `user` as one JSON-able document, and the attachment files to add
    as (path in the zip, attachment row)."""
    conversations = []
    files: list[tuple[str, Any]] = []
    attachment_model = _attachment_model()
    for conversation in Conversation.objects.filter(owner=user).order_by("created_at", "id"):
        attachments = []
        if attachment_model is not None:
            for attachment in attachment_model.objects.filter(conversation=conversation).order_by(
                "created_at"
            ):
                path = f"attachments/{attachment.pk}/{attachment.name}"
                attachments.append(
                    {
                        "id": str(attachment.pk),
                        "name": attachment.name,
                        "size": attachment.size,
                        "content_type": attachment.content_type,
                        "created_at": _iso(attachment.created_at),
                        "file": path if attachment.file else None,
                    }
                )
                if attachment.file:
                    files.append((path, attachment))
        conversations.append(
            {
                "id": str(conversation.id),
                "title": conversation.title,
                "model": conversation.model,
                "system_prompt": conversation.system_prompt,
                "archived": conversation.archived,
                "created_at": _iso(conversation.created_at),
                "updated_at": _iso(conversation.updated_at),
                # Every branch: edits and regenerations keep the versions a person saw.
                "messages": [_message(m) for m in conversation.messages.order_by("created_at", "id")],
                "attachments": attachments,
            }
        )
    document = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": _iso(timezone.now()),
        "account": {
            "username": user.get_username(),
            "email": user.email,
            "date_joined": _iso(user.date_joined),
            "last_login": _iso(user.last_login),
        },
        "preferences": _profile(user),
        "conversations": conversations,
        "usage": [_usage(e) for e in UsageEvent.objects.filter(user=user).order_by("created_at", "id")],
    }
    return document, files


def account_export(*, user) -> IO[bytes]:
    """The zip of `account_data`, rewound, in a temporary file the caller closes."""
    document, files = account_data(user=user)
    archive = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 (FileResponse closes it)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("data.json", json.dumps(document, ensure_ascii=False, indent=2))
        for path, attachment in files:
            with attachment.file.open("rb") as source, zipped.open(path, "w") as target:
                while chunk := source.read(1024 * 1024):
                    target.write(chunk)
    archive.seek(0)
    log.info(
        "account_exported",
        user_id=user.pk,
        conversations=len(document["conversations"]),
        files=len(files),
    )
    return archive


class AccountDeleteRefused(Exception):
    """The account cannot go as things stand (the message says why, for the person)."""


def _last_superuser(user) -> bool:
    if not user.is_superuser:
        return False
    others = get_user_model().objects.filter(is_superuser=True, is_active=True).exclude(pk=user.pk)
    return not others.exists()


def _session_keys_of(user_id: int) -> list[str]:
    """Keys of the stored sessions signed in as `user_id` (Django keys them by session, not user)."""
    keys = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user_id):
            keys.append(session.session_key)
    return keys


def account_delete(*, user) -> None:
    """Delete `user` and everything of theirs: conversations (with their messages and
    attachment files), usage, preferences, sessions. The caller has confirmed it is them."""
    if _last_superuser(user):
        raise AccountDeleteRefused(
            "You are the only administrator. Make someone else an administrator first."
        )
    user_id = user.pk
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user_id)
        conversations = list(Conversation.objects.filter(owner=user))
        for conversation in conversations:
            conversation_services.conversation_delete(conversation=conversation)
        Session.objects.filter(session_key__in=_session_keys_of(user_id)).delete()
        user.delete()
    log.info("account_deleted", user_id=user_id, conversations=len(conversations))
