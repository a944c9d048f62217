"""The OpenAI-compatible provider against the scripted server, over a real socket."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import structlog

from bench.fake_openai_server import ScriptedOpenAIServer
from conversations.llm.base import ChatMessage, GenerationOptions, LLMError
from conversations.llm.fake import prompt_token_estimate
from conversations.llm.openai_compatible import OpenAICompatibleProvider

SECRET = "very-secret-key-1234567890"


@pytest.fixture
async def server():
    async with ScriptedOpenAIServer(ttft_ms=5, tokens_per_second=1000, tokens=12) as scripted:
        yield scripted


def make_provider(server: ScriptedOpenAIServer, **overrides) -> OpenAICompatibleProvider:
    options = {
        "base_url": server.base_url,
        "api_key": SECRET,
        "model": "scripted-model",
        "timeout": 5.0,
        "max_output_tokens": 256,
    }
    return OpenAICompatibleProvider(**{**options, **overrides})


def user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role="user", content=text)]


async def collect(stream) -> list[str]:
    return [text async for text in stream]


async def failure(stream) -> tuple[LLMError, list[str]]:
    received: list[str] = []
    with pytest.raises(LLMError) as caught:
        async for text in stream:
            received.append(text)
    return caught.value, received


async def wait_until(predicate) -> None:
    """Poll for up to two seconds (the assertions that follow carry the real bounds)."""
    for _ in range(400):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not met within 2 s")


async def test_streams_the_exact_scripted_reply_in_several_deltas(server):
    messages = user("Tell me something")
    stream = make_provider(server).stream(messages)

    deltas = await collect(stream)

    assert 1 < len(deltas) <= 12  # the tokens come apart; those read together, as one
    assert "".join(deltas) == server.expected_reply(messages)
    assert stream.result.usage.completion_tokens == 12
    assert stream.result.finish_reason == "stop"


async def test_echo_reply_keeps_hostile_html_byte_for_byte(server):
    hostile = '<img src=x onerror="alert(1)"><script>alert(2)</script>'

    stream = make_provider(server).stream(user(f"[[echo]]{hostile}"))
    deltas = await collect(stream)

    assert "".join(deltas) == hostile
    assert stream.result.usage.completion_tokens > 5


async def test_uses_the_token_counts_the_server_reports(server):
    messages = user("Count my tokens please")
    stream = make_provider(server).stream(messages)

    await collect(stream)

    assert stream.result.usage.prompt_tokens == prompt_token_estimate(messages)
    assert stream.result.usage.completion_tokens == 12
    assert stream.result.usage.estimated is False


async def test_estimates_usage_when_the_server_reports_none():
    async with ScriptedOpenAIServer(ttft_ms=5, tokens_per_second=1000, tokens=7, usage=False) as quiet:
        stream = make_provider(quiet).stream(user("no usage from this one"))
        await collect(stream)

    assert stream.result.usage.estimated is True
    assert stream.result.usage.completion_tokens == 7
    assert stream.result.usage.prompt_tokens > 0


async def test_sends_the_whole_history_in_order(server):
    history = [
        ChatMessage(role="system", content="You are terse."),
        ChatMessage(role="user", content="First question"),
        ChatMessage(role="assistant", content="First answer"),
        ChatMessage(role="user", content="Second question"),
    ]

    await collect(make_provider(server).stream(history))

    assert server.last_completion().messages == [{"role": m.role, "content": m.content} for m in history]


async def test_asks_for_streamed_usage_with_the_chosen_model_and_output_budget(server):
    await collect(
        make_provider(server).stream(user("hi"), model="other-model", options=GenerationOptions(max_tokens=5))
    )

    record = server.last_completion()
    assert (record.stream, record.include_usage, record.model, record.max_tokens) == (
        True,
        True,
        "other-model",
        5,
    )


async def test_reply_cut_by_max_tokens_finishes_with_length(server):
    stream = make_provider(server).stream(
        user("long one [[tokens:50]]"), options=GenerationOptions(max_tokens=4)
    )

    await collect(stream)

    assert stream.result.usage.completion_tokens == 4
    assert stream.result.finish_reason == "length"


@pytest.mark.parametrize(
    ("directive", "code"),
    [
        ("[[error:401]]", "auth"),
        ("[[error:403]]", "auth"),
        ("[[error:429]]", "rate_limited"),
        ("[[error:400:context_length_exceeded]]", "context_too_long"),
        ("[[error:500]]", "provider_error"),
        ("[[error:503]]", "provider_error"),
        ("[[fail:unreachable]]", "unreachable"),
    ],
)
async def test_http_errors_map_to_their_codes(server, directive, code):
    error, received = await failure(make_provider(server).stream(user(directive)))

    assert error.code == code
    assert received == []


async def test_a_server_that_is_not_listening_is_unreachable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = OpenAICompatibleProvider(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2)

    error, _ = await failure(provider.stream(user("hello")))

    assert error.code == "unreachable"


async def test_a_failed_request_is_not_retried(server):
    await failure(make_provider(server).stream(user("[[error:500]]")))

    assert len(server.completions()) == 1


async def test_a_server_that_hangs_before_the_first_token_times_out_within_llm_timeout(server):
    started = time.monotonic()

    error, _ = await failure(make_provider(server, timeout=0.5).stream(user("[[hang]]")))

    assert error.code == "timeout"
    assert 0.4 < time.monotonic() - started < 1.5


async def test_a_server_that_never_sends_headers_times_out(server):
    started = time.monotonic()

    error, _ = await failure(make_provider(server, timeout=0.5).stream(user("[[hang:headers]]")))

    assert error.code == "timeout"
    assert time.monotonic() - started < 1.5


async def test_a_stall_between_tokens_times_out_and_keeps_what_arrived(server):
    stream = make_provider(server, timeout=0.5).stream(user("[[slow:3000]]"))
    error, received = await failure(stream)

    assert error.code == "timeout"
    assert received and stream.result.usage.completion_tokens == 1


async def test_a_connection_dropped_mid_reply_is_a_provider_error(server):
    messages = user("[[drop:3]] then vanish")

    stream = make_provider(server).stream(messages)
    error, received = await failure(stream)

    assert error.code == "provider_error"
    assert "lost" in error.message
    assert "".join(received) == server.expected_reply(messages)[: len("".join(received))]
    assert stream.result.usage.completion_tokens == 3


async def test_a_malformed_stream_is_a_provider_error(server):
    stream = make_provider(server).stream(user("[[garbage:2]]"))
    error, received = await failure(stream)

    assert error.code == "provider_error"
    assert "malformed" in error.message
    assert received and stream.result.usage.completion_tokens == 2


async def test_an_error_sent_mid_stream_maps_to_its_code(server):
    stream = make_provider(server).stream(user("[[fail:rate_limited:2]]"))
    error, received = await failure(stream)

    assert error.code == "rate_limited"
    assert received and stream.result.usage.completion_tokens == 2


async def test_the_api_key_never_reaches_errors_or_logs(server):
    # The scripted 401 quotes the bearer token back, as some servers do.
    with structlog.testing.capture_logs() as logs:
        error, _ = await failure(make_provider(server).stream(user("[[error:401]]")))

    assert error.code == "auth"
    assert server.last_completion().authorization == f"Bearer {SECRET}"
    assert SECRET not in error.message
    assert logs
    assert all(SECRET not in str(event) for event in logs)


async def test_aclose_closes_the_http_connection_within_a_second(server):
    stream = make_provider(server).stream(user("[[slow:20]][[tokens:200]] a long one"))
    received = 0
    async for _ in stream:
        received += 1
        if received == 3:
            break

    closed = time.monotonic()
    await stream.aclose()

    record = server.last_completion()
    await wait_until(lambda: record.closed_by_client_at is not None)
    assert record.closed_by_client_at - closed < 1.0
    assert record.tokens_sent < 200


async def test_aclose_from_another_task_ends_the_iteration_and_the_connection(server):
    stream = make_provider(server).stream(user("[[slow:100]][[tokens:200]] stop me"))
    consumer = asyncio.create_task(collect(stream))
    await wait_until(lambda: server.completions() and server.last_completion().tokens_sent >= 2)

    closed = time.monotonic()
    await stream.aclose()
    received = await asyncio.wait_for(consumer, 1.0)

    record = server.last_completion()
    await wait_until(lambda: record.closed_by_client_at is not None)
    assert record.closed_by_client_at - closed < 1.0
    # The server had sent two tokens; the second may still be in flight when we close.
    assert 1 <= len(received) < 200
    assert stream.result.finish_reason == "cancelled"


async def test_aclose_while_waiting_for_the_first_token_stops_at_once(server):
    stream = make_provider(server).stream(user("[[hang]]"))
    consumer = asyncio.create_task(collect(stream))
    await wait_until(lambda: bool(server.completions()))

    closed = time.monotonic()
    await stream.aclose()

    assert await asyncio.wait_for(consumer, 1.0) == []
    record = server.last_completion()
    await wait_until(lambda: record.closed_by_client_at is not None)
    assert record.closed_by_client_at - closed < 1.0


async def test_cancelling_the_consuming_task_closes_the_http_connection(server):
    stream = make_provider(server).stream(user("[[slow:100]][[tokens:200]] cancel me"))
    consumer = asyncio.create_task(collect(stream))
    await wait_until(lambda: server.completions() and server.last_completion().tokens_sent >= 2)

    cancelled = time.monotonic()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    record = server.last_completion()
    await wait_until(lambda: record.closed_by_client_at is not None)
    assert record.closed_by_client_at - cancelled < 1.0


async def test_list_models_puts_the_configured_model_first_and_caches_for_a_minute():
    async with ScriptedOpenAIServer(models=["alpha", "beta", "gamma"]) as multi:
        provider = make_provider(multi, model="gamma")

        first = await provider.list_models()
        second = await provider.list_models()

    assert first == second == ["gamma", "alpha", "beta"]
    assert len([r for r in multi.requests if r.path == "/v1/models"]) == 1


async def test_without_a_configured_model_the_first_listed_is_used():
    async with ScriptedOpenAIServer(models=["zeta", "eta"]) as multi:
        provider = make_provider(multi, model="")

        await collect(provider.stream(user("hi")))

    assert multi.last_completion().model == "eta"
    assert provider.model == "eta"


async def test_health_passes_when_the_server_answers(server):
    await make_provider(server).health()

    assert server.requests[-1].path == "/v1/models"


async def test_health_fails_fast_when_the_server_is_down():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = OpenAICompatibleProvider(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=30)
    started = time.monotonic()

    with pytest.raises(LLMError) as caught:
        await provider.health()

    assert caught.value.code == "unreachable"
    assert time.monotonic() - started < 2.5


async def test_health_reports_refused_credentials():
    async with ScriptedOpenAIServer(api_key="the-right-key") as guarded:
        provider = make_provider(guarded, api_key="the-wrong-key")

        with pytest.raises(LLMError) as caught:
            await provider.health()

    assert caught.value.code == "auth"


async def test_sends_the_sampling_options_and_the_server_stops_at_the_stop_sequence(server):
    messages = user("[[echo]]keep this|drop this")
    options = GenerationOptions(max_tokens=40, temperature=0.25, top_p=0.9, stop=("|",))
    stream = make_provider(server).stream(messages, options=options)

    text = "".join(await collect(stream))

    record = server.last_completion()
    assert (record.max_tokens, record.temperature, record.top_p, record.stop) == (40, 0.25, 0.9, ["|"])
    assert text == "keep this" == server.expected_reply(messages, stop=["|"])
    assert stream.result.finish_reason == "stop"


async def test_no_options_sends_no_sampling_fields_and_the_configured_output_cap(server):
    await collect(make_provider(server).stream(user("defaults")))

    record = server.last_completion()
    assert (record.max_tokens, record.temperature, record.top_p, record.stop) == (256, None, None, [])


async def serve_raw_sse(events: bytes, *, piece: int):
    """A bare HTTP server answering one chat completion with `events`, written `piece` bytes at a time."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
        )
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        for start in range(0, len(events), piece):
            writer.write(events[start : start + piece])
            await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def stream_raw(events: bytes, *, piece: int = 4096):
    """The stream of one completion answered with `events` by a bare server, run to its end or failure."""
    server = await serve_raw_sse(events, piece=piece)
    port = server.sockets[0].getsockname()[1]
    provider = OpenAICompatibleProvider(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=5)
    stream = provider.stream(user("hi"))
    received: list[str] = []
    try:
        async for text in stream:
            received.append(text)
    except LLMError as exc:
        return stream, received, exc
    finally:
        server.close()
        await server.wait_closed()
    return stream, received, None


