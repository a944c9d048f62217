"""SIGTERM drains a real daphne process: running replies finish within the grace period or are
`interrupted` with their text, nothing stays `streaming`, and the log stays JSON to the last line."""

from __future__ import annotations

import json
import signal

import pytest
from channels.db import database_sync_to_async

from conversations.models import Message
from tests.servers import daphne
from tests.test_multiprocess import chat, frames_until, log_dir, open_ws, start_reply  # noqa: F401

pytestmark = [pytest.mark.multiprocess, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def env(live_database_url, redis_url) -> dict[str, str]:
    return {
        "DATABASE_URL": live_database_url,
        "REDIS_URL": redis_url,
        "APP_ENV": "test",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "LLM_PROVIDER": "fake",
        "LLM_FAKE_TTFT": "0.05",
        "CHAT_TITLE_FROM_MODEL": "false",
        "CHAT_CHECKPOINT_SECONDS": "0.25",
    }


def terminate(server) -> int:
    server.process.send_signal(signal.SIGTERM)
    return server.process.wait(timeout=60)


def assert_only_json_lines(log: str) -> list[dict]:
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            pytest.fail(f"a log line that is not JSON: {line[:300]!r}")
    return records


async def reply_after_sigterm(server, conversation, cookie, *, timeout: float = 15) -> tuple[str, Message]:
    async with await open_ws(server, conversation, cookie) as ws:
        reply_id = await start_reply(ws)
        await frames_until(ws, "message.delta", timeout=timeout)
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)
    return reply_id, await database_sync_to_async(Message.objects.get)(pk=reply_id)


async def test_sigterm_lets_a_running_reply_finish_within_the_grace_period(env, log_dir, chat):  # noqa: F811
    conversation, cookie = chat
    env = {
        **env,
        "LLM_FAKE_TOKENS": "60",
        "LLM_FAKE_TOKENS_PER_SECOND": "40",
        "CHAT_SHUTDOWN_GRACE_SECONDS": "25",
    }
    with daphne(env, log_dir=log_dir, name="graceful") as server:
        _, reply = await reply_after_sigterm(server, conversation, cookie)
        log = server.log()
    assert reply.status == "complete"
    assert len(reply.content.split()) == 60
    events = [record.get("event") for record in assert_only_json_lines(log)]
    assert "runtime_draining" in events and "runtime_stopped" in events


async def test_sigterm_interrupts_what_outlasts_the_grace_period_and_keeps_its_text(env, log_dir, chat):  # noqa: F811
    conversation, cookie = chat
    env = {
        **env,
        "LLM_FAKE_TOKENS": "2000",
        "LLM_FAKE_TOKENS_PER_SECOND": "40",
        "CHAT_SHUTDOWN_GRACE_SECONDS": "0.5",
    }
    with daphne(env, log_dir=log_dir, name="impatient") as server:
        _, reply = await reply_after_sigterm(server, conversation, cookie)
        log = server.log()
    assert reply.status == "interrupted"
    assert reply.content
    assert (reply.error_code, reply.worker) == ("interrupted", "")
    assert not await database_sync_to_async(Message.objects.filter(status="streaming").exists)()
    assert_only_json_lines(log)


@pytest.mark.localmodel
async def test_sigterm_with_the_local_model_loaded_releases_it_and_logs_only_json(env, log_dir, chat):  # noqa: F811
    conversation, cookie = chat
    env = {
        **env,
        "LLM_PROVIDER": "llamacpp",
        "LLM_CONTEXT_TOKENS": "1024",
        "LLM_MAX_OUTPUT_TOKENS": "400",
        "CHAT_SHUTDOWN_GRACE_SECONDS": "0.5",
    }
    with daphne(env, log_dir=log_dir, name="local") as server:
        # The model loads at start-up; on a busy machine its first token can take a while.
        _, reply = await reply_after_sigterm(server, conversation, cookie, timeout=120)
        log = server.log()
    assert reply.status in {"complete", "interrupted"}
    assert reply.content
    assert not await database_sync_to_async(Message.objects.filter(status="streaming").exists)()
    records = assert_only_json_lines(log)
    assert "Traceback" not in log
    assert "llm_model_loaded" in [record.get("event") for record in records]
