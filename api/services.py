"""Writes of the API app: keys (create, revoke, authenticate) and the rows of one API call."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from api.models import PREFIX_LENGTH, ApiKey, hash_key, new_key
from api.schema import CompletionRequest
from conversations.models import Conversation, Message, Source

log = structlog.get_logger(__name__)

NAME_MAX_CHARS = 100
# last_used_at is refreshed at most this often: a busy key is not one extra write per call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class KeyRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def api_key_create(*, user, name: str) -> tuple[ApiKey, str]:
    """A new key for `user`: the row (hash and prefix only) and the key, which is never stored."""
    name = (name or "").strip()
    if not name:
        raise KeyRefused("Give the key a name.")
    if len(name) > NAME_MAX_CHARS:
        raise KeyRefused(f"Key names are at most {NAME_MAX_CHARS} characters.")
    key = new_key()
    try:
        with transaction.atomic():
            api_key = ApiKey.objects.create(
                user=user, name=name, prefix=key[:PREFIX_LENGTH], key_hash=hash_key(key)
            )
    except IntegrityError as exc:
        raise KeyRefused(f"You already have a key named {name!r}.") from exc
    log.info("api_key_created", user_id=user.pk, api_key_id=api_key.pk, prefix=api_key.prefix)
    return api_key, key


def api_key_revoke(*, api_key: ApiKey) -> bool:
    revoked = api_key.revoke()
    if revoked:
        log.info("api_key_revoked", user_id=api_key.user_id, api_key_id=api_key.pk, prefix=api_key.prefix)
    return revoked


def api_key_authenticate(*, key: str) -> ApiKey | None:
    """The live key of an active user that `key` is, or None (bad, revoked, or its user deactivated)."""
    if len(key) <= PREFIX_LENGTH or len(key) > 200:
        return None
    candidates = ApiKey.objects.active().filter(prefix=key[:PREFIX_LENGTH]).select_related("user")
    match = next((candidate for candidate in candidates if candidate.matches(key)), None)
    if match is None or not match.user.is_active:
        return None
    now = timezone.now()
    if match.last_used_at is None or now - match.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=match.pk).update(last_used_at=now)
        match.last_used_at = now
    return match


# --- one API call ------------------------------------------------------------------


@dataclass(frozen=True)
class CallRows:
    conversation_id: uuid.UUID
    client_id: uuid.UUID


@transaction.atomic
def completion_conversation_create(*, user, api_key_name: str, request: CompletionRequest) -> CallRows:
    """The request as a conversation marked `api` (and the key's name, which its usage event
    carries): system text as its system prompt, the
    earlier turns as finished messages on one branch, the last user turn not yet written
    (the chat's send service writes it with its reply, under the chat's limits)."""
    conversation = Conversation.objects.create(
        owner=user,
        model=request.model,
        system_prompt=request.system_prompt,
        source=Source.API,
        api_key_name=api_key_name,
        title=_title(request),
    )
    parent = None
    now = timezone.now()
    earlier = request.exchange[:-1]
    for i, turn in enumerate(earlier):
        parent = Message.objects.create(
            conversation=conversation,
            role=turn.role,
            content=turn.content,
            status=Message.Status.COMPLETE,
            parent=parent,
            # Strictly increasing times keep the branch's order however fast the loop runs.
            created_at=now - timedelta(microseconds=len(earlier) - i),
        )
    return CallRows(conversation_id=conversation.id, client_id=uuid.uuid4())


def _title(request: CompletionRequest) -> str:
    first = next((m.content for m in request.exchange if m.role == "user"), "")
    words = " ".join(first.split()[:8])
    return f"API: {words}"[:200]


def conversation_discard(*, conversation_id: uuid.UUID) -> None:
    """`store` was false: the call leaves nothing but its usage event (its links set NULL)."""
    Conversation.objects.filter(pk=conversation_id).delete()
