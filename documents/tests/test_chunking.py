"""Chunks follow headings and paragraphs, overlap within a section and never cross a page."""

from __future__ import annotations

import itertools

from documents.chunking import chunk_blocks
from documents.extraction import Block


def words(n: int, start: int = 0) -> str:
    return " ".join(f"w{i}" for i in range(start, start + n))


def test_paragraphs_under_one_heading_are_packed_up_to_the_size():
    blocks = [Block(words(10, i * 10), heading="Intro") for i in range(3)]
    pieces = chunk_blocks(blocks, size=1000, overlap=50)
    assert len(pieces) == 1
    assert pieces[0].text == "\n\n".join(block.text for block in blocks)
    assert (pieces[0].heading, pieces[0].overlap) == ("Intro", 0)


def test_the_next_chunk_of_a_section_repeats_the_end_of_the_previous_one():
    blocks = [Block(words(30, i * 30)) for i in range(6)]  # ~150 chars each
    pieces = chunk_blocks(blocks, size=400, overlap=60)
    assert len(pieces) > 1
    for before, after in itertools.pairwise(pieces):
        repeated = after.text[: after.overlap].strip()
        assert repeated and before.text.endswith(repeated)
        assert 0 < len(repeated) <= 60


def test_a_new_heading_or_page_starts_a_new_chunk_without_overlap():
    blocks = [
        Block("Alpha text.", page=1, heading="A"),
        Block("Beta text.", page=1, heading="B"),
        Block("Gamma text.", page=2, heading="B"),
    ]
    pieces = chunk_blocks(blocks, size=1000, overlap=100)
    assert [(p.page, p.heading, p.text, p.overlap) for p in pieces] == [
        (1, "A", "Alpha text.", 0),
        (1, "B", "Beta text.", 0),
        (2, "B", "Gamma text.", 0),
    ]


def test_a_paragraph_longer_than_a_chunk_is_split_at_sentences_and_words():
    sentence = words(20) + "."
    text = " ".join([sentence] * 10) + " " + "x" * 900
    pieces = chunk_blocks([Block(text)], size=300, overlap=0)
    assert all(len(piece.text) <= 300 for piece in pieces)
    assert "".join(piece.text.replace(" ", "") for piece in pieces) == text.replace(" ", "")
