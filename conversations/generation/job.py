"""What a reply needs to be generated, read from the database once its send committed.

Callers (the socket, the HTTP API) never pass what they cached: `load_job`
reads the conversation's current settings, its owner's custom instructions
and the branch the reply answers after the send's transaction, in the
socket's own database hop (`runtime.stored_with_job`) or in the runtime's
(`Runtime.start`), so nothing can be stale.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field

from django.conf import settings

from accounts.models import Profile
from chatplatform.loopdb import backend
from conversations.llm.base import ChatMessage, GenerationOptions
from conversations.models import Conversation, Message, Source
from conversations.send_state import as_uuid
from conversations.statements import prepared_cursor


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
    # Where the conversation came from (its usage event says so).
    source: str = Source.CHAT
    api_key_name: str = ""

    @property
    def first_user_text(self) -> str:
        return next((m.content for m in self.history if m.role == "user"), "")


# The reply with what the job needs of its conversation and owner. Hand-written
# like send_state's statement: the ORM spent ~1 ms of Python building it (the
# select_related, a Subquery and an Exists) for a primary-key lookup.
_JOB_SQL = """
SELECT m.id AS reply_id, m.parent_id, m.content,
       c.id AS conversation_id, c.owner_id, c.model, c.title, c.system_prompt, c.source, c.api_key_name,
       (SELECT p.custom_instructions FROM {profile} p WHERE p.user_id = c.owner_id) AS instructions,
       EXISTS (SELECT 1 FROM {attachment} a WHERE a.conversation_id = c.id) AS has_documents
FROM {message} m JOIN {conversation} c ON c.id = m.conversation_id
WHERE m.id = %s AND m.status = %s
"""


@functools.cache
def _job_statement() -> str:
    """The job's statement, built once (the names come from the models). On PostgreSQL it
    reads the branch's tail as well (`_JOB_WITH_TAIL_SQL`): one round trip instead of two."""
    from documents.models import Attachment

    db = backend()
    quote = db.ops.quote_name
    job = _JOB_SQL.format(
        message=quote(Message._meta.db_table),
        conversation=quote(Conversation._meta.db_table),
        profile=quote(Profile._meta.db_table),
        attachment=quote(Attachment._meta.db_table),
    )
    if db.vendor != "postgresql":
        return job
    walk = _BRANCH_WALK.format(table=quote(Message._meta.db_table), leaf="(SELECT parent_id FROM job)")
    return _JOB_WITH_TAIL_SQL.format(job=job, walk=walk)


def load_job(message_id: uuid.UUID, options: GenerationOptions | None = None) -> ReplyJob | None:
    """The job of a `streaming` reply, or None when it is no longer streaming.

    One statement on PostgreSQL (two with attachments): the reply with its
    conversation, the owner's custom instructions, whether the conversation
    has documents and the branch's tail (`branch_tail`'s walk). Elsewhere the
    tail is a statement of its own.
    """
    with prepared_cursor() as cursor:
        cursor.execute(*job_statement(message_id))
        row = cursor.fetchone()
    return None if row is None else job_from_row(row, options)


def job_statement(message_id: uuid.UUID) -> tuple[str, list]:
    """`load_job`'s statement and parameters (a send on the event loop runs it on its own
    connection: conversations/loop_send.py)."""
    db = backend()
    params = [Message._meta.pk.get_db_prep_value(message_id, db), Message.Status.STREAMING.value]
    if db.vendor == "postgresql":
        params += [MAX_BRANCH_DEPTH, _enough_chars()]
    return _job_statement(), params


def job_reads_more(row: tuple) -> bool:
    """Whether `job_from_row` reads the database itself for this row: the passages of a
    conversation with documents, and off PostgreSQL the branch's tail."""
    has_documents = row[11]
    return bool(has_documents) or len(row) == _JOB_COLUMNS


def job_from_row(row: tuple, options: GenerationOptions | None = None) -> ReplyJob:
    """The job from `job_statement`'s row (see `job_reads_more`)."""
    (reply_id, parent_id, content, conversation_id, owner_id, model, title, system_prompt, source, api_key_name,
     instructions, has_documents) = row[:_JOB_COLUMNS]  # fmt: skip
    reply_id, conversation_id = as_uuid(reply_id), as_uuid(conversation_id)
    if not parent_id:
        history, whole = [], True
    elif len(row) > _JOB_COLUMNS:  # PostgreSQL's, with the tail
        roles, contents, root = row[_JOB_COLUMNS:]
        history, whole = _history(zip(roles, contents, strict=True)), bool(root)
    else:
        history, whole = branch_tail(as_uuid(parent_id))
    if content:  # continuing: the model carries on from its own text
        history.append(ChatMessage(role="assistant", content=content))
    passages = _passages(conversation_id, history, reply_id=reply_id) if has_documents else []
    return ReplyJob(
        message_id=reply_id,
        conversation_id=conversation_id,
        user_id=owner_id,
        model=model,
        system_prompt=_with_passages(_system_prompt(instructions, system_prompt), passages),
        history=tuple(history),
        first_exchange=whole and not title and sum(m.role == "user" for m in history) == 1,
        initial_text=content,
        options=options or GenerationOptions(),
        sources=tuple(passage.to_source(number) for number, passage in enumerate(passages, start=1)),
        source=source,
        api_key_name=api_key_name,
    )