@pytest.mark.parametrize("piece", [1, 7, 4096])
async def test_the_reader_takes_crlf_comments_other_fields_and_any_packet_boundaries(piece):
    chunk = '{"choices":[{"index":0,"delta":{"content":%s},"finish_reason":%s}]}'
    events = (
        b": keep-alive comment\r\n\r\n"
        + b"event: message\r\nid: 1\r\ndata: " + (chunk % ('"Hello"', "null")).encode() + b"\r\n\r\n"
        + b"data:" + (chunk % ('", w\\u00f6rld\\n"', "null")).encode() + b"\n\n"
        + b"retry: 10\n\n"
        + b"data: " + (chunk % ("null", '"stop"')).encode() + b"\n\n"
        + b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
        + b"data: [DONE]\n\n"
    )  # fmt: skip
    stream, deltas, error = await stream_raw(events, piece=piece)

    assert error is None
    assert "".join(deltas) == "Hello, wörld\n"
    assert 1 <= len(deltas) <= 2  # as they were read
    assert stream.result.finish_reason == "stop"
    assert (stream.result.usage.prompt_tokens, stream.result.usage.completion_tokens) == (3, 2)
    assert stream.result.usage.estimated is False


async def test_nulls_and_fields_the_reader_does_not_use_are_accepted():
    events = (
        b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"logprobs":null,'
        b'"delta":{"role":"assistant","content":null,"reasoning_content":"hm","tool_calls":[{"index":0}]},'
        b'"finish_reason":null}],"usage":null,"system_fingerprint":{"any":["shape"]}}\n\n'
        b'data: {"choices":[{"delta":null}]}\n\n'
        b'data: {"choices":null}\n\n'
        b'data: {"choices":[{"delta":{"content":"fine"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    stream, received, error = await stream_raw(events)

    assert error is None
    assert received == ["fine"]
    assert stream.result.finish_reason == "stop"
    assert stream.result.usage.estimated is True  # the server reported none


@pytest.mark.parametrize(
    "bad",
    [
        b'{"choices":[{"delta":{"content":42}}]}',
        b'{"choices":{"0":{"delta":{"content":"x"}}}}',
        b'{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":"many"}}',
        b'["not", "an", "object"]',
        b'{"choices":[{"delta":{"content":"cut',
        b'{"choices":[{"delta":{"content":"\xff\xfe"}}]}',
    ],
    ids=["number-content", "choices-object", "string-usage", "array", "truncated", "invalid-utf8"],
)
async def test_an_event_of_the_wrong_shape_is_a_malformed_stream_and_keeps_the_text_before(bad):
    good = b'data: {"choices":[{"delta":{"content":"before"}}]}\n\n'
    _, received, error = await stream_raw(good + b"data: " + bad + b"\n\ndata: [DONE]\n\n")

    assert received == ["before"]
    assert error is not None
    assert (error.code, error.message) == ("provider_error", "The model provider sent a malformed stream.")


async def test_the_tokens_of_one_read_reach_the_reply_as_one_delta_and_count_one_each():
    # One packet of three tokens: one step through the reply and the relay, not three.
    events = b"".join(
        b'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n' % token
        for token in (b"one", b" two", b" three")
    )
    stream, received, error = await stream_raw(
        events + b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    )

    assert error is None
    assert received == ["one two three"]
    assert stream.result.usage.completion_tokens == 3
    assert stream.result.usage.estimated is True


async def test_an_unpaired_surrogate_escape_reaches_the_reply_as_json_decodes_it():
    # msgspec refuses it; JSON allows it. The reply replaces it when it stores the text
    # (conversations.models.storable_text); the reader must not fail the reply for it.
    events = (
        b'data: {"choices":[{"delta":{"content":"half \\ud83d of a pair"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":" then \\ud83d\\ude00"},"finish_reason":"stop"}]}\n\n'
        b"data: [DONE]\n\n"
    )
    stream, received, error = await stream_raw(events)

    assert error is None
    assert "".join(received) == "half \ud83d of a pair then \U0001f600"
    assert stream.result.finish_reason == "stop"
