"""A burst of sends in one process, without sockets or streams: the thread hop against the loop.

Stores N sends at once (each a user and conversation of its own) through
the socket's two paths: `runtime.stored_with_job` in a thread hop
(`parallel_hop`, as with CHAT_SEND_ON_LOOP=false) and
`conversations.loop_send.message_send` on the event loop, alternating, and
prints the wall time until all N are stored, each send's finish time from
the start (p50, p99) and the process's CPU time a send. The first round of
each warms up (connections, prepared statements) and is left out. Events go
nowhere and each round's replies are closed after it, so the owners'
running replies stay at one.

    python -m bench.sends --sends 100 --rounds 5     # on the bench database (bench/client.py)

docs/perf.md, round fifteen: what the benchmark's burst point cannot
resolve on a noisy machine, this measures alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid

from bench import client as bc


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sends", type=int, default=100, help="sends at once")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each path (the first warms up)")
    args = parser.parse_args()
    # The scripted provider (never asked: nothing streams) and limits no burst reaches.
    for name, value in {"LLM_PROVIDER": "fake", **bc.GENEROUS_LIMITS}.items():
        os.environ.setdefault(name, value)
    bc.setup_django(bc.bench_database_url(), bc.bench_redis_url())
    results = asyncio.run(_run(args.sends, args.rounds))
    for name, rounds in results.items():
        walls = [wall for wall, _, _, _ in rounds]
        cpus = [cpu / args.sends for _, cpu, _, _ in rounds]
        print(
            f"{name:>4}: wall ms {[round(w * 1000) for w in walls]}, median {statistics.median(walls) * 1000:.0f}; "
            f"CPU a send ms {[round(c * 1000, 2) for c in cpus]}, median {statistics.median(cpus) * 1000:.2f}; "
            f"finish p50 {[round(p * 1000) for _, _, p, _ in rounds]} p99 {[round(p * 1000) for _, _, _, p in rounds]}"
        )


async def _run(n: int, rounds: int) -> dict[str, list[tuple[float, float, float, float]]]:
    from asgiref.sync import sync_to_async

    from conversations import loop_send, services
    from conversations.generation import get_runtime
    from conversations.generation.hops import parallel_hop
    from conversations.generation.runtime import stored_with_job
    from conversations.llm import get_provider

    get_runtime().post = lambda group, message: None  # no runtime runs here: events go nowhere
    await sync_to_async(get_provider)()
    pairs = await sync_to_async(_owners)(n)

    async def hop(conversation_id, user):
        await parallel_hop(stored_with_job)(services.message_send, **_fields(conversation_id, user))

    async def loop(conversation_id, user):
        await loop_send.message_send(**_fields(conversation_id, user))

    results: dict[str, list] = {"hop": [], "loop": []}
    for number in range(rounds):
        order = [("hop", hop), ("loop", loop)] if number % 2 == 0 else [("loop", loop), ("hop", hop)]
        for name, send in order:
            measured = await _burst(send, pairs)
            await sync_to_async(_close_replies)([conversation_id for conversation_id, _ in pairs])
            if number:
                results[name].append(measured)
    return results


async def _burst(send, pairs) -> tuple[float, float, float, float]:
    start, cpu, finished = time.perf_counter(), time.process_time(), []

    async def one(conversation_id, user):
        await send(conversation_id, user)
        finished.append(time.perf_counter() - start)

    await asyncio.gather(*(one(conversation_id, user) for conversation_id, user in pairs))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall, cpu, bc.percentile(finished, 50), bc.percentile(finished, 99)


def _fields(conversation_id, user) -> dict:
    return {
        "conversation_id": conversation_id,
        "user": user,
        "content": "how do tides work?",
        "client_id": uuid.uuid4(),
        "worker": "specific.bench-sends",
    }


def _owners(n: int) -> list:
    """N members, each with a conversation: (conversation id, user)."""
    from django.contrib.auth import get_user_model

    from accounts.models import MEMBER_GROUP, role_group
    from conversations.models import Conversation

    user_model = get_user_model()
    tag = uuid.uuid4().hex[:8]
    user_model.objects.bulk_create([user_model(username=f"bench-sends-{tag}-{i}") for i in range(n)])
    users = list(user_model.objects.filter(username__startswith=f"bench-sends-{tag}-").order_by("id"))
    role_group(MEMBER_GROUP).user_set.add(*users)
    conversations = Conversation.objects.bulk_create([Conversation(owner=user) for user in users])
    return [(conversation.id, user) for conversation, user in zip(conversations, users, strict=True)]


def _close_replies(conversation_ids: list) -> None:
    from django.db import close_old_connections

    from conversations.models import Message

    Message.objects.filter(conversation_id__in=conversation_ids, status=Message.Status.STREAMING).update(
        status=Message.Status.COMPLETE
    )
    close_old_connections()


if __name__ == "__main__":
    main()
