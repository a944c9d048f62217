"""The ASGI servers side by side on what differs between them: WebSocket frames out (docs/perf.md).

Each server (bench.client.server_command: daphne, uvicorn with uvloop,
httptools and websockets, granian) serves `bench.servers:application`, a bare
ASGI app that, per socket, sends `--frames` text frames of a delta's size at
the pace of a streamed reply (`--rate` a second), then closes. `--sockets`
clients hold a socket each at once. Reported per server: server CPU per 1,000
frames (psutil, the server's process tree), peak RSS, frames received, and the
p50/p99 lateness of a frame against its schedule as the client sees it.
No database, no Redis: the server's own cost, nothing else.

    python -m bench.servers                    # 300 sockets x 200 frames at 50/s, every server
    python -m bench.servers --servers daphne,uvicorn --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import client as bc

FRAME = json.dumps({"type": "message.delta", "message_id": "0" * 36, "offset": 0, "text": "word word "})


async def application(scope, receive, send):  # a bare ASGI app: no Django, no Channels
    if scope["type"] == "http":
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    query = dict(part.split("=") for part in scope["query_string"].decode().split("&") if part)
    frames, interval = int(query.get("frames", 200)), 1 / float(query.get("rate", 50))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for index in range(frames):
        delay = start + index * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await send({"type": "websocket.send", "text": FRAME})
    await send({"type": "websocket.close", "code": 1000})


async def one_socket(url: str, frames: int, rate: float, lateness: list[float]) -> int:
    import websockets

    received = 0
    async with websockets.connect(f"{url}/ws?frames={frames}&rate={rate}", max_queue=None) as ws:
        start = time.monotonic()
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in ws:
                lateness.append(time.monotonic() - start - received / rate)
                received += 1
    return received


async def measure(kind: str, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    env = {"PYTHONUNBUFFERED": "1", "BENCH_ASGI_APP": "bench.servers:application"}
    with bc.cluster(env, log_dir, name="servers", server=kind) as server:
        sampler = bc.Sampler(server.pids).start()
        lateness: list[float] = []
        ws_url = server.ws_url
        started = time.monotonic()

        async def staggered(i: int) -> int:
            await asyncio.sleep(i * (args.frames / args.rate) / args.sockets)
            return await one_socket(ws_url, args.frames, args.rate, lateness)

        counts = await asyncio.gather(*(staggered(i) for i in range(args.sockets)), return_exceptions=True)
        wall = time.monotonic() - started
        await sampler.stop()
    received = sum(c for c in counts if isinstance(c, int))
    errors = [repr(c) for c in counts if not isinstance(c, int)]
    lateness.sort()
    return {
        "server": kind,
        "sockets": args.sockets,
        "frames_expected": args.sockets * args.frames,
        "frames_received": received,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "cpu_ms_per_1000_frames": round(1000 * sampler.cpu_seconds / max(received, 1) * 1000, 1),
        "cpu_share_of_a_core": round(sampler.cpu_seconds / wall, 2),
        "peak_rss_mb": round(sampler.peak_rss / 2**20, 1),
        "lateness_ms": {
            "p50": round(1000 * bc.percentile(lateness, 50), 1) if lateness else None,
            "p99": round(1000 * bc.percentile(lateness, 99), 1) if lateness else None,
        },
        "load_before": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(bc.SERVERS))
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=2, help="each server this many times, alternating")
    parser.add_argument("--output", type=Path, default=bc.RESULTS / "servers.json")
    args = parser.parse_args(argv)
    bc.raise_open_files_limit()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-servers-") as tmp:
        for round_number in range(args.rounds):
            for kind in args.servers.split(","):
                result = asyncio.run(measure(kind, args, Path(tmp)))
                result["round"] = round_number
                results.append(result)
                print(json.dumps(result), flush=True)
    print(
        "\n| server | CPU ms / 1,000 frames (median) | frame lateness p50 / p99 ms | peak RSS MB | frames lost |"
    )
    print("|---|---|---|---|---|")
    for kind in args.servers.split(","):
        rows = [r for r in results if r["server"] == kind]
        print(
            f"| {kind} | {statistics.median(r['cpu_ms_per_1000_frames'] for r in rows):.1f} "
            f"({', '.join(str(r['cpu_ms_per_1000_frames']) for r in rows)}) "
            f"| {statistics.median(r['lateness_ms']['p50'] for r in rows):.1f} / "
            f"{statistics.median(r['lateness_ms']['p99'] for r in rows):.1f} "
            f"| {max(r['peak_rss_mb'] for r in rows)} "
            f"| {sum(r['frames_expected'] - r['frames_received'] for r in rows)} |"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
