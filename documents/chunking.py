"""Blocks of text into chunks: by heading and paragraph, about a set size, overlapping, never across pages.

A chunk gathers consecutive paragraphs under one heading on one page until
it reaches DOCUMENTS_CHUNK_CHARS; the next chunk of the same section starts
with the last DOCUMENTS_CHUNK_OVERLAP_CHARS of it (cut at a word), so a fact
that straddles the boundary is whole in one of them. A paragraph longer than
a chunk is split at sentence, then word boundaries.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings

from documents.extraction import Block


@dataclass(frozen=True, slots=True)
class Piece:
    """A chunk before it is a row."""

    text: str
    page: int | None
    heading: str
    overlap: int  # leading characters that repeat the previous chunk


def chunk_blocks(
    blocks: Iterable[Block], *, size: int | None = None, overlap: int | None = None
) -> list[Piece]:
    size = size or settings.DOCUMENTS_CHUNK_CHARS
    overlap = settings.DOCUMENTS_CHUNK_OVERLAP_CHARS if overlap is None else overlap
    overlap = min(overlap, size // 3)
    pieces: list[Piece] = []
    current: list[str] = []
    current_len = 0
    section: tuple[int | None, str] | None = None
    carried = ""  # the overlap that opens the next chunk of this section

    def close(*, section_ends: bool) -> None:
        nonlocal current, current_len, carried
        if not current:
            return
        body = "\n\n".join(current)
        text = f"{carried}\n\n{body}" if carried else body
        prefix = len(carried) + 2 if carried else 0
        page, heading = section  # type: ignore[misc]
        pieces.append(Piece(text=text, page=page, heading=heading, overlap=prefix))
        carried = "" if section_ends else _tail(body, overlap)
        current, current_len = [], 0

    for index, block in enumerate(blocks):
        if index % 64 == 63:
            # Let the event loop's thread have the GIL now rather than at the next
            # forced switch: a big file is many blocks, and sockets are waiting.
            time.sleep(0)
        key = (block.page, block.heading)
        if key != section:
            close(section_ends=True)
            section = key
        for part in _split_long(block.text.strip(), size):
            if current and current_len + len(part) > size:
                close(section_ends=False)
            current.append(part)
            current_len += len(part) + 2
    close(section_ends=True)
    return pieces


def _tail(text: str, limit: int) -> str:
    """The last `limit` characters of text, starting at a word."""
    if limit <= 0 or not text:
        return ""
    if len(text) <= limit:
        return text
    tail = text[-limit:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < len(tail) - 1 else tail


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _split_long(text: str, size: int) -> list[str]:
    if len(text) <= size:
        return [text] if text else []
    parts: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        for piece in _split_words(sentence, size):
            if current and len(current) + 1 + len(piece) > size:
                parts.append(current)
                current = piece
            else:
                current = f"{current} {piece}" if current else piece
    if current:
        parts.append(current)
    return parts


def _split_words(text: str, size: int) -> list[str]:
    if len(text) <= size:
        return [text]
    parts: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > size:  # one enormous "word" (a hash, a URL): cut it
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:size])
            word = word[size:]
        if current and len(current) + 1 + len(word) > size:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        parts.append(current)
    return parts
