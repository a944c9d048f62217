"""SQLite full-text search: an FTS5 table over documents_chunk, kept by triggers, ranked by bm25."""

from __future__ import annotations

import uuid

# External content: the FTS5 table indexes documents_chunk's rows without
# copying their text; the triggers keep it in step on insert, update and
# delete (cascades included, which never pass through Python).
INSTALL = [
    """
    CREATE VIRTUAL TABLE IF NOT EXISTS documents_chunk_fts USING fts5(
        heading, text, content='documents_chunk', content_rowid='id', tokenize='porter unicode61'
    )
    """,
    """
    CREATE TRIGGER IF NOT EXISTS documents_chunk_fts_insert AFTER INSERT ON documents_chunk BEGIN
        INSERT INTO documents_chunk_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text);
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS documents_chunk_fts_delete AFTER DELETE ON documents_chunk BEGIN
        INSERT INTO documents_chunk_fts(documents_chunk_fts, rowid, heading, text)
        VALUES ('delete', old.id, old.heading, old.text);
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS documents_chunk_fts_update AFTER UPDATE ON documents_chunk BEGIN
        INSERT INTO documents_chunk_fts(documents_chunk_fts, rowid, heading, text)
        VALUES ('delete', old.id, old.heading, old.text);
        INSERT INTO documents_chunk_fts(rowid, heading, text) VALUES (new.id, new.heading, new.text);
    END
    """,
]

UNINSTALL = [
    "DROP TRIGGER IF EXISTS documents_chunk_fts_insert",
    "DROP TRIGGER IF EXISTS documents_chunk_fts_delete",
    "DROP TRIGGER IF EXISTS documents_chunk_fts_update",
    "DROP TABLE IF EXISTS documents_chunk_fts",
]

# bm25 is smaller for better matches: negated, so higher is better as on PostgreSQL.
# Headings weigh twice the body text.
SEARCH = """
    SELECT c.id, -bm25(documents_chunk_fts, 2.0, 1.0) AS score
    FROM documents_chunk_fts JOIN documents_chunk c ON c.id = documents_chunk_fts.rowid
    WHERE documents_chunk_fts MATCH %s AND c.attachment_id IN ({placeholders})
    ORDER BY score DESC, c.id
    LIMIT %s
"""


def install(connection) -> None:
    with connection.cursor() as cursor:
        fresh = not _exists(cursor)
        for statement in INSTALL:
            cursor.execute(statement)
        if fresh:  # rows written before the index existed (or while a rebuilt table had no triggers)
            cursor.execute("INSERT INTO documents_chunk_fts(documents_chunk_fts) VALUES ('rebuild')")


def uninstall(connection) -> None:
    with connection.cursor() as cursor:
        for statement in UNINSTALL:
            cursor.execute(statement)


def _exists(cursor) -> bool:
    cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'documents_chunk_fts'")
    return cursor.fetchone() is not None


def search(connection, *, attachment_ids: list[uuid.UUID], terms: list[str], limit: int):
    from documents.models import Chunk

    # Each term quoted: FTS5 reads it as a plain string, never as query syntax.
    match = " OR ".join(f'"{term}"' for term in terms)
    field = Chunk._meta.get_field("attachment")
    ids = [field.get_db_prep_value(pk, connection) for pk in attachment_ids]
    sql = SEARCH.format(placeholders=", ".join(["%s"] * len(ids)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [match, *ids, limit])
        return [(row[0], float(row[1])) for row in cursor.fetchall()]
