"""StableBlocks: the live view's finished blocks in linear work, the same as stable_prefix_length."""

from __future__ import annotations

import random

import pytest

from conversations.rendering import StableBlocks, stable_prefix_length


def by_rescan(pieces: list[str]) -> list[str]:
    """The blocks the old way: the whole unfinished tail rescanned after every piece."""
    tail, blocks = "", []
    for piece in pieces:
        tail += piece
        finished = stable_prefix_length(tail)
        if finished:
            blocks.append(tail[:finished])
            tail = tail[finished:]
    return blocks


def by_scanner(pieces: list[str]) -> tuple[list[str], StableBlocks]:
    scanner = StableBlocks()
    blocks = [block for block in map(scanner.feed, pieces) if block]
    return blocks, scanner


def split_randomly(text: str, rng: random.Random) -> list[str]:
    pieces, start = [], 0
    while start < len(text):
        end = start + rng.randint(1, 12)
        pieces.append(text[start:end])
        start = end
    return pieces


ATOMS = ["```", "~~~", "````", "```py", "\n", "\n\n", "\r\n", "\r", " ", "  ", "word", "#", "\u2028", "- x"]


@pytest.mark.parametrize("seed", range(300))
def test_the_same_blocks_as_rescanning_the_tail_for_any_text_and_any_split(seed):
    rng = random.Random(seed)
    text = "".join(rng.choice(ATOMS) for _ in range(rng.randint(0, 80)))
    pieces = split_randomly(text, rng)

    blocks, scanner = by_scanner(pieces)

    assert blocks == by_rescan(pieces)
    assert "".join(blocks) + scanner.tail == text


def code_reply(lines: int) -> list[str]:
    """A reply that is one long code block, streamed in 4-character pieces as a model would."""
    text = (
        "Here it is:\n\n```python\n" + "".join(f"x_{i} = {i} * 2\n" for i in range(lines)) + "```\n\nDone.\n"
    )
    return [text[i : i + 4] for i in range(0, len(text), 4)]


def test_a_2000_line_code_block_costs_no_more_per_line_than_a_20_line_one():
    _, short = by_scanner(code_reply(20))
    long_blocks, long = by_scanner(code_reply(2000))

    # Work counted, not timed: every line is classified exactly once.
    assert short.lines_scanned == 20 + 6
    assert long.lines_scanned == 2000 + 6
    assert long.lines_scanned / 2000 <= short.lines_scanned / 20
    assert long_blocks == by_rescan(code_reply(2000))
    assert long_blocks[-1].endswith("```\n\n")
