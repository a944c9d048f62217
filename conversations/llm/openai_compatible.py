"""The OpenAI-compatible provider: any Chat Completions server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio).

Streams through the official `openai` SDK with usage requested in the last
chunk. LLM_TIMEOUT bounds connecting, the first token and every gap between
tokens (a deadline reset at each token, on top of the HTTP client's own
timeouts, since a server may keep the socket busy without sending a token).
The SDK never retries (max_retries=0): a retry after tokens have flowed would
duplicate text, and before that the user is better told at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx2
import openai
import structlog

from conversations.llm.base import (
    DEFAULT_OPTIONS,
    ChatMessage,
    GenerationOptions,
    IteratorStream,
    LLMError,
    LLMProvider,
    ProviderError,
    ProviderTimeout,
    ProviderUnreachable,
    Usage,
    error_for_status,
    redact,
)

log = structlog.get_logger(__name__)

HEALTH_TIMEOUT = 2.0
MODELS_CACHE_SECONDS = 60.0


class OpenAICompatibleProvider(LLMProvider):
    """Chat Completions over HTTP with the official SDK; one client per event loop."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str = "",
        model: str = "",
        timeout: float = 30.0,
        context_tokens: int = 8192,
        max_output_tokens: int = 512,
    ) -> None:
        super().__init__(model=model, context_tokens=context_tokens, max_output_tokens=max_output_tokens)
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._api_key = api_key
        # What a provider may echo back in an error: the key, and a password in the URL
        # (sent as HTTP Basic, so also in base64).
        url = urlsplit(self.base_url)
        password = unquote(url.password or "")
        basic = base64.b64encode(f"{unquote(url.username or '')}:{password}".encode()).decode()
        self._secrets = [
            s for s in (api_key, url.password or "", password, basic if password else "") if len(s) >= 4
        ]
        # An httpx client's connections belong to the loop that opened them.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )
        self._models: list[str] = []
        self._models_at = float("-inf")

    # --- plumbing ------------------------------------------------------------

    def client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key or "not-needed",
                max_retries=0,
                timeout=httpx2.Timeout(self.timeout),
            )
            self._clients[loop] = client
        return client

    def scrub(self, text: str) -> str:
        """Text safe for logs and users: without our API key or the URL's credentials, whatever shape they have."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text)

    def map_error(self, exc: BaseException, *, streaming: bool) -> LLMError:
        """The typed error for an SDK exception; `streaming` once the response has started."""
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, openai.APITimeoutError | TimeoutError):
            return ProviderTimeout(f"The model did not answer within {self.timeout:g} s.")
        if isinstance(exc, openai.APIConnectionError):
            if streaming:
                return ProviderError("The connection to the model provider was lost mid-reply.")
            return ProviderUnreachable(
                f"The model provider at {self.scrub(self.base_url)} could not be reached."
            )
        if isinstance(exc, openai.APIStatusError):
            code, message = _error_fields(exc.body, exc.message)
            return error_for_status(exc.status_code, code=code, message=self.scrub(message))
        if isinstance(exc, openai.APIError):  # an `error` object sent inside the stream
            code, message = _error_fields(exc.body, exc.message)
            return error_for_status(None, code=code, message=self.scrub(message))
        if isinstance(exc, json.JSONDecodeError):
            return ProviderError("The model provider sent a malformed stream.")
        return ProviderError(f"Unexpected error from the model provider: {type(exc).__name__}.")

    # --- the interface -------------------------------------------------------

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        options: GenerationOptions | None = None,
    ) -> OpenAIStream:
        return OpenAIStream(
            self, list(messages), model=model or self.model, options=options or DEFAULT_OPTIONS
        )

    async def health(self) -> None:
        await self._fetch_models()

    async def list_models(self) -> list[str]:
        if time.monotonic() - self._models_at > MODELS_CACHE_SECONDS:
            try:
                await self._fetch_models()
            except LLMError:
                self._models_at = time.monotonic() - MODELS_CACHE_SECONDS + 5  # retry in 5 s, not per page
        models = list(self._models)
        if self.model:
            models = [self.model, *(m for m in models if m != self.model)]
        return models

    async def resolve_model(self) -> str:
        """LLM_MODEL, or else the first model the server lists."""
        if not self.model:
            await self._fetch_models()
            if self._models:
                self.model = self._models[0]
        return self.model

    async def _fetch_models(self) -> list[str]:
        timeout = min(HEALTH_TIMEOUT, self.timeout)
        client = self.client().with_options(timeout=httpx2.Timeout(timeout))
        try:
            async with asyncio.timeout(timeout):
                page = await client.models.list()
        except Exception as exc:
            error = self.map_error(exc, streaming=False)
            log.warning("llm_models_failed", provider=self.name, code=error.code, error=error.message)
            raise error from None
        self._models = sorted(str(m.id) for m in page.data)
        self._models_at = time.monotonic()
        return self._models


def _error_fields(body: object, fallback: str) -> tuple[str | None, str]:
    """The provider's error code and message from an OpenAI-style error body."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            code = error.get("code") or error.get("type")
            message = error.get("message") or fallback
            return (str(code) if code else None), str(message)
    return None, fallback or ""


