"""What a send is checked against, read in one statement once its rows are locked.

This is the hottest read of the app (every send, edit, regenerate and API
call runs it) and it is written in SQL rather than built with the ORM:
building the same statement from eight annotated subqueries cost ~4 ms of
Python per send (Query.clone, mostly), running it ~0.1 ms of PostgreSQL
(docs/perf.md). The SQL is portable (PostgreSQL and SQLite); table and
column names come from the models, values are parameters (but for its two
constants: `_statement`). The send's other statements are in
`conversations/statements.py`.

The rules it reads are those of `accounts.policy` (model access by group,
per-user overrides of the limits) and of `conversations.services`
(`check_can_generate` decides; this only reads).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model

from accounts import policy
from accounts.models import ANY_MODEL, GroupModelAccess, Profile
from chatplatform.loopdb import backend
from conversations.models import Conversation, Message, UsageEvent
from conversations.statements import prepared_cursor


@dataclass(frozen=True, slots=True)
class SendState:
    resend_id: uuid.UUID | None  # the message an earlier send with this client_id stored
    busy: bool  # a reply is being written in this conversation
    running: int  # the owner's replies being written, in every conversation
    spent: int  # the owner's tokens since `since`
    model_granted: bool  # a group of the owner grants the conversation's model (or "*")
    limits: policy.Limits
    leaf_id: (
        uuid.UUID | None
    )  # the shown branch's leaf (Conversation.shown_leaf_id's rule): what a send answers


_SQL = """
SELECT
    (SELECT m.id FROM {message} m
        WHERE m.conversation_id = c.id AND m.client_id = %s) AS resend_id,
    EXISTS (SELECT 1 FROM {message} m
        WHERE m.conversation_id = c.id AND m.status = {streaming}) AS busy,
    (SELECT COUNT(*) FROM {conversation} o
        WHERE o.owner_id = c.owner_id
          AND EXISTS (SELECT 1 FROM {message} m
              WHERE m.conversation_id = o.id AND m.status = {streaming} LIMIT 1 OFFSET 0)) AS running,
    COALESCE((SELECT SUM(u.prompt_tokens + u.completion_tokens) FROM {usage} u
        WHERE u.user_id = c.owner_id AND u.created_at >= %s), 0) AS spent,
    EXISTS (SELECT 1 FROM {access} a JOIN {user_groups} g ON g.group_id = a.group_id
        WHERE g.user_id = c.owner_id
          AND (a.model = {any_model} OR a.model = COALESCE(NULLIF(c.model, ''), %s))) AS model_granted,
    (SELECT p.daily_token_budget FROM {profile} p WHERE p.user_id = c.owner_id) AS daily_override,
    (SELECT p.concurrent_replies FROM {profile} p WHERE p.user_id = c.owner_id) AS concurrent_override,
    (SELECT CASE
            WHEN c.current_leaf_id IS NOT NULL AND c.branch_chosen_at IS NOT NULL
                 AND n.created_at <= c.branch_chosen_at THEN c.current_leaf_id
            ELSE n.id END
        FROM {message} n WHERE n.conversation_id = c.id
        ORDER BY n.created_at DESC, n.id DESC LIMIT 1) AS leaf_id
FROM {conversation} c
WHERE c.id = %s
"""


# `running` counts the owner's conversations with a reply being written (at most one
# each: the unique partial index `one_streaming_reply_per_conversation`), one probe of
# that index per conversation of the owner. Written as a join, or as a plain EXISTS
# (which PostgreSQL makes a semi-join), it was planned from the index's side: every
# send read every user's streaming replies, and the dead entries their checkpoints leave
# until the table is vacuumed, a cost that grew with the load of the whole deployment
# (docs/perf.md, change 56). `OFFSET 0` keeps the EXISTS a subquery of its own.


@functools.cache
def _statement() -> str:
    """The statement's text, built once: names from the models, and as literals the two
    constants it compares with (so that PostgreSQL plans it once per connection: with
    `status = $n`, the partial index on streaming replies was usable only by a plan
    made for the value, and the statement was planned on every send; docs/perf.md)."""
    quote = backend().ops.quote_name
    return _SQL.format(
        message=quote(Message._meta.db_table),
        conversation=quote(Conversation._meta.db_table),
        usage=quote(UsageEvent._meta.db_table),
        access=quote(GroupModelAccess._meta.db_table),
        user_groups=quote(get_user_model().groups.through._meta.db_table),
        profile=quote(Profile._meta.db_table),
        streaming=_literal(Message.Status.STREAMING.value),
        any_model=_literal(ANY_MODEL),
    )


def _literal(value: str) -> str:
    """A constant of the code as an SQL string literal (never a user's value)."""
    if "'" in value or "\\" in value:
        raise ValueError(f"not a plain constant: {value!r}")
    return f"'{value}'"


def as_uuid(value) -> uuid.UUID | None:
    """A UUID column's value from a raw cursor: PostgreSQL gives UUIDs, SQLite their hex text."""
    return None if value is None else (value if isinstance(value, uuid.UUID) else uuid.UUID(value))


def read_send_state(
    conversation: Conversation, *, since: datetime, default_model: str, client_id: uuid.UUID | None = None
) -> SendState:
    """The state of `conversation` and its owner for a send (`default_model`: what a
    conversation with no model of its own uses; `since`: the start of the budget's day)."""
    with prepared_cursor() as cursor:
        cursor.execute(
            *send_state_statement(
                conversation.pk, since=since, default_model=default_model, client_id=client_id
            )
        )
        return send_state_from(cursor.fetchone())


def send_state_statement(
    conversation_id: uuid.UUID, *, since: datetime, default_model: str, client_id: uuid.UUID | None = None
) -> tuple[str, list]:
    """`read_send_state`'s statement and parameters (a send on the event loop runs it on
    its own connection: conversations/loop_send.py)."""
    db = backend()
    return _statement(), [
        Message._meta.pk.get_db_prep_value(client_id, db),
        db.ops.adapt_datetimefield_value(since),
        default_model,
        Conversation._meta.pk.get_db_prep_value(conversation_id, db),
    ]


def send_state_from(row: tuple) -> SendState:
    """The state from `send_state_statement`'s row."""
    resend_id, busy, running, spent, granted, daily, concurrent, leaf_id = row
    return SendState(
        resend_id=as_uuid(resend_id),
        busy=bool(busy),
        running=int(running),
        spent=int(spent),
        model_granted=bool(granted),
        limits=policy.limits_from(daily, concurrent),
        leaf_id=as_uuid(leaf_id),
    )
