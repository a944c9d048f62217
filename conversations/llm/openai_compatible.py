"""The OpenAI-compatible provider: any Chat Completions server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio).

Replies stream through a lean reader: one POST on a pooled connection of
`http_stream` (the events parsed where the bytes land, ~15 us an event
against ~58 us through httpx and ~110 us through the official SDK's pydantic
models; docs/perf.md), each `data:` decoded by msgspec straight into the few
fields the reader uses (`Chunk`; ~1.2 us against ~5 through `json.loads` and
dictionary lookups). It keeps what
the SDK gave us that matters: typed errors from the status and the error
body, usage requested in the last chunk, no retry. The SDK still lists the
models (rare, not per token).

LLM_TIMEOUT bounds connecting, the first token and every gap between tokens
(a deadline moved at each read that brings text, since a server may keep the
socket busy without sending a token). What one read brings is one delta.
Nothing is retried: a retry after tokens have flowed would duplicate text,
and before that the user is better told at once
(`http_stream` only resends a request that a reused idle connection dropped
before answering a byte).
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
import msgspec
import openai
import structlog

from chatplatform import tracing
from conversations.llm import http_stream
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
#: An error body longer than this is cut before it is parsed (it is shown cut anyway).
MAX_ERROR_BODY = 64 * 1024


class OpenAICompatibleProvider(LLMProvider):
    """Chat Completions over HTTP: replies by the lean reader, model lists by the SDK; clients per event loop."""

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
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, http_stream.Pool] = (
            weakref.WeakKeyDictionary()
        )
        self.completions_url = f"{self.base_url}/chat/completions"
        self._headers = {
            # Credentials in the URL are HTTP Basic and replace the key, as the SDK's
            # httpx does for the model list (docs/security.md).
            "Authorization": f"Basic {basic}"
            if url.username is not None
            else f"Bearer {api_key or 'not-needed'}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "Accept-Encoding": "gzip, deflate",  # what the reader decodes (no br, no zstd)
            "User-Agent": "chatplatform",  # some gateways refuse a request without one
        }
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

    def pool(self) -> http_stream.Pool:
        """The connections replies stream through (this loop's; they stay open between replies)."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = http_stream.Pool()
        return pool

    def scrub(self, text: str) -> str:
        """Text safe for logs and users: without our API key or the URL's credentials, whatever shape they have."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text)

    def map_error(self, exc: BaseException, *, streaming: bool) -> LLMError:
        """The typed error for an SDK or HTTP exception; `streaming` once the response has started."""
        if isinstance(exc, LLMError):
            return exc
        if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx2.TimeoutException):
            return ProviderTimeout(f"The model did not answer within {self.timeout:g} s.")
        if isinstance(exc, http_stream.MalformedResponse):
            return ProviderError("The model provider sent a malformed response.")
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError | http_stream.HTTPStreamError):
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
        if isinstance(exc, msgspec.DecodeError | json.JSONDecodeError | UnicodeDecodeError | TypeError):
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

    async def close(self) -> None:
        """Close this loop's idle connections (a running reply closes its own as it ends)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            pool.close()

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


def status_error(provider: OpenAICompatibleProvider, status: int, body: bytes, reason: str) -> LLMError:
    """The typed error for an HTTP error response, from its status and OpenAI-style JSON body."""
    try:
        parsed: object = json.loads(body[:MAX_ERROR_BODY])
    except ValueError:
        parsed = None
    fallback = body[:300].decode("utf-8", "replace").strip() if parsed is None else reason
    code, message = _error_fields(parsed, fallback or reason)
    return error_for_status(status, code=code, message=provider.scrub(message))


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


class Delta(msgspec.Struct):
    content: str | None = None


class Choice(msgspec.Struct):
    delta: Delta | None = None
    finish_reason: str | None = None


class ReportedUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Chunk(msgspec.Struct):
    """What the reader uses of a streamed chunk; other fields are skipped unparsed, a field
    of the wrong type is a malformed stream (msgspec.ValidationError). `error` is UNSET
    unless the chunk has one (some servers send an error object mid-stream)."""

    choices: list[Choice] | None = None
    usage: ReportedUsage | None = None
    error: Any | msgspec.UnsetType = msgspec.UNSET


_decode_chunk = msgspec.json.Decoder(Chunk).decode


def read_chunk(data: bytes) -> Chunk:
    """One event's JSON as a `Chunk`. msgspec refuses an unpaired surrogate escape
    (`"\\ud800"`), which JSON allows and a model may send: that rare event goes
    through `json.loads`, and its text reaches the reply, which stores U+FFFD instead."""
    try:
        return _decode_chunk(data)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError:
        return msgspec.convert(json.loads(data), Chunk)


class OpenAIStream(IteratorStream):
    """One streamed chat completion, read by hand; closing it closes the HTTP response at once."""

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
        self._response: http_stream.Response | None = None
        self._deadline: asyncio.Timeout | None = None

    def _interrupt(self) -> None:
        # The iterating task's read raises at once, the connection is closed, and
        # `_generate` (seeing `closed`) ends quietly. Before the response's head
        # the request's deadline fires now instead.
        if self._response is not None:
            self._response.interrupt()
            return
        deadline = self._deadline  # before the head: fire the request's deadline now
        if deadline is not None:
            with contextlib.suppress(RuntimeError):  # RuntimeError: already leaving the deadline
                deadline.reschedule(asyncio.get_running_loop().time())

    def _body(self, model: str) -> bytes:
        provider = self.provider
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.options.sampling(),
        }
        if self.options.max_tokens or provider.max_output_tokens:
            body["max_tokens"] = self.options.max_tokens or provider.max_output_tokens
        return json.dumps(body).encode()

    async def _generate(self) -> AsyncIterator[str]:
        provider = self.provider
        loop = asyncio.get_running_loop()
        timeout = provider.timeout
        response: http_stream.Response | None = None
        deltas = 0
        reported: Usage | None = None
        finish_reason = ""
        try:
            try:
                model = self.model or await provider.resolve_model()
                if not model:
                    raise ProviderError("No model is configured (set LLM_MODEL) and the server lists none.")
                deadline = loop.time() + timeout
                headers = dict(provider._headers)
                url = provider.completions_url
                with tracing.client_request("POST", url, headers) as span:
                    async with asyncio.timeout_at(deadline) as self._deadline:
                        response = await provider.pool().post(
                            url, self._body(model), headers, deadline=deadline
                        )
                    tracing.response_status(span, response.status)
                if response.status >= 400:
                    async with asyncio.timeout_at(deadline) as self._deadline:
                        body = await response.read(MAX_ERROR_BODY)
                    raise status_error(provider, response.status, body, response.reason)
                self._response = response
                if self.closed:  # closed as the head arrived
                    return
            except Exception as exc:
                if self.closed:
                    return
                raise self._fail(exc, streaming=False) from None
            finally:
                self._deadline = None

            response.expire_at(loop.time() + timeout)
            while True:
                try:
                    events = await response.events()
                except Exception as exc:
                    if self.closed:
                        return
                    raise self._fail(exc, streaming=True) from None
                if events is None:
                    break
                # What one read brought is one delta: a read a frame (`gather`) carries a
                # few tokens, and each would otherwise go on its own through every step
                # between here and the relay. A bad event ends the reply after the text
                # before it.
                texts: list[str] = []
                failed: Exception | None = None
                for event in events:
                    if event == b"[DONE]":
                        continue  # the body's end follows; reading it keeps the connection reusable
                    try:
                        chunk = read_chunk(event)
                        if chunk.error is not msgspec.UNSET:
                            code, message = _error_fields({"error": chunk.error}, "")
                            raise error_for_status(None, code=code, message=provider.scrub(message))
                        usage = chunk.usage
                        if usage is not None and (
                            usage.prompt_tokens is not None or usage.completion_tokens is not None
                        ):
                            reported = Usage(
                                prompt_tokens=usage.prompt_tokens or 0,
                                completion_tokens=usage.completion_tokens or 0,
                            )
                        for choice in chunk.choices or ():
                            if choice.finish_reason:
                                finish_reason = choice.finish_reason
                            delta = choice.delta
                            if delta is not None and delta.content:
                                texts.append(delta.content)
                    except Exception as exc:
                        failed = exc
                        break
                if texts:
                    deltas += len(texts)
                    self.result.usage.completion_tokens = deltas
                    yield "".join(texts)
                    if self.closed:
                        return
                    response.expire_at(loop.time() + timeout)
                if failed is not None:
                    raise self._fail(failed, streaming=True) from None
                if self.gather is not None and not finish_reason:  # the end is not kept waiting
                    response.rest(self.gather())

            if not finish_reason:
                raise self._fail(
                    ProviderError("The model provider ended the stream before the reply was complete."),
                    streaming=True,
                )
            self.result.finish_reason = finish_reason
        finally:
            self._response = None
            self.result.usage = reported or Usage(
                prompt_tokens=sum(provider.count_tokens(m.content) + 4 for m in self.messages),
                completion_tokens=deltas,
                estimated=True,
            )
            if response is not None:
                response.close()

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
