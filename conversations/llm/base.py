"""The provider interface: stream text deltas, then usage and finish_reason; typed errors.

Nothing outside `conversations/llm/` knows which provider runs. A provider
turns a list of chat messages into a `Stream`: an async iterator of text
deltas which, once exhausted, holds the final `usage` and `finish_reason`.
Closing a stream early (`await stream.aclose()`, or cancelling the task that
iterates it) stops the model itself: the HTTP response is closed, the local
model's loop ends.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


#: OpenAI accepts at most four stop sequences; the local model takes the same limit.
MAX_STOP_SEQUENCES = 4


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """How to sample one generation; every field optional (None: the provider's default).

    `max_tokens` caps the reply (None: the provider's LLM_MAX_OUTPUT_TOKENS),
    `temperature` (0-2) and `top_p` (0-1) shape sampling, `stop` ends the reply
    before the first of up to four sequences (the sequence itself is not sent).
    Invalid values raise ValueError here, before any provider sees them.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A list (from JSON) becomes a tuple so the options stay hashable and immutable.
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        object.__setattr__(self, "stop", stop)
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool) or self.max_tokens < 1):
            raise ValueError("max_tokens must be a positive integer")
        if self.temperature is not None and not 0.0 <= self.temperature <= 2.0:
            raise ValueError("temperature must be between 0 and 2")
        if self.top_p is not None and not 0.0 <= self.top_p <= 1.0:
            raise ValueError("top_p must be between 0 and 1")
        if len(stop) > MAX_STOP_SEQUENCES or not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop takes up to {MAX_STOP_SEQUENCES} non-empty strings")

    def sampling(self) -> dict[str, object]:
        """The set sampling fields (temperature, top_p, stop) as request keywords; max_tokens apart."""
        fields: dict[str, object] = {}
        if self.temperature is not None:
            fields["temperature"] = self.temperature
        if self.top_p is not None:
            fields["top_p"] = self.top_p
        if self.stop:
            fields["stop"] = list(self.stop)
        return fields


#: No options: every provider default.
DEFAULT_OPTIONS = GenerationOptions()


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # True when the provider did not report counts and they were estimated.
    estimated: bool = False


@dataclass(slots=True)
class StreamResult:
    """What a stream knows once it has ended."""

    usage: Usage = field(default_factory=Usage)
    finish_reason: str = ""


class LLMError(Exception):
    """A provider failure the user is told about, with a stable `code`."""

    code = "provider_error"
    default_message = "The model provider returned an error."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(redact(message or self.default_message))

    @property
    def message(self) -> str:
        return str(self)


class ProviderTimeout(LLMError):
    code = "timeout"
    default_message = "The model did not answer in time."


class ProviderUnreachable(LLMError):
    code = "unreachable"
    default_message = "The model provider could not be reached."


class ProviderAuthError(LLMError):
    code = "auth"
    default_message = "The model provider refused our credentials."


class ProviderRateLimited(LLMError):
    code = "rate_limited"
    default_message = "The model provider is rate limiting us; try again shortly."


class ContextTooLong(LLMError):
    code = "context_too_long"
    default_message = "The conversation is too long for the model's context window."


class ProviderError(LLMError):
    code = "provider_error"


class Stream(ABC):
    """One generation: iterate for text deltas; afterwards read `result`.

    `gather`, set by the consumer before it iterates, is how long (seconds, asked
    after each read; None or 0: no wait) the stream may leave its input unread
    between reads, so that what arrives meanwhile is taken in one go. A stream
    that reads a socket (OpenAIStream) honours it; the others need not.
    """

    gather: Callable[[], float] | None = None

    def __init__(self) -> None:
        self.result = StreamResult()

    def __aiter__(self) -> AsyncIterator[str]:
        return self.deltas()

    @abstractmethod
    def deltas(self) -> AsyncIterator[str]:
        """Yield non-empty text deltas; raise LLMError on failure."""

    async def aclose(self) -> None:
        """Stop generating now. Safe to call more than once."""


