"""The request body of /v1/chat/completions, checked into what the platform can honour."""

from __future__ import annotations

import pytest

from api.errors import ApiError
from api.schema import parse_body, parse_completion


def body(**fields):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_a_minimal_request():
    request = parse_completion(body())
    assert (request.model, request.stream, request.store, request.max_tokens) == ("m", False, False, None)
    assert [(m.role, m.content) for m in request.messages] == [("user", "hi")]


def test_system_and_developer_text_become_the_system_prompt():
    request = parse_completion(
        body(
            messages=[
                {"role": "developer", "content": "a"},
                {"role": "system", "content": [{"type": "text", "text": "b"}]},
                {"role": "user", "content": "q"},
            ]
        )
    )
    assert request.system_prompt == "a\n\nb"
    assert [m.role for m in request.exchange] == ["user"]


def test_sampling_options_are_read_and_max_completion_tokens_wins(settings):
    settings.LLM_MAX_OUTPUT_TOKENS = 100
    request = parse_completion(
        body(max_tokens=5, max_completion_tokens=7, temperature=0.5, top_p=1, stop="END", user="u-1")
    )
    assert (request.max_tokens, request.temperature, request.top_p, request.stop, request.user) == (
        7,
        0.5,
        1.0,
        ("END",),
        "u-1",
    )
    assert parse_completion(body(max_tokens=10_000)).max_tokens == 100  # capped at the server's limit


def test_stream_options_need_stream():
    assert parse_completion(body(stream=True, stream_options={"include_usage": True})).include_usage
    with pytest.raises(ApiError) as refused:
        parse_completion(body(stream_options={"include_usage": True}))
    assert refused.value.param == "stream_options"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": ""}, "model"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}] * 501}, "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "user", "content": "a\x00b"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages[0].content"),
        ({"stream": "yes"}, "stream"),
        ({"top_p": 1.5}, "top_p"),
        ({"temperature": True}, "temperature"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 2}, "n"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"user": "x" * 300}, "user"),
    ],
)
def test_what_cannot_be_honoured_is_a_400_naming_the_parameter(fields, param):
    with pytest.raises(ApiError) as refused:
        parse_completion(body(**fields))
    assert refused.value.status == 400
    assert refused.value.param == param


def test_a_body_must_be_a_json_object():
    for raw in (b"[1]", b"{", b"\xff"):
        with pytest.raises(ApiError) as refused:
            parse_body(raw)
        assert refused.value.code == "invalid_json"
