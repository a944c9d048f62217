"""The context budget: the system prompt plus as many of the latest messages as fit the model's window."""

from __future__ import annotations

from django.conf import settings

from conversations.llm.base import ChatMessage, ContextTooLong, LLMProvider

# Each message costs its role markers and separators on top of its text (ChatML:
# "<|im_start|>user\n...<|im_end|>\n" is four), and the reply is primed with
# "<|im_start|>assistant\n". Counted so the budget holds for real templates.
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_PRIMING_TOKENS = 3


def context_window(provider: LLMProvider) -> int:
    """The tokens prompt and reply share: LLM_CONTEXT_TOKENS or the model's own window, the smaller."""
    return min(settings.LLM_CONTEXT_TOKENS, provider.context_tokens or settings.LLM_CONTEXT_TOKENS)


def message_tokens(provider: LLMProvider, message: ChatMessage) -> int:
    return provider.count_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS


def build_context(
    *,
    provider: LLMProvider,
    system_prompt: str,
    history: list[ChatMessage],
    max_output_tokens: int | None = None,
) -> list[ChatMessage]:
    """The messages to send: system prompt + the longest run of latest messages that fits.

    `history` is oldest first and ends with the newest user message, which is
    always sent whole: when it cannot fit (with the system prompt and the
    output budget) this raises ContextTooLong rather than cut it. Older
    messages are dropped whole, oldest first; a window that would start with
    an assistant reply starts at the next user message instead.
    """
    window = context_window(provider)
    output_budget = provider.max_output_tokens if max_output_tokens is None else max_output_tokens
    budget = window - output_budget - REPLY_PRIMING_TOKENS

    system = [ChatMessage(role="system", content=system_prompt)] if system_prompt.strip() else []
    used = sum(message_tokens(provider, message) for message in system)
    if not history:
        return system

    newest = history[-1]
    newest_cost = message_tokens(provider, newest)
    if used + newest_cost > budget:
        raise ContextTooLong(
            f"The message is too long for the model: it needs about {used + newest_cost} tokens "
            f"with the system prompt, and {max(budget, 0)} of the model's {window}-token window are left "
            f"once {output_budget} are kept for the reply. Shorten it or split it up."
        )
    used += newest_cost

    kept = [newest]
    for message in reversed(history[:-1]):
        cost = message_tokens(provider, message)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()

    if len(kept) < len(history):
        # Some history was dropped: don't open on a reply whose question is gone.
        while len(kept) > 1 and kept[0].role == "assistant":
            kept.pop(0)
    return system + kept
