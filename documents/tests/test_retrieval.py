"""Retrieval: the passage a question needs, from the database's own full-text engine, within the budget."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from conversations.llm.base import estimate_tokens
from documents import samples
from documents.chunking import chunk_blocks
from documents.extraction import extract
from documents.files import sniff
from documents.models import Attachment, Chunk
from documents.processing import store_chunks
from documents.retrieval import context_text, passages_for
from documents.tests.conftest import make_conversation, make_user

ROOT = Path(__file__).resolve().parents[2]
FILLER = "The committee met again and read the minutes of the previous meeting aloud. " * 12


def attach(conversation, name: str, data: bytes, *, status: str = "ready") -> Attachment:
    """An attachment indexed through the real extraction and chunking (no file needed)."""
    file = io.BytesIO(data)
    sniffed = sniff(file, name=name)
    extracted = extract(file, kind=sniffed.kind, encoding=sniffed.encoding)
    attachment = Attachment.objects.create(
        conversation=conversation,
        owner=conversation.owner,
        name=name,
        size=len(data),
        kind=sniffed.kind,
        content_type=sniffed.content_type,
        status="processing",
    )
    store_chunks(attachment.id, chunk_blocks(extracted.blocks), pages=extracted.pages)
    if status != "ready":
        Attachment.objects.filter(pk=attachment.pk).update(status=status)
    return attachment


@pytest.fixture
def chat(db):
    return make_conversation(make_user("alice"))


def owl_report() -> bytes:
    return samples.pdf_bytes(
        [
            f"Chapter one. {FILLER}",
            f"Chapter two. {FILLER}",
            f"Chapter three. The observatory counted 42 snowy owls nesting on the ridge. {FILLER}",
            f"Chapter four. {FILLER}",
        ]
    )


def test_a_fact_on_page_three_is_retrieved_with_its_page_and_a_snippet(chat):
    report = attach(chat, "owls.pdf", owl_report())
    passages = passages_for(
        conversation_id=chat.id, query="How many snowy owls were nesting?", budget_tokens=300
    )
    first = passages[0]
    assert (first.attachment_id, first.name, first.page) == (report.id, "owls.pdf", 3)
    assert "42 snowy owls" in first.text
    assert "42 snowy owls" in first.snippet
    assert len(first.snippet) <= 300


def test_passages_stay_within_the_token_budget(chat):
    attach(chat, "owls.pdf", owl_report())
    passages = passages_for(
        conversation_id=chat.id, query="committee minutes owls chapter", budget_tokens=400
    )
    assert passages
    assert sum(estimate_tokens(p.text) for p in passages) <= 400


def test_a_small_document_that_fits_is_given_whole_matching_page_first(chat):
    attach(
        chat, "memo.pdf", samples.pdf_bytes(["Lunch is at noon.", "The code word is heron.", "Bring pens."])
    )
    passages = passages_for(conversation_id=chat.id, query="what is the code word?", budget_tokens=2000)
    assert [p.page for p in passages] == [2, 1, 3]
    assert "heron" in passages[0].text


def test_a_small_document_is_given_whole_even_when_no_word_matches(chat):
    attach(chat, "memo.txt", b"Lunch is at noon.\n\nBring pens.")
    passages = passages_for(conversation_id=chat.id, query="summarise this", budget_tokens=2000)
    assert [p.text for p in passages] == ["Lunch is at noon.\n\nBring pens."]


def test_only_ready_attachments_of_this_conversation_are_searched(chat):
    attach(chat, "failed.txt", b"The secret is heron.", status="failed")
    attach(chat, "pending.txt", b"The secret is heron.", status="processing")
    elsewhere = make_conversation(make_user("mallory"))
    attach(elsewhere, "theirs.txt", b"The secret is heron.")
    assert passages_for(conversation_id=chat.id, query="what is the secret?", budget_tokens=2000) == []


def test_context_text_numbers_passages_as_citations_are_numbered(chat):
    attach(chat, "memo.pdf", samples.pdf_bytes(["Lunch is at noon.", "The code word is heron."]))
    passages = passages_for(conversation_id=chat.id, query="code word", budget_tokens=2000)
    text = context_text(passages)
    assert "[1] memo.pdf, page 2:\nThe code word is heron." in text
    assert "[2] memo.pdf, page 1:" in text


def test_the_index_follows_chunks_as_they_are_deleted(chat):
    attachment = attach(chat, "memo.txt", b"The code word is heron.")
    assert passages_for(conversation_id=chat.id, query="heron", budget_tokens=10)  # ranked, not whole
    attachment.delete()
    assert not Chunk.objects.exists()
    assert passages_for(conversation_id=chat.id, query="heron", budget_tokens=10) == []


def test_query_syntax_in_a_question_is_only_words(chat):
    attach(chat, "memo.txt", b"The code word is heron.")
    for hostile in [
        'heron" OR "x',
        "heron & !x | (",
        "heron:* <-> ''",
        "NEAR(heron x)",
        "heron'; DROP TABLE x;--",
    ]:
        passages = passages_for(conversation_id=chat.id, query=hostile, budget_tokens=3)
        assert [p.name for p in passages] in ([], ["memo.txt"])


# --- the retrieval check, on both database engines -----------------------------------------


def test_the_retrieval_check_finds_the_right_passage_in_the_top_three_here(db, capsys):
    call_command("documents_eval")
    report = capsys.readouterr().out
    print(report)
    hits, total = map(int, report.split("questions")[0].split()[-1].split("/"))
    assert total == 25
    assert hits / total >= 0.9, report
    assert not Attachment.objects.exists()  # the check keeps nothing


def test_the_retrieval_check_on_sqlite_with_fts5(tmp_path):
    """The embedded default: SQLite with FTS5, migrated from scratch in a process of its own."""
    env = {
        **os.environ,
        "CHATPLATFORM_IGNORE_DOTENV": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'check.sqlite3'}",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    for command in (["migrate", "--noinput", "-v", "0"], ["documents_eval"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    print(done.stdout)
    assert "retrieval check (sqlite)" in done.stdout
    hits, total = map(int, done.stdout.split("questions")[0].split()[-1].split("/"))
    assert hits / total >= 0.9, done.stdout