def discover_model(*, base_url: str, api_key: str, timeout: float) -> str:
    """The first model `/models` lists, synchronously, for a provider built with no LLM_MODEL ("" if none)."""
    try:
        response = httpx2.get(
            f"{base_url.rstrip('/')}/models",
            headers={"Authorization": f"Bearer {api_key or 'not-needed'}"},
            timeout=timeout,
        )
        response.raise_for_status()
        ids = sorted(str(m["id"]) for m in response.json().get("data", []))
    except Exception as exc:
        log.warning("llm_model_discovery_failed", base_url=redact(base_url), error=type(exc).__name__)
        return ""
    return ids[0] if ids else ""


class OpenAIStream(IteratorStream):
    """One streamed chat completion; closing it closes the HTTP response at once."""

    def __init__(
        self,
        provider: OpenAICompatibleProvider,
        messages: list[ChatMessage],
        *,
        model: str,
        options: GenerationOptions,
    ) -> None:
        super().__init__()
        self.provider = provider
        self.messages = messages
        self.model = model
        self.options = options
        self._deadline: asyncio.Timeout | None = None

    def _interrupt(self) -> None:
        # Fire the pending deadline now: the iterating task's read is cancelled
        # there, the SDK closes the response, and `_generate` ends quietly.
        deadline = self._deadline
        if deadline is not None:
            with contextlib.suppress(RuntimeError):  # RuntimeError: already leaving the deadline
                deadline.reschedule(asyncio.get_running_loop().time())

    async def _generate(self) -> AsyncIterator[str]:
        provider = self.provider
        loop = asyncio.get_running_loop()
        timeout = provider.timeout
        deadline = loop.time() + timeout
        sdk_stream: Any = None
        deltas = 0
        reported: Usage | None = None
        finish_reason = ""
        try:
            try:
                model = self.model or await provider.resolve_model()
                if not model:
                    raise ProviderError("No model is configured (set LLM_MODEL) and the server lists none.")
                options = self.options.sampling()
                if self.options.max_tokens or provider.max_output_tokens:
                    options["max_tokens"] = self.options.max_tokens or provider.max_output_tokens
                async with asyncio.timeout_at(deadline) as self._deadline:
                    sdk_stream = await provider.client().chat.completions.create(
                        model=model,
                        messages=[{"role": m.role, "content": m.content} for m in self.messages],
                        stream=True,
                        stream_options={"include_usage": True},
                        **options,
                    )
            except Exception as exc:
                if self.closed:
                    return
                raise self._fail(exc, streaming=False) from None

            while True:
                try:
                    async with asyncio.timeout_at(deadline) as self._deadline:
                        chunk = await sdk_stream.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    if self.closed:
                        return
                    raise self._fail(exc, streaming=True) from None
                finally:
                    self._deadline = None
                if chunk.usage is not None:
                    reported = Usage(
                        prompt_tokens=chunk.usage.prompt_tokens or 0,
                        completion_tokens=chunk.usage.completion_tokens or 0,
                    )
                for choice in chunk.choices or ():
                    text = choice.delta.content if choice.delta is not None else None
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
                    if text:
                        deltas += 1
                        self.result.usage.completion_tokens = deltas
                        yield text
                        if self.closed:
                            return
                        deadline = loop.time() + timeout

            if not finish_reason:
                raise self._fail(
                    ProviderError("The model provider ended the stream before the reply was complete."),
                    streaming=True,
                )
            self.result.finish_reason = finish_reason
        finally:
            self._deadline = None
            self.result.usage = reported or Usage(
                prompt_tokens=sum(provider.count_tokens(m.content) + 4 for m in self.messages),
                completion_tokens=deltas,
                estimated=True,
            )
            if sdk_stream is not None:
                await sdk_stream.close()

    def _fail(self, exc: BaseException, *, streaming: bool) -> LLMError:
        error = self.provider.map_error(exc, streaming=streaming)
        if isinstance(exc, TimeoutError):
            error = ProviderTimeout(
                f"The model sent nothing for {self.provider.timeout:g} s mid-reply."
                if self.result.usage.completion_tokens
                else f"The model did not start answering within {self.provider.timeout:g} s."
            )
        log.warning(
            "llm_request_failed",
            provider=self.provider.name,
            model=self.model,
            code=error.code,
            error=error.message,
            cause=type(exc).__name__,
            tokens_received=self.result.usage.completion_tokens,
        )
        return error
