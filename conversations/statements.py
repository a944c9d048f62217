"""The hottest writes and the send's locks, hand-written.

Every send locks its conversation and owner and inserts two messages; every
streaming reply is checkpointed about once a second; every reply ends with an
update of its row, a usage event and the conversation's time. Built by the ORM, these statements cost more Python than PostgreSQL
takes to run them (the locking `select_related`, `bulk_create` and
`Model.save` compiling; a reply's final write was ~10 % of a streaming
process's CPU at N=100, docs/perf.md round three). Here they are portable SQL
(PostgreSQL and SQLite, which has no row locks) built from the models' own
table and column names, values go through each field's `get_db_prep_*` and
come back through the ORM's converters and `Model.from_db`, as the ORM's own
would.
"""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.utils import CursorWrapper

from chatplatform import tracing
from chatplatform.loopdb import backend
from conversations.models import Conversation, Message


def prepared_cursor() -> CursorWrapper:
    """A cursor for the statements every send and reply run, to be used like `connection.cursor()`.

    On PostgreSQL its parameters are bound by the server (the ORM's cursors
    bind them in Python), so psycopg prepares a statement once a connection
    has run it DB_PREPARE_THRESHOLD times, and PostgreSQL stops planning it:
    planning was 0.55 ms of the 0.7 ms PostgreSQL spent on a send's four
    reads (warm connection, `EXPLAIN ANALYZE`, docs/perf.md). Only these
    statements are prepared: their text never changes, so the few a
    connection keeps are always the same.
    """
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        return db.cursor()
    import psycopg

    # What `connection.cursor()` does first, then a server-binding cursor in the same wrapper
    # (errors translated, queries logged when Django logs them).
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        cursor = tracing.traced_cursor(psycopg.Cursor)(db.connection)
    return db.make_debug_cursor(cursor) if db.queries_logged else db.make_cursor(cursor)


def lock_for_send(conversation_id: uuid.UUID, owner_id: int) -> Conversation | None:
    """The owner's conversation with its `owner` row, both locked `FOR UPDATE` in one
    statement (None: no such conversation of theirs). Inside a transaction."""
    with prepared_cursor() as cursor:
        cursor.execute(*lock_for_send_statement(conversation_id, owner_id))
        return locked_for_send(cursor.fetchone())


def lock_for_send_statement(conversation_id: uuid.UUID, owner_id: int) -> tuple[str, list]:
    """`lock_for_send`'s statement and parameters (a send on the event loop runs it on
    its own connection: conversations/loop_send.py)."""
    db = backend()
    key = ("lock_for_send", db.vendor)
    sql = _SQL.get(key)
    if sql is None:
        user_model = get_user_model()
        quote = db.ops.quote_name
        owner_column = quote(Conversation._meta.get_field("owner").column)
        columns = [f"c.{quote(f.column)}" for f in Conversation._meta.concrete_fields]
        columns += [f"u.{quote(f.column)}" for f in user_model._meta.concrete_fields]
        lock = " FOR UPDATE OF c, u" if db.features.has_select_for_update_of else ""
        sql = _SQL[key] = (
            f"SELECT {', '.join(columns)} FROM {quote(Conversation._meta.db_table)} c "
            f"JOIN {quote(user_model._meta.db_table)} u ON u.{quote(user_model._meta.pk.column)} = c.{owner_column} "
            f"WHERE c.{quote(Conversation._meta.pk.column)} = %s AND c.{owner_column} = %s{lock}"
        )
    return sql, [Conversation._meta.pk.get_db_prep_value(conversation_id, db), owner_id]


def locked_for_send(row: tuple | None) -> Conversation | None:
    """The conversation, with its `owner`, from `lock_for_send_statement`'s row."""
    if row is None:
        return None
    split = len(Conversation._meta.concrete_fields)
    conversation = _from_row(Conversation, row[:split])
    conversation.owner = _from_row(get_user_model(), row[split:])
    return conversation


def insert_rows(rows: list[models.Model]) -> None:
    """INSERT new rows of one model in one statement (what `bulk_create` does, without
    its compiling). An auto-incremented key is left to the database and not read back."""
    sql, params = _insert(rows)
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
    mark_inserted(rows)


