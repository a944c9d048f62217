"""Template filters that show message text: always through the one sanitising renderer."""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.utils.safestring import SafeString, mark_safe

from conversations.rendering import render_markdown, stable_prefix_length

register = template.Library()


@dataclass(frozen=True, slots=True)
class StreamingParts:
    """A reply still being written: finished markdown blocks as HTML, the rest as text."""

    html: SafeString
    tail: str
    end: int


@register.filter
def markdown(text: str) -> SafeString:
    """Untrusted markdown to sanitised HTML (rendering.render_markdown)."""
    # Safe by construction: render_markdown passes everything through the nh3 allow-list.
    return mark_safe(render_markdown(text or ""))


@register.filter
def streaming_parts(text: str) -> StreamingParts:
    """Split a streaming reply the way the live stream shows it (`message.blocks`):
    blocks that can no longer change rendered, the unfinished tail as plain text."""
    text = text or ""
    end = stable_prefix_length(text)
    return StreamingParts(html=markdown(text[:end]), tail=text[end:], end=end)


@register.filter
def ms(value: int | None) -> str:
    """Milliseconds for people: `850 ms`, `1.2 s`."""
    if value is None:
        return ""
    return f"{value} ms" if value < 1000 else f"{value / 1000:.1f} s"
