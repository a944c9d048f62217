"""The local model's sampling: tuned defaults (bench/loops.py) that a request's options override."""

from __future__ import annotations

import pytest

from bench.loops import loops, phrase_loops
from conversations.llm.base import ChatMessage, GenerationOptions
from conversations.llm.llamacpp import DEFAULT_SAMPLING, LlamaCppProvider, default_model_path

pytestmark = pytest.mark.localmodel

HELLO = [ChatMessage(role="user", content="hello")]


@pytest.fixture
def provider():
    return LlamaCppProvider(model_path=default_model_path(), threads=1, context_tokens=512)


def test_replies_sample_with_the_tuned_defaults_and_a_repeat_penalty(provider):
    stream = provider.stream(HELLO)
    assert stream.sampling == DEFAULT_SAMPLING
    assert stream.sampling["repeat_penalty"] > 1.0


def test_a_requests_options_override_the_defaults(provider):
    stream = provider.stream(HELLO, options=GenerationOptions(temperature=0.0, top_p=0.5, stop=["\n\n"]))
    assert stream.sampling == {**DEFAULT_SAMPLING, "temperature": 0.0, "top_p": 0.5, "stop": ["\n\n"]}


def test_the_loop_measure_counts_a_sentence_said_three_times():
    assert loops("I like tea. I like tea! I like tea.\nDone.")
    assert not loops("I like tea. I like tea. Then coffee, and more coffee.")
    assert not loops("Yes. Yes. Yes.")  # too short to be a sentence loop
    assert phrase_loops("la Cité, la Bohème, " * 4)
    assert not phrase_loops("A calm sea, a bright sky, a long walk home.")
