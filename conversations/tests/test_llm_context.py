"""The context budget: what is sent to the model when a conversation outgrows its window."""

from __future__ import annotations

import pytest

from conversations.llm.base import ChatMessage, ContextTooLong
from conversations.llm.context import MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS, build_context
from conversations.llm.fake import FakeProvider

# FakeProvider counts four characters a token: a 40-character message costs 10 + 4 framing tokens.
MESSAGE_COST = 10 + MESSAGE_OVERHEAD_TOKENS


def text(label: str) -> str:
    return (label * 40)[:40]


def conversation(turns: int) -> list[ChatMessage]:
    """user/assistant pairs, oldest first, ending with a user message; every message 40 characters."""
    history = []
    for turn in range(turns):
        history.append(ChatMessage(role="user", content=text(f"q{turn}")))
        history.append(ChatMessage(role="assistant", content=text(f"a{turn}")))
    history.append(ChatMessage(role="user", content=text("newest")))
    return history


def provider(context_tokens: int = 8192, max_output_tokens: int = 100) -> FakeProvider:
    return FakeProvider(context_tokens=context_tokens, max_output_tokens=max_output_tokens)


def room_for(messages: int, output: int = 100) -> int:
    """A window with room for exactly `messages` 40-character messages and the reply."""
    return messages * MESSAGE_COST + output + REPLY_PRIMING_TOKENS


def test_a_conversation_that_fits_is_sent_whole_after_the_system_prompt(settings):
    history = conversation(3)

    sent = build_context(provider=provider(), system_prompt="Be brief.", history=history)

    assert sent == [ChatMessage(role="system", content="Be brief."), *history]


def test_no_system_message_is_sent_for_an_empty_system_prompt(settings):
    history = conversation(1)

    assert build_context(provider=provider(), system_prompt="  ", history=history) == history


def test_the_oldest_messages_are_dropped_first(settings):
    settings.LLM_CONTEXT_TOKENS = room_for(3)
    history = conversation(3)

    sent = build_context(provider=provider(), system_prompt="", history=history)

    # Three fit: the last question, its answer and the newest message.
    assert sent == history[-3:]


def test_the_window_never_opens_on_an_answer_whose_question_was_dropped(settings):
    settings.LLM_CONTEXT_TOKENS = room_for(4)
    history = conversation(3)

    sent = build_context(provider=provider(), system_prompt="", history=history)

    assert sent[0].role == "user"
    assert sent == history[-3:]


def test_the_system_prompt_is_kept_and_counted(settings):
    settings.LLM_CONTEXT_TOKENS = room_for(4)
    history = conversation(3)
    system = text("system")

    sent = build_context(provider=provider(), system_prompt=system, history=history)

    assert sent == [ChatMessage(role="system", content=system), *history[-3:]]


def test_the_output_budget_leaves_room_for_the_reply(settings):
    settings.LLM_CONTEXT_TOKENS = room_for(5, output=100)
    history = conversation(3)

    roomy = build_context(provider=provider(), system_prompt="", history=history, max_output_tokens=100)
    tight = build_context(provider=provider(), system_prompt="", history=history, max_output_tokens=120)

    assert roomy == history[-5:]
    assert tight == history[-3:]


def test_the_models_own_window_wins_when_smaller_than_the_setting(settings):
    settings.LLM_CONTEXT_TOKENS = 100_000
    history = conversation(3)

    sent = build_context(provider=provider(context_tokens=room_for(3)), system_prompt="", history=history)

    assert sent == history[-3:]


def test_the_setting_wins_when_smaller_than_the_models_window(settings):
    settings.LLM_CONTEXT_TOKENS = room_for(3)

    sent = build_context(provider=provider(context_tokens=100_000), system_prompt="", history=conversation(3))

    assert len(sent) == 3


def test_messages_are_sent_whole_never_truncated(settings):
    settings.LLM_CONTEXT_TOKENS = room_for(4) + MESSAGE_COST // 2
    history = conversation(4)

    sent = build_context(provider=provider(), system_prompt="", history=history)

    assert all(message in history for message in sent)
    assert all(len(message.content) == 40 for message in sent)


def test_a_newest_message_too_large_for_the_window_is_context_too_long(settings):
    settings.LLM_CONTEXT_TOKENS = 1000
    huge = ChatMessage(role="user", content="x" * 4000)

    with pytest.raises(ContextTooLong) as caught:
        build_context(provider=provider(), system_prompt="", history=[huge])

    assert caught.value.code == "context_too_long"
    assert "1000" in caught.value.message


def test_a_system_prompt_that_crowds_out_the_newest_message_is_context_too_long(settings):
    settings.LLM_CONTEXT_TOKENS = room_for(1)

    with pytest.raises(ContextTooLong):
        build_context(provider=provider(), system_prompt=text("system"), history=conversation(0))
