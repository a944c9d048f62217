"""Search a person's conversations: titles, and the text of every message in every branch.

PostgreSQL: full-text search (`to_tsvector` / `to_tsquery`, every word a
prefix so results come while a word is still being typed), ranked with
`ts_rank` and served by the GIN indexes of migration 0002. Other databases
(SQLite): `icontains`, newest first. The snippet is cut in Python around the
best message's first match, the same on both.

Every message counts, in whichever branch it lives (an older version after an
edit, regenerate or retry included), once it is written: a reply still
streaming is found when it ends (the search index leaves it out, so that its
checkpoints, one a second, do not index its growing text again each time).
A hit names its best message, and its link (`/c/<id>/?m=<message id>`) opens
the branch through that message (`versions.hit_branch`), so every hit can be
read where it was written. Among hits of equal rank in one conversation the
newest wins, which is usually the version on the shown branch. A search costs
the same few queries whatever it finds: no branch is walked here.

Snippets and titles come back as HTML: the text escaped, matches wrapped in
`<mark>`, nothing else.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVectorField
from django.db import connection
from django.db.models import F, Func, Q
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from conversations.models import Conversation, Message

# The text search configuration of the queries and of the GIN indexes (changing
# it needs a migration that rebuilds them).
SEARCH_CONFIG = "english"
# At most this many words of a query count.
MAX_TERMS = 8
# The best-ranked message hits looked at per query.
CANDIDATE_MESSAGES = 300
# A title match counts this much more than a match in a message.
TITLE_WEIGHT = 2.0
# Characters of message text around the first match (the Python snippet).
SNIPPET_CHARS = 160


@dataclass(frozen=True)
class Hit:
    conversation: Conversation
    title_html: SafeString
    snippet_html: SafeString  # empty when only the title matched
    message_id: uuid.UUID | None


def search_terms(query: str) -> list[str]:
    """The words of a query, lowercased; punctuation and operators are dropped."""
    return re.findall(r"\w+", query.lower())[:MAX_TERMS]


def conversation_search(
    *, user, query: str, archived: bool = False, offset: int = 0, limit: int = 30
) -> tuple[list[Hit], bool]:
    """A page of the user's conversations matching `query`, best first; (hits, has_more)."""
    terms = search_terms(query)
    if not terms:
        return [], False
    if connection.vendor == "postgresql":
        scored = _scored_postgres(user=user, query=query, terms=terms, archived=archived)
    else:
        scored = _scored_plain(user=user, query=query, archived=archived)
    ordered = sorted(scored, key=lambda s: (-s[0], -s[1].updated_at.timestamp()))
    page = ordered[offset : offset + limit]
    snippets = _snippets([message_id for _, _, message_id in page if message_id], terms, query)
    hits = [
        Hit(
            conversation=conversation,
            title_html=highlight(conversation.display_title, terms),
            snippet_html=snippets.get(message_id, mark_safe("")) if message_id else mark_safe(""),
            message_id=message_id,
        )
        for _, conversation, message_id in page
    ]
    return hits, len(ordered) > offset + limit


# --- PostgreSQL --------------------------------------------------------------------


def _document(field: str) -> Func:
    """`to_tsvector(config, field)`, spelled exactly as the GIN indexes are."""
    return Func(
        F(field),
        template=f"to_tsvector('{SEARCH_CONFIG}'::regconfig, %(expressions)s)",
        output_field=SearchVectorField(),
    )


def _tsquery(terms: list[str]) -> SearchQuery:
    # Terms are \w+ only, so the raw syntax cannot be broken by what a person types.
    return SearchQuery(" & ".join(f"{term}:*" for term in terms), search_type="raw", config=SEARCH_CONFIG)


def _scored_postgres(*, user, query: str, terms: list[str], archived: bool):
    tsquery = _tsquery(terms)
    conversations = Conversation.objects.filter(owner=user, archived=archived)
    scores: dict[uuid.UUID, float] = {}
    # Titles: full text, or a plain substring (a title of stop words still matches).
    for conversation_id, rank in (
        conversations.annotate(document=_document("title"))
        .filter(Q(document=tsquery) | Q(title__icontains=query.strip()))
        .annotate(rank=SearchRank(F("document"), tsquery))
        .values_list("id", "rank")
    ):
        scores[conversation_id] = TITLE_WEIGHT * max(rank, 0.01)
    messages = (
        message_matches(user=user, tsquery=tsquery, archived=archived)
        .annotate(rank=SearchRank(F("document"), tsquery))
        .order_by("-rank", "-created_at")
        .values_list("id", "conversation_id", "rank")[:CANDIDATE_MESSAGES]
    )
    return _merge(scores, list(messages))


