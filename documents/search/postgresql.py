"""PostgreSQL full-text search: a generated tsvector column, a GIN index, ts_rank_cd."""

from __future__ import annotations

import uuid

# Headings weigh more than body text. The column is GENERATED ... STORED, so
# PostgreSQL fills it on every insert and update; the ORM never names it.
INSTALL = [
    """
    ALTER TABLE documents_chunk ADD COLUMN IF NOT EXISTS search tsvector
    GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(heading, '')), 'A')
        || setweight(to_tsvector('english', coalesce(text, '')), 'B')
    ) STORED
    """,
    "CREATE INDEX IF NOT EXISTS documents_chunk_search ON documents_chunk USING gin (search)",
]

UNINSTALL = [
    "DROP INDEX IF EXISTS documents_chunk_search",
    "ALTER TABLE documents_chunk DROP COLUMN IF EXISTS search",
]

# PostgreSQL's ranking knows nothing of how rare a word is, so a word that is
# in every chunk ("phone" in a staff list) can outweigh the rare ones that
# matter ("Lindqvist"). Chunks are ordered first by how many of the question's
# words they hold (coordination, as Lucene does), then by ts_rank_cd with
# normalisation 1|32: divided by 1 + log(length), so long chunks do not win by
# size, and scaled into [0, 1), so it only breaks ties between equal counts.
SEARCH = """
    SELECT c.id, ({matched}) + ts_rank_cd(c.search, q.query, 33) AS score
    FROM documents_chunk c, to_tsquery('english', %s) AS q(query)
    WHERE c.attachment_id = ANY(%s) AND c.search @@ q.query
    ORDER BY score DESC, c.id
    LIMIT %s
"""
MATCHED = "(c.search @@ to_tsquery('english', %s))::int"


def install(connection) -> None:
    with connection.cursor() as cursor:
        for statement in INSTALL:
            cursor.execute(statement)


def uninstall(connection) -> None:
    with connection.cursor() as cursor:
        for statement in UNINSTALL:
            cursor.execute(statement)


def search(connection, *, attachment_ids: list[uuid.UUID], terms: list[str], limit: int):
    # Terms are letters and digits only (query_terms), so joining them with the
    # OR operator cannot inject tsquery syntax.
    tsquery = " | ".join(terms)
    sql = SEARCH.format(matched=" + ".join([MATCHED] * len(terms)))
    with connection.cursor() as cursor:
        cursor.execute(sql, [*terms, tsquery, list(attachment_ids), limit])
        return [(row[0], float(row[1])) for row in cursor.fetchall()]
