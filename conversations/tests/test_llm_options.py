"""GenerationOptions: one frozen value every provider takes; invalid values fail before a request."""

from __future__ import annotations

import dataclasses

import pytest

from conversations.llm.base import DEFAULT_OPTIONS, GenerationOptions


def test_defaults_leave_every_choice_to_the_provider():
    assert GenerationOptions() == DEFAULT_OPTIONS
    assert (DEFAULT_OPTIONS.max_tokens, DEFAULT_OPTIONS.temperature, DEFAULT_OPTIONS.top_p) == (None,) * 3
    assert DEFAULT_OPTIONS.stop == ()
    assert DEFAULT_OPTIONS.sampling() == {}


def test_stop_from_a_list_or_a_string_becomes_a_tuple_and_options_are_frozen():
    options = GenerationOptions(stop=["\n\n", "END"])

    assert options.stop == ("\n\n", "END")
    assert GenerationOptions(stop="END").stop == ("END",)
    assert hash(options) == hash(GenerationOptions(stop=("\n\n", "END")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.max_tokens = 5  # type: ignore[misc]


def test_sampling_holds_only_the_fields_set():
    options = GenerationOptions(max_tokens=16, temperature=0.0, stop=("x",))

    assert options.sampling() == {"temperature": 0.0, "stop": ["x"]}


@pytest.mark.parametrize(
    "fields",
    [
        {"max_tokens": 0},
        {"max_tokens": -3},
        {"max_tokens": True},
        {"temperature": 2.5},
        {"temperature": -0.1},
        {"top_p": 1.5},
        {"stop": ["a", "b", "c", "d", "e"]},
        {"stop": [""]},
        {"stop": [3]},
    ],
)
def test_invalid_values_are_refused(fields):
    with pytest.raises(ValueError):
        GenerationOptions(**fields)
