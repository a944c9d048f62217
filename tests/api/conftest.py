"""A live daphne serving the API, an OpenAI-compatible scripted upstream as its model, and SDK clients.

The server reads the pytest test database (tests commit their rows:
transactional) and the machine's Redis; the upstream is
bench/fake_openai_server.py in a thread of the test process, so a test can
read what the model was asked and when the server closed its stream.
Limits are low and per user, and every test makes its own users.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from api.services import api_key_create
from bench.fake_openai_server import ScriptedOpenAIServer
from tests.security.conftest import make_user, server_env
from tests.servers import Server, daphne

UPSTREAM_MODEL = "scripted-model"
RATE_PER_MINUTE = 6
CONCURRENT_REPLIES = 2
DAILY_BUDGET = 5_000


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedOpenAIServer]:
    server = ScriptedOpenAIServer(ttft_ms=10, tokens_per_second=400, tokens=12, model=UPSTREAM_MODEL)
    server.start_in_thread()
    yield server
    server.stop()


def api_server_env(upstream: ScriptedOpenAIServer, **overrides: str) -> dict[str, str]:
    return server_env(
        LLM_PROVIDER="openai",
        LLM_BASE_URL=upstream.base_url,
        LLM_API_KEY="sk-upstream-test",
        LLM_MODEL=UPSTREAM_MODEL,
        LLM_TIMEOUT="2",
        CHAT_MESSAGES_PER_MINUTE=str(RATE_PER_MINUTE),
        CHAT_CONCURRENT_REPLIES=str(CONCURRENT_REPLIES),
        CHAT_DAILY_TOKEN_BUDGET=str(DAILY_BUDGET),
        **overrides,
    )


@pytest.fixture(scope="module")
def api_server(django_db_setup, upstream, tmp_path_factory) -> Iterator[Server]:
    with daphne(api_server_env(upstream), log_dir=tmp_path_factory.mktemp("api"), name="api") as server:
        yield server


@pytest.fixture
def alice(transactional_db):
    return make_user("alice")


@pytest.fixture
def alice_key(alice) -> str:
    return api_key_create(user=alice, name="laptop")[1]


def client_for(server: Server, key: str) -> openai.OpenAI:
    # No retries: each status must reach the test as the server sent it.
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=20)


def async_client_for(server: Server, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0, timeout=20)
