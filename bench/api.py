"""The HTTP API's added latency beside the WebSocket path (issue 14, docs/perf.md).

One daphne with PostgreSQL, Redis and the scripted OpenAI-compatible provider
(bench/client.py's defaults: 200 ms to the first token, 50 tokens/s, 200
tokens). For each N (default 1 and 50) three passes run the same kind of
prompts at N concurrent streams, K replies per client back to back, staggered
to a steady state:

- direct: raw HTTP to the provider (the bound);
- ws: N signed-in users over WebSockets, a new conversation each (the chat);
- api: N users with a personal API key each, POST /v1/chat/completions with
  `stream: true` over raw HTTP/1.1 (what an SDK sends), timed from the request
  to the first and last content chunk.

Reported per N and path: added time to first token against direct (p50,
p99), stream duration ratio against direct, and replies lost or inexact
(every reply is checked against the text the scripted provider sends).

    python -m bench.api                    # N = 1 and 50
    python -m bench.api --sweep 1,10 --replies 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import client as bc
from bench import run as br
from conversations.llm.fake import expected_reply

RESULTS_NAME = "api"


async def api_once(port: int, key: str, reply: bc.DirectReply, *, timeout: float = 120) -> None:
    """One streamed completion through the app's API over raw HTTP/1.1, as an SDK sends it."""
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps(
            {
                "model": "scripted",
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": reply.prompt}],
            }
        ).encode()
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer %b\r\nContent-Length: %d\r\n\r\n%b" % (key.encode(), len(body), body)
        )
        reply.sent_at = time.monotonic()
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        if not head.startswith(b"HTTP/1.1 200"):
            reply.error = f"HTTP {head[:12].decode(errors='replace')}"
            return
        pending = b""
        parts: list[str] = []
        async with asyncio.timeout(timeout):
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                now = time.monotonic()
                pending += chunk
                *events, pending = pending.split(b"\n\n")
                for event in events:
                    line = event[event.find(b"data: ") :]
                    if line.startswith(b"data: [DONE]"):
                        reply.text = "".join(parts)
                        return
                    if not line.startswith(b"data: {"):
                        continue
                    body = json.loads(line[6:])
                    if "error" in body:
                        reply.error = f"error event: {body['error'].get('code')}"
                        return
                    content = body["choices"][0]["delta"].get("content") if body.get("choices") else ""
                    if content:
                        parts.append(content)
                        if reply.first_token_at is None:
                            reply.first_token_at = now
                        reply.last_token_at = now
        reply.error = "the stream ended without [DONE]"
    except TimeoutError:
        reply.error = f"timeout after {timeout:g} s"
    except Exception as exc:
        reply.error = f"{type(exc).__name__}: {exc}"
    finally:
        if writer is not None:
            writer.close()


def create_keys(accounts: list[bc.Account]) -> list[str]:
    from django.contrib.auth import get_user_model

    from api.services import api_key_create

    users = get_user_model().objects.in_bulk([a.user_id for a in accounts])
    return [api_key_create(user=users[a.user_id], name="bench")[1] for a in accounts]


async def api_pass(
    bench: br.Bench, server: bc.Child, keys: list[str], n: int, k: int
) -> list[tuple[int, bc.DirectReply]]:
    tokens = bench.args.tokens
    out: list[tuple[int, bc.DirectReply]] = []
    start = time.monotonic() + 0.2

    async def client(i: int, delay: float) -> None:
        await asyncio.sleep(max(0.0, start + delay - time.monotonic()))
        for turn in range(k):
            prompt = br.prompt_for(bench.tag, "api", n, i, turn, False)
            reply = bc.DirectReply(prompt, expected_reply(prompt, tokens=tokens))
            await api_once(server.port, keys[i], reply)
            out.append((turn, reply))

    await asyncio.gather(*(client(i, d) for i, d in enumerate(br.offsets(n, bench.args, False))))
    return out


def _path_figures(replies: list, direct: list, *, every: list) -> dict[str, Any]:
    d_ttft = bc.summary([r.ttft for r in direct if r.exact])
    ttft = bc.summary([r.ttft for r in replies if r.exact])
    d_dur = bc.summary([r.duration for r in direct if r.exact])
    dur = bc.summary([r.duration for r in replies if r.exact])

    def added(q: str) -> float | None:
        return None if ttft[q] is None or d_ttft[q] is None else br.ms(ttft[q] - d_ttft[q])

    return {
        "ttft_ms": br._ms_summary([r.ttft for r in replies if r.exact]),
        "added_ttft_p50_ms": added("p50"),
        "added_ttft_p99_ms": added("p99"),
        "duration_ratio_p50": round(dur["p50"] / d_dur["p50"], 4) if dur["p50"] and d_dur["p50"] else None,
        "replies": len(every),
        "lost_or_inexact": sum(1 for r in every if not r.exact),
        "errors": sorted({r.error[:120] for r in every if getattr(r, "error", None)})[:3],
    }


