"""Writes of the chat domain: plain functions, keyword-only, events after commit."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from accounts import policy
from chatplatform.cache import count
from conversations.events import conversation_payload, publish_on_commit
from conversations.llm import get_provider, provider_status
from conversations.models import Conversation, Message, Source, UsageEvent
from conversations.rendering import render_markdown, stable_prefix_length
from conversations.send_state import SendState, read_send_state
from conversations.statements import (
    checkpoint_replies,
    insert_rows,
    insert_rows_and_update,
    lock_for_send,
    update_returning,
    update_where,
)

TITLE_MAX_CHARS = 200


def conversation_create(*, owner, model: str = "", system_prompt: str = "") -> Conversation:
    return Conversation.objects.create(owner=owner, model=model, system_prompt=system_prompt)


@transaction.atomic
def conversation_update(
    *,
    conversation: Conversation,
    title: str | None = None,
    model: str | None = None,
    system_prompt: str | None = None,
    archived: bool | None = None,
) -> Conversation:
    """Change what the owner may change; every open tab hears `conversation.updated`."""
    changes = {
        "title": title.strip()[:TITLE_MAX_CHARS] if title is not None else None,
        "model": model,
        "system_prompt": system_prompt,
        "archived": archived,
    }
    fields = [name for name, value in changes.items() if value is not None]
    for name in fields:
        setattr(conversation, name, changes[name])
    conversation.updated_at = timezone.now()
    conversation.save(update_fields=[*fields, "updated_at"])
    publish_on_commit(conversation.id, "conversation.updated", **conversation_payload(conversation))
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete a conversation and its messages; its usage events stay in the ledger."""
    conversation.delete()


# --- replies ---------------------------------------------------------------


class SendRefused(Exception):
    """A frame the rules refuse; `code` goes to the client in an `error` frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ReplyStart:
    """The rows a send, edit or regenerate produced (or found, for a resend)."""

    user_message: Message | None
    reply: Message | None
    created: bool


def _lock(conversation_id: uuid.UUID, user) -> Conversation:
    """The user's conversation and the user's own row (`conversation.owner`), locked in one statement.

    The conversation's settings are read afresh for this send, and sends of one
    user (from any tab, conversation or process) are checked one after the other.
    """
    conversation = lock_for_send(conversation_id, user.pk)
    if conversation is None:
        raise SendRefused("not_found", "No such conversation.")
    return conversation


def _lock_owner(user):
    """The user's row alone, locked (a new conversation has no row to lock with it)."""
    return get_user_model().objects.select_for_update().filter(pk=user.pk).first()


def send_state(conversation: Conversation, *, client_id: uuid.UUID | None = None) -> SendState:
    """Everything `check_can_generate` and the send read, in one statement (send_state.py).

    A statement of its own after the locks (not part of the locking one):
    PostgreSQL evaluates a statement's subqueries in the snapshot taken when
    it started, so checks read while waiting for a lock would miss the reply
    the lock's previous holder had just committed.
    """
    return read_send_state(
        conversation, since=budget_day(), default_model=policy.default_model(), client_id=client_id
    )


def budget_day() -> datetime:
    """When the daily token budget's day began (midnight UTC): the usage since counts."""
    return timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)


def check_can_generate(*, conversation: Conversation, state: SendState) -> None:
    """Model access, rate limit, one reply at a time, concurrent replies and the daily token budget.

    Called inside the send's transaction with the owner's row locked
    (`conversation.owner`, see `_lock`) and `state` read after the lock, so
    limits hold under concurrency. Replies still being written reserve
    LLM_MAX_OUTPUT_TOKENS each against the budget, so concurrent sends cannot
    together overrun it. The rate limit counts in the cache (Redis when
    configured), across processes. Model access and the user's own limits
    come from `accounts.policy` (groups, profile overrides).

    A send on the event loop (loop_send.py) takes the same three steps, the
    count awaited (`chatplatform.cache.acount`) instead of blocking the loop.
    """
    check_may_generate(conversation=conversation, state=state)
    check_limits(state=state, sends_this_minute=count(*send_counter(conversation.owner_id)))


def check_may_generate(*, conversation: Conversation, state: SendState) -> None:
    """A model, an active owner and the owner's access to the conversation's model."""
    if get_provider() is None:
        raise SendRefused("no_model", provider_status()["reason"] or "No model is configured.")
    owner = conversation.owner
    if not owner.is_active:
        raise SendRefused("session_ended", "Your session has ended; log in again.")
    if not (owner.is_superuser or state.model_granted):
        raise SendRefused(
            "model_not_allowed",
            f"You may not use the model {conversation.model or 'set as default'}; choose another in Options.",
        )


