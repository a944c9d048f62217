"""The send's statements, hand-written: the locks, what a send is checked against,
and both its messages.

These are the hottest statements of the app (every send, edit, regenerate and
API call runs them) and they are written in SQL rather than built with the
ORM: building the checks from eight annotated subqueries cost ~4 ms of Python
per send (Query.clone, mostly), running them ~0.1 ms of PostgreSQL; the
locking `select_related` and the two-row `bulk_create` spent more Python
compiling than PostgreSQL running them (docs/perf.md). The SQL is portable
(PostgreSQL and SQLite, which has no row locks); table and column names come
from the models, values are parameters, rows become model instances through
`Model.from_db` as the ORM's own would.

The rules the checks read are those of `accounts.policy` (model access by
group, per-user overrides of the limits) and of `conversations.services`
(`check_can_generate` decides; this only reads).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection

from accounts import policy
from accounts.models import ANY_MODEL, GroupModelAccess, Profile
from conversations.models import Conversation, Message, UsageEvent


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
        WHERE m.conversation_id = c.id AND m.status = %s) AS busy,
    (SELECT COUNT(*) FROM {message} m JOIN {conversation} o ON o.id = m.conversation_id
        WHERE o.owner_id = c.owner_id AND m.status = %s) AS running,
    COALESCE((SELECT SUM(u.prompt_tokens + u.completion_tokens) FROM {usage} u
        WHERE u.user_id = c.owner_id AND u.created_at >= %s), 0) AS spent,
    EXISTS (SELECT 1 FROM {access} a JOIN {user_groups} g ON g.group_id = a.group_id
        WHERE g.user_id = c.owner_id
          AND (a.model = %s OR a.model = COALESCE(NULLIF(c.model, ''), %s))) AS model_granted,
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


def _tables() -> dict[str, str]:
    quote = connection.ops.quote_name
    return {
        "message": quote(Message._meta.db_table),
        "conversation": quote(Conversation._meta.db_table),
        "usage": quote(UsageEvent._meta.db_table),
        "access": quote(GroupModelAccess._meta.db_table),
        "user_groups": quote(get_user_model().groups.through._meta.db_table),
        "profile": quote(Profile._meta.db_table),
    }


def as_uuid(value) -> uuid.UUID | None:
    """A UUID column's value from a raw cursor: PostgreSQL gives UUIDs, SQLite their hex text."""
    return None if value is None else (value if isinstance(value, uuid.UUID) else uuid.UUID(value))


def lock_for_send(conversation_id: uuid.UUID, owner_id: int) -> Conversation | None:
    """The owner's conversation with its `owner` row, both locked `FOR UPDATE` in one
    statement (None: no such conversation of theirs). Inside a transaction."""
    user_model = get_user_model()
    conversation_fields = Conversation._meta.concrete_fields
    owner_fields = user_model._meta.concrete_fields
    quote = connection.ops.quote_name
    owner_column = quote(Conversation._meta.get_field("owner").column)
    columns = [f"c.{quote(f.column)}" for f in conversation_fields]
    columns += [f"u.{quote(f.column)}" for f in owner_fields]
    lock = " FOR UPDATE OF c, u" if connection.features.has_select_for_update_of else ""
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(Conversation._meta.db_table)} c "
        f"JOIN {quote(user_model._meta.db_table)} u ON u.{quote(user_model._meta.pk.column)} = c.{owner_column} "
        f"WHERE c.{quote(Conversation._meta.pk.column)} = %s AND c.{owner_column} = %s{lock}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [Conversation._meta.pk.get_db_prep_value(conversation_id, connection), owner_id])
        row = cursor.fetchone()
    if row is None:
        return None
    converters = _converters(Conversation) + _converters(user_model)
    row = [
        value if convert is None else convert(value) for convert, value in zip(converters, row, strict=True)
    ]
    split = len(conversation_fields)
    conversation = Conversation.from_db(
        connection.alias, [f.attname for f in conversation_fields], row[:split]
    )
    conversation.owner = user_model.from_db(connection.alias, [f.attname for f in owner_fields], row[split:])
    return conversation


def insert_messages(messages: list[Message]) -> None:
    """INSERT the new messages in one statement (what `bulk_create` does, without its compiling)."""
    fields = Message._meta.concrete_fields
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {quote(Message._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES {', '.join([row] * len(messages))}"
    )
    params = [
        field.get_db_prep_save(getattr(message, field.attname), connection)
        for message in messages
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    for message in messages:
        message._state.adding, message._state.db = False, connection.alias


def _converters(model) -> list:
    """Per column of `model`, what turns the database's value into the field's Python
    value, as the ORM applies it (the backend's converters, e.g. SQLite's UUIDs,
    booleans and datetimes, then the field's `from_db_value`). Built once per backend."""
    key = (connection.vendor, model)
    converters = _CONVERTERS.get(key)
    if converters is None:
        from django.db.models.expressions import Col

        converters = []
        for field in model._meta.concrete_fields:
            column = Col(model._meta.db_table, field)
            steps = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
            converters.append(_chain(steps, column) if steps else None)
        _CONVERTERS[key] = converters
    return converters


_CONVERTERS: dict[tuple[str, type], list] = {}


def _chain(steps, expression):
    def convert(value):
        for step in steps:
            value = step(value, expression, connection)
        return value

    return convert


def read_send_state(
    conversation: Conversation, *, since: datetime, default_model: str, client_id: uuid.UUID | None = None
) -> SendState:
    """The state of `conversation` and its owner for a send (`default_model`: what a
    conversation with no model of its own uses; `since`: the start of the budget's day)."""
    pk = Message._meta.pk
    streaming = Message.Status.STREAMING.value
    params = [
        pk.get_db_prep_value(client_id, connection),
        streaming,
        streaming,
        connection.ops.adapt_datetimefield_value(since),
        ANY_MODEL,
        default_model,
        Conversation._meta.pk.get_db_prep_value(conversation.pk, connection),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_SQL.format(**_tables()), params)
        row = cursor.fetchone()
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
