"""The scripted provider: exact replies, pacing and directives that consumer tests rely on."""

from __future__ import annotations

import asyncio
import time

import pytest

from conversations.llm.base import ChatMessage, GenerationOptions, LLMError
from conversations.llm.fake import FakeProvider, echo_tokens, expected_reply, parse_script


def fake(**options) -> FakeProvider:
    return FakeProvider(**{"ttft": 0.0, "tokens_per_second": 0, "reply_tokens": 12, **options})


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


async def collect(stream) -> list[str]:
    return [text async for text in stream]


async def test_the_reply_is_the_expected_pseudo_text_with_usage():
    provider = fake()
    messages = [ChatMessage(role="system", content="sys"), *user("hello there")]
    stream = provider.stream(messages)

    deltas = await collect(stream)

    assert "".join(deltas) == expected_reply(messages, tokens=12) == provider.expected_reply(messages)
    assert len(deltas) == 12
    assert stream.result.finish_reason == "stop"
    assert stream.result.usage.completion_tokens == 12
    assert stream.result.usage.prompt_tokens > 0


def test_the_same_message_always_gets_the_same_reply_and_another_a_different_one():
    assert expected_reply("a question") == expected_reply("a question")
    assert expected_reply("a question") != expected_reply("another question")


async def test_echo_replies_with_the_rest_of_the_message_verbatim_in_small_tokens():
    hostile = "<script>alert('x')</script>\n  **bold** [[tokens:3]]"

    deltas = await collect(fake().stream(user(f"[[echo]]{hostile}")))

    assert "".join(deltas) == hostile
    assert max(len(d.strip()) for d in deltas) <= 3


def test_echo_tokens_rebuild_any_text_exactly():
    text = "  leading, trailing  \n\t tabs and ünïcödé  "

    assert "".join(echo_tokens(text)) == text


async def test_tokens_directive_sets_the_reply_length():
    assert len(await collect(fake().stream(user("[[tokens:5]] short")))) == 5


async def test_max_tokens_cuts_the_reply_with_finish_reason_length():
    stream = fake().stream(user("[[tokens:30]]"), options=GenerationOptions(max_tokens=4))

    assert len(await collect(stream)) == 4
    assert stream.result.finish_reason == "length"


@pytest.mark.parametrize(
    "code", ["timeout", "unreachable", "auth", "rate_limited", "context_too_long", "provider_error"]
)
async def test_fail_directive_raises_the_typed_error(code):
    with pytest.raises(LLMError) as caught:
        await collect(fake().stream(user(f"[[fail:{code}]]")))

    assert caught.value.code == code


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        ("[[error:429]]", "rate_limited"),
        ("[[error:401]]", "auth"),
        ("[[error:400:context_length_exceeded]]", "context_too_long"),
        ("[[error:500]]", "provider_error"),
    ],
)
async def test_error_directive_raises_what_that_http_error_maps_to(directive, code):
    with pytest.raises(LLMError) as caught:
        await collect(fake().stream(user(directive)))

    assert caught.value.code == code


async def test_a_failure_after_some_tokens_keeps_them():
    received = []
    with pytest.raises(LLMError) as caught:
        async for text in fake().stream(user("[[fail:timeout:3]]")):
            received.append(text)

    assert caught.value.code == "timeout"
    assert len(received) == 3


async def test_drop_and_garbage_are_provider_errors_after_their_tokens():
    for directive in ("[[drop:2]]", "[[garbage:2]]"):
        received = []
        with pytest.raises(LLMError) as caught:
            async for text in fake().stream(user(directive)):
                received.append(text)
        assert (caught.value.code, len(received)) == ("provider_error", 2)


async def test_first_token_delay_and_pace_follow_the_settings():
    provider = fake(ttft=0.1, tokens_per_second=100)
    stream = provider.stream(user("[[tokens:11]]"))
    started = time.monotonic()
    arrivals = [time.monotonic() async for _ in stream]

    assert 0.09 < arrivals[0] - started < 0.2
    assert 0.09 < arrivals[-1] - arrivals[0] < 0.2  # ten gaps of 10 ms


async def test_slow_and_ttft_directives_override_the_pace():
    stream = fake(ttft=5.0).stream(user("[[ttft:10]][[slow:30]][[tokens:3]]"))
    started = time.monotonic()
    arrivals = [time.monotonic() async for _ in stream]

    assert arrivals[0] - started < 0.1
    assert arrivals[-1] - arrivals[0] >= 0.055


async def test_hang_waits_until_closed_from_another_task():
    provider = fake()
    stream = provider.stream(user("[[hang]]"))
    consumer = asyncio.create_task(collect(stream))
    await asyncio.sleep(0.05)

    await stream.aclose()

    assert await asyncio.wait_for(consumer, 0.5) == []
    assert provider.streams[-1].closed_at is not None
    assert provider.streams[-1].stopped_at is not None


async def test_aclose_mid_reply_is_recorded_and_stops_the_tokens():
    provider = fake(tokens_per_second=200)
    stream = provider.stream(user("[[tokens:100]]"))
    async for _ in stream:
        if stream.tokens_sent == 3:
            break

    await stream.aclose()

    assert stream.closed_at is not None
    assert stream.stopped_at is not None
    assert stream.tokens_sent == 3
    assert stream.result.finish_reason == "cancelled"


async def test_cancelling_the_consumer_is_recorded_as_a_stop():
    provider = fake(tokens_per_second=100)
    consumer = asyncio.create_task(collect(provider.stream(user("[[tokens:100]]"))))
    await asyncio.sleep(0.05)

    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    recorded = provider.streams[-1]
    assert recorded.stopped_at is not None
    assert recorded.closed_at is None
    assert 0 < recorded.tokens_sent < 100


def test_directives_are_parsed_anywhere_before_echo():
    script = parse_script("please [[slow:15]] and [[tokens:7]] [[echo]][[error:500]]")

    assert (script.slow_ms, script.tokens, script.echo, script.error_status) == (
        15.0,
        7,
        "[[error:500]]",
        None,
    )


async def test_a_stop_sequence_ends_the_reply_before_it_with_finish_reason_stop():
    provider = fake()
    messages = user("[[echo]]first part. STOP second part")
    options = GenerationOptions(stop=["STOP", "never there"], temperature=0.3, top_p=0.5)
    stream = provider.stream(messages, options=options)

    text = "".join(await collect(stream))

    assert text == "first part. " == provider.expected_reply(messages, options=options)
    assert stream.result.finish_reason == "stop"
    assert provider.streams[-1].options == options


async def test_max_tokens_before_the_stop_sequence_finishes_with_length():
    stream = fake().stream(
        user("[[echo]]one two three four five six STOP"), options=GenerationOptions(max_tokens=2)
    )

    assert "".join(await collect(stream)) == "one two"
    assert stream.result.finish_reason == "length"