def insert_rows_and_update(
    rows: list[models.Model], model: type[models.Model], values: dict, **where
) -> None:
    """`insert_rows(rows)` and `update_where(model, values, **where)`, in one statement on
    PostgreSQL (the UPDATE a data-modifying `WITH` of the INSERT), two elsewhere: a round
    trip fewer for every send, whose two messages and conversation's time are written so
    (the conversation's row is already locked by the send's transaction)."""
    if backend().vendor != "postgresql":
        insert_rows(rows)
        update_where(model, values, **where)
        return
    with prepared_cursor() as cursor:
        cursor.execute(*insert_rows_and_update_statement(rows, model, values, **where))
    mark_inserted(rows)


def insert_rows_and_update_statement(
    rows: list[models.Model], model: type[models.Model], values: dict, **where
) -> tuple[str, list]:
    """`insert_rows_and_update`'s statement and parameters on PostgreSQL; once it has run,
    `mark_inserted(rows)`."""
    insert, insert_params = _insert(rows)
    update, update_params = _update(model, values, where)
    return f"WITH updated AS ({update}) {insert}", update_params + insert_params


def update_where(model: type[models.Model], values: dict, **where) -> int:
    """UPDATE `model` SET `values` WHERE every `where` field equals its value; the rows
    changed (what `filter(**where).update(**values)` does, without its compiling)."""
    sql, params = _update(model, values, where)
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def update_returning(model: type[models.Model], values: dict, **where) -> models.Model | None:
    """`update_where` for one row (`where` names its `pk`), and that row as it is after
    the update, or None when nothing matched: one `UPDATE ... RETURNING` (PostgreSQL,
    SQLite >= 3.35), an UPDATE and a read elsewhere. The ORM's `update()` and
    `first()` for a first exchange's title were 1.9 % of a streaming process's
    samples at N=100 (docs/perf.md, change 50)."""
    db = backend()
    if not db.features.can_return_columns_from_insert:
        if not update_where(model, values, **where):
            return None
        return model._default_manager.filter(pk=where["pk"]).first()
    sql, params = _update(model, values, where)
    key = ("update_returning", sql)
    returning = _SQL.get(key)
    if returning is None:
        columns = ", ".join(db.ops.quote_name(f.column) for f in model._meta.concrete_fields)
        returning = _SQL[key] = f"{sql} RETURNING {columns}"
    with prepared_cursor() as cursor:
        cursor.execute(returning, params)
        row = cursor.fetchone()
    return None if row is None else _from_row(model, row)


def _insert(rows: list[models.Model]) -> tuple[str, list]:
    db = backend()
    meta = rows[0]._meta
    fields = [field for field in meta.concrete_fields if not field.db_returning]
    key = ("insert_rows", db.vendor, meta.label, len(rows))
    sql = _SQL.get(key)
    if sql is None:
        quote = db.ops.quote_name
        placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = _SQL[key] = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
            f"VALUES {', '.join([placeholders] * len(rows))}"
        )
    return sql, [field.get_db_prep_save(getattr(row, field.attname), db) for row in rows for field in fields]


def mark_inserted(rows: list[models.Model]) -> None:
    """The rows are stored: what the ORM marks on the instances it saved."""
    for row in rows:
        row._state.adding, row._state.db = False, DEFAULT_DB_ALIAS


def _update(model: type[models.Model], values: dict, where: dict) -> tuple[str, list]:
    db = backend()
    meta = model._meta

    def field(name: str) -> models.Field:
        return meta.pk if name == "pk" else meta.get_field(name)

    key = ("update_where", db.vendor, meta.label, tuple(values), tuple(where))
    sql = _SQL.get(key)
    if sql is None:
        quote = db.ops.quote_name
        sets = ", ".join(f"{quote(field(name).column)} = %s" for name in values)
        conditions = " AND ".join(f"{quote(field(name).column)} = %s" for name in where)
        sql = _SQL[key] = f"UPDATE {quote(meta.db_table)} SET {sets} WHERE {conditions}"
    params = [field(name).get_db_prep_save(value, db) for name, value in values.items()]
    params += [field(name).get_db_prep_value(value, db) for name, value in where.items()]
    return sql, params