async def point(bench: br.Bench, server, provider, accounts, keys, n: int) -> dict[str, Any]:
    k = br.replies_per_client(n, bench.args)
    # Not started: no MONITOR on the shared Redis (the WebSocket pass only reads INFO totals).
    totals = br.new_totals(bc.RedisCounter(bench.redis_url, bench.log_dir))
    print(f"N={n}: direct ...", flush=True)
    direct = await br.direct_pass(bench, provider, n, k, False)
    print(f"N={n}: websocket ...", flush=True)
    ws = await br.app_pass(bench, server, provider, accounts, n, k, False, totals)
    print(f"N={n}: api ...", flush=True)
    api = await api_pass(bench, server, keys, n, k)
    first = 0 if k == 1 else 1  # the first reply of each client ramps the load up

    def measured(rows):
        return [r for turn, r in rows if turn >= first]

    return {
        "n": n,
        "replies_per_client": k,
        "direct": {
            "ttft_ms": br._ms_summary([r.ttft for r in measured(direct) if r.exact]),
            "lost_or_inexact": sum(1 for _, r in direct if not r.exact),
        },
        "ws": _path_figures(measured(ws), measured(direct), every=[r for _, r in ws]),
        "api": _path_figures(measured(api), measured(direct), every=[r for _, r in api]),
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        "| N | path | added TTFT p50 (ms) | added TTFT p99 (ms) | duration ratio p50 | replies | lost or inexact |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in result["points"]:
        for path, label in (("ws", "WebSocket"), ("api", "HTTP API (SSE)")):
            f = p[path]
            lines.append(
                f"| {p['n']} | {label} | {br.fmt(f['added_ttft_p50_ms'])} | {br.fmt(f['added_ttft_p99_ms'])} | "
                f"{br.fmt(f['duration_ratio_p50'], 3)} | {f['replies']} | {f['lost_or_inexact']} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50])
    parser.add_argument("--replies", type=int, default=0, help="replies per client (default: from --samples)")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--max-replies", type=int, default=9)
    parser.add_argument("--ttft-ms", type=float, default=bc.PROVIDER_TTFT_MS)
    parser.add_argument("--tokens-per-second", type=float, default=bc.PROVIDER_TOKENS_PER_SECOND)
    parser.add_argument("--tokens", type=int, default=bc.PROVIDER_TOKENS)
    parser.add_argument("--output", type=Path, default=bc.RESULTS)
    parser.add_argument("--keep-logs", action="store_true", help="server logs in OUTPUT/logs")
    return parser.parse_args(argv)


async def main_async(args: argparse.Namespace, bench: br.Bench) -> dict[str, Any]:
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.api " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "machine": bc.machine(),
        "config": {
            "ttft_ms": args.ttft_ms,
            "tokens_per_second": args.tokens_per_second,
            "tokens": args.tokens,
            "sweep": args.sweep,
        },
        "points": [],
    }
    top = max(2, *args.sweep)
    with (
        bc.scripted_provider(
            bench.log_dir, ttft_ms=args.ttft_ms, tokens_per_second=args.tokens_per_second, tokens=args.tokens
        ) as provider,
        bc.daphne(
            bc.app_env(bench.database_url, bench.redis_url, **bc.provider_env(provider)), bench.log_dir
        ) as server,
    ):
        accounts = await bench.in_orm(bc.create_accounts, f"api-{bench.tag}", top)
        keys = await bench.in_orm(create_keys, accounts)
        # One reply each way first: the process's first reply pays for imports and connections.
        await br.app_round_warmup(bench, server, accounts[:2])
        warm = bc.DirectReply("warm up", "")
        await api_once(server.port, keys[0], warm)
        for n in args.sweep:
            result["points"].append(await point(bench, server, provider, accounts, keys, n))
            print(render({"points": result["points"][-1:]}), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    bc.raise_open_files_limit()
    database_url, redis_url = bc.bench_database_url(), bc.bench_redis_url()
    bc.ensure_database(database_url)
    bc.setup_django(database_url, redis_url)
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        log_dir = Path(tmp)
        if args.keep_logs:
            log_dir = args.output / "logs"
            log_dir.mkdir(exist_ok=True)
        bench = br.Bench(args, database_url, redis_url, log_dir)
        try:
            result = asyncio.run(main_async(args, bench))
        finally:
            bench.orm.shutdown(wait=True)
    result["seconds"] = round(time.monotonic() - started, 1)
    path = args.output / f"{RESULTS_NAME}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print()
    print(render(result))
    print(f"\n{path} ({result['seconds']} s)")
    bad = [
        f"{path_} N={p['n']}"
        for p in result["points"]
        for path_ in ("ws", "api")
        if p[path_]["lost_or_inexact"]
    ]
    if bad:
        print(f"FAILED: lost or inexact replies on {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
