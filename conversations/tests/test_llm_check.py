"""`manage.py llm_check`: names the provider, streams a reply, times it; fails loudly when it can't."""

from __future__ import annotations

import io
import socket

import pytest
from django.core.management import CommandError, call_command

from conversations.llm import reset_provider
from conversations.llm.fake import expected_reply


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = ""
    settings.LLM_MODEL_PATH = ""
    settings.LLM_FAKE_TTFT = 0.0
    settings.LLM_FAKE_TOKENS_PER_SECOND = 0
    settings.LLM_FAKE_TOKENS = 8
    reset_provider()
    yield
    reset_provider()


def test_streams_the_reply_and_prints_provider_model_and_timings(settings):
    settings.LLM_PROVIDER = "fake"
    out = io.StringIO()

    call_command("llm_check", "Say hello", stdout=out)

    output = out.getvalue()
    assert "provider: fake" in output
    assert "model:    fake-model" in output
    assert expected_reply("Say hello", tokens=8) in output
    assert "first token:" in output
    assert "tokens/s" in output


def test_no_configured_provider_is_a_clear_failure(settings):
    settings.LLM_PROVIDER = "auto"
    settings.LLM_MODEL_PATH = "/nonexistent/model.gguf"

    with pytest.raises(CommandError, match="No LLM provider is configured"):
        call_command("llm_check", stdout=io.StringIO())


def test_a_provider_that_cannot_be_reached_is_a_clear_failure(settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.LLM_PROVIDER = "openai"
    settings.LLM_BASE_URL = f"http://127.0.0.1:{port}/v1"
    settings.LLM_MODEL = "any"

    with pytest.raises(CommandError, match="unreachable"):
        call_command("llm_check", stdout=io.StringIO())


def test_a_provider_error_mid_check_is_a_clear_failure(settings):
    settings.LLM_PROVIDER = "fake"

    with pytest.raises(CommandError, match="rate_limited"):
        call_command("llm_check", "[[error:429]]", stdout=io.StringIO())
