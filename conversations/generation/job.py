"""What a reply needs to be generated, read from the database by the runtime itself.

Callers (the socket, the HTTP API) only name the reply; the runtime reads
the conversation's current settings, its owner's custom instructions and the
branch the reply answers when the reply starts, so nothing a caller cached
can be stale.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.conf import settings

from conversations.llm.base import ChatMessage, GenerationOptions, estimate_tokens
from conversations.models import Message


@dataclass(frozen=True, slots=True)
class ReplyJob:
    message_id: uuid.UUID
    conversation_id: uuid.UUID
    user_id: int
    model: str
    system_prompt: str
    history: tuple[ChatMessage, ...]
    first_exchange: bool
    # A continued reply starts from the text it has (message.continue).
    initial_text: str = ""
    options: GenerationOptions = field(default_factory=GenerationOptions)
    # The attachments' passages in the context, as `sources` of `message.completed`.
    sources: tuple[dict, ...] = ()

    @property
    def first_user_text(self) -> str:
        return next((m.content for m in self.history if m.role == "user"), "")


def load_job(message_id: uuid.UUID, options: GenerationOptions | None = None) -> ReplyJob | None:
    """The job of a `streaming` reply, or None when it is no longer streaming."""
    reply = (
        Message.objects.select_related("conversation", "conversation__owner")
        .filter(pk=message_id, status=Message.Status.STREAMING)
        .first()
    )
    if reply is None:
        return None
    conversation = reply.conversation
    ids = conversation.visible_message_ids(leaf=reply.parent_id)
    history, whole = _branch_tail(ids)
    if reply.content:  # continuing: the model carries on from its own text
        history.append(ChatMessage(role="assistant", content=reply.content))
    passages = _passages(conversation, history, reply_id=reply.id)
    return ReplyJob(
        message_id=reply.id,
        conversation_id=conversation.id,
        user_id=conversation.owner_id,
        model=conversation.model,
        system_prompt=_with_passages(_system_prompt(conversation), passages),
        history=tuple(history),
        first_exchange=whole and not conversation.title and sum(m.role == "user" for m in history) == 1,
        initial_text=reply.content,
        options=options or GenerationOptions(),
        sources=tuple(passage.to_source(number) for number, passage in enumerate(passages, start=1)),
    )


#: Messages of a branch read per query, newest first (see _branch_tail).
HISTORY_BATCH = 128


def _branch_tail(ids: list[uuid.UUID]) -> tuple[list[ChatMessage], bool]:
    """The newest messages of the branch `ids` (oldest first) that the context window could hold.

    Reads them newest first, HISTORY_BATCH at a time, and stops once they hold
    twice LLM_CONTEXT_TOKENS by the four-characters estimate (no model's
    window is larger, and the margin covers a tokenizer that counts fewer
    tokens than the estimate): build_context then fits the window from a
    tail, so a send in a 2,000-message conversation reads ~100 rows, not
    2,000 (docs/perf.md). Returns (history, whether it is the whole branch).
    """
    enough = 2 * settings.LLM_CONTEXT_TOKENS
    tail: list[ChatMessage] = []
    estimated = 0
    end = len(ids)
    while end > 0 and estimated <= enough:
        batch = ids[max(0, end - HISTORY_BATCH) : end]
        by_id = Message.objects.in_bulk(batch)
        for message in (by_id[i] for i in reversed(batch) if i in by_id):
            if message.content and message.role != Message.Role.SYSTEM:
                tail.append(ChatMessage(role=message.role, content=message.content))
                estimated += estimate_tokens(message.content)
        end -= len(batch)
    tail.reverse()
    return tail, end == 0


def _system_prompt(conversation) -> str:
    """The conversation's system prompt, after the owner's custom instructions."""
    from accounts.models import Profile

    instructions = (
        Profile.objects.filter(user_id=conversation.owner_id)
        .values_list("custom_instructions", flat=True)
        .first()
        or ""
    )
    parts = [part.strip() for part in (instructions, conversation.system_prompt) if part and part.strip()]
    return "\n\n".join(parts)


def _passages(conversation, history: list[ChatMessage], *, reply_id: uuid.UUID) -> list:
    """Passages of the conversation's attachments for the latest question (documents app),
    recorded as the reply's numbered citations."""
    from documents.retrieval import passages_for
    from documents.services import citations_record

    question = next((m.content for m in reversed(history) if m.role == "user"), "")
    if not question:
        return []
    # A third of the window at most, so the question and the history keep room.
    budget = min(settings.DOCUMENTS_CONTEXT_TOKENS, settings.LLM_CONTEXT_TOKENS // 3)
    passages = passages_for(conversation_id=conversation.id, query=question, budget_tokens=budget)
    citations_record(message_id=reply_id, passages=passages)
    return passages


def _with_passages(system_prompt: str, passages: list) -> str:
    from documents.retrieval import context_text

    return "\n\n".join(part for part in (system_prompt, context_text(passages)) if part)
