"""What a server does with a running reply when it is told to stop (SIGTERM): docs/perf.md, issue 18.

One signed-in socket asks for a 60-token reply at 20 tokens/s (the scripted
in-process provider); after three deltas the server gets SIGTERM. Prints
whether the socket stayed open, the reply's final status and length, and how
long the process took to exit.

    python -m bench.drain --server daphne
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
import time
import uuid
from pathlib import Path

from bench import client as bc


async def drain(kind: str, account: bc.Account, conversation: str, database_url: str, redis_url: str) -> dict:
    env = bc.app_env(
        database_url, redis_url, LLM_PROVIDER="fake", LLM_FAKE_TOKENS="60", LLM_FAKE_TOKENS_PER_SECOND="20"
    )
    with tempfile.TemporaryDirectory() as tmp, bc.app_server(env, Path(tmp), server=kind) as server:
        ws = await bc.open_socket(server.ws_url, server.url, conversation, account.cookie)
        await ws.send(
            json.dumps({"type": "message.send", "content": "drain me", "client_id": str(uuid.uuid4())})
        )
        deltas = 0
        while deltas < 3:
            deltas += json.loads(await ws.recv())["type"] == "message.delta"
        os.kill(server.pid, signal.SIGTERM)
        signalled = time.monotonic()
        final, socket = None, "stayed open"
        try:
            while final is None:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if frame["type"] in {"message.completed", "message.failed"}:
                    final = frame
        except Exception as exc:
            socket = f"closed: {type(exc).__name__}: {exc}"
        final_after = time.monotonic() - signalled
        server.process.wait(60)
        return {
            "server": kind,
            "socket": socket,
            "reply_status": final and final["status"],
            "reply_chars": final and len(final.get("content") or ""),
            "final_after_seconds": round(final_after, 1),
            "exit_code": server.process.returncode,
            "exited_after_seconds": round(time.monotonic() - signalled, 1),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=bc.SERVERS, default=bc.PRODUCTION_SERVER)
    args = parser.parse_args(argv)
    database_url, redis_url = bc.bench_database_url(), bc.bench_redis_url()
    bc.ensure_database(database_url)
    bc.setup_django(database_url, redis_url)
    accounts = bc.create_accounts(f"drain-{uuid.uuid4().hex[:6]}", 1)
    conversation = bc.create_conversations(accounts)[0]
    print(json.dumps(asyncio.run(drain(args.server, accounts[0], conversation, database_url, redis_url))))


if __name__ == "__main__":
    main()
