"""A send in a long conversation reads the branch's tail, not all of it, and fits the same context."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations.generation.job import load_job
from conversations.llm.base import ChatMessage
from conversations.llm.context import build_context
from conversations.llm.fake import FakeProvider
from conversations.models import Message
from conversations.tests.conftest import make_conversation, make_user

pytestmark = pytest.mark.django_db


def long_branch(conversation, messages: int) -> Message:
    """`messages` alternating user/assistant messages (~600 characters each), then a streaming reply."""
    start = timezone.now() - timedelta(hours=1)
    rows, parent = [], None
    for i in range(messages):
        row = Message(
            id=uuid.uuid4(),
            conversation=conversation,
            role=Message.Role.USER if i % 2 == 0 else Message.Role.ASSISTANT,
            content=f"message {i} " + "tides and moons " * 40,
            parent_id=parent,
            created_at=start + timedelta(seconds=i),
        )
        rows.append(row)
        parent = row.id
    Message.objects.bulk_create(rows)
    return Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        parent_id=parent,
        created_at=start + timedelta(seconds=messages),
    )


def test_the_job_of_a_2000_message_branch_reads_its_tail_and_fits_the_same_context(settings):
    settings.LLM_CONTEXT_TOKENS = 8192
    conversation = make_conversation(make_user("long"))
    reply = long_branch(conversation, 1999)  # ends with the user's question
    provider = FakeProvider(context_tokens=8192, max_output_tokens=512)

    with CaptureQueriesContext(connection) as queries:
        job = load_job(reply.id)

    everything = [
        ChatMessage(role=m.role, content=m.content)
        for m in Message.objects.filter(conversation=conversation, status="complete").order_by("created_at")
    ]
    assert list(job.history) == everything[-len(job.history) :]
    # A tail, not 1,999 rows: ~2 x 8,192 tokens of ~160-token messages.
    assert 100 <= len(job.history) <= 110
    assert build_context(provider=provider, system_prompt="", history=list(job.history)) == build_context(
        provider=provider, system_prompt="", history=everything
    )
    assert job.first_exchange is False
    # The reply with its conversation and profile, and the branch's tail: one statement on
    # PostgreSQL, two elsewhere.
    assert len(queries) == (1 if connection.vendor == "postgresql" else 2)


def test_a_short_branch_is_read_whole_and_a_first_exchange_is_still_one():
    conversation = make_conversation(make_user("short"))
    reply = long_branch(conversation, 1)

    job = load_job(reply.id)

    assert [m.role for m in job.history] == ["user"]
    assert job.first_exchange is True


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="EXPLAIN ANALYZE counts the rows walked on PostgreSQL"
)
def test_the_walk_up_a_long_branch_stops_once_the_tail_could_fill_a_context(settings):
    import json

    from conversations.generation.job import MAX_BRANCH_DEPTH, _branch_tail_statement, _enough_chars

    settings.LLM_CONTEXT_TOKENS = 2048
    conversation = make_conversation(make_user("walker"))
    reply = long_branch(conversation, 1999)
    leaf = Message._meta.pk.get_db_prep_value(reply.parent_id, connection)

    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + _branch_tail_statement(),
            [leaf, MAX_BRANCH_DEPTH, _enough_chars()],
        )
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan

    def nodes(node):
        yield node
        for child in node.get("Plans", ()):
            yield from nodes(child)

    walked = next(n for n in nodes(plan[0]["Plan"]) if n["Node Type"] == "Recursive Union")
    # ~2 x 2,048 tokens of ~160-token messages: a tail of ~27 rows, not 1,999.
    assert 20 <= walked["Actual Rows"] <= 30
