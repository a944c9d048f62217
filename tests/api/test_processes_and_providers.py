"""The API on every process and with every provider: two daphne processes share one user's limits;
the local model (SmolLM2 in llama-cpp-python) answers through the same endpoints."""

from __future__ import annotations

import openai
import pytest
from channels.db import database_sync_to_async

from conversations.models import Conversation
from tests.api.conftest import (
    CONCURRENT_REPLIES,
    UPSTREAM_MODEL,
    api_server_env,
    async_client_for,
    client_for,
)
from tests.api.test_sdk import wait_for
from tests.security.conftest import server_env
from tests.servers import daphne

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def second_server(api_server, upstream, tmp_path):
    """Another process beside the module's server: same database, Redis and upstream."""
    with daphne(api_server_env(upstream), log_dir=tmp_path, name="api-b") as server:
        yield server


async def test_replies_running_on_one_process_count_against_a_call_on_another(
    api_server, second_server, alice, alice_key
):
    on_a = async_client_for(api_server, alice_key)
    on_b = async_client_for(second_server, alice_key)
    running = [
        await on_a.chat.completions.create(
            model=UPSTREAM_MODEL,
            messages=[{"role": "user", "content": "[[slow:50]][[tokens:200]]"}],
            stream=True,
        )
        for _ in range(CONCURRENT_REPLIES)
    ]
    with pytest.raises(openai.RateLimitError) as refused:
        await on_b.chat.completions.create(model=UPSTREAM_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.code == "rate_limit_exceeded"
    for stream in running:
        await stream.close()
    await on_a.close()
    await on_b.close()
    await database_sync_to_async(wait_for)(
        lambda: not Conversation.objects.filter(owner=alice).exists(), what="the stopped calls' rows to go"
    )


@pytest.fixture
def local_model_server(django_db_setup, tmp_path):
    env = server_env(
        LLM_PROVIDER="llamacpp", LLM_MAX_OUTPUT_TOKENS="16", LLM_THREADS="1", LLM_CONTEXT_TOKENS="2048"
    )
    with daphne(env, log_dir=tmp_path, name="api-local") as server:
        yield server


@pytest.mark.localmodel
def test_the_local_model_answers_through_the_api(local_model_server, alice, alice_key):
    client = client_for(local_model_server, alice_key)
    models = [m.id for m in client.models.list().data]
    assert len(models) == 1
    completion = client.chat.completions.create(
        model=models[0], messages=[{"role": "user", "content": "Say hello."}], max_completion_tokens=8
    )
    assert completion.choices[0].message.content.strip()
    assert 0 < completion.usage.completion_tokens <= 16
    stream = client.chat.completions.create(
        model=models[0],
        messages=[{"role": "user", "content": "Name a colour."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].usage.completion_tokens > 0