def checkpoint_replies(contents: dict[uuid.UUID, str], *, now) -> None:
    """Each `streaming` reply's partial text, with `now` as its heartbeat, in one `UPDATE`.
    Built with the ORM, the `CASE` of one `WHEN` a reply cost ~0.4 ms of Python per
    reply (each `When` copied and resolved): 7 % of a streaming process's CPU at N=100.
    On PostgreSQL the texts come as two arrays joined by `unnest`: a statement whose
    text never changes, prepared like a send's, where a `CASE` of a hundred replies
    had 300 parameters that psycopg split out of its text at every batch (its cache
    keeps statements of at most 50; docs/perf.md, change 52)."""
    db = connections[DEFAULT_DB_ALIAS]
    meta = Message._meta
    ids = [meta.pk.get_db_prep_value(message_id, db) for message_id in contents]
    at = db.ops.adapt_datetimefield_value(now)
    if db.vendor == "postgresql":
        key = ("checkpoint_replies", db.vendor)
        sql = _SQL.get(key)
        if sql is None:
            quote = db.ops.quote_name
            table = quote(meta.db_table)
            column = {name: quote(meta.get_field(name).column) for name in _CHECKPOINT_COLUMNS}
            sql = _SQL[key] = (
                f"UPDATE {table} SET {column['content']} = batch.content, "
                f"{column['heartbeat_at']} = %s, {column['updated_at']} = %s "
                "FROM unnest(%s::uuid[], %s::text[]) AS batch(id, content) "
                f"WHERE {table}.{column['id']} = batch.id AND {table}.{column['status']} = %s"
            )
        with prepared_cursor() as cursor:
            cursor.execute(sql, [at, at, ids, list(contents.values()), Message.Status.STREAMING.value])
        return
    quote = db.ops.quote_name
    column = {name: quote(meta.get_field(name).column) for name in _CHECKPOINT_COLUMNS}
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {column['content']} = CASE {column['id']} "
        + "WHEN %s THEN %s " * len(ids)
        + f"ELSE {column['content']} END, {column['heartbeat_at']} = %s, {column['updated_at']} = %s "
        + f"WHERE {column['id']} IN ({', '.join(['%s'] * len(ids))}) AND {column['status']} = %s"
    )
    when_then = [value for pair in zip(ids, contents.values(), strict=True) for value in pair]
    with db.cursor() as cursor:
        cursor.execute(sql, [*when_then, at, at, *ids, Message.Status.STREAMING.value])


_CHECKPOINT_COLUMNS = ("id", "content", "status", "heartbeat_at", "updated_at")


def _from_row(model, row) -> models.Model:
    """An instance of `model` from its concrete columns' values as the database returned
    them, converted as the ORM converts them (what the ORM's own reads build)."""
    values = [
        value if convert is None else convert(value)
        for convert, value in zip(_converters(model), row, strict=True)
    ]
    return model.from_db(DEFAULT_DB_ALIAS, [f.attname for f in model._meta.concrete_fields], values)


def _converters(model) -> list:
    """Per column of `model`, what turns the database's value into the field's Python
    value, as the ORM applies it (the backend's converters, e.g. SQLite's UUIDs,
    booleans and datetimes, then the field's `from_db_value`). Built once per backend."""
    db = backend()
    key = (db.vendor, model)
    converters = _CONVERTERS.get(key)
    if converters is None:
        from django.db.models.expressions import Col

        converters = []
        for field in model._meta.concrete_fields:
            column = Col(model._meta.db_table, field)
            steps = db.ops.get_db_converters(column) + field.get_db_converters(db)
            converters.append(_chain(steps, column, db) if steps else None)
        _CONVERTERS[key] = converters
    return converters


_CONVERTERS: dict[tuple[str, type], list] = {}
# Statements by what they depend on (the backend, the model, the columns named): built once.
_SQL: dict[tuple, str] = {}


def _chain(steps, expression, db):
    def convert(value):
        for step in steps:
            value = step(value, expression, db)
        return value

    return convert
