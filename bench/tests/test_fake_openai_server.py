"""The scripted OpenAI-compatible server: exact replies, records, process mode, and 300 streams on one core."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from bench.fake_openai_server import ScriptedOpenAIServer, expected_reply

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_process(port: int, *flags: str) -> subprocess.Popen:
    """`python -m bench.fake_openai_server` on `port`, once it says it listens."""
    command = [sys.executable, "-m", "bench.fake_openai_server", "--port", str(port), *flags]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert "scripted OpenAI server on" in process.stdout.readline()
    return process


def post_json(url: str, payload: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


async def stream_raw(port: int, content: str, *, close_after: int | None = None) -> str:
    """A bare HTTP/1.1 client: the streamed text (or close the socket after `close_after` bytes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps(
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": content}]}
    ).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
    )
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = await reader.read(65536)
        if not chunk:
            break
        data += chunk
        if close_after is not None and len(data) >= close_after:
            break
    writer.close()
    text = ""
    for line in data.decode().split("\n"):
        if line.startswith("data: {") and '"choices":[{' in line:
            text += json.loads(line[6:])["choices"][0]["delta"].get("content", "")
    return text


def test_a_server_in_a_thread_answers_non_streaming_requests_exactly():
    with ScriptedOpenAIServer(ttft_ms=1, tokens_per_second=0, tokens=9) as server:
        messages = [{"role": "user", "content": "plain request"}]

        answer = post_json(f"{server.base_url}/chat/completions", {"model": "m", "messages": messages})

    assert answer["choices"][0]["message"]["content"] == expected_reply(messages, tokens=9)
    assert answer["usage"]["completion_tokens"] == 9
    assert server.last_completion().messages == messages


async def test_the_client_closing_mid_stream_is_recorded():
    async with ScriptedOpenAIServer(ttft_ms=1, tokens_per_second=50, tokens=100) as server:
        await stream_raw(server.port, "close early", close_after=200)
        closed = time.monotonic()
        record = server.last_completion()
        for _ in range(200):
            if record.closed_by_client_at is not None:
                break
            await asyncio.sleep(0.005)

    assert record.first_byte_at is not None
    assert record.closed_by_client_at is not None
    assert record.closed_by_client_at - closed < 0.5
    assert record.finished_at is None
    assert record.tokens_sent < 100


def test_as_a_process_it_serves_models_streams_and_stats():
    port = free_port()
    process = start_process(
        port, "--ttft-ms", "5", "--tokens-per-second", "500", "--tokens", "6", "--model", "bench-model"
    )
    try:
        models = get_json(f"http://127.0.0.1:{port}/v1/models")
        text = asyncio.run(stream_raw(port, "over the wire"))
        stats = get_json(f"http://127.0.0.1:{port}/_stats")
    finally:
        process.terminate()
        process.wait(10)

    assert [m["id"] for m in models["data"]] == ["bench-model"]
    assert text == expected_reply("over the wire", tokens=6)
    completion = next(r for r in stats["requests"] if r["path"] == "/v1/chat/completions")
    assert completion["tokens_sent"] == 6
    assert completion["finished_at"] is not None


@pytest.mark.timeout(60)
def test_300_concurrent_streams_are_exact_and_take_a_fraction_of_one_core():
    port = free_port()
    process = start_process(port, "--ttft-ms", "100", "--tokens-per-second", "50", "--tokens", "40")
    try:
        server = psutil.Process(process.pid)
        cpu_before = sum(server.cpu_times()[:2])
        started = time.monotonic()

        async def run_all() -> list[str]:
            return await asyncio.gather(*(stream_raw(port, f"stream {i}") for i in range(300)))

        replies = asyncio.run(run_all())
        wall = time.monotonic() - started
        cpu = sum(server.cpu_times()[:2]) - cpu_before
    finally:
        process.terminate()
        process.wait(10)

    assert all(reply == expected_reply(f"stream {i}", tokens=40) for i, reply in enumerate(replies))
    assert cpu < wall  # 12,000 tokens paced over ~1 s stay well under one core (about 15 % here)
