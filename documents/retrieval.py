"""The passages of a conversation's attachments that a question needs, within a token budget.

`passages_for` is what the generation runtime calls for each reply: when all
of the conversation's ready documents fit the budget they are given whole
(one passage per page, or per document where there are no pages), the pages
that match the question first; otherwise the best-ranked chunks (the
database's full-text engine, documents/search/) are taken while they fit,
merged per page. Each passage carries a snippet: the quoted words a
citation shows.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from django.conf import settings

from conversations.llm.base import estimate_tokens
from documents import search
from documents.models import Attachment, Chunk

SNIPPET_CHARS = 280


@dataclass(frozen=True, slots=True)
class Passage:
    attachment_id: uuid.UUID
    name: str
    page: int | None
    text: str
    snippet: str

    def to_source(self, number: int) -> dict:
        """One entry of `sources` on `message.completed`."""
        return {
            "number": number,
            "attachment_id": str(self.attachment_id),
            "name": self.name,
            "page": self.page,
            "snippet": self.snippet,
        }


def passages_for(
    *, conversation_id: uuid.UUID | str, query: str, budget_tokens: int | None = None
) -> list[Passage]:
    """The passages to put in a reply's context, most relevant first (see the module doc)."""
    budget = settings.DOCUMENTS_CONTEXT_TOKENS if budget_tokens is None else budget_tokens
    names = dict(
        Attachment.objects.filter(conversation_id=conversation_id, status=Attachment.Status.READY)
        .order_by("created_at", "id")
        .values_list("id", "name")
    )
    if not names or budget <= 0:
        return []
    terms = search.query_terms(query)
    scores = dict(
        search.search(attachment_ids=list(names), query=query, limit=max(1, settings.DOCUMENTS_TOP_K) * 4)
    )
    if _whole_fits(names, budget):
        everything = Chunk.objects.filter(attachment_id__in=list(names)).order_by("attachment_id", "ordinal")
        groups = _by_page(list(everything), scores)
    else:
        groups = _by_page(
            _best_within(list(Chunk.objects.filter(pk__in=list(scores))), scores, budget), scores
        )
    order = list(names)
    groups.sort(key=lambda g: (-g.score, order.index(g.attachment_id), g.page or 0, g.first_ordinal))
    return [
        Passage(
            attachment_id=group.attachment_id,
            name=names[group.attachment_id],
            page=group.page,
            text=group.text,
            snippet=snippet(group.text, terms),
        )
        for group in groups
    ]


def context_text(passages: list[Passage]) -> str:
    """The passages as the model reads them, numbered as the reply's citations are."""
    if not passages:
        return ""
    lines = [
        "The user attached documents to this conversation. Numbered passages from them follow. "
        "Answer from them when they are relevant, and cite them by number, like [1]."
    ]
    for number, passage in enumerate(passages, start=1):
        where = f", page {passage.page}" if passage.page else ""
        lines.append(f"\n[{number}] {passage.name}{where}:\n{passage.text}")
    return "\n".join(lines)


# --- selection ---------------------------------------------------------------------


def _whole_fits(names: dict, budget: int) -> bool:
    from django.db.models import F, Sum
    from django.db.models.functions import Length

    total = Chunk.objects.filter(attachment_id__in=list(names)).aggregate(
        chars=Sum(Length("text") - F("overlap"))
    )["chars"]
    return total is not None and (total + 3) // 4 <= budget


def _best_within(chunks: list[Chunk], scores: dict[int, float], budget: int) -> list[Chunk]:
    """The best-scoring chunks that fit, at most DOCUMENTS_TOP_K of them."""
    chosen: list[Chunk] = []
    used = 0
    for chunk in sorted((c for c in chunks if c.pk in scores), key=lambda c: (-scores[c.pk], c.pk)):
        cost = estimate_tokens(chunk.text)
        if used + cost > budget:
            continue
        chosen.append(chunk)
        used += cost
        if len(chosen) >= settings.DOCUMENTS_TOP_K:
            break
    return chosen


@dataclass
class _Group:
    attachment_id: uuid.UUID
    page: int | None
    chunks: list[Chunk]
    score: float

    @property
    def first_ordinal(self) -> int:
        return self.chunks[0].ordinal

    @property
    def text(self) -> str:
        """The page's chosen chunks in order; consecutive ones without their repeated overlap."""
        parts: list[str] = []
        previous: Chunk | None = None
        for chunk in self.chunks:
            if previous is None:
                parts.append(chunk.text)
            elif chunk.ordinal == previous.ordinal + 1:
                parts.append(chunk.text[chunk.overlap :].lstrip("\n"))
            else:
                parts.append("…\n" + chunk.text)
            previous = chunk
        return "\n\n".join(parts)


def _by_page(chunks: list[Chunk], scores: dict[int, float]) -> list[_Group]:
    groups: dict[tuple[uuid.UUID, int | None], _Group] = {}
    for chunk in sorted(chunks, key=lambda c: (str(c.attachment_id), c.ordinal)):
        key = (chunk.attachment_id, chunk.page)
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(chunk.attachment_id, chunk.page, [], 0.0)
        group.chunks.append(chunk)
        group.score = max(group.score, scores.get(chunk.pk, 0.0))
    return list(groups.values())


def snippet(text: str, terms: list[str], *, size: int = SNIPPET_CHARS) -> str:
    """The words around the first place the question's terms meet the text (else its start)."""
    flat = re.sub(r"\s+", " ", text).strip()
    if len(flat) <= size:
        return flat
    lower = flat.lower()
    best = -1
    for term in terms:
        # The stem is enough to find "revenues" for "revenue" and the like.
        match = re.search(r"\b" + re.escape(term[: max(4, len(term) - 2)]), lower)
        if match and (best < 0 or match.start() < best):
            best = match.start()
    if best < 0:
        start = 0
    else:
        start = max(0, best - size // 3)
        space = flat.rfind(" ", 0, start)
        start = space + 1 if start and space >= 0 else start
    end = min(len(flat), start + size)
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > start else end
    return ("…" if start else "") + flat[start:end] + ("…" if end < len(flat) else "")
