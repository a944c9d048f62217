"""Long conversations and long replies (docs/perf.md, issue 18): each figure beside its bound.

- The page of a 2,000-message conversation, over HTTP from the running server
  (median of 5 after a warm-up): < 300 ms.
- A send in it builds its context (the runtime's job: the branch read from the
  database, then the context window fitted): < 20 ms, median of 5, in the
  benchmark's process against the same database.
- The admin's message changelist with at least 100,000 messages in the
  database: < 1 s. The rows are made once per bench database (a marked owner)
  and reused by later runs.
- A long reply is linear: the live view's finished-block scan classifies
  each line once (lines scanned per line, 2,000-line code block against a
  20-line one, work counted, not timed).

    python -m bench.run --no-sweep --no-idle --no-local     # only these (and nothing else)
"""

from __future__ import annotations

import asyncio
import statistics
import time
import urllib.request
import uuid
from datetime import timedelta
from typing import Any

from bench import client as bc

TARGETS = {
    "long_page_ms": 300.0,
    "long_context_ms": 20.0,
    "admin_changelist_ms": 1000.0,
    "long_reply_lines_scanned_ratio": 1.0,
}
LONG_MESSAGES = 2000
ADMIN_ROWS = 100_000
ADMIN_OWNER = "bench-admin-rows"
WORDS = [
    "the",
    "model",
    "answers",
    "with",
    "a",
    "paragraph",
    "of",
    "ordinary",
    "text",
    "about",
    "tides,",
    "moons",
    "and",
    "harbours",
]


def _text(i: int, words: int) -> str:
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(words))


def seed_conversation(user_id: int, messages: int, *, start=None) -> str:
    """A conversation of `messages` alternating user/assistant messages on one branch (bulk)."""
    from django.utils import timezone

    from conversations.models import Conversation, Message

    start = start or timezone.now() - timedelta(days=1)
    conversation = Conversation.objects.create(owner_id=user_id, title="a long one", updated_at=start)
    rows, parent = [], None
    for i in range(messages):
        user = i % 2 == 0
        row = Message(
            id=uuid.uuid4(),
            conversation=conversation,
            role=Message.Role.USER if user else Message.Role.ASSISTANT,
            content=_text(i, 25 if user else 120),
            parent_id=parent,
            created_at=start + timedelta(seconds=i),
            updated_at=start + timedelta(seconds=i),
        )
        rows.append(row)
        parent = row.id
    Message.objects.bulk_create(rows, batch_size=1000)
    return str(conversation.id)


def seed_admin_rows(total: int) -> int:
    """At least `total` messages in the database (made once, under a marked owner); returns the count."""
    from django.contrib.auth import get_user_model

    from conversations.models import Message

    existing = Message.objects.count()
    if existing >= total:
        return existing
    owner, _ = get_user_model().objects.get_or_create(username=ADMIN_OWNER)
    missing = total - existing
    while missing > 0:
        batch = min(LONG_MESSAGES, missing)
        seed_conversation(owner.pk, batch)
        missing -= batch
    return Message.objects.count()


def make_superuser(account: bc.Account) -> None:
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(pk=account.user_id).update(is_staff=True, is_superuser=True)


