"""The soak: hundreds of signed-in sockets chatting with one process for minutes.

Each socket is a user with a conversation of their own who sends a message,
reads the streamed reply to the end (checking every delta's offset and the
final text against the scripted provider's), waits a moment and sends the
next, until the time is up; the server's RSS and CPU are sampled throughout.
Reports errors, lost and inexact replies, and whether memory levels off or
keeps growing. Exits non-zero on any lost or inexact reply.

    python -m bench.soak --sockets 300 --minutes 5      # make soak
    python -m bench.soak --sockets 50 --minutes 0.5     # the short form (a test runs it)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import client as bc
from conversations.llm.fake import expected_reply

REPLY_TIMEOUT = 60.0


async def chat_loop(
    server: bc.Child,
    conversation: str,
    account: bc.Account,
    index: int,
    deadline: float,
    args: argparse.Namespace,
    tally: dict[str, Any],
) -> None:
    """One user: connect, then send / read / think until the deadline; reconnect if the socket drops."""
    rng = random.Random(index)
    await asyncio.sleep(rng.uniform(0, args.ramp))
    turn = 0
    ws = None
    try:
        while time.monotonic() < deadline:
            if ws is None:
                try:
                    ws = await bc.open_socket(server.ws_url, server.url, conversation, account.cookie)
                except Exception as exc:
                    tally["errors"][f"connect {type(exc).__name__}"] += 1
                    await asyncio.sleep(1)
                    continue
            prompt = f"soak {tally['tag']} user {index} turn {turn}: tell me about the sea"
            reply = bc.AppReply(prompt, expected_reply(prompt, tokens=args.tokens))
            tally["in_flight"] += 1
            await bc.chat_once(ws, reply, timeout=REPLY_TIMEOUT)
            tally["in_flight"] -= 1
            turn += 1
            if reply.exact:
                tally["complete"] += 1
                tally["ttft"].append(reply.ttft)
                tally["frames"] += reply.frames
            elif reply.completed_at is None:
                tally["lost"] += 1
                tally["errors"][(reply.error or "no final event").split(":")[0]] += 1
                with contextlib.suppress(Exception):
                    await ws.close()
                ws = None  # a fresh socket for the next message, as a browser would reconnect
            else:
                tally["inexact"] += 1
                tally["errors"][f"inexact ({reply.status}, {reply.gaps} gaps)"] += 1
            await asyncio.sleep(rng.uniform(*args.think))
    finally:
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)


async def sample(server: bc.Child, started: float, stop: asyncio.Event, tally, every: float) -> list[dict]:
    process = bc.Sampler(server.pid)
    series = []
    last_cpu, last_t = process.cpu(), time.monotonic()
    while True:
        now = time.monotonic()
        cpu = process.cpu()
        series.append(
            {
                "t": round(now - started, 1),
                "rss_mb": round(process.rss() / 2**20, 1),
                "cpu_share_of_a_core": round((cpu - last_cpu) / max(now - last_t, 1e-6), 2),
                "replies_complete": tally["complete"],
                "in_flight": tally["in_flight"],
            }
        )
        last_cpu, last_t = cpu, now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        if stop.is_set():
            return series


#: Issue 18: over the last 10 minutes of a 20-minute soak, RSS grows less than this.
SLOPE_TARGET_MB_PER_MINUTE = 0.2


def slope_mb_per_minute(samples: list[dict]) -> float | None:
    """Least-squares RSS slope of `samples` (t in seconds, rss_mb), in MB per minute."""
    if len(samples) < 3:
        return None
    xs = [s["t"] / 60 for s in samples]
    ys = [s["rss_mb"] for s in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / max(
        sum((x - mean_x) ** 2 for x in xs), 1e-9
    )


def memory_verdict(series: list[dict]) -> dict[str, Any]:
    """Levels off or grows: the RSS slope over the second half of the run, and the growth of its last third."""
    if len(series) < 6:
        return {"verdict": "too short to tell", "samples": len(series)}
    half = series[len(series) // 2 :]
    xs = [s["t"] / 60 for s in half]
    ys = [s["rss_mb"] for s in half]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / max(
        sum((x - mean_x) ** 2 for x in xs), 1e-9
    )
    third = len(series) // 3
    middle = statistics.median(s["rss_mb"] for s in series[third : 2 * third])
    last = statistics.median(s["rss_mb"] for s in series[2 * third :])
    growth = (last - middle) / middle * 100 if middle else 0.0
    levels_off = slope < 2.0 or growth < 2.0
    last_ten = [s for s in series if s["t"] >= series[-1]["t"] - 600]
    ten = slope_mb_per_minute(last_ten) if series[-1]["t"] >= 1200 - 30 else None
    return {
        "verdict": "levels off" if levels_off else "grows",
        # Only a run of 20 minutes or more has the figure (its last 10 minutes).
        "slope_mb_per_minute_last_10_minutes": round(ten, 3) if ten is not None else None,
        "slope_target_mb_per_minute": SLOPE_TARGET_MB_PER_MINUTE,
        "slope_mb_per_minute_second_half": round(slope, 2),
        "rss_growth_last_vs_middle_third_percent": round(growth, 1),
        "rss_start_mb": series[0]["rss_mb"],
        "rss_peak_mb": max(s["rss_mb"] for s in series),
        "rss_end_mb": series[-1]["rss_mb"],
    }


async def main_async(args: argparse.Namespace, database_url: str, redis_url: str, log_dir: Path) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    orm = ThreadPoolExecutor(1)
    loop = asyncio.get_running_loop()
    tag = uuid.uuid4().hex[:6]
    accounts = await loop.run_in_executor(orm, bc.create_accounts, f"soak-{tag}", args.sockets)
    conversations = await loop.run_in_executor(orm, bc.create_conversations, accounts)
    orm.shutdown()
    tally: dict[str, Any] = {
        "tag": tag,
        "complete": 0,
        "lost": 0,
        "inexact": 0,
        "in_flight": 0,
        "frames": 0,
        "ttft": [],
        "errors": Counter(),
    }
    with (
        bc.scripted_provider(log_dir, tokens=args.tokens) as provider,
        bc.app_server(
            bc.app_env(database_url, redis_url, **bc.provider_env(provider)),
            log_dir,
            name="soak",
            server=args.server,
        ) as server,
    ):
        started = time.monotonic()
        deadline = started + args.minutes * 60
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(server, started, stop, tally, args.sample_every))
        users = [
            chat_loop(server, conversation, account, i, deadline, args, tally)
            for i, (conversation, account) in enumerate(zip(conversations, accounts, strict=True))
        ]
        # Bounded: every user stops sending at the deadline and a reply times out after REPLY_TIMEOUT.
        await asyncio.wait_for(asyncio.gather(*users), args.minutes * 60 + REPLY_TIMEOUT + args.ramp + 30)
        stop.set()
        series = await sampler
        server_log = server.log_tail(20)
    ttft = tally["ttft"]
    replies = tally["complete"] + tally["lost"] + tally["inexact"]
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.soak " + " ".join(sys.argv[1:]),
        "machine": bc.machine(),
        "config": {
            "sockets": args.sockets,
            "minutes": args.minutes,
            "server": args.server,
            "tokens": args.tokens,
            "think_seconds": list(args.think),
        },
        "seconds": round(time.monotonic() - started, 1),
        "replies": replies,
        "complete": tally["complete"],
        "lost": tally["lost"],
        "inexact": tally["inexact"],
        "errors": dict(tally["errors"]),
        "frames_per_reply": round(tally["frames"] / tally["complete"], 1) if tally["complete"] else None,
        "ttft_ms": {
            k: (round(v * 1000, 1) if isinstance(v, float) and k != "n" else v)
            for k, v in bc.summary(ttft).items()
        },
        "memory": memory_verdict(series),
        "series": series,
        "server_log_tail": server_log,
    }


def render(result: dict) -> str:
    m = result["memory"]
    lines = [
        f"soak {result['started_at']}: {result['config']['sockets']} sockets on {result['config'].get('server')}, "
        f"{result['config']['minutes']} min, "
        f"{result['config']['tokens']}-token replies",
        f"replies {result['replies']}: complete {result['complete']}, lost {result['lost']}, "
        f"inexact {result['inexact']}; errors {result['errors'] or 'none'}",
        f"first token p50 {result['ttft_ms']['p50']} ms, p99 {result['ttft_ms']['p99']} ms; "
        f"{result['frames_per_reply']} frames per reply",
        f"memory: {m['verdict']}"
        + (
            f" (RSS {m['rss_start_mb']} -> peak {m['rss_peak_mb']} -> end {m['rss_end_mb']} MB; "
            f"second half {m['slope_mb_per_minute_second_half']} MB/min; "
            f"last third {m['rss_growth_last_vs_middle_third_percent']:+} % on the middle third; "
            f"last 10 minutes {m['slope_mb_per_minute_last_10_minutes']} MB/min, "
            f"target < {m['slope_target_mb_per_minute']})"
            if "rss_peak_mb" in m
            else ""
        ),
        "",
        "   t (s)   RSS (MB)   CPU (core)   replies   in flight",
    ]
    series = result["series"]
    step = max(1, len(series) // 20)
    for s in series[::step] + ([series[-1]] if (len(series) - 1) % step else []):
        lines.append(
            f"  {s['t']:6.1f}   {s['rss_mb']:8.1f}   {s['cpu_share_of_a_core']:10.2f}   "
            f"{s['replies_complete']:7d}   {s['in_flight']:9d}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument(
        "--server", choices=bc.SERVERS, default=bc.PRODUCTION_SERVER, help="the ASGI server to run"
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--tokens", type=int, default=bc.PROVIDER_TOKENS)
    parser.add_argument("--think", type=float, nargs=2, default=(0.5, 3.0), help="seconds between messages")
    parser.add_argument("--ramp", type=float, default=5.0, help="users start over this many seconds")
    # Every second: the server trims the allocator every CHAT_MALLOC_TRIM_SECONDS (10), and RSS
    # is a saw of 10-25 MB teeth; sampled every 5 s the samples drifted through the teeth's
    # phase over minutes, a beat the slope fit read as growth (docs/perf.md, round fourteen).
    parser.add_argument("--sample-every", type=float, default=1.0, help="seconds between RSS samples")
    parser.add_argument("--output", type=Path, default=bc.RESULTS)
    parser.add_argument("--name", default="soak")
    args = parser.parse_args(argv)
    args.sample_every = min(args.sample_every, max(1.0, args.minutes * 60 / 12))

    bc.raise_open_files_limit()
    database_url, redis_url = bc.bench_database_url(), bc.bench_redis_url()
    bc.ensure_database(database_url)
    bc.setup_django(database_url, redis_url)
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="soak-logs-") as tmp:
        result = asyncio.run(main_async(args, database_url, redis_url, Path(tmp)))
    path = args.output / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(render(result))
    print(f"\n{path}")
    if result["lost"] or result["inexact"] or not result["complete"]:
        print("FAILED: lost or inexact replies (or none completed)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
