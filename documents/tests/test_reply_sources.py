"""A reply answers from the attachments: the passage is in the provider's request, and its sources
arrive with `message.completed` (and stay on the reply as numbered citations)."""

from __future__ import annotations

import io
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from bench.fake_openai_server import ScriptedOpenAIServer
from conversations.llm import reset_provider
from conversations.tests.conftest import ORIGIN, Socket, make_conversation, make_user, session_cookie
from documents import samples
from documents.chunking import chunk_blocks
from documents.extraction import extract
from documents.files import sniff
from documents.models import Attachment, Citation
from documents.processing import store_chunks

pytestmark = pytest.mark.django_db(transaction=True)
db = database_sync_to_async
FILLER = "The committee met again and read the minutes of the previous meeting aloud. " * 30
FACT = "The observatory counted 42 snowy owls nesting on the ridge."


@pytest.fixture
def scripted_openai(settings):
    server = ScriptedOpenAIServer(ttft_ms=5, tokens_per_second=500, tokens=12).start_in_thread()
    settings.LLM_PROVIDER = "openai"
    settings.LLM_BASE_URL = server.base_url
    settings.LLM_API_KEY = "sk-test-key"
    settings.LLM_MODEL = "scripted"
    settings.CHAT_TITLE_FROM_MODEL = False
    reset_provider()
    yield server
    server.stop()
    reset_provider()


def attach(conversation, name: str, data: bytes) -> Attachment:
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
    return attachment


def owl_report() -> bytes:
    pages = [f"Chapter {n}. {FILLER}" for n in range(1, 6)]
    pages[2] = f"Chapter 3. {FACT} {FILLER}"
    return samples.pdf_bytes(pages)


async def ask(user, conversation, question: str) -> dict:
    from chatplatform.asgi import application

    cookie = await db(session_cookie)(user)
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.id}/", headers=[ORIGIN, (b"cookie", cookie)]
    )
    connected, _ = await communicator.connect(timeout=10)  # a loaded machine: the first connect is slow
    assert connected
    socket = Socket(communicator)
    await socket.send({"type": "message.send", "content": question, "client_id": str(uuid.uuid4())})
    final = await socket.receive_until("message.completed", timeout=20)
    await socket.close()
    return final


async def test_a_fact_on_page_three_reaches_the_provider_and_comes_back_as_a_source(
    scripted_openai, settings
):
    settings.DOCUMENTS_CONTEXT_TOKENS = 400  # the report does not fit whole: retrieval must pick page 3
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    report = await db(attach)(conversation, "owls.pdf", owl_report())

    final = await ask(user, conversation, "How many snowy owls were nesting on the ridge?")

    request = scripted_openai.last_completion()
    system = request.messages[0]
    assert system["role"] == "system"
    assert FACT in system["content"]
    assert "[1] owls.pdf, page 3:" in system["content"]
    assert request.messages[-1] == {
        "role": "user",
        "content": "How many snowy owls were nesting on the ridge?",
    }

    first = final["sources"][0]
    assert (first["number"], first["attachment_id"], first["name"], first["page"]) == (
        1,
        str(report.id),
        "owls.pdf",
        3,
    )
    assert "42 snowy owls" in first["snippet"]
    citations = await db(list)(Citation.objects.filter(message_id=final["message_id"]).order_by("number"))
    assert (citations[0].number, citations[0].page, citations[0].attachment_id) == (1, 3, report.id)
    assert len(citations) == len(final["sources"])


async def test_without_attachments_the_reply_has_no_sources_and_the_context_no_passages(scripted_openai):
    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)

    final = await ask(user, conversation, "How many snowy owls were nesting?")

    assert final["sources"] == []
    assert all("attached documents" not in m["content"] for m in scripted_openai.last_completion().messages)


async def test_another_conversations_files_never_reach_the_context(scripted_openai):
    user = await db(make_user)("alice")
    mine = await db(make_conversation)(user)
    other = await db(make_conversation)(user)
    await db(attach)(other, "owls.pdf", owl_report())

    final = await ask(user, mine, "How many snowy owls were nesting on the ridge?")

    assert final["sources"] == []
    assert all(FACT not in m["content"] for m in scripted_openai.last_completion().messages)


async def test_a_sync_after_the_reply_ended_answers_with_its_sources_too(scripted_openai):
    from chatplatform.asgi import application

    user = await db(make_user)("alice")
    conversation = await db(make_conversation)(user)
    await db(attach)(conversation, "memo.txt", b"The code word for the gate is heron.")
    final = await ask(user, conversation, "What is the code word for the gate?")
    assert [s["name"] for s in final["sources"]] == ["memo.txt"]

    cookie = await db(session_cookie)(user)
    communicator = WebsocketCommunicator(
        application, f"/ws/conversations/{conversation.id}/", headers=[ORIGIN, (b"cookie", cookie)]
    )
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    socket = Socket(communicator)
    await socket.send({"type": "sync", "message_id": final["message_id"], "offset": 0})
    again = await socket.receive_until("message.completed", timeout=10)
    await socket.close()
    assert again["sources"] == final["sources"]