def context_build_seconds(conversation_id: str) -> tuple[float, int, float]:
    """Time what a send in this conversation does before calling the model: load the job, fit the window."""
    from django.conf import settings
    from django.utils import timezone

    from conversations.llm.context import build_context
    from conversations.llm.openai_compatible import OpenAICompatibleProvider
    from conversations.models import Conversation, Message

    conversation = Conversation.objects.get(pk=conversation_id)
    leaf = conversation.messages.order_by("-created_at", "-id").first()
    # What a send writes: the user's message and a `streaming` reply to it.
    question = Message.objects.create(
        conversation=conversation,
        role=Message.Role.USER,
        content="and one more question about the tides?",
        parent_id=leaf.id,
        created_at=timezone.now(),
    )
    reply = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        status=Message.Status.STREAMING,
        parent_id=question.id,
        created_at=timezone.now(),
    )
    # The benchmark's server provider (an OpenAI-compatible one counts tokens by estimate).
    provider = OpenAICompatibleProvider(
        base_url="http://127.0.0.1:9/v1",
        model="scripted",
        context_tokens=settings.LLM_CONTEXT_TOKENS,
        max_output_tokens=settings.LLM_MAX_OUTPUT_TOKENS,
    )
    try:
        started, cpu = time.perf_counter(), time.process_time()
        try:  # the runtime's job loader (issue 12), when it is there
            from conversations.generation.job import load_job

            job = load_job(reply.id)
            system, history = job.system_prompt, list(job.history)
        except ImportError:
            from conversations.llm.base import ChatMessage

            ids = conversation.visible_message_ids(leaf=reply.parent_id)
            by_id = Message.objects.in_bulk(ids)
            history = [ChatMessage(role=by_id[i].role, content=by_id[i].content) for i in ids if i in by_id]
            system = conversation.system_prompt
        messages = build_context(provider=provider, system_prompt=system, history=history)
        return time.perf_counter() - started, len(messages), time.process_time() - cpu
    finally:
        Message.objects.filter(pk__in=[reply.pk, question.pk]).delete()


def _get(url: str, cookie: str) -> tuple[float, int]:
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        return time.perf_counter() - started, response.status


def timed_gets(url: str, cookie: str, rounds: int = 5) -> dict[str, Any]:
    _get(url, cookie)  # warm-up: templates, the first query plans
    times, statuses = [], set()
    for _ in range(rounds):
        seconds, status = _get(url, cookie)
        times.append(seconds)
        statuses.add(status)
    return {"median_ms": round(statistics.median(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1),
            "statuses": sorted(statuses)}  # fmt: skip


def long_reply_linearity() -> dict[str, Any]:
    """Lines the finished-block scan classifies per line of a code block, short against long."""
    from conversations.rendering import StableBlocks

    def scanned(lines: int) -> int:
        text = "```python\n" + "".join(f"x_{i} = {i}\n" for i in range(lines)) + "```\n\n"
        scanner = StableBlocks()
        for start in range(0, len(text), 4):  # 4-character deltas, as a model streams
            scanner.feed(text[start : start + 4])
        return scanner.lines_scanned

    short, long = scanned(20) / 20, scanned(2000) / 2000
    return {"short_per_line": short, "long_per_line": round(long, 4), "ratio": round(long / short, 4)}


async def run_long(bench, server, accounts: list[bc.Account]) -> dict[str, Any]:
    """Every long-conversation figure, against `server` (a bc.Cluster) and the bench database."""
    account = accounts[0]
    conversation_id = await bench.in_orm(seed_conversation, account.user_id, LONG_MESSAGES)
    page = await asyncio.to_thread(timed_gets, f"{server.url}/c/{conversation_id}/", account.cookie)
    contexts, cpus = [], []
    for _ in range(6):
        seconds, fitted, cpu = await bench.in_orm(context_build_seconds, conversation_id)
        contexts.append(seconds)
        cpus.append(cpu)
    started = time.monotonic()
    rows = await bench.in_orm(seed_admin_rows, ADMIN_ROWS)
    seeded_in = time.monotonic() - started
    await bench.in_orm(make_superuser, account)
    admin = await asyncio.to_thread(timed_gets, f"{server.url}/admin/conversations/message/", account.cookie)
    return {
        "messages": LONG_MESSAGES,
        "page_ms": page,
        "context_ms": {
            "median_ms": round(statistics.median(contexts[1:]) * 1000, 2),
            "max_ms": round(max(contexts[1:]) * 1000, 2),
            # The Python side alone (the database's own time is not in it): what load cannot inflate much.
            "cpu_median_ms": round(statistics.median(cpus[1:]) * 1000, 2),
            "messages_in_context": fitted,
        },
        "admin": {**admin, "messages_in_database": rows, "seeded_in_seconds": round(seeded_in, 1)},
        "long_reply": long_reply_linearity(),
    }