def message_matches(*, user, tsquery: SearchQuery, archived: bool):
    """The user's finished messages that match, through the partial GIN index
    `message_content_search` (migration 0008), whose condition `_searchable` repeats."""
    return (
        _searchable(user=user, archived=archived)
        .annotate(document=_document("content"))
        .filter(document=tsquery)
    )


# --- any other database --------------------------------------------------------------


def _scored_plain(*, user, query: str, archived: bool):
    query = query.strip()
    conversations = Conversation.objects.filter(owner=user, archived=archived)
    scores = {
        conversation_id: TITLE_WEIGHT
        for conversation_id in conversations.filter(title__icontains=query).values_list("id", flat=True)
    }
    messages = (
        _searchable(user=user, archived=archived)
        .filter(content__icontains=query)
        .order_by("-created_at")
        .values_list("id", "conversation_id")[:CANDIDATE_MESSAGES]
    )
    return _merge(scores, [(message_id, conversation_id, 1.0) for message_id, conversation_id in messages])


# --- shared ---------------------------------------------------------------------------


def _searchable(*, user, archived: bool):
    """The user's messages a search may find: finished ones, on every database (a reply
    is searchable once it is no longer being written, and its checkpoints do not
    re-index its text)."""
    return Message.objects.filter(conversation__owner=user, conversation__archived=archived).exclude(
        status=Message.Status.STREAMING
    )


def _merge(title_scores: dict[uuid.UUID, float], message_hits: list[tuple[uuid.UUID, uuid.UUID, float]]):
    """(score, conversation, best message id) for every conversation that matched.

    `message_hits` come best first (newest first among equals), so a conversation's
    first hit is its best, in whichever branch it is.
    """
    by_id = Conversation.objects.in_bulk({c for _, c, _ in message_hits} | set(title_scores))
    best: dict[uuid.UUID, tuple[float, uuid.UUID]] = {}
    for message_id, conversation_id, rank in message_hits:
        if conversation_id not in best and conversation_id in by_id:
            best[conversation_id] = (rank, message_id)
    scored = []
    for conversation_id in set(best) | set(title_scores):
        rank, message_id = best.get(conversation_id, (0.0, None))
        score = max(rank, title_scores.get(conversation_id, 0.0))
        scored.append((score, by_id[conversation_id], message_id))
    return scored


def _snippets(message_ids: list[uuid.UUID], terms: list[str], query: str) -> dict[uuid.UUID, SafeString]:
    # Cut in Python rather than by ts_headline, which drops anything shaped like
    # an HTML tag: a snippet must show the words as they were written.
    if not message_ids:
        return {}
    rows = Message.objects.filter(pk__in=message_ids).values_list("id", "content")
    return {message_id: snippet(content, terms, query) for message_id, content in rows}


def _word_pattern(terms: list[str]) -> re.Pattern:
    return re.compile(r"\b(?:" + "|".join(map(re.escape, terms)) + r")\w*", re.IGNORECASE)


def snippet(content: str, terms: list[str], query: str = "") -> SafeString:
    """About SNIPPET_CHARS of `content` around its first match, escaped, matches in <mark>.

    A match is a word starting with a term, else (for text that full-text search
    matched through a stem, "boiling" for "boiled") with a term's first letters,
    else the query anywhere (as icontains found it).
    """
    text = " ".join(content.split())
    stems = [term[: max(3, len(term) - 3)] for term in terms]
    patterns = [_word_pattern(terms), _word_pattern(stems)]
    if query.strip():  # icontains matches inside words too
        patterns.append(re.compile(re.escape(query.strip()), re.IGNORECASE))
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            break
    else:
        pattern, found = patterns[-1], None
    start = max(0, found.start() - SNIPPET_CHARS // 3) if found else 0
    if start:
        # Start at a word, not in the middle of one.
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < (found.start() if found else start) else start
    piece = text[start : start + SNIPPET_CHARS]
    html = _mark(piece, pattern)
    prefix = "… " if start > 0 else ""
    suffix = " …" if start + SNIPPET_CHARS < len(text) else ""
    return mark_safe(f"{prefix}{html}{suffix}")  # _mark escapes every part


def _mark(text: str, pattern: re.Pattern) -> str:
    out, last = [], 0
    for match in pattern.finditer(text):
        out.append(escape(text[last : match.start()]))
        out.append(f"<mark>{escape(match.group(0))}</mark>")
        last = match.end()
    out.append(escape(text[last:]))
    return "".join(str(part) for part in out)


def highlight(text: str, terms: list[str]) -> SafeString:
    """`text` escaped, with words that start with one of `terms` in <mark>."""
    if not terms:
        return mark_safe(escape(text))
    return mark_safe(_mark(text, _word_pattern(terms)))  # _mark escapes every part