def send_counter(user_id: int) -> tuple[str, int]:
    """The rate limit's counter of this minute's sends by `user_id`, and its lifetime in seconds."""
    return f"ratelimit:send:{user_id}:{int(time.time() // 60)}", 120


def check_limits(*, state: SendState, sends_this_minute: int) -> None:
    """The rate limit (this send counted), one reply at a time, concurrent replies and the budget."""
    if sends_this_minute > settings.CHAT_MESSAGES_PER_MINUTE:
        raise SendRefused(
            "rate_limited", f"At most {settings.CHAT_MESSAGES_PER_MINUTE} messages a minute; wait a moment."
        )
    if state.busy:
        raise SendRefused("busy", "A reply is still being written in this conversation; stop it or wait.")
    if state.running >= state.limits.concurrent_replies:
        raise SendRefused("rate_limited", f"At most {state.limits.concurrent_replies} replies at once.")
    reserved = state.running * settings.LLM_MAX_OUTPUT_TOKENS
    if state.spent + reserved >= state.limits.daily_tokens:
        raise SendRefused("quota_exceeded", "You have used today's token budget; it renews at midnight UTC.")


def _new_reply(
    *, conversation: Conversation, parent_id: uuid.UUID, worker: str, after: datetime | None = None
) -> Message:
    """A `streaming` reply row (not saved), newer than `after` (its question) so it sorts after it."""
    now = timezone.now()
    if after is not None and now <= after:
        now = after + timedelta(microseconds=1)
    return Message(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        parent_id=parent_id,
        model=conversation.model,
        worker=worker,
        heartbeat_at=now,
        created_at=now,
        updated_at=now,
    )


def _existing_send(conversation: Conversation, client_id: uuid.UUID) -> ReplyStart:
    user_message = Message.objects.get(conversation=conversation, client_id=client_id)
    reply = user_message.children.filter(role=Message.Role.ASSISTANT).order_by("-created_at").first()
    return ReplyStart(user_message=user_message, reply=reply, created=False)


@transaction.atomic
def message_send(
    *, conversation_id: uuid.UUID, user, content: str, client_id: uuid.UUID, worker: str
) -> ReplyStart:
    """Store the user's message and a `streaming` reply; idempotent on client_id.

    Three statements on PostgreSQL: the locks, the checks, both messages with the
    touch (four elsewhere: the touch apart; `conversations/tests/test_queries_per_send.py`).
    """
    conversation = _lock(conversation_id, user)
    state = send_state(conversation, client_id=client_id)
    if state.resend_id is not None:
        return _existing_send(conversation, client_id)
    check_can_generate(conversation=conversation, state=state)
    return _ask(
        conversation=conversation,
        content=content,
        client_id=client_id,
        parent_id=state.leaf_id,
        worker=worker,
    )


@transaction.atomic
def conversation_start(
    *, owner, content: str, client_id: uuid.UUID, worker: str, model: str = ""
) -> ReplyStart:
    """A new conversation with its first message and a `streaming` reply, in one transaction.

    A conversation row exists only once it has a message (New chat stores
    nothing); a refused send rolls the row back. Idempotent on client_id: a
    resend finds the conversation the first one made.
    """
    first = (
        Message.objects.filter(
            conversation__owner=owner, client_id=client_id, role=Message.Role.USER, parent__isnull=True
        )
        .select_related("conversation")
        .first()
    )
    if first is not None:
        return _existing_send(first.conversation, client_id)
    locked_owner = _lock_owner(owner)
    if locked_owner is None:
        raise SendRefused("session_ended", "Your session has ended; log in again.")
    conversation = Conversation.objects.create(owner=locked_owner, model=model)
    check_can_generate(conversation=conversation, state=send_state(conversation))
    return _ask(
        conversation=conversation, content=content, client_id=client_id, parent_id=None, worker=worker
    )


@transaction.atomic
def message_edit(
    *,
    conversation_id: uuid.UUID,
    user,
    message_id: uuid.UUID,
    content: str,
    client_id: uuid.UUID,
    worker: str,
) -> ReplyStart:
    """Edit and resend: a new user message beside the old one (a new branch), and its reply."""
    conversation = _lock(conversation_id, user)
    state = send_state(conversation, client_id=client_id)
    if state.resend_id is not None:
        return _existing_send(conversation, client_id)
    target = Message.objects.filter(conversation=conversation, pk=message_id, role=Message.Role.USER).first()
    if target is None:
        raise SendRefused("not_found", "No such message in this conversation.")
    check_can_generate(conversation=conversation, state=state)
    return _ask(
        conversation=conversation,
        content=content,
        client_id=client_id,
        parent_id=target.parent_id,
        worker=worker,
    )


