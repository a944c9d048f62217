"""Model providers behind one interface (see base.py); `get_provider()` builds the configured one."""

from __future__ import annotations

from conversations.llm.base import LLMProvider


def get_provider() -> LLMProvider | None:
    return None
