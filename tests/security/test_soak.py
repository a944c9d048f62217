"""A bounded soak on loopback: many sockets chatting with the scripted model through one daphne,
with no errors, no lost messages, and memory that levels off.

The short form runs in CI (100 sockets, 30 s). The long form is the same test, longer:

    SOAK_SOCKETS=300 SOAK_SECONDS=300 make test PYTEST_ARGS="tests/security/test_soak.py"
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field

import psutil
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db.models import Count, Q

from conversations.llm.fake import expected_reply
from conversations.models import Conversation, Message, UsageEvent
from tests.security.conftest import make_user, server_env, ws_open
from tests.servers import daphne

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]

SOCKETS = int(os.environ.get("SOAK_SOCKETS", "100"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "30"))
REPLY_TOKENS = 30
# After the first quarter (warm-up: imports, pools, caches), resident memory may still move,
# but not by more than this over the rest of the run.
RSS_GROWTH_LIMIT = 0.10
RSS_GROWTH_FLOOR = 24 * 1024 * 1024


@dataclass
class Tally:
    sent: int = 0
    completed: int = 0
    problems: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


def chatters(count: int) -> list[tuple[str, str]]:
    """(conversation id, session cookie) for `count` users, made quickly (no password hashing)."""
    pairs = []
    for _ in range(count):
        user = make_user()
        conversation = Conversation.objects.create(owner=user)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        pairs.append((str(conversation.id), f"sessionid={session.session_key}"))
    return pairs


async def chat(server, conversation_id: str, cookie: str, deadline: float, tally: Tally, index: int) -> None:
    rng = random.Random(index)
    await asyncio.sleep(rng.uniform(0, 2))  # sockets arrive over two seconds, not at once
    try:
        async with await ws_open(server, conversation_id, cookie) as ws:
            turn = 0
            while time.monotonic() < deadline:
                question = f"soak {index} turn {turn}"
                await ws.send(
                    json.dumps({"type": "message.send", "content": question, "client_id": str(uuid.uuid4())})
                )
                tally.sent += 1
                started = time.monotonic()
                async with asyncio.timeout(60):
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame["type"] == "error":
                            tally.problems.append(f"{index}/{turn}: error {frame['code']}")
                            break
                        if frame["type"] in {"message.completed", "message.failed"}:
                            if frame["type"] == "message.failed" or frame["content"] != expected_reply(
                                question, tokens=REPLY_TOKENS
                            ):
                                tally.problems.append(f"{index}/{turn}: {frame['type']} {frame.get('error')}")
                            else:
                                tally.completed += 1
                                tally.latencies.append(time.monotonic() - started)
                            break
                turn += 1
                await asyncio.sleep(rng.uniform(0.5, 1.5))  # a person reading the answer
    except Exception as exc:  # a dropped socket or a timeout is a finding, not a crash of the soak
        tally.problems.append(f"{index}: {type(exc).__name__}: {exc}")


async def sample_rss(pid: int, until: float, samples: list[tuple[float, int]]) -> None:
    process = psutil.Process(pid)
    while time.monotonic() < until:
        samples.append((time.monotonic(), process.memory_info().rss))
        await asyncio.sleep(0.5)


async def test_sockets_chat_for_a_while_without_errors_lost_messages_or_growing_memory(tmp_path):
    env = server_env(
        LLM_FAKE_TTFT="0.05",
        LLM_FAKE_TOKENS_PER_SECOND="300",
        LLM_FAKE_TOKENS=str(REPLY_TOKENS),
        CHAT_CHECKPOINT_SECONDS="1",
    )
    pairs = await database_sync_to_async(chatters)(SOCKETS)
    tally = Tally()
    samples: list[tuple[float, int]] = []
    with daphne(env, log_dir=tmp_path, name="soak") as server:
        started = time.monotonic()
        deadline = started + SECONDS
        sampler = asyncio.create_task(sample_rss(server.process.pid, deadline, samples))
        await asyncio.gather(
            *(chat(server, cid, cookie, deadline, tally, i) for i, (cid, cookie) in enumerate(pairs))
        )
        await sampler
        log = server.log()

    counts = await database_sync_to_async(
        lambda: Message.objects.aggregate(
            asked=Count("id", filter=Q(role="user")),
            answered=Count("id", filter=Q(role="assistant", status="complete")),
            unfinished=Count("id", filter=Q(role="assistant") & ~Q(status="complete")),
        )
    )()
    usage = await database_sync_to_async(UsageEvent.objects.count)()

    print(  # shown with -s, and in the report of a failure
        f"soak: {SOCKETS} sockets, {SECONDS:.0f} s, {tally.completed}/{tally.sent} replies, "
        f"p50 {statistics.median(tally.latencies or [0]):.2f} s, "
        f"p95 {statistics.quantiles(tally.latencies or [0, 0], n=20)[-1]:.2f} s, "
        f"RSS {samples[0][1] / 2**20:.0f} -> {samples[-1][1] / 2**20:.0f} MiB"
    )
    assert tally.problems == []
    assert tally.sent >= SOCKETS * 3  # it really chatted
    assert tally.completed == tally.sent
    assert counts == {"asked": tally.sent, "answered": tally.sent, "unfinished": 0}
    assert usage == tally.sent
    assert "Traceback" not in log

    quarter = SECONDS / 4
    warm = [rss for at, rss in samples if started + quarter <= at < started + 2 * quarter]
    late = [rss for at, rss in samples if at >= started + 3 * quarter]
    growth = statistics.mean(late) - statistics.mean(warm)
    assert growth <= max(RSS_GROWTH_LIMIT * statistics.mean(warm), RSS_GROWTH_FLOOR), (
        f"RSS grew {growth / 2**20:.1f} MiB after warm-up "
        f"({statistics.mean(warm) / 2**20:.0f} -> {statistics.mean(late) / 2**20:.0f} MiB); "
        f"replies: {tally.completed}, p50 {statistics.median(tally.latencies):.2f}s"
    )
