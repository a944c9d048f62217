"""Full-text search over chunks with the database's own engine, one small backend per vendor.

PostgreSQL: a generated `tsvector` column on documents_chunk with a GIN index,
ranked by `ts_rank_cd`. SQLite: an FTS5 table (porter stemming) kept in step
with documents_chunk by triggers, ranked by `bm25`. Both are created by the
app's migration and re-ensured after every `migrate` (`ensure_index`), both
fill themselves on insert, and both answer `search()` with chunk ids, best first.
"""

from __future__ import annotations

import re
import uuid
from types import ModuleType

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from documents.search import postgresql, sqlite

# Words that carry no meaning for retrieval (questions are mostly made of them).
_STOPWORDS_TEXT = """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers him his how i if in into is it its itself just me more most my
    no nor not now of off on once only or other our ours out over own same she should so some such
    than that the their theirs them then there these they this those through to too under until up
    very was we were what when where which while who whom why will with would you your yours tell
    please say says said give know find show"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
MAX_TERMS = 32
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def query_terms(query: str) -> list[str]:
    """The distinct meaningful words of a question, lower-cased, in order (letters and digits only)."""
    terms: list[str] = []
    for word in _WORD.findall(query.lower()):
        if (len(word) > 1 or word.isdigit()) and word not in STOPWORDS and word not in terms:
            terms.append(word)
    return terms[:MAX_TERMS]


def backend_for(connection: BaseDatabaseWrapper) -> ModuleType:
    if connection.vendor == "postgresql":
        return postgresql
    if connection.vendor == "sqlite":
        return sqlite
    raise NotImplementedError(f"documents: no full-text backend for {connection.vendor}")


def ensure_index(*, using: str = DEFAULT_DB_ALIAS, **kwargs) -> None:
    """Create the full-text index where it is missing (idempotent; a post_migrate receiver)."""
    connection = connections[using]
    if "documents_chunk" not in connection.introspection.table_names():
        return
    backend_for(connection).install(connection)


def search(*, attachment_ids: list[uuid.UUID], query: str, limit: int) -> list[tuple[int, float]]:
    """(chunk id, score) of the chunks of these attachments that match `query`, best first.

    A higher score is better on every backend. Any word may match (OR): a
    question rarely repeats a passage word for word.
    """
    terms = query_terms(query)
    if not terms or not attachment_ids or limit <= 0:
        return []
    connection = connections[DEFAULT_DB_ALIAS]
    return backend_for(connection).search(connection, attachment_ids=attachment_ids, terms=terms, limit=limit)
