"""The body of POST /v1/chat/completions, checked field by field into a `CompletionRequest`.

Only what the platform can honour is accepted: text messages, one choice,
the sampling options the providers take. Anything else is a 400 naming the
offending parameter, never silently ignored in a way that changes the reply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from api.errors import ApiError, invalid
from conversations.llm.base import GenerationOptions
from conversations.models import is_storable_text

# Roles a request may use, and what each becomes. `developer` is OpenAI's newer name for system.
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOP_SEQUENCES = 4
MAX_USER_CHARS = 256


@dataclass(frozen=True, slots=True)
class RequestMessage:
    role: str  # system, user or assistant
    content: str


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    model: str
    messages: tuple[RequestMessage, ...]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = field(default_factory=tuple)
    user: str = ""
    store: bool = False

    @property
    def options(self) -> GenerationOptions:
        return GenerationOptions(
            max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p, stop=self.stop
        )

    @property
    def system_prompt(self) -> str:
        return "\n\n".join(m.content for m in self.messages if m.role == "system")

    @property
    def exchange(self) -> tuple[RequestMessage, ...]:
        """The user and assistant turns, in order (system text goes to the system prompt)."""
        return tuple(m for m in self.messages if m.role != "system")


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, "We could not parse the JSON body of your request.", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def parse_completion(body: dict[str, Any]) -> CompletionRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("you must provide a model parameter", param="model", code="missing_required_parameter")
    messages = _messages(body.get("messages"))
    stream = _bool(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise invalid("stream_options is only allowed when stream is true", param="stream_options")
        if not isinstance(options, dict):
            raise invalid("stream_options must be an object", param="stream_options")
        include_usage = _bool(options, "include_usage", param="stream_options.include_usage")
    n = body.get("n")
    if n is not None and n != 1:
        raise invalid("only n=1 is supported", param="n")
    return CompletionRequest(
        model=model.strip(),
        messages=messages,
        stream=stream,
        include_usage=include_usage,
        max_tokens=_max_tokens(body),
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        stop=_stop(body.get("stop")),
        user=_user(body.get("user")),
        store=_bool(body, "store"),
    )


def _bool(body: dict[str, Any], name: str, *, param: str | None = None) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid(f"{param or name} must be a boolean", param=param or name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(f"{name} must be a number from {low:g} to {high:g}", param=name)
    return float(value)


def _max_tokens(body: dict[str, Any]) -> int | None:
    # max_completion_tokens is OpenAI's current name; max_tokens the older one.
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid(f"{name} must be a positive integer", param=name)
    return min(value, settings.LLM_MAX_OUTPUT_TOKENS)


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) and s and is_storable_text(s) for s in stops)
    ):
        raise invalid(f"stop must be a string or a list of up to {MAX_STOP_SEQUENCES} strings", param="stop")
    return tuple(stops)


def _user(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_USER_CHARS:
        raise invalid(f"user must be a string of at most {MAX_USER_CHARS} characters", param="user")
    return value


def _messages(value: Any) -> tuple[RequestMessage, ...]:
    if not isinstance(value, list) or not value:
        raise invalid(
            "messages must be a non-empty array", param="messages", code="missing_required_parameter"
        )
    if len(value) > settings.API_MAX_MESSAGES:
        raise invalid(f"at most {settings.API_MAX_MESSAGES} messages per request", param="messages")
    messages = tuple(_message(item, f"messages[{i}]") for i, item in enumerate(value))
    if messages[-1].role != "user":
        raise invalid("the last message must have the role user", param=f"messages[{len(messages) - 1}].role")
    return messages


def _message(item: Any, param: str) -> RequestMessage:
    if not isinstance(item, dict):
        raise invalid("each message must be an object", param=param)
    role = ROLES.get(item.get("role")) if isinstance(item.get("role"), str) else None
    if role is None:
        raise invalid(
            "role must be one of system, developer, user, assistant (tools are not supported)",
            param=f"{param}.role",
        )
    content = _content(item.get("content"), f"{param}.content", allow_empty=role == "assistant")
    return RequestMessage(role=role, content=content)


def _content(value: Any, param: str, *, allow_empty: bool) -> str:
    if value is None and allow_empty:
        return ""
    if isinstance(value, list):  # content parts: text only
        texts = []
        for part in value:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise invalid("only text content parts are supported", param=param)
            texts.append(part["text"])
        value = "".join(texts)
    if not isinstance(value, str):
        raise invalid("content must be a string or an array of text parts", param=param)
    if not is_storable_text(value):
        raise invalid("content holds a NUL or an unpaired surrogate", param=param)
    if len(value) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise invalid(
            f"content is limited to {settings.CHAT_MAX_MESSAGE_CHARS} characters",
            param=param,
            code="string_above_max_length",
        )
    if not value.strip() and not allow_empty:
        raise invalid("content must not be empty", param=param)
    return value