@transaction.atomic
def message_regenerate(*, conversation_id: uuid.UUID, user, message_id: uuid.UUID, worker: str) -> ReplyStart:
    """A new reply to the same user message: a sibling branch; the old reply stays."""
    conversation = _lock(conversation_id, user)
    target = (
        Message.objects.filter(conversation=conversation, pk=message_id, role=Message.Role.ASSISTANT)
        .select_related("parent")
        .first()
    )
    if target is None or target.parent_id is None:
        raise SendRefused("not_found", "No such reply in this conversation.")
    check_can_generate(conversation=conversation, state=send_state(conversation))
    reply = _new_reply(conversation=conversation, parent_id=target.parent_id, worker=worker)
    _insert_and_touch([reply], conversation.pk)
    _announce(conversation, None, reply)
    return ReplyStart(user_message=target.parent, reply=reply, created=True)


@transaction.atomic
def message_continue(*, conversation_id: uuid.UUID, user, message_id: uuid.UUID, worker: str) -> ReplyStart:
    """Carry on a reply that stopped at the length limit: the same row streams again,
    from the text it has (the runtime sends the model that text to continue)."""
    conversation = _lock(conversation_id, user)
    reply = (
        Message.objects.select_for_update()
        .filter(conversation=conversation, pk=message_id, role=Message.Role.ASSISTANT)
        .first()
    )
    if reply is None:
        raise SendRefused("not_found", "No such reply in this conversation.")
    if reply.status != Message.Status.COMPLETE or reply.finish_reason != "length":
        raise SendRefused(
            "not_continuable", "Only a reply that stopped at the length limit can be continued."
        )
    check_can_generate(conversation=conversation, state=send_state(conversation))
    now = timezone.now()
    reply.status = Message.Status.STREAMING
    reply.finish_reason = ""
    reply.worker = worker
    reply.heartbeat_at = now
    reply.updated_at = now
    reply.save(update_fields=["status", "finish_reason", "worker", "heartbeat_at", "updated_at"])
    _touch(conversation.pk)
    # Every tab turns the finished reply back into a live one, its finished blocks
    # rendered as the runtime's relay counts them, so the deltas and blocks that follow fit.
    end = stable_prefix_length(reply.content)
    publish_on_commit(
        conversation.id,
        "message.continued",
        message=reply.to_wire(),
        html=render_markdown(reply.content[:end]),
        end=end,
    )
    return ReplyStart(user_message=None, reply=reply, created=True)


def _ask(
    *,
    conversation: Conversation,
    content: str,
    client_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    worker: str,
) -> ReplyStart:
    """The user message and its `streaming` reply (one INSERT, with the conversation's
    touch in the same statement on PostgreSQL, inside the caller's transaction),
    announced after commit."""
    user_message, reply = new_exchange(
        conversation=conversation, content=content, client_id=client_id, parent_id=parent_id, worker=worker
    )
    _insert_and_touch([user_message, reply], conversation.pk)
    _announce(conversation, user_message, reply)
    return ReplyStart(user_message=user_message, reply=reply, created=True)


def new_exchange(
    *,
    conversation: Conversation,
    content: str,
    client_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    worker: str,
) -> tuple[Message, Message]:
    """The user message and its `streaming` reply, not saved (a send stores both)."""
    user_message = Message(
        conversation=conversation,
        role=Message.Role.USER,
        content=content,
        client_id=client_id,
        parent_id=parent_id,
    )
    reply = _new_reply(
        conversation=conversation, parent_id=user_message.id, worker=worker, after=user_message.created_at
    )
    return user_message, reply


def _touch(conversation_id: uuid.UUID, *, at: datetime | None = None) -> None:
    """The conversation moves to the top of its owner's history."""
    update_where(Conversation, {"updated_at": at or timezone.now()}, pk=conversation_id)


def _insert_and_touch(rows: list, conversation_id: uuid.UUID, *, at: datetime | None = None) -> None:
    """`rows` inserted and the conversation touched, in one statement on PostgreSQL."""
    insert_rows_and_update(rows, Conversation, {"updated_at": at or timezone.now()}, pk=conversation_id)


def _announce(conversation: Conversation, user_message: Message | None, reply: Message) -> None:
    for message in (user_message, reply):
        if message is not None:
            publish_on_commit(conversation.id, "message.created", message=message.to_wire())


