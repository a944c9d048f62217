"""The provider interface: stream text deltas, then usage and finish_reason; typed errors.

Nothing outside `conversations/llm/` knows which provider runs. A provider
turns a list of chat messages into a `Stream`: an async iterator of text
deltas which, once exhausted, holds the final `usage` and `finish_reason`.
Closing a stream early (`await stream.aclose()`, or cancelling the task that
iterates it) stops the model itself: the HTTP response is closed, the local
model's loop ends.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str


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
    """One generation: iterate for text deltas; afterwards read `result`."""

    def __init__(self) -> None:
        self.result = StreamResult()

    def __aiter__(self) -> AsyncIterator[str]:
        return self.deltas()

    @abstractmethod
    def deltas(self) -> AsyncIterator[str]:
        """Yield non-empty text deltas; raise LLMError on failure."""

    async def aclose(self) -> None:
        """Stop generating now. Safe to call more than once."""


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
        self, messages: list[ChatMessage], *, model: str | None = None, max_tokens: int | None = None
    ) -> Stream:
        """Start a generation. Errors surface while iterating, as LLMError."""

    async def health(self) -> None:
        """Raise when the provider cannot serve; return when it can."""

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


_SECRET_PATTERNS = [
    re.compile(r"(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+"),
    re.compile(r"(?i)(bearer\s+)[^\s'\"]+"),
    re.compile(r"(?i)(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    re.compile(r"(://[^:/@\s]+:)[^@\s]+(@)"),
]


def redact(text: str) -> str:
    """Remove API keys, bearer tokens and URL passwords from text bound for logs or users."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***\2" if pattern.groups == 2 else r"\1***", text)
    return text