class IteratorStream(Stream):
    """A Stream backed by one async generator (`_generate`), closable from any task.

    `aclose()` from the task that iterates (between deltas) closes the generator,
    whose `finally` releases the provider's resources. From another task, while
    the iterating task waits inside `_generate`, `_interrupt()` wakes it: the
    generator sees `closed` and ends quietly, and `aclose()` waits (briefly) for
    that, so the HTTP response is closed or the model loop ended when it returns.
    """

    #: How long aclose() waits for the iterating task to let go of the provider.
    close_wait_seconds = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.closed = False
        self._generator: AsyncIterator[str] | None = None
        self._finished = asyncio.Event()

    def deltas(self) -> AsyncIterator[str]:
        if self._generator is None:
            self._generator = self._run()
        return self._generator

    async def _run(self) -> AsyncIterator[str]:
        inner = self._generate()
        try:
            if not self.closed:
                async for text in inner:
                    yield text
        finally:
            try:
                await inner.aclose()  # type: ignore[attr-defined]
            finally:
                self._finished.set()

    @abstractmethod
    def _generate(self) -> AsyncIterator[str]:
        """Yield deltas; release resources in `finally`; return quietly once `closed`."""

    def _interrupt(self) -> None:
        """Wake the iterating task out of whatever it awaits (called by aclose from another task)."""

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.result.finish_reason and not self._finished.is_set():
            self.result.finish_reason = "cancelled"
        generator = self._generator
        if generator is None:
            return
        if getattr(generator, "ag_running", False):
            self._interrupt()
            try:
                async with asyncio.timeout(self.close_wait_seconds):
                    await self._finished.wait()
            except TimeoutError:
                pass
        else:
            await generator.aclose()  # type: ignore[attr-defined]


class LLMProvider(ABC):
    """A configured model backend. One instance per process."""

    #: "openai", "llamacpp" or "fake": stored on every UsageEvent.
    name: str = ""

    def __init__(self, *, model: str, context_tokens: int, max_output_tokens: int) -> None:
        self.model = model
        self.context_tokens = context_tokens
        self.max_output_tokens = max_output_tokens

    @abstractmethod
    def stream(
        self,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        options: GenerationOptions | None = None,
    ) -> Stream:
        """Start a generation. Errors surface while iterating, as LLMError.

        `options` None means every default (`DEFAULT_OPTIONS`); with no
        `max_tokens` the provider's own `max_output_tokens` caps the reply.
        """

    async def health(self) -> None:
        """Raise when the provider cannot serve; return when it can."""

    async def warm_up(self) -> None:
        """Load what the first request would otherwise wait for (the local model); optional."""

    async def close(self) -> None:
        """Release what the provider holds (the local model) before the process exits."""

    async def list_models(self) -> list[str]:
        """Models a conversation may pick; the configured one first."""
        return [self.model]

    def count_tokens(self, text: str) -> int:
        """An estimate good enough for budgeting: about four characters a token."""
        return estimate_tokens(text)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for this provider in this process (0 where nothing queues)."""
        return 0


def estimate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4) if text else 0


_CONTEXT_MARKERS = re.compile(
    r"(?i)context[ _]length|context window|maximum context|too many tokens|prompt is too long"
    r"|exceeds? the (?:model'?s? )?(?:context|maximum)"
)


def error_for_status(status: int | None, *, code: str | None = None, message: str = "") -> LLMError:
    """The typed error for an HTTP status (and the provider's error code/message), as users see it."""
    detail = (message or "").strip()[:300]
    suffix = f": {detail}" if detail else "."
    http = f" (HTTP {status})" if status else ""
    if code in {"context_length_exceeded", "string_above_max_length"} or (
        status in {400, 413, 422, None} and _CONTEXT_MARKERS.search(detail)
    ):
        return ContextTooLong(f"The conversation is too long for the model's context window{suffix}")
    if status in {401, 403} or code in {"invalid_api_key", "unauthorized", "permission_denied"}:
        return ProviderAuthError(f"The model provider refused our credentials{http}{suffix}")
    if status == 429 or code in {"rate_limit_exceeded", "insufficient_quota"}:
        return ProviderRateLimited(f"The model provider is rate limiting us{http}{suffix}")
    if status in {408, 504}:
        return ProviderTimeout(f"The model provider timed out{http}{suffix}")
    if status is None:
        return ProviderError(f"The model provider reported an error{suffix}")
    return ProviderError(f"The model provider returned HTTP {status}{suffix}")


_SECRET_PATTERNS = [
    re.compile(r"(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+"),
    re.compile(r"(?i)(bearer\s+)[^\s'\"]+"),
    re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/=]{4,}"),  # user:password in base64
    re.compile(r"(?i)(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    re.compile(r"(://[^:/@\s]+:)[^@\s]+(@)"),
]


def redact(text: str) -> str:
    """Remove API keys, bearer and basic credentials and URL passwords from text bound for logs or users."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***\2" if pattern.groups == 2 else r"\1***", text)
    return text