# The columns of `_JOB_SQL` (PostgreSQL's statement adds the tail's three).
_JOB_COLUMNS = 12


# The branch ending at a message, walked up its parents by the database, newest
# first, each step carrying the characters of the messages newer than it: the walk
# stops at the first message with more than enough newer characters, so it reads the
# tail that could fit a context and no further, however long the conversation.
_BRANCH_WALK = """
tail(role, content, parent_id, depth, chars, newer_chars) AS (
    SELECT role, content, parent_id, 0, LENGTH(content), 0 FROM {table} WHERE id = {leaf}
    UNION ALL
    SELECT m.role, m.content, m.parent_id, tail.depth + 1, LENGTH(m.content), tail.newer_chars + tail.chars
    FROM {table} m JOIN tail ON m.id = tail.parent_id
    WHERE tail.depth < %s AND tail.newer_chars + tail.chars <= %s
)
"""
_BRANCH_TAIL_SQL = """
WITH RECURSIVE {walk}
SELECT role, content, parent_id IS NULL FROM tail ORDER BY depth
"""
# The job and its branch's tail in one statement (PostgreSQL: the tail as arrays, newest first).
_JOB_WITH_TAIL_SQL = """
WITH RECURSIVE job AS ({job}), {walk}
SELECT job.*,
       (SELECT array_agg(role ORDER BY depth) FROM tail),
       (SELECT array_agg(content ORDER BY depth) FROM tail),
       (SELECT bool_or(parent_id IS NULL) FROM tail)
FROM job
"""

#: A branch deeper than this is cut (no conversation gets near it; it bounds the walk).
MAX_BRANCH_DEPTH = 100_000


@functools.cache
def _branch_tail_statement() -> str:
    return _BRANCH_TAIL_SQL.format(
        walk=_BRANCH_WALK.format(table=backend().ops.quote_name(Message._meta.db_table), leaf="%s")
    )


def _enough_chars() -> int:
    """Characters of newer messages after which the walk stops (see `branch_tail`)."""
    return 4 * 2 * settings.LLM_CONTEXT_TOKENS


def _history(rows) -> list[ChatMessage]:
    """The tail's (role, content) rows, newest first, as the context's messages, oldest first."""
    return [
        ChatMessage(role=role, content=content)
        for role, content in reversed(list(rows))
        if content and role != Message.Role.SYSTEM
    ]


def branch_tail(leaf_id: uuid.UUID) -> tuple[list[ChatMessage], bool]:
    """The newest messages of the branch ending at `leaf_id` (oldest first) that the
    context window could hold, in one statement.

    Stops once the newer messages hold twice LLM_CONTEXT_TOKENS by the
    four-characters estimate (no model's window is larger, and the margin
    covers a tokenizer that counts fewer tokens than the estimate):
    build_context then fits the window from a tail, so a send in a
    2,000-message conversation reads ~100 rows at an 8,192-token window, not
    2,000 (docs/perf.md).
    Returns (history, whether it is the whole branch).
    """
    leaf = Message._meta.pk.get_db_prep_value(leaf_id, backend())
    with prepared_cursor() as cursor:
        cursor.execute(_branch_tail_statement(), [leaf, MAX_BRANCH_DEPTH, _enough_chars()])
        rows = cursor.fetchall()
    return _history((role, content) for role, content, _ in rows), any(root for _, _, root in rows)


def _system_prompt(instructions: str | None, system_prompt: str) -> str:
    """The conversation's system prompt, after the owner's custom instructions."""
    parts = [part.strip() for part in (instructions, system_prompt) if part and part.strip()]
    return "\n\n".join(parts)


def _passages(conversation_id: uuid.UUID, history: list[ChatMessage], *, reply_id: uuid.UUID) -> list:
    """Passages of the conversation's attachments for the latest question (documents app),
    recorded as the reply's numbered citations."""
    from documents.retrieval import passages_for
    from documents.services import citations_record

    question = next((m.content for m in reversed(history) if m.role == "user"), "")
    if not question:
        return []
    # A third of the window at most, so the question and the history keep room.
    budget = min(settings.DOCUMENTS_CONTEXT_TOKENS, settings.LLM_CONTEXT_TOKENS // 3)
    passages = passages_for(conversation_id=conversation_id, query=question, budget_tokens=budget)
    citations_record(message_id=reply_id, passages=passages)
    return passages


def _with_passages(system_prompt: str, passages: list) -> str:
    from documents.retrieval import context_text

    return "\n\n".join(part for part in (system_prompt, context_text(passages)) if part)
