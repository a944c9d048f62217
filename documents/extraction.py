"""Text out of an uploaded file, as blocks (paragraphs with their page and heading), within limits.

One function per format; each reads from a seekable binary file and yields
`Block`s in reading order. Every limit (pages, extracted characters,
uncompressed bytes inside a DOCX) is checked before or while reading, and
breaking one refuses the whole file: nothing is stored half-done.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import IO

from django.conf import settings

from documents.files import Refused
from documents.models import Attachment

Kind = Attachment.Kind
Progress = Callable[[float], None]


@dataclass(frozen=True, slots=True)
class Block:
    """A paragraph (or a table row, a list item) with where it sits in the document."""

    text: str
    page: int | None = None
    heading: str = ""


@dataclass(slots=True)
class Extracted:
    blocks: list[Block]
    pages: int | None


class _Budget:
    """Counts extracted characters; refuses the file past DOCUMENTS_MAX_TEXT_CHARS."""

    def __init__(self) -> None:
        self.limit = settings.DOCUMENTS_MAX_TEXT_CHARS
        self.used = 0

    def take(self, text: str) -> str:
        self.used += len(text)
        if self.used > self.limit:
            raise Refused(
                "too_much_text",
                f"The file holds more than {self.limit:,} characters of text; split it into smaller files.",
            )
        return text


def extract(file: IO[bytes], *, kind: str, encoding: str = "", progress: Progress | None = None) -> Extracted:
    """The text of `file` as blocks; raises Refused with a clear reason."""
    progress = progress or (lambda fraction: None)
    budget = _Budget()
    if kind == Kind.PDF:
        extracted = _pdf(file, budget, progress)
    elif kind == Kind.DOCX:
        extracted = _docx(file, budget, progress)
    else:
        text = _read_text(file, encoding, budget)
        reader = {Kind.HTML: _html, Kind.CSV: _csv, Kind.MARKDOWN: _markdown}.get(kind, _plain)
        extracted = Extracted(blocks=list(reader(text)), pages=None)
    blocks = [block for block in extracted.blocks if block.text.strip()]
    if not blocks:
        raise Refused("no_text", "No text could be found in this file.")
    extracted.blocks = blocks
    return extracted


def _read_text(file: IO[bytes], encoding: str, budget: _Budget) -> str:
    file.seek(0)
    raw = file.read()
    try:
        text = raw.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Refused("binary", "The file is not valid text (its encoding changes part-way).") from exc
    # Each pass over the whole text holds the GIL (and so the event loop) for
    # its length: only make the ones the text needs.
    if "\x00" in text:
        text = text.replace("\x00", "")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return budget.take(text)


# --- plain text and Markdown ------------------------------------------------------


_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def _paragraphs(text: str) -> Iterator[str]:
    """Paragraphs one by one: each step scans only to the next blank line (a split of
    the whole text at once would hold the GIL, and the event loop, for all of it)."""
    start = 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        paragraph = text[start : match.start()].strip()
        if paragraph:
            yield paragraph
        start = match.end()
    paragraph = text[start:].strip()
    if paragraph:
        yield paragraph


def _plain(text: str) -> Iterator[Block]:
    for paragraph in _paragraphs(text):
        yield Block(paragraph)


_ATX = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _markdown(text: str) -> Iterator[Block]:
    """Paragraphs under their nearest heading; headings inside code fences are code."""
    heading = ""
    lines: list[str] = []
    fenced = False

    def flush() -> Iterator[Block]:
        if lines:
            for paragraph in _paragraphs("\n".join(lines)):
                yield Block(paragraph, heading=heading)
            lines.clear()

    for line in io.StringIO(text):  # line by line, not one split of the whole text
        line = line.rstrip("\n")
        if _FENCE.match(line):
            fenced = not fenced
        match = None if fenced else _ATX.match(line)
        if match:
            yield from flush()
            heading = match.group(2).strip()[:300]
            yield Block(heading, heading=heading)
        else:
            lines.append(line)
    yield from flush()


# --- CSV ----------------------------------------------------------------------------


def _csv(text: str) -> Iterator[Block]:
    """Each row as `column: value` pairs, so a passage names what its numbers are."""
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if first_line.count("\t") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        header = next(reader, [])
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            pairs = [
                f"{header[i].strip() if i < len(header) and header[i].strip() else f'column {i + 1}'}: {cell.strip()}"
                for i, cell in enumerate(row)
            ]
            yield Block("; ".join(pairs))
    except csv.Error as exc:
        raise Refused("corrupt", f"The CSV file could not be read ({exc}).") from exc
    if not header:
        return


# --- HTML (as text: nothing in it is ever rendered) ---------------------------------


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "template", "noscript", "head", "svg", "math", "iframe", "object"}
    BLOCK = {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "nav", "li", "ul", "ol",
        "tr", "table", "blockquote", "pre", "br", "hr", "dd", "dt", "dl", "figure", "figcaption", "form",
        "h1", "h2", "h3", "h4", "h5", "h6", "title", "td", "th",
    }  # fmt: skip
    HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.heading = ""
        self.parts: list[str] = []
        self.skipping = 0
        self.in_heading = False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self._end_block()
            self.in_heading = tag in self.HEADINGS

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self._end_block()

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)

    def _end_block(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self.parts)).strip()
        self.parts.clear()
        if text:
            if self.in_heading:
                self.heading = text[:300]
            self.blocks.append(Block(text, heading=self.heading))
        self.in_heading = False

    def close(self):
        super().close()
        self._end_block()


def _html(text: str) -> Iterator[Block]:
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    yield from parser.blocks


# --- PDF ----------------------------------------------------------------------------


def _pdf(file: IO[bytes], budget: _Budget, progress: Progress) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    file.seek(0)
    try:
        reader = PdfReader(file, strict=False)
        if reader.is_encrypted:
            raise Refused(
                "encrypted", "This PDF is encrypted (password-protected); upload an unprotected copy."
            )
        count = len(reader.pages)
    except Refused:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise Refused("corrupt", "The PDF could not be read; the file may be damaged.") from exc
    limit = settings.DOCUMENTS_MAX_PAGES
    if count > limit:
        raise Refused("too_many_pages", f"The PDF has {count:,} pages; at most {limit:,} are read.")
    if count == 0:
        raise Refused("corrupt", "The PDF has no pages.")
    blocks: list[Block] = []
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # pypdf raises many kinds on broken content streams
            raise Refused(
                "corrupt", f"Page {number} of the PDF could not be read; the file may be damaged."
            ) from exc
        text = budget.take(text.replace("\x00", ""))
        for paragraph in _pdf_paragraphs(text):
            blocks.append(Block(paragraph, page=number))
        progress(number / count)
    if not any(block.text.strip() for block in blocks):
        raise Refused(
            "no_text",
            "This PDF has no text to read (it may be scanned images); text recognition is not supported.",
        )
    return Extracted(blocks=blocks, pages=count)


def _pdf_paragraphs(text: str) -> Iterator[str]:
    """PDF text comes line by line: blank lines (or, without any, the page) make paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if re.search(r"\n\s*\n", text):
        yield from _paragraphs(text)
    elif text.strip():
        yield re.sub(r"[ \t]*\n[ \t]*", "\n", text.strip())


