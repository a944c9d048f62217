"""The scripted provider: deterministic replies, scripted by directives, for tests and benchmarks only.

A reply is a fixed pseudo-text (short words, one token each) chosen by the
last user message, so a test or the benchmark can compute the exact text it
must receive (`expected_reply`). Directives in the last user message script
the behaviour; the same grammar drives the scripted HTTP server in
`bench/fake_openai_server.py`, so consumer tests can use either:

    [[echo]]rest            the reply is exactly `rest`, in small tokens
    [[tokens:N]]            reply length N tokens
    [[slow:MS]]             MS milliseconds between tokens
    [[ttft:MS]]             MS milliseconds before the first token
    [[fail:CODE]]           raise the typed error with that code (timeout,
                            unreachable, auth, rate_limited, context_too_long,
                            provider_error); [[fail:CODE:K]] after K tokens
    [[error:STATUS]]        the error an HTTP status maps to, e.g. [[error:429]],
                            [[error:400:context_length_exceeded]]
    [[hang]]                never send a token (until closed)
    [[drop:K]]              K tokens, then the connection is lost
    [[garbage]]             a malformed chunk; [[garbage:K]] after K tokens

This module imports nothing from Django so the bench server can use it alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from conversations.llm.base import (
    DEFAULT_OPTIONS,
    ChatMessage,
    ContextTooLong,
    GenerationOptions,
    IteratorStream,
    LLMError,
    LLMProvider,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnreachable,
    Usage,
    error_for_status,
    estimate_tokens,
)

DEFAULT_MODEL = "fake-model"
DEFAULT_TOKENS = 40

# Short words, so a token is about one real token; 64 of them for a cheap index.
WORDS = (
    "able", "acid", "aged", "also", "area", "army", "away", "baby", "back", "ball", "band", "bank",
    "base", "bath", "bear", "beat", "been", "beer", "bell", "belt", "best", "bill", "bird", "blow",
    "blue", "boat", "body", "bomb", "bond", "bone", "book", "boom", "born", "boss", "both", "bowl",
    "bulk", "burn", "bush", "busy", "call", "calm", "came", "camp", "card", "care", "case", "cash",
    "cast", "cell", "chat", "chip", "city", "club", "coal", "coat", "code", "cold", "come", "cook",
    "cool", "cope", "copy", "core",
)  # fmt: skip

_DIRECTIVE = re.compile(r"\[\[(echo|error|fail|hang|drop|garbage|tokens|slow|ttft)(?::([^\[\]]*))?\]\]")
_ECHO = "[[echo]]"

ERRORS_BY_CODE: dict[str, type[LLMError]] = {
    cls.code: cls
    for cls in (
        ProviderTimeout,
        ProviderUnreachable,
        ProviderAuthError,
        ProviderRateLimited,
        ContextTooLong,
        ProviderError,
    )
}


@dataclass(slots=True)
class Script:
    """What the last user message asks of the scripted model."""

    echo: str | None = None
    error_status: int | None = None
    error_code: str | None = None
    fail: str | None = None
    fail_after: int = 0
    hang: str | None = None  # "body": headers then silence; "headers": nothing at all
    drop_after: int | None = None
    garbage_after: int | None = None
    tokens: int | None = None
    slow_ms: float | None = None
    ttft_ms: float | None = None


def _int(value: str | None, default: int = 0) -> int:
    try:
        return max(0, int(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _float(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def parse_script(text: str) -> Script:
    """Read the directives of a user message; text after `[[echo]]` is the reply, verbatim."""
    script = Script()
    head = text
    if _ECHO in text:
        head, script.echo = text.split(_ECHO, 1)
    for match in _DIRECTIVE.finditer(head):
        name, arg = match.group(1), match.group(2)
        if name == "error":
            status, _, code = (arg or "500").partition(":")
            script.error_status = _int(status, 500) or 500
            script.error_code = code or None
        elif name == "fail":
            code, _, after = (arg or "provider_error").partition(":")
            script.fail, script.fail_after = code, _int(after)
        elif name == "hang":
            script.hang = "headers" if arg == "headers" else "body"
        elif name == "drop":
            script.drop_after = _int(arg)
        elif name == "garbage":
            script.garbage_after = _int(arg)
        elif name == "tokens":
            script.tokens = _int(arg, DEFAULT_TOKENS)
        elif name == "slow":
            script.slow_ms = _float(arg)
        elif name == "ttft":
            script.ttft_ms = _float(arg)
    return script


def pseudo_tokens(seed: str, count: int) -> list[str]:
    """`count` tokens of pseudo-text ("word "), the same for the same seed on every machine."""
    state = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=8).digest(), "big")
    tokens = []
    for _ in range(count):
        state = (state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        tokens.append(WORDS[state >> 58] + " ")
    return tokens


def echo_tokens(text: str) -> list[str]:
    """Split text into small tokens (up to three visible characters) whose concatenation is `text`."""
    return re.findall(r"\s*\S{1,3}|\s+", text)


def _content(message: ChatMessage | Mapping) -> tuple[str, str]:
    if isinstance(message, Mapping):
        content = message.get("content") or ""
        if not isinstance(content, str):  # OpenAI content parts: keep the text ones
            content = "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
        return str(message.get("role", "")), content
    return message.role, message.content


def last_user_text(messages: str | Iterable[ChatMessage | Mapping]) -> str:
    if isinstance(messages, str):
        return messages
    text = ""
    for message in messages:
        role, content = _content(message)
        if role == "user":
            text = content
    return text


def cut_at_stop(reply: list[str], stop: Iterable[str]) -> list[str] | None:
    """The tokens before the first stop sequence (the last one cut short), or None when none occurs.

    As OpenAI does: the sequence itself is not part of the reply.
    """
    text = "".join(reply)
    found = [index for index in (text.find(s) for s in stop if s) if index >= 0]
    if not found:
        return None
    end, kept, length = min(found), [], 0
    for token in reply:
        if length + len(token) > end:
            if end > length:
                kept.append(token[: end - length])
            break
        kept.append(token)
        length += len(token)
    return kept


def reply_tokens(
    messages: str | Iterable[ChatMessage | Mapping],
    *,
    tokens: int = DEFAULT_TOKENS,
    max_tokens: int | None = None,
    stop: Iterable[str] = (),
) -> tuple[list[str], str]:
    """The tokens of the scripted reply and its finish_reason.

    "stop" when the reply ends by itself or at a `stop` sequence, "length"
    when cut by `max_tokens` (counted before the stop sequence is looked for,
    as a model would: it stops at whichever comes first).
    """
    text = last_user_text(messages)
    script = parse_script(text)
    if script.echo is not None:
        reply = echo_tokens(script.echo)
    else:
        reply = pseudo_tokens(text, script.tokens if script.tokens is not None else tokens)
    finish_reason = "stop"
    if max_tokens is not None and 0 < max_tokens < len(reply):
        reply, finish_reason = reply[:max_tokens], "length"
    cut = cut_at_stop(reply, stop)
    if cut is not None:
        return cut, "stop"
    return reply, finish_reason


def expected_reply(
    messages: str | Iterable[ChatMessage | Mapping],
    *,
    tokens: int = DEFAULT_TOKENS,
    max_tokens: int | None = None,
    stop: Iterable[str] = (),
) -> str:
    """The exact text the scripted model answers to `messages` (or to this last user message)."""
    return "".join(reply_tokens(messages, tokens=tokens, max_tokens=max_tokens, stop=stop)[0])


def prompt_token_estimate(messages: Iterable[ChatMessage | Mapping]) -> int:
    """A deterministic prompt size: four characters a token, plus four per message for the framing."""
    total = 0
    for message in messages:
        _, content = _content(message)
        total += estimate_tokens(content) + 4
    return total


def scripted_error(script: Script) -> LLMError | None:
    """The typed error a [[fail:...]] or [[error:...]] directive asks for, if any."""
    if script.fail is not None:
        cls = ERRORS_BY_CODE.get(script.fail, ProviderError)
        return cls(f"Scripted failure: {script.fail}.")
    if script.error_status is not None:
        return error_for_status(
            script.error_status, code=script.error_code, message=f"scripted error {script.error_code or ''}"
        )
    return None


class FakeStream(IteratorStream):
    """One scripted reply, paced on the event loop's clock; records how it ended for tests."""

    def __init__(
        self, provider: FakeProvider, messages: list[ChatMessage], model: str, options: GenerationOptions
    ) -> None:
        super().__init__()
        self.provider = provider
        self.messages = messages
        self.model = model
        #: The options asked for (tests check they arrive; temperature and top_p change nothing here).
        self.options = options
        self.tokens_sent = 0
        self.started_at: float | None = None
        #: time.monotonic() when aclose() was called.
        self.closed_at: float | None = None
        #: time.monotonic() when generation ended before its last token (aclose or task cancelled).
        self.stopped_at: float | None = None
        self.completed = False
        self._waiter: asyncio.Future | None = None

    async def aclose(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()
        await super().aclose()

    def _interrupt(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _sleep_until(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        if when <= loop.time() or self.closed:
            return
        waiter = self._waiter = loop.create_future()
        handle = None
        if not math.isinf(when):
            handle = loop.call_at(when, lambda: waiter.done() or waiter.set_result(None))
        try:
            await waiter
        finally:
            if handle is not None:
                handle.cancel()
            self._waiter = None

    async def _generate(self) -> AsyncIterator[str]:
        provider = self.provider
        loop = asyncio.get_running_loop()
        self.started_at = time.monotonic()
        start = loop.time()
        text = last_user_text(self.messages)
        script = parse_script(text)
        ttft = script.ttft_ms / 1000 if script.ttft_ms is not None else provider.ttft
        rate = provider.tokens_per_second
        interval = script.slow_ms / 1000 if script.slow_ms is not None else (1 / rate if rate > 0 else 0.0)
        max_tokens = self.options.max_tokens or provider.max_output_tokens
        tokens, finish_reason = reply_tokens(
            self.messages, tokens=provider.reply_tokens, max_tokens=max_tokens, stop=self.options.stop
        )
        self.result.usage = Usage(prompt_tokens=prompt_token_estimate(self.messages))
        error = scripted_error(script)
        fail_at = script.fail_after if script.fail is not None else 0
        try:
            if script.hang is not None:
                await self._sleep_until(math.inf)
                return
            for index, token in enumerate(tokens):
                await self._sleep_until(start + ttft + index * interval)
                if self.closed:
                    return
                if error is not None and index == fail_at:
                    raise error
                if script.drop_after is not None and index == script.drop_after:
                    raise ProviderError("The connection to the model provider was lost mid-reply.")
                if script.garbage_after is not None and index == script.garbage_after:
                    raise ProviderError("The model provider sent a malformed stream.")
                self.tokens_sent += 1
                self.result.usage.completion_tokens = self.tokens_sent
                yield token
            if error is not None:
                raise error
            if script.drop_after is not None or script.garbage_after is not None:
                raise ProviderError("The connection to the model provider was lost mid-reply.")
            self.result.finish_reason = finish_reason
            self.completed = True
        finally:
            if not self.completed and self.stopped_at is None:
                self.stopped_at = time.monotonic()


class FakeProvider(LLMProvider):
    """Deterministic scripted replies with a configurable pace; chosen only by LLM_PROVIDER=fake."""

    name = "fake"

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        context_tokens: int = 8192,
        max_output_tokens: int = 512,
        ttft: float = 0.05,
        tokens_per_second: float = 200.0,
        reply_tokens: int = DEFAULT_TOKENS,
        extra_models: tuple[str, ...] = (),
    ) -> None:
        super().__init__(model=model, context_tokens=context_tokens, max_output_tokens=max_output_tokens)
        #: Further names it answers to and lists (tests of the model picker and model access).
        self.extra_models = tuple(extra_models)
        self.ttft = ttft
        self.tokens_per_second = tokens_per_second
        self.reply_tokens = reply_tokens
        #: The latest streams, newest last, for tests to inspect (messages, closed_at, stopped_at).
        self.streams: deque[FakeStream] = deque(maxlen=1000)

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        options: GenerationOptions | None = None,
    ) -> FakeStream:
        stream = FakeStream(self, list(messages), model or self.model, options or DEFAULT_OPTIONS)
        self.streams.append(stream)
        return stream

    async def list_models(self) -> list[str]:
        return [self.model, *self.extra_models]

    def expected_reply(
        self, messages: str | list[ChatMessage], *, options: GenerationOptions | None = None
    ) -> str:
        """The exact reply this provider gives to `messages` with `options` (for tests)."""
        options = options or DEFAULT_OPTIONS
        return expected_reply(
            messages,
            tokens=self.reply_tokens,
            max_tokens=options.max_tokens or self.max_output_tokens,
            stop=options.stop,
        )