def generation_stop_target(*, conversation_id: uuid.UUID, user) -> uuid.UUID | None:
    """The reply being written in the user's conversation, if any (what `generation.stop` stops)."""
    return (
        Message.objects.filter(
            conversation_id=conversation_id, conversation__owner=user, status=Message.Status.STREAMING
        )
        .values_list("id", flat=True)
        .first()
    )


def reply_checkpoint(*, message_id: uuid.UUID, content: str) -> None:
    """Save the partial text and prove this process is alive (see interrupt_stale)."""
    replies_checkpoint(contents={message_id: content})


def replies_checkpoint(*, contents: dict[uuid.UUID, str]) -> None:
    """Checkpoint several streaming replies in one statement: their partial text and heartbeat."""
    if contents:
        checkpoint_replies(contents, now=timezone.now())


_OUTCOME_STATUS = {
    "complete": (Message.Status.COMPLETE, UsageEvent.Status.OK),
    "cancelled": (Message.Status.CANCELLED, UsageEvent.Status.CANCELLED),
    "failed": (Message.Status.FAILED, UsageEvent.Status.FAILED),
    # Stopped by the process shutting down (after its grace period): the text so far is kept.
    "interrupted": (Message.Status.INTERRUPTED, UsageEvent.Status.CANCELLED),
}


@transaction.atomic
def reply_finish(
    *,
    message_id: uuid.UUID,
    user_id: int,
    conversation_id: uuid.UUID,
    outcome: str,
    content: str,
    finish_reason: str,
    error_code: str,
    error: str,
    provider: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    ttft_ms: int | None,
    duration_ms: int,
    source: str = Source.CHAT,
    api_key_name: str = "",
) -> Message | None:
    """Write the final reply and its UsageEvent, once, in one transaction (hand-written
    statements, conversations/statements.py: the reply, then its usage event with the
    conversation's time, one statement on PostgreSQL and two elsewhere).

    `source` and `api_key_name` are the conversation's (where the call came
    from: the chat, or an API key), as the job read them. Returns the reply as
    stored, or None when its row is gone (the conversation was deleted).
    """
    status, usage_status = _OUTCOME_STATUS[outcome]
    now = timezone.now()
    final = {
        "content": content,
        "status": status,
        "finish_reason": finish_reason,
        "error_code": error_code,
        "error": error,
        "model": model,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "ttft_ms": ttft_ms,
        "duration_ms": duration_ms,
    }
    updated = update_where(
        Message,
        {**final, "worker": "", "heartbeat_at": None, "updated_at": now},
        pk=message_id,
        status=Message.Status.STREAMING,
    )
    if updated:
        message = Message(
            id=message_id, conversation_id=conversation_id, role=Message.Role.ASSISTANT, **final
        )
    else:
        # Marked interrupted by a sweep that thought we were dead (its state is kept),
        # or deleted with its conversation.
        message = Message.objects.filter(pk=message_id).first()
        if message is None and not Conversation.objects.filter(pk=conversation_id).exists():
            conversation_id = None
    usage = UsageEvent(
        user_id=user_id,
        conversation_id=conversation_id,
        source=source,
        api_key_name=api_key_name,
        message_id=message.id if message is not None else None,
        provider=provider,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        ttft_ms=ttft_ms,
        duration_ms=duration_ms,
        status=usage_status,
        error_code=error_code,
    )
    if updated:  # and the conversation moves to the top of its owner's history
        _insert_and_touch([usage], conversation_id, at=now)
    else:
        insert_rows([usage])
    return message


def conversation_autotitle(*, conversation_id: uuid.UUID, title: str) -> Conversation | None:
    """Title a conversation that has none yet; a title the user chose is never replaced.

    One conditional UPDATE, so a rename racing the title wins. The caller (async)
    announces the change itself: no hop back into the event loop from here,
    which would hang a process shutting down.
    """
    return update_returning(
        Conversation,
        {"title": title.strip()[:TITLE_MAX_CHARS], "updated_at": timezone.now()},
        pk=conversation_id,
        title="",
    )


def replies_interrupt_stale(*, alive: Callable[[set[str]], set[str]] | None = None) -> list[Message]:
    """Mark replies of dead processes `interrupted`; the caller tells their tabs.

    `alive` (see generation/liveness.py) spares the replies of processes that are
    alive but too busy to have checkpointed lately.
    """
    return Message.objects.interrupt_stale(alive=alive)


def reply_interrupt(*, message_id: uuid.UUID | str, worker: str) -> Message | None:
    """Mark a reply `interrupted` now (its owner `worker` is gone), keeping its last checkpoint."""
    return Message.objects.interrupt_orphan(message_id=message_id, worker=worker)
