"""A reply's end: the final row and its UsageEvent (one write), the title, metrics and a log line."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db import DatabaseError

from conversations import services
from conversations.generation.hops import parallel_hop
from conversations.generation.job import ReplyJob
from conversations.llm.base import ChatMessage, GenerationOptions, LLMError, LLMProvider
from ops import metrics

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a reply's stream ended, and what it measured."""

    status: str  # complete, cancelled, failed, interrupted
    error: LLMError | None
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: int | None
    duration_ms: int


async def write_final(job: ReplyJob, outcome: Outcome, *, provider: LLMProvider):
    """reply_finish (and the first title, if any), retried while the database is away.

    Retries stop after CHAT_STALE_AFTER_SECONDS: by then the crash sweep
    treats the reply as a dead process's and keeps its last checkpoint.
    Returns (message, titled conversation or None).
    """
    first_title = ""
    if job.first_exchange and not wants_model_title(job, outcome):
        # Whatever the outcome, a first exchange leaves the conversation a title.
        first_title = title_from_text(job.first_user_text)
    fields = {
        "message_id": job.message_id,
        "user_id": job.user_id,
        "conversation_id": job.conversation_id,
        "outcome": outcome.status,
        "content": outcome.content,
        "finish_reason": outcome.finish_reason,
        "error_code": outcome.error.code if outcome.error else "",
        "error": outcome.error.message if outcome.error else "",
        "provider": provider.name,
        "model": job.model or provider.model,
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "ttft_ms": outcome.ttft_ms,
        "duration_ms": outcome.duration_ms,
        "source": job.source,
        "api_key_name": job.api_key_name,
    }
    deadline = time.monotonic() + settings.CHAT_STALE_AFTER_SECONDS
    delay = 0.2
    while True:
        try:
            # Beside other hops: a burst's replies end together, and on the one sync
            # thread their final writes waited for each other (~150 ms for 100).
            return await parallel_hop(_finish_and_title)(first_title, fields)
        except DatabaseError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("generation_final_write_retry", error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


def wants_model_title(job: ReplyJob, outcome: Outcome) -> bool:
    """A first reply that completed is titled by the model (after the final write)."""
    return job.first_exchange and outcome.status == "complete" and settings.CHAT_TITLE_FROM_MODEL


def _finish_and_title(first_title: str, fields: dict):
    """The final write and, after a first exchange, its title: one database hop."""
    message = services.reply_finish(**fields)
    titled = None
    if first_title and message is not None:
        try:
            titled = services.conversation_autotitle(
                conversation_id=fields["conversation_id"], title=first_title
            )
        except DatabaseError:  # a title is a nicety: never retry (and so repeat) the final write for it
            log.warning("generation_title_failed", exc_info=True)
    return message, titled


def record(
    job: ReplyJob, outcome: Outcome, *, provider: LLMProvider, first_token_at, finished: float
) -> None:
    """Metrics and the `generation_finished` log line."""
    name = provider.name
    metrics.GENERATIONS.labels(provider=name, outcome=outcome.status).inc()
    metrics.TOKENS.labels(provider=name, direction="in").inc(outcome.prompt_tokens)
    metrics.TOKENS.labels(provider=name, direction="out").inc(outcome.completion_tokens)
    if outcome.ttft_ms is not None:
        metrics.TTFT.labels(provider=name).observe(outcome.ttft_ms / 1000)
        if outcome.completion_tokens > 1 and first_token_at is not None:
            metrics.TPOT.labels(provider=name).observe(
                (finished - first_token_at) / (outcome.completion_tokens - 1)
            )
    if outcome.error is not None and outcome.status == "failed":
        metrics.PROVIDER_ERRORS.labels(provider=name, code=outcome.error.code).inc()
    log.info(
        "generation_finished",
        provider=name,
        model=job.model or provider.model,
        outcome=outcome.status,
        error_code=outcome.error.code if outcome.error else None,
        prompt_tokens=outcome.prompt_tokens,
        completion_tokens=outcome.completion_tokens,
        ttft_ms=outcome.ttft_ms,
        duration_ms=outcome.duration_ms,
    )


# --- titles -------------------------------------------------------------------

TITLE_PROMPT = (
    "Write a title of at most six words for a conversation that starts with the message below. "
    "Answer with the title only, no quotes.\n\n"
)


async def title_from_model(provider: LLMProvider, first_message: str) -> str:
    stream = provider.stream(
        [ChatMessage(role="user", content=TITLE_PROMPT + first_message[:2000])],
        options=GenerationOptions(max_tokens=16),
    )
    parts: list[str] = []
    try:
        async with asyncio.timeout(10):
            async for text in stream:
                parts.append(text)
    except (LLMError, TimeoutError):
        return ""
    finally:
        await stream.aclose()
    return clean_title("".join(parts))


def clean_title(text: str) -> str:
    line = next((line for line in text.strip().splitlines() if line.strip()), "")
    line = line.strip().strip("\"'*#` ").removeprefix("Title:").strip()
    words = line.split()
    return " ".join(words[:8])[:80]


def title_from_text(text: str) -> str:
    words = text.split()
    title = " ".join(words[:6])
    return (title[:77] + "...") if len(title) > 80 else (title or "New conversation")
