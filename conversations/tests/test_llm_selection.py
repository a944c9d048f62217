"""Which provider runs: LLM_PROVIDER, LLM_BASE_URL and the local model decide, once per process."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured

import conversations.llm as llm
from bench.fake_openai_server import ScriptedOpenAIServer
from conversations.llm import (
    ProviderUnavailable,
    build_provider,
    get_provider,
    provider_status,
    reset_provider,
)
from conversations.llm.fake import FakeProvider
from conversations.llm.llamacpp import LlamaCppProvider, default_model_path
from conversations.llm.openai_compatible import OpenAICompatibleProvider


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.LLM_PROVIDER = "auto"
    settings.LLM_BASE_URL = ""
    settings.LLM_API_KEY = ""
    settings.LLM_MODEL = ""
    settings.LLM_MODEL_PATH = ""
    reset_provider()
    yield
    reset_provider()


def test_auto_picks_openai_when_a_base_url_is_set(settings):
    settings.LLM_BASE_URL = "http://127.0.0.1:9/v1"
    settings.LLM_MODEL = "some-model"
    settings.LLM_TIMEOUT = 7.0

    provider = build_provider()

    assert isinstance(provider, OpenAICompatibleProvider)
    assert (provider.name, provider.model, provider.base_url, provider.timeout) == (
        "openai",
        "some-model",
        "http://127.0.0.1:9/v1",
        7.0,
    )


def test_auto_picks_the_bundled_local_model_without_a_base_url(settings):
    provider = build_provider()

    assert isinstance(provider, LlamaCppProvider)
    assert provider.model_path == default_model_path()
    assert provider.model == "SmolLM2-135M-Instruct.Q4_1"


def test_auto_without_url_or_model_file_means_no_provider_and_says_why(settings):
    settings.LLM_MODEL_PATH = "/nonexistent/model.gguf"

    assert get_provider() is None
    status = provider_status()
    assert status["configured"] is False
    assert "/nonexistent/model.gguf" in status["reason"]


def test_no_provider_at_all_gives_the_plain_reason(settings, monkeypatch):
    monkeypatch.setattr(llm, "local_model_problem", lambda: "no local model")

    assert get_provider() is None
    assert provider_status()["reason"] == f"{llm.NO_MODEL_REASON} (no local model)"


def test_fake_is_chosen_only_when_asked_and_reads_its_settings(settings):
    settings.LLM_PROVIDER = "fake"
    settings.LLM_FAKE_TTFT = 0.2
    settings.LLM_FAKE_TOKENS_PER_SECOND = 33.0
    settings.LLM_FAKE_TOKENS = 9

    provider = get_provider()

    assert isinstance(provider, FakeProvider)
    assert (provider.ttft, provider.tokens_per_second, provider.reply_tokens) == (0.2, 33.0, 9)


def test_an_unknown_provider_name_is_improperly_configured(settings):
    settings.LLM_PROVIDER = "gpt-magic"

    with pytest.raises(ImproperlyConfigured, match="auto, openai, llamacpp, fake"):
        get_provider()


def test_explicit_llamacpp_without_a_model_file_is_unavailable_with_the_path(settings):
    settings.LLM_PROVIDER = "llamacpp"
    settings.LLM_MODEL_PATH = "/nowhere/model.gguf"

    with pytest.raises(ProviderUnavailable, match=r"/nowhere/model\.gguf"):
        build_provider()
    assert get_provider() is None
    assert "/nowhere/model.gguf" in provider_status()["reason"]


def test_explicit_openai_without_a_url_or_key_is_unavailable(settings):
    settings.LLM_PROVIDER = "openai"

    with pytest.raises(ProviderUnavailable, match="LLM_BASE_URL"):
        build_provider()


def test_the_model_is_discovered_from_the_server_when_llm_model_is_unset(settings):
    with ScriptedOpenAIServer(models=["served-model"]) as server:
        settings.LLM_BASE_URL = server.base_url

        provider = build_provider()

    assert provider.model == "served-model"


def test_provider_status_describes_the_configured_provider(settings):
    settings.LLM_PROVIDER = "fake"
    settings.LLM_MODEL = "bench-model"

    status = provider_status()

    assert status["configured"] is True
    assert (status["provider"], status["model"]) == ("fake", "bench-model")


def test_the_provider_is_built_once_and_rebuilt_after_reset(settings):
    settings.LLM_PROVIDER = "fake"

    first = get_provider()
    assert get_provider() is first
    reset_provider()

    assert get_provider() is not first


def test_concurrent_first_calls_build_one_provider(settings, monkeypatch):
    settings.LLM_PROVIDER = "fake"
    builds = []
    real_build = llm.build_provider

    def slow_build(name=None):
        builds.append(name)
        time.sleep(0.05)
        return real_build(name)

    monkeypatch.setattr(llm, "build_provider", slow_build)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(get_provider())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(builds) == 1
    assert len({id(provider) for provider in seen}) == 1
