"""What an uploaded file is, decided from its bytes, and the name it may be shown under."""

from __future__ import annotations

import codecs
import re
import unicodedata
import zipfile
from dataclasses import dataclass
from typing import IO

from documents.models import Attachment

Kind = Attachment.Kind

CONTENT_TYPES = {
    Kind.PDF: "application/pdf",
    Kind.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    Kind.TEXT: "text/plain",
    Kind.MARKDOWN: "text/markdown",
    Kind.CSV: "text/csv",
    Kind.HTML: "text/html",
}
SUPPORTED = "text, Markdown, CSV, HTML, PDF or Word (.docx)"
# How much of a file is read to decide what it is.
HEAD_BYTES = 64 * 1024

# Magic numbers of formats we refuse, with what to call them in the error.
_BINARY_SIGNATURES: list[tuple[int, bytes, str]] = [
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"RIFF", "an audio, video or WebP file"),
    (0, b"\x7fELF", "a program"),
    (0, b"MZ", "a Windows program"),
    (0, b"\xca\xfe\xba\xbe", "a program"),
    (0, b"\xcf\xfa\xed\xfe", "a program"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"BZh", "a bzip2 archive"),
    (0, b"\xfd7zXZ\x00", "an xz archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!", "a RAR archive"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document (.doc/.xls); save it as .docx"),
    (0, b"ID3", "an audio file"),
    (0, b"OggS", "an audio file"),
    (0, b"fLaC", "an audio file"),
    (4, b"ftyp", "a video or image file"),
    (0, b"wOFF", "a font"),
    (0, b"SQLite format 3\x00", "a database"),
    (0, b"%!PS", "a PostScript file"),
]
# C0 controls other than tab, newline, form feed and carriage return: text has (almost) none.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_HTML_START = re.compile(r"\A\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]", re.I | re.S)
_SVG_START = re.compile(
    r"\A\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*(?:<!doctype\s+svg[^>]*>\s*)?<svg[\s>]", re.I | re.S
)
_MARKDOWN_HEADING = re.compile(r"^#{1,6} \S", re.M)


class Refused(Exception):
    """A file we will not take, with the reason a person reads on the chip."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Sniffed:
    kind: str
    content_type: str
    encoding: str = ""  # text formats only


def sniff(file: IO[bytes], *, name: str) -> Sniffed:
    """What the file is, from its content; the name only tells CSV and Markdown from plain text.

    Raises Refused for anything we do not read (images, programs, archives,
    other binary data). The file position is restored.
    """
    position = file.tell()
    try:
        file.seek(0)
        head = file.read(HEAD_BYTES)
        if not head:
            raise Refused("empty", "The file is empty.")
        if head.startswith(b"%PDF-"):
            return Sniffed(Kind.PDF, CONTENT_TYPES[Kind.PDF])
        if head.startswith(b"PK\x03\x04"):
            _require_docx(file)
            return Sniffed(Kind.DOCX, CONTENT_TYPES[Kind.DOCX])
        for offset, signature, what in _BINARY_SIGNATURES:
            if head[offset : offset + len(signature)] == signature:
                raise Refused("unsupported_type", f"This looks like {what}; upload {SUPPORTED}.")
        encoding, text = _decode_head(head, complete=len(head) < HEAD_BYTES)
        return _text_kind(text, name=name, encoding=encoding)
    finally:
        file.seek(position)


def _require_docx(file: IO[bytes]) -> None:
    """A zip that is a Word document (reads only the zip's directory)."""
    try:
        file.seek(0)
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise Refused(
            "corrupt", "The file looks like a Word document or a zip archive but is damaged."
        ) from exc
    if "word/document.xml" not in names or "[Content_Types].xml" not in names:
        raise Refused("unsupported_type", f"This is a zip archive, not a Word document; upload {SUPPORTED}.")


def _decode_head(head: bytes, *, complete: bool) -> tuple[str, str]:
    """(encoding, text) of the file's start, or Refused when it is not text."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        if b"\x00" in head:
            raise Refused("binary", f"This is a binary file, not text; upload {SUPPORTED}.")
        candidates = ["utf-8-sig", "cp1252"]
    for encoding in candidates:
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            text = decoder.decode(head, final=complete)
        except UnicodeDecodeError:
            continue
        if len(_CONTROL.findall(text)) > max(2, len(text) // 200):
            break
        return encoding, text
    raise Refused("binary", f"This is a binary file, not text; upload {SUPPORTED}.")


def _text_kind(text: str, *, name: str, encoding: str) -> Sniffed:
    lower_name = name.lower()
    if _SVG_START.match(text):
        raise Refused("unsupported_type", f"SVG images are not supported; upload {SUPPORTED}.")
    if _HTML_START.match(text):
        kind = Kind.HTML
    elif lower_name.endswith((".csv", ".tsv")) and _looks_tabular(text):
        kind = Kind.CSV
    elif lower_name.endswith((".md", ".markdown")) or _MARKDOWN_HEADING.search(text):
        kind = Kind.MARKDOWN
    else:
        kind = Kind.TEXT
    return Sniffed(kind, CONTENT_TYPES[kind], encoding)


def _looks_tabular(text: str) -> bool:
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if not lines:
        return False
    delimiter = "\t" if lines[0].count("\t") > lines[0].count(",") else ","
    return lines[0].count(delimiter) >= 1


# --- names ----------------------------------------------------------------------

NAME_MAX_CHARS = 120
# Path separators, characters Windows refuses, and bidirectional overrides
# (which can make "evil\u202etxt.exe" read as "evilexe.txt").
_NAME_UNSAFE = re.compile(r"[\\/:*?\"<>|\u202a-\u202e\u2066-\u2069\u200e\u200f]")


def clean_name(raw: str) -> str:
    """A file name safe to show and to offer for download: no path, no controls, short."""
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _NAME_UNSAFE.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    if len(name) > NAME_MAX_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: NAME_MAX_CHARS - len(extension) - 1].rstrip(" .") + "." + extension
        else:
            name = name[:NAME_MAX_CHARS].rstrip(" .")
    return name or "attachment"