# --- DOCX ---------------------------------------------------------------------------

DOCX_MAX_MEMBERS = 2000
# A member that inflates more than this many times over is a zip bomb, not a document.
DOCX_MAX_RATIO = 200


def _check_zip(file: IO[bytes]) -> None:
    """Refuse zip bombs from the zip's directory, before anything is inflated."""
    limit = settings.DOCUMENTS_MAX_UNCOMPRESSED_BYTES
    try:
        file.seek(0)
        with zipfile.ZipFile(file) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise Refused("corrupt", "The Word document could not be read; the file may be damaged.") from exc
    if len(members) > DOCX_MAX_MEMBERS:
        raise Refused("zip_bomb", "The Word document holds too many parts to be a real document.")
    total = sum(member.file_size for member in members)
    if total > limit:
        raise Refused(
            "zip_bomb",
            f"The Word document would unpack to {total:,} bytes (at most {limit:,}); it is refused.",
        )
    for member in members:
        if member.file_size > 1_000_000 and member.file_size > DOCX_MAX_RATIO * max(member.compress_size, 1):
            raise Refused(
                "zip_bomb", "The Word document is compressed suspiciously well (a zip bomb?); refused."
            )


def _docx(file: IO[bytes], budget: _Budget, progress: Progress) -> Extracted:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    _check_zip(file)
    file.seek(0)
    try:
        document = docx.Document(file)
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise Refused("corrupt", "The Word document could not be read; the file may be damaged.") from exc
    except Exception as exc:  # lxml syntax errors and the like inside a broken package
        raise Refused("corrupt", "The Word document could not be read; the file may be damaged.") from exc
    blocks: list[Block] = []
    heading = ""
    page = 1
    items = list(document.iter_inner_content())
    for index, item in enumerate(items, start=1):
        if isinstance(item, docx.text.paragraph.Paragraph):
            text = budget.take(item.text.strip())
            style = (item.style.name if item.style is not None else "") or ""
            if text and (style.startswith("Heading") or style == "Title"):
                heading = text[:300]
            if text:
                blocks.append(Block(text, page=page, heading=heading))
            page += len(item._p.xpath('.//w:br[@w:type="page"]'))
        else:  # a table: one block per row, cells joined
            for row in item.rows:
                cells = []
                for cell in row.cells:
                    value = cell.text.strip()
                    if value and (not cells or cells[-1] != value):  # merged cells repeat
                        cells.append(value)
                if cells:
                    blocks.append(Block(budget.take(" | ".join(cells)), page=page, heading=heading))
        if index % 50 == 0:
            progress(index / len(items))
    has_breaks = page > 1
    if not has_breaks:
        blocks = [Block(b.text, page=None, heading=b.heading) for b in blocks]
    return Extracted(blocks=blocks, pages=page if has_breaks else None)
